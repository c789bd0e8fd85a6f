"""Hugging Face Whisper checkpoint -> CTranslate2 folder for the ``ctranslate2`` engine.

Three jobs, one converter:

- :func:`convert_hf_to_ct2` (``twi-asr models convert``): CTranslate2's official
  ``TransformersConverter`` when torch and transformers import, else the torch-free
  path of :mod:`twi_asr.hf_to_ct2` (the same CTranslate2 loader code over numpy
  arrays; byte-identical model.bin on tiny.en). Either way the folder carries what
  faster-whisper needs at load time: ``tokenizer.json`` (built from vocab.json +
  merges.txt when the checkpoint has none), ``preprocessor_config.json`` (mel bins)
  and ``generation_config.json`` (so a Twi fine-tune's default language survives;
  see ``engines.ctranslate2``).
- :func:`bake` (``twi-asr models bake``, the Dockerfile's convert stage): any model
  spec -> a CTranslate2 folder plus ``twi-asr-model.json`` saying what it is.
- :func:`converted_in_cache`: at run time, a transformers checkpoint on a torch-free
  install is converted once into ``<cache>/ct2/<weights_hash>-<quantization>/``
  (written aside, renamed into place), or refused with one line naming the fixes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal

from .config import default_cache_dir
from .errors import DependencyMissingError, EnvironmentProblem, ModelNotFoundError, UsageError
from .model_parts import file_lock
from .models import MODEL_CARD, ResolvedModel, detect_format, resolve_model

log = logging.getLogger(__name__)

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
Converter = Literal["auto", "official", "torch-free"]


def official_converter_available() -> bool:
    """Whether CTranslate2's own converter can run here (it loads the model with torch + transformers)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def convert_hf_to_ct2(
    src: Path,
    out: Path,
    *,
    quantization: str = "int8",
    force: bool = False,
    converter: Converter = "auto",
) -> Path:
    """Convert the transformers checkpoint in ``src`` into a CTranslate2 folder ``out``.

    ``converter``: ``official`` (CTranslate2's TransformersConverter; needs torch + transformers),
    ``torch-free`` (:mod:`twi_asr.hf_to_ct2`), or ``auto``: official where it can run.
    """
    if quantization not in QUANTIZATIONS:
        raise UsageError(f"--quantization {quantization}: choose one of {', '.join(QUANTIZATIONS)}")
    if detect_format(src) != "transformers":
        raise ModelNotFoundError(f"{src} is not a transformers Whisper checkpoint (config.json + weights)")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty: pass --force to overwrite it")
    if out.resolve() == src.resolve() or src.resolve().is_relative_to(out.resolve()):
        raise UsageError(f"{out} holds the checkpoint {src}: write the CTranslate2 folder elsewhere")
    copy = [f for f in _SIDE_FILES if (src / f).is_file()]
    if converter == "official" or (converter == "auto" and official_converter_available()):
        _convert_official(src, out, quantization, copy)
    else:
        from .hf_to_ct2 import convert_torch_free

        convert_torch_free(src, out, quantization=quantization, copy_files=copy)
    _write_preprocessor_config(src, out)
    if detect_format(out) != "ctranslate2":  # pragma: no cover - both converters write model.bin
        raise ModelNotFoundError(f"conversion wrote no usable CTranslate2 model to {out}")
    return out


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_preprocessor_config(src: Path, out: Path) -> None:
    """faster-whisper reads the mel settings from preprocessor_config.json (80 mels without it).

    transformers 5 saves them inside processor_config.json instead; a 128-mel model (large-v3)
    would then load with 80. Write the file from there, or from config.json's ``num_mel_bins``.
    """
    if (out / "preprocessor_config.json").is_file():
        return
    features = _json_object(src / "processor_config.json").get("feature_extractor")
    if not isinstance(features, dict):
        mels = _json_object(src / "config.json").get("num_mel_bins", 80)
        features = {"feature_size": mels} if mels != 80 else None
    if isinstance(features, dict):
        (out / "preprocessor_config.json").write_text(json.dumps(features, indent=2) + "\n", encoding="utf-8")


