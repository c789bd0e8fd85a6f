"""``TwiAsr``: the twi-asr engine as a BentoML service (``bentoml serve twi_asr.bento:TwiAsr``).

The engine is loaded once per BentoML worker through :func:`twi_asr.engines.load_transcriber`,
from the same ``TWI_ASR_*`` variables as ``twi-asr serve`` (:class:`BentoSettings`). One
batchable API, ``transcribe_batch``, lets BentoML's adaptive batching (its CorkDispatcher)
form the engine's batches: up to ``TWI_ASR_MAX_BATCH_SIZE`` clips, one batch at a time per
worker. The OpenAI-compatible routes are a FastAPI app mounted at ``/v1``
(:mod:`twi_asr.bento.routes`); ``/readyz``, ``/livez`` and ``/metrics`` are BentoML's own.

Scaling is BentoML's: ``TWI_ASR_BENTO_WORKERS`` processes, each with its own copy of the model
and ``cpu count / workers`` threads.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from pydantic import Field

from .. import __version__
from ..server.schemas import Build, ModelCard
from ..server.settings import ServerSettings
from .bentofile import bento_envs
from .routes import create_openai_app
from .wire import Clip, transcribe_clips

for _name, _value in bento_envs().items():
    os.environ.setdefault(_name, _value)  # what the caller's environment sets wins


class BentoSettings(ServerSettings):
    """``twi-asr serve``'s settings plus BentoML's process count (``TWI_ASR_BENTO_WORKERS``)."""

    port: int = Field(3000, ge=1, le=65535)
    bento_workers: int = Field(1, ge=1, le=64)
    """BentoML worker processes, each with a copy of the model (BentoML's way to use more cores)."""


SETTINGS = BentoSettings()
TIMEOUT_S = SETTINGS.request_timeout_s


@bentoml.service(
    name="twi_asr",
    workers=SETTINGS.bento_workers,
    traffic={"timeout": TIMEOUT_S},
    labels={"project": "twi-asr", "twi_asr_version": __version__},
)
@bentoml.asgi_app(create_openai_app(SETTINGS), path="/v1")
class TwiAsr:
    """One loaded engine behind BentoML's adaptive batching."""

    def __init__(self) -> None:
        from ..engines import load_transcriber
        from ..models import resolve_model
        from ..provenance import build_info

        s = self.settings = BentoSettings()
        resolved = resolve_model(s.model)
        threads = max(1, (os.cpu_count() or 1) // s.bento_workers)
        self.engine = load_transcriber(
            resolved,
            engine=s.engine,
            device=s.device,
            compute_type=s.compute_type,
            batch_size=s.effective_batch_size,
            long_form=s.long_form,
            workers=1,
            cpu_threads=threads,
        )
        self.split_long_audio = getattr(self.engine, "long_form", "sequential") == "vad"
        self.card = ModelCard(
            id=self.engine.model_name,
            source=resolved.source,
            format=resolved.format,
            engine=self.engine.engine,
            device=self.engine.device,
            weights_hash=resolved.weights_hash(),
            twi_asr_version=__version__,
            build=Build(**build_info().to_dict()),
        )

    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.effective_batch_size,
        max_latency_ms=int(TIMEOUT_S * 1000),
    )
    def transcribe_batch(self, clips: list[Clip]) -> list[dict[str, Any]]:
        """Transcribe clips (16 kHz float32 samples with their options); transcripts in order."""
        return transcribe_clips(self.engine, clips)


__all__ = ["BentoSettings", "TwiAsr"]
