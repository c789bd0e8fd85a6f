"""Defaults in one place.

The CLI's flags take their defaults from here and read ``TWI_ASR_*``
variables through Typer (``envvar=``); the server reads them through
pydantic-settings (:mod:`twi_asr.server.settings`). Nothing here imports
pydantic: the ``--help`` path must stay instant.
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINES = ("auto", "transformers", "ctranslate2")
DEFAULT_MODEL = "twi"
DEFAULT_BATCH_SIZE = 0  # 0 = auto: the engine picks (see engines.load_transcriber)
DEVICES = ("auto", "cpu", "cuda")


def default_cache_dir() -> Path:
    """Where downloaded and converted models live (``TWI_ASR_CACHE_DIR``)."""
    explicit = os.environ.get("TWI_ASR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twi-asr"