def _convert_official(src: Path, out: Path, quantization: str, copy: list[str]) -> None:
    try:
        from ctranslate2.converters import TransformersConverter
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise DependencyMissingError(
            "the official converter needs ctranslate2, transformers and torch: "
            "pip install 'twi-asr[ct2,transformers]'"
        ) from exc
    TransformersConverter(str(src), copy_files=copy).convert(str(out), quantization=quantization, force=True)
    if not (out / "tokenizer.json").is_file():  # slow-tokenizer checkpoints: write the fast one
        AutoTokenizer.from_pretrained(str(src), use_fast=True).backend_tokenizer.save(
            str(out / "tokenizer.json")
        )


# --------------------------------------------------------------------- the card
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # ctranslate2/types.h order


def stored_quantization(folder: Path) -> str | None:
    """The quantization a CTranslate2 model.bin was written with, read from its variable headers.

    Walks the layout of ``ctranslate2/specs/model_spec.py::_serialize`` (seeking past the
    data): the type of the first quantizable weight (one with a ``*_scale`` beside it, or a
    2-D float) and of a layer norm. ``int8`` also covers ``int8_float32`` (the files are equal).
    None for a file this reader does not know.
    """
    try:
        with (folder / "model.bin").open("rb") as fh:

            def unpack(fmt: str) -> Any:
                return struct.unpack("<" + fmt, fh.read(struct.calcsize("<" + fmt)))[0]

            def string() -> str:
                return fh.read(unpack("H"))[:-1].decode("utf-8")

            if unpack("I") < 4:
                return None
            string(), unpack("I")  # spec name, revision
            types: dict[str, str] = {}
            for _ in range(unpack("I")):
                name = string()
                shape = [unpack("I") for _ in range(unpack("B"))]
                dtype = _CT2_DTYPES[unpack("B")]
                fh.seek(unpack("I"), os.SEEK_CUR)
                types[name] = dtype
                if name.endswith("/weight") and len(shape) == 2 and "weight" not in types:
                    types["weight"] = dtype
                if name.endswith("layer_norm/gamma") and "norm" not in types:
                    types["norm"] = dtype
    except (OSError, struct.error, IndexError, UnicodeDecodeError):
        return None
    weight, norm = types.get("weight"), types.get("norm", "float32")
    if weight in ("int8", "int16"):
        return weight if weight == "int16" or norm == "float32" else f"int8_{norm}"
    return weight


