"""Server settings from flags and ``TWI_ASR_*`` environment variables (pydantic-settings).

A container is configured by its environment alone; ``twi-asr serve`` flags
override the environment for a local run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..config import DEFAULT_MODEL
from ..secret_files import secret_from_file


class ServerSettings(BaseSettings):
    """Everything the server needs to start; every field has a ``TWI_ASR_<NAME>`` variable."""

    # An empty variable (TWI_ASR_API_KEY= from a compose file) means "not set": an empty key
    # would otherwise lock every route behind 401.
    model_config = SettingsConfigDict(
        env_prefix="TWI_ASR_", extra="ignore", protected_namespaces=(), env_ignore_empty=True
    )

    host: str = "0.0.0.0"
    port: int = Field(8001, ge=1, le=65535)
    model: str = DEFAULT_MODEL
    engine: str = "auto"
    device: str = "auto"
    compute_type: str = "default"
    long_form: Literal["auto", "vad", "sequential"] = "auto"
    """Uploads over 30 s: cut on silence and batched (vad), or Whisper's sequential loop."""
    api_key: SecretStr | None = None
    """When set, every route but /health, /ready and /metrics needs ``Authorization: Bearer KEY``."""
    api_key_file: Path | None = None
    """A file holding the key (a Docker/Kubernetes secret): it never shows in ``docker inspect``."""

    batching: bool = True
    max_batch_size: int = Field(8, ge=1, le=256)
    """Most short clips in the engine at once, over all engine lanes (each lane takes its share)."""
    max_wait_ms: float = Field(20.0, ge=0.0, le=10_000.0)
    """How long the first request of a batch waits for company."""
    max_queue: int = Field(64, ge=1)
    """Requests waiting for the engine before new ones get 503 + Retry-After."""
    max_queued_audio_s: float = Field(4 * 3600.0, gt=0.0)
    """Audio seconds the server may hold at once (decoding, queued, running): 4 h is ~0.9 GB of
    16 kHz float32 samples. Past it, new uploads get 503 + Retry-After before they are decoded."""
    decode_workers: int = Field(2, ge=1, le=64)
    """Uploads decoded (and cut on silence) at once, off the event loop."""
    engine_workers: int = Field(0, ge=0, le=64)
    """Engine lanes running batches at once: 0 = auto (2 for CTranslate2 on a multi-core CPU,
    each with half the cores; 1 otherwise)."""
    bulk_lanes: int = Field(0, ge=0, le=64)
    """Lanes that may run pieces of long uploads at once: 0 = auto (all lanes but one, so a short
    request never waits behind a long file)."""
    request_timeout_s: float = Field(300.0, gt=0.0)
    max_upload_mb: float = Field(100.0, gt=0.0)
    max_audio_s: float = Field(3 * 3600.0, gt=0.0)
    min_audio_s: float = Field(0.1, ge=0.0)
    """Shorter uploads (after decoding) get 400 audio_too_short, as OpenAI's API does."""
    beam_size: int = Field(5, ge=1)
    log_json: bool = False
    log_level: str = "info"
    graceful_timeout_s: float = Field(30.0, ge=0.0)

    @model_validator(mode="after")
    def _key_from_file(self) -> ServerSettings:
        """``TWI_ASR_API_KEY_FILE`` fills ``api_key`` unless the key itself is set."""
        if self.api_key is None:
            value = secret_from_file(self.api_key_file, "TWI_ASR_API_KEY_FILE")
            if value is not None:
                self.api_key = SecretStr(value)
        return self

    @property
    def effective_batch_size(self) -> int:
        """1 when batching is off, else ``max_batch_size``."""
        return self.max_batch_size if self.batching else 1
