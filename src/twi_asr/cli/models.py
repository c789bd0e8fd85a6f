"""``twi-asr models``: the alias table, the cache, fetching and converting models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import console

app = typer.Typer(help="Known models, where they are, and conversions.", no_args_is_help=True)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Aliases (source, format, base, licence, reported WER, local status) and the cache folder."""
    from ..config import default_cache_dir
    from ..models import ALIASES, DEFAULT_MODEL, alias_status

    rows = [
        {
            "alias": a.name,
            "default": a.name == DEFAULT_MODEL,
            "source": a.source,
            "format": a.format,
            "base": a.base,
            "licence": a.licence,
            "reported_wer": a.reported_wer,
            "status": alias_status(a),
            "description": a.description,
        }
        for a in ALIASES.values()
    ]
    cache = default_cache_dir()
    if as_json:
        console.stdout.out(json.dumps({"models": rows, "cache_dir": str(cache)}, indent=2))
        return
    from rich.table import Table

    table = Table(title="twi-asr models (--model ALIAS, a folder, a hub id org/name, or s3://...)")
    for col in ("alias", "source", "format", "base", "licence", "reported WER", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        name = f"{r['alias']} (default)" if r["default"] else str(r["alias"])
        table.add_row(
            name,
            str(r["source"]),
            str(r["format"]),
            str(r["base"]),
            str(r["licence"]),
            str(r["reported_wer"]),
            str(r["status"]),
        )
    console.stdout.print(table)
    console.stdout.print(
        f"cache: {cache}  (TWI_ASR_CACHE_DIR); hub models use the Hugging Face cache (HF_HOME)"
    )


@app.command("path")
def model_path(
    model: Annotated[str, typer.Argument(help="Alias, folder, hub id or s3:// prefix.")],
) -> None:
    """Resolve (downloading once if needed) and print the model's local folder and format."""
    from ..models import resolve_model

    resolved = resolve_model(model)
    console.stdout.out(str(resolved.path))
    console.info(f"format: {resolved.format}; source: {resolved.source}")


@app.command("to-hf")
def to_hf(
    ct2_dir: Annotated[
        Path, typer.Argument(help="A CTranslate2 Whisper folder (model.bin + tokenizer.json).")
    ],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the transformers checkpoint.")],
    dtype: Annotated[str, typer.Option("--dtype", help="float32 or float16.")] = "float32",
) -> None:
    """Rebuild a Hugging Face transformers checkpoint from a CTranslate2 Whisper folder (offline)."""
    from ..ct2_to_hf import convert_ct2_to_hf
    from ..models import resolve_model

    src = resolve_model(str(ct2_dir)).path if not ct2_dir.exists() else ct2_dir
    out = convert_ct2_to_hf(src, out_dir, dtype=dtype)
    console.info(f"wrote a transformers Whisper checkpoint to {out}")


@app.command("convert")
def convert(
    src: Annotated[str, typer.Argument(help="A transformers Whisper checkpoint: folder, hub id or alias.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the CTranslate2 folder.")],
    quantization: Annotated[
        str, typer.Option("--quantization", "-q", help="int8 (CPU), int8_float16, float16 (GPU), float32.")
    ] = "int8",
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty OUT_DIR.")] = False,
) -> None:
    """Convert a transformers Whisper (a Twi fine-tune, say) for --engine ctranslate2."""
    from ..convert import convert_hf_to_ct2
    from ..models import resolve_model

    out = convert_hf_to_ct2(resolve_model(src).path, out_dir, quantization=quantization, force=force)
    console.info(f"wrote a CTranslate2 ({quantization}) model to {out}: use --model {out}")
