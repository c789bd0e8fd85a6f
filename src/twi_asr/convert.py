"""Hugging Face Whisper checkpoint -> CTranslate2 folder for the ``ctranslate2`` engine.

Uses CTranslate2's own converter (a well-kept library beats our own code),
then makes sure the folder carries what faster-whisper needs at load time:
``tokenizer.json`` (written from the checkpoint's tokenizer when the
checkpoint only has vocab.json/merges.txt), ``preprocessor_config.json``
(mel bins) and ``generation_config.json`` (so a Twi fine-tune's default
language survives the conversion; see ``engines.ctranslate2``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import DependencyMissingError, ModelNotFoundError, UsageError
from .models import detect_format

QUANTIZATIONS = (
    "int8",
    "int8_float16",
    "int8_float32",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
_SIDE_FILES = ("preprocessor_config.json", "generation_config.json", "tokenizer.json")


def convert_hf_to_ct2(src: Path, out: Path, *, quantization: str = "int8", force: bool = False) -> Path:
    """Convert the transformers checkpoint in ``src`` into a CTranslate2 folder ``out``."""
    if quantization not in QUANTIZATIONS:
        raise UsageError(f"--quantization {quantization}: choose one of {', '.join(QUANTIZATIONS)}")
    if detect_format(src) != "transformers":
        raise ModelNotFoundError(f"{src} is not a transformers Whisper checkpoint (config.json + weights)")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty: pass --force to overwrite it")
    try:
        from ctranslate2.converters import TransformersConverter
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise DependencyMissingError(
            "conversion needs ctranslate2, transformers and torch: pip install 'twi-asr[ct2,transformers]'"
        ) from exc
    copy = [f for f in _SIDE_FILES if (src / f).is_file()]
    TransformersConverter(str(src), copy_files=copy).convert(str(out), quantization=quantization, force=True)
    if not (out / "tokenizer.json").is_file():  # slow-tokenizer checkpoints: write the fast one
        AutoTokenizer.from_pretrained(str(src), use_fast=True).backend_tokenizer.save(
            str(out / "tokenizer.json")
        )
    for name in ("generation_config.json", "preprocessor_config.json"):
        if (src / name).is_file() and not (out / name).is_file():
            shutil.copy2(src / name, out / name)
    if detect_format(out) != "ctranslate2":  # pragma: no cover - the converter always writes model.bin
        raise ModelNotFoundError(f"conversion wrote no usable CTranslate2 model to {out}")
    return out
