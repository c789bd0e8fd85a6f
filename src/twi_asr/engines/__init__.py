"""Engines behind one protocol, and :func:`load_transcriber` that picks one.

Importing this package is cheap: each engine imports torch / ctranslate2 only
when it is constructed.

A transformers checkpoint on an install without torch (the default ``twi-asr[ct2]``
install and CPU image) goes to the ctranslate2 engine, converted once into the cache
by :func:`twi_asr.convert.converted_in_cache`, or is refused with one line that names
the fixes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..config import DEVICES, ENGINES
from ..errors import UsageError
from ..models import ResolvedModel, resolve_model
from .base import Transcriber

__all__ = ["Transcriber", "load_transcriber", "pick_engine"]


def _installed(*modules: str) -> bool:
    """Whether the modules can be imported, without importing them (torch costs seconds)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def transformers_engine_installed() -> bool:
    """torch and transformers are there: the transformers engine (and CTranslate2's converter) can run."""
    return _installed("torch", "transformers")


def pick_engine(requested: str, model: ResolvedModel) -> str:
    """``auto`` follows the model folder's layout; an explicit choice must fit it.

    The one exception: a transformers checkpoint where torch/transformers are missing goes
    to ``ctranslate2`` (``auto`` or asked for), which :func:`load_transcriber` feeds with a
    converted copy; with no ctranslate2 either, the one-line refusal (exit 3).
    """
    if requested not in ENGINES:
        raise UsageError(f"unknown engine {requested!r}: choose one of {', '.join(ENGINES)}")
    convertible = requested in ("auto", "ctranslate2") and model.format == "transformers"
    if convertible and not transformers_engine_installed():
        if _installed("ctranslate2", "faster_whisper"):
            return "ctranslate2"
        from ..convert import no_torch_refusal

        raise no_torch_refusal(model.name, "ctranslate2 is not installed to convert it")
    if requested == "auto":
        return model.format
    if requested != model.format:
        hint = (
            "convert it with `twi-asr models convert` or use --engine transformers"
            if model.format == "transformers"
            else "use --engine ctranslate2 (or --engine auto)"
        )
        raise UsageError(f"{model.name} is a {model.format} model, not a {requested} one: {hint}")
    return requested


def load_transcriber(
    model: str | ResolvedModel | None = None,
    *,
    engine: str = "auto",
    device: str = "auto",
    compute_type: str = "default",
    batch_size: int = 0,
    cache_dir: Path | None = None,
    long_form: str = "auto",
    workers: int = 1,
    cpu_threads: int = 0,
) -> Transcriber:
    """Resolve ``model`` (alias, folder, hub id or s3:// prefix) and load an engine for it.

    ``batch_size``: clips per batched call; 0 = auto: 16 on CUDA; on CPU 8 for
    ctranslate2 and 4 for transformers (whose beam search holds every beam's
    cross-attention cache: 8 was no faster and took 0.3 GB more). One encode +
    one generate per batch of clips up to 30 s, the encoder window cut to the
    longest clip of the batch (bench/engines.py).

    ``compute_type``: for ctranslate2 a CTranslate2 compute type (``int8``,
    ``float16``...; default int8 on CPU, float16 on CUDA); for transformers a
    torch dtype name (default float32 on CPU, float16 on CUDA) or ``int8``
    (CPU: dynamic int8 quantisation of the Linear layers, an explicit choice).

    ``long_form``: how clips over 30 s are decoded: ``vad`` cuts them on silence
    (Silero VAD) into pieces of at most 28 s that are batched with the short clips and
    stitched back with their offsets; ``sequential`` is Whisper's window-by-window loop,
    each window conditioned on the previous text; ``auto`` = vad when faster-whisper and
    onnxruntime are installed (see :mod:`twi_asr.vad`).

    ``workers``: how many ``transcribe`` calls may run at once from different threads
    (ctranslate2 only: model replicas sharing the weights; the transformers engine patches
    its model per call and takes 1). ``cpu_threads``: threads per worker (ctranslate2) or
    torch's intra-op threads (transformers); 0 leaves the library's default.
    """
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    if cpu_threads < 0:
        raise UsageError(f"cpu threads must be 0 (auto) or more, not {cpu_threads}")
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if engine not in ENGINES:  # before resolving: a typo must not cost a download
        raise UsageError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model, cache_dir=cache_dir)
    chosen = pick_engine(engine, resolved)
    if chosen == "ctranslate2" and resolved.format == "transformers":  # no torch here: convert once
        from ..convert import QUANTIZATIONS, converted_in_cache

        torch_free_ok = compute_type in QUANTIZATIONS and "bfloat16" not in compute_type
        quantization = compute_type if torch_free_ok else "int8"  # a float16 compute type: float16 weights
        resolved = converted_in_cache(resolved, quantization=quantization, cache_dir=cache_dir)
    if chosen == "ctranslate2":
        from .ctranslate2 import CTranslate2Transcriber

        return CTranslate2Transcriber(
            resolved.path, model_name=resolved.name, device=device, compute_type=compute_type,
            batch_size=batch_size, long_form=long_form, workers=workers, cpu_threads=cpu_threads,
        )  # fmt: skip
    if workers > 1:
        raise UsageError(
            f"workers={workers}: the transformers engine runs one transcribe at a time (it cuts the "
            "encoder window on the shared model during each call); use --engine ctranslate2 for "
            "concurrent workers, or run more server replicas"
        )
    from .transformers import TransformersTranscriber

    if compute_type not in ("default", "float32", "float16", "bfloat16", "int8"):
        raise UsageError(
            f"--compute-type {compute_type} is not a torch dtype: use float32, float16, bfloat16 "
            "or int8 (CPU) with the transformers engine"
        )
    return TransformersTranscriber(
        resolved.path, model_name=resolved.name, device=device, dtype=compute_type, batch_size=batch_size,
        long_form=long_form, cpu_threads=cpu_threads,
    )  # fmt: skip
