"""Defaults in one place, overridable from ``TWI_ASR_*`` environment variables.

The CLI's flags take their defaults from here, so a container is configured
by its environment alone. Reading is cheap (no pydantic at import time: the
``--help`` path must stay instant).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("auto", "transformers", "ctranslate2")
DEFAULT_MODEL = "twi"
DEFAULT_BATCH_SIZE = 0  # 0 = auto: the engine picks (see engines.load_transcriber)
DEVICES = ("auto", "cpu", "cuda")


def _env(name: str, default: str) -> str:
    value = os.environ.get(f"TWI_ASR_{name}", "").strip()
    return value or default


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        from .errors import UsageError

        raise UsageError(f"TWI_ASR_{name}={raw!r}: expected a whole number (0 = auto)")
    return value


def default_cache_dir() -> Path:
    """Where downloaded and converted models live (``TWI_ASR_CACHE_DIR``)."""
    explicit = os.environ.get("TWI_ASR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twi-asr"


@dataclass(frozen=True)
class Settings:
    """Process-wide defaults; every field has a ``TWI_ASR_<FIELD>`` variable."""

    model: str
    engine: str
    device: str
    compute_type: str
    batch_size: int
    cache_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        """Read the environment now (call at command time, not import time)."""
        return cls(
            model=_env("MODEL", DEFAULT_MODEL),
            engine=_env("ENGINE", "auto"),
            device=_env("DEVICE", "auto"),
            compute_type=_env("COMPUTE_TYPE", "default"),
            batch_size=_env_int("BATCH_SIZE", DEFAULT_BATCH_SIZE),
            cache_dir=default_cache_dir(),
        )