def write_card(
    out: Path, *, source: str, converted_from: str | None, quantization: str | None
) -> dict[str, Any]:
    """Write ``out/twi-asr-model.json``: where a CTranslate2 folder came from and its weights hash."""
    folder = ResolvedModel(name=str(out), path=out, format="ctranslate2", source=source)
    card = {
        "source": source,
        "format": "ctranslate2",
        "converted_from": converted_from,
        "quantization": quantization,
        "weights_hash": folder.weights_hash(),
    }
    (out / MODEL_CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def bake(spec: str, out: Path, *, quantization: str | None = None, force: bool = False) -> dict[str, Any]:
    """Make ``out`` a CTranslate2 folder from any model spec and return its card.

    A CTranslate2 model is copied as it is (``quantization`` is then only checked against
    what is stored); a transformers checkpoint is converted (torch-free where torch is absent),
    int8 unless told.
    """
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise UsageError(f"--quantization {quantization}: choose one of {', '.join(QUANTIZATIONS)}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: OUT_DIR must be a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty: pass --force to overwrite it")
    resolved = resolve_model(spec)
    if out.resolve() == resolved.path or resolved.path.is_relative_to(out.resolve()):
        raise UsageError(f"{out} holds the model {spec} itself: bake it into another folder")
    if resolved.format == "transformers":
        quantization = quantization or "int8"
        convert_hf_to_ct2(resolved.path, out, quantization=quantization, force=True)
        return write_card(
            out, source=resolved.source, converted_from="transformers", quantization=quantization
        )
    stored = stored_quantization(resolved.path)
    if quantization is not None and stored is not None and quantization != stored:
        log.warning("%s is already CTranslate2 (%s): copied as it is, not re-quantized", spec, stored)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(resolved.path, out, ignore=shutil.ignore_patterns(MODEL_CARD, ".*"))
    return write_card(out, source=resolved.source, converted_from=None, quantization=stored)


# --------------------------------------------------------------------- run time
def auto_convert_enabled() -> bool:
    """``TWI_ASR_AUTO_CONVERT`` (default on): may a transformers checkpoint be converted at load time?"""
    return os.environ.get("TWI_ASR_AUTO_CONVERT", "1").strip().lower() not in ("0", "false", "no", "off")


def no_torch_refusal(model: str, why: str) -> DependencyMissingError:
    """The one line for a transformers checkpoint this install can neither run nor convert."""
    return DependencyMissingError(
        f"{model} is a transformers checkpoint and this install has no torch to run it, and {why}. "
        f"Fix: build the image with --build-arg MODEL={model}, or run `twi-asr models convert {model} OUT` "
        "and use --model OUT, or pip install 'twi-asr[transformers]'"
    )


def _usable(folder: Path) -> bool:
    return detect_format(folder) == "ctranslate2" and (folder / MODEL_CARD).is_file()


def converted_in_cache(
    model: ResolvedModel, *, quantization: str = "int8", cache_dir: Path | None = None
) -> ResolvedModel:
    """The CTranslate2 form of a transformers checkpoint: from the cache, or converted into it once.

    ``<cache>/ct2/<weights_hash>-<quantization>/``, written to a temporary folder beside it and
    renamed into place, under a lock file; a process that loses a rename race uses the winner's.
    Refused with one line (exit 3) when conversion is off (``TWI_ASR_AUTO_CONVERT=0``), cannot read
    the weights (pytorch_model.bin without torch) or cannot write the cache.
    """
    if model.format != "transformers":
        return model
    root = (cache_dir or default_cache_dir()) / "ct2"
    final = root / f"{model.weights_hash()}-{quantization}"
    ct2 = ResolvedModel(name=model.name, path=final, format="ctranslate2", source=model.source)
    if _usable(final):
        return ct2
    if not auto_convert_enabled():
        raise no_torch_refusal(model.name, "automatic conversion is off (TWI_ASR_AUTO_CONVERT=0)")
    torch_free = not official_converter_available()
    if torch_free and not any(model.path.glob("*.safetensors")):
        raise no_torch_refusal(model.name, "its weights are pytorch_model.bin, which only torch can read")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / f".{final.name}.lock"):
            if _usable(final):  # another process converted it while we waited
                return ct2
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
            try:
                log.warning(
                    "%s is a transformers checkpoint: converting it once to CTranslate2 %s into %s",
                    model.name,
                    quantization,
                    final,
                )
                convert_hf_to_ct2(model.path, tmp, quantization=quantization, force=True)
                write_card(tmp, source=model.source, converted_from="transformers", quantization=quantization)
                if final.exists() and not _usable(final):  # a leftover that is not ours: replace it
                    shutil.rmtree(final)
                try:
                    os.rename(tmp, final)
                except OSError:  # lost a race (no lock on this file system): the winner's folder is as good
                    if not _usable(final):
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:  # the cache folder cannot be made or written
        why = exc.strerror or str(exc)
        raise EnvironmentProblem(
            no_torch_refusal(
                model.name, f"the cache {root} cannot be written ({why}; TWI_ASR_CACHE_DIR moves it)"
            ).message
        ) from exc
    return ct2
