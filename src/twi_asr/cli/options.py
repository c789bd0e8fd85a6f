"""Option aliases shared by every command (one definition, one help text).

Defaults come from :class:`twi_asr.config.Settings`, i.e. ``TWI_ASR_*``
environment variables, so flags and env agree everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="TWI_ASR_MODEL",
        help="Alias (twi, tiny.en, ...), local folder, hub id org/name, or s3://bucket/prefix.",
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        "-e",
        envvar="TWI_ASR_ENGINE",
        help="auto (by the model folder), transformers or ctranslate2.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", envvar="TWI_ASR_DEVICE", help="auto, cpu or cuda.")]
ComputeTypeOpt = Annotated[
    str,
    typer.Option(
        "--compute-type",
        envvar="TWI_ASR_COMPUTE_TYPE",
        help="ctranslate2: int8, int8_float16, float16, float32; transformers: float32, float16, bfloat16, "
        "int8 (CPU, dynamic quantisation: faster, a little less accurate).",
    ),
]
LanguageOpt = Annotated[
    str,
    typer.Option(
        "--language",
        "-l",
        envvar="TWI_ASR_LANGUAGE",
        help="auto, a Whisper code (en, yo, ...), or tw/twi/ak/akan = the checkpoint's own default.",
    ),
]
BatchSizeOpt = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "-b",
        min=0,
        envvar="TWI_ASR_BATCH_SIZE",
        help="Clips per engine batch; 0 = auto (16 on CUDA; on CPU 8 for ctranslate2, 4 for transformers; "
        "the engine then gets 4 batches at a time and sorts them by length).",
    ),
]
LongFormOpt = Annotated[
    str,
    typer.Option(
        "--long-form",
        envvar="TWI_ASR_LONG_FORM",
        help="Audio over 30 s: vad (cut on silence, pieces batched; faster), sequential (Whisper's "
        "window-by-window loop, each window conditioned on the last), or auto (vad when installed).",
    ),
]


def settings_error(exc: Any) -> str:
    """One line for a pydantic ``ValidationError`` of a settings class (``field: why``).

    A whole-model check (a secret file that cannot be read) has no field: its message names the
    variable itself, without pydantic's "Value error, " prefix.
    """
    first = exc.errors()[0]
    where = ".".join(map(str, first.get("loc", ())))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def key_value_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` flags (``--env``, ``--build-arg``) as a dict; anything else is a usage error."""
    from ..errors import UsageError

    out: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {value!r}: expected KEY=VALUE")
        out[key.strip()] = val
    return out
