"""What one server process holds: the loaded engine behind its batcher, admission, the decode pool.

The model loads in a thread after start-up (``/ready`` says 503 meanwhile); everything a
request needs beyond that comes with the request, so replicas are interchangeable.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from .. import __version__
from ..engines.base import Transcriber
from ..errors import TwiAsrError
from ..models import ResolvedModel
from ..provenance import build_info
from .admission import Admission
from .batching import Batcher
from .metrics import Metrics
from .schemas import Build, ModelCard
from .settings import ServerSettings

log = logging.getLogger("twi_asr.server")


def engine_lanes(settings: ServerSettings, engine: str, device: str) -> int:
    """Engine workers: ``--engine-workers``, or 2 for CTranslate2 on a CPU with 2+ cores, else 1.

    Measured on 2 cores (tiny.en, int8): two single-threaded workers answer a 2.5 s clip in
    0.17 s while the other transcribes a long file; one two-threaded worker made it wait 2.3 s.
    """
    if settings.engine_workers:
        return settings.engine_workers
    cores = os.cpu_count() or 1
    return 2 if engine == "ctranslate2" and device == "cpu" and cores >= 2 else 1


class ServerState:
    """The loaded model, its batcher and admission; ``batcher`` is None while loading."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.batcher: Batcher | None = None
        self.transcriber: Transcriber | None = None
        self.card: ModelCard | None = None
        self.error: str | None = None
        self.decoders = ThreadPoolExecutor(
            max_workers=settings.decode_workers, thread_name_prefix="twi-asr-decode"
        )
        self.admission = Admission(
            settings.max_queued_audio_s,
            metrics,
            retry_after=lambda: self.batcher.retry_after() if self.batcher else 5,
        )

    @property
    def split_long_audio(self) -> bool:
        """Whether long uploads are cut on silence here (the engine's ``long_form`` is vad)."""
        return getattr(self.transcriber, "long_form", "sequential") == "vad"

    def attach(self, transcriber: Transcriber, resolved: ResolvedModel | None) -> None:
        """Put a loaded engine behind a batcher and describe it."""
        s = self.settings
        lanes = getattr(transcriber, "workers", 1) or 1
        self.transcriber = transcriber
        self.batcher = Batcher(
            transcriber,
            max_batch_size=s.effective_batch_size,
            max_wait_s=s.max_wait_ms / 1000.0,
            max_queue=s.max_queue,
            metrics=self.metrics,
            lanes=lanes,
            bulk_lanes=s.bulk_lanes or None,
        )
        self.batcher.start()
        self.card = ModelCard(
            id=transcriber.model_name,
            source=resolved.source if resolved else transcriber.model_name,
            format=resolved.format if resolved else transcriber.engine,
            engine=transcriber.engine,
            device=transcriber.device,
            weights_hash=resolved.weights_hash() if resolved else "unknown",
            twi_asr_version=__version__,
            build=Build(**build_info().to_dict()),
        )
        self.metrics.model_loaded.set(1)
        log.info(
            "model %s loaded (%s on %s, %d engine lane(s))",
            self.card.id,
            self.card.engine,
            self.card.device,
            lanes,
        )

    async def load(self, resolved: ResolvedModel | None = None) -> None:
        """Resolve (unless done already) and load the model in a thread; /ready says 503 meanwhile."""
        from ..engines import load_transcriber, pick_engine
        from ..models import resolve_model

        s = self.settings
        try:
            if resolved is None:
                resolved = await asyncio.to_thread(resolve_model, s.model)
            try:
                engine = pick_engine(s.engine, resolved)
            except Exception:  # a mismatch: load_transcriber below says what is wrong
                engine = s.engine
            device = s.device
            if device == "auto":
                device = await asyncio.to_thread(_default_device, engine)
            lanes = engine_lanes(s, engine, device)
            threads = max(1, (os.cpu_count() or 1) // lanes) if lanes > 1 else 0
            transcriber = await asyncio.to_thread(
                load_transcriber,
                resolved,
                engine=s.engine,
                device=s.device,
                compute_type=s.compute_type,
                batch_size=s.effective_batch_size,
                long_form=s.long_form,
                workers=lanes,
                cpu_threads=threads,
            )
            self.attach(transcriber, resolved)
        except TwiAsrError as exc:
            self.error = exc.message
            log.error("cannot load model %s: %s", s.model, exc.message)
        except Exception as exc:  # keep serving /health and say why /ready fails
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("cannot load model %s", s.model)

    async def close(self) -> None:
        """Drain the batcher (graceful shutdown) and stop the decode pool."""
        if self.batcher is not None:
            await self.batcher.drain(self.settings.graceful_timeout_s)
        self.decoders.shutdown(wait=False, cancel_futures=True)


def _default_device(engine: str) -> str:
    """Where ``--device auto`` puts the engine (the engines pick the same way)."""
    try:
        if engine == "ctranslate2":
            import ctranslate2

            return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # an engine that cannot even import fails later with its own message
        return "cpu"
