"""``twi-asr models``: the alias table, the cache, fetching and converting models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import console

app = typer.Typer(help="Known models, where they are, and conversions.", no_args_is_help=True)

_DEFAULT_LANGUAGE = typer.Option(
    "--default-language",
    help="Make OUT a Twi stand-in: this Whisper code (e.g. yo, as public Ghanaian fine-tunes use) "
    "becomes the checkpoint's default, which --language tw/ak decodes with.",
)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Aliases (source, format, base, licence, reported WER, which forms are local) and the cache folder.

    ``forms``: the transformers checkpoint ("cached" / "not downloaded") and the CTranslate2
    folder ("converted at <path>" / "not converted", or "ready" for a CTranslate2 alias);
    null where the alias has no such form.
    """
    from ..config import default_cache_dir
    from ..models import ALIASES, DEFAULT_MODEL, alias_forms

    cache = default_cache_dir()
    rows = []
    for a in ALIASES.values():
        forms = alias_forms(a, cache)
        rows.append(
            {
                "alias": a.name,
                "default": a.name == DEFAULT_MODEL,
                "source": a.source,
                "format": a.format,
                "base": a.base,
                "licence": a.licence,
                "reported_wer": a.reported_wer,
                "status": forms[a.format],
                "forms": forms,
                "description": a.description,
            }
        )
    if as_json:
        console.stdout.out(json.dumps({"models": rows, "cache_dir": str(cache)}, indent=2))
        return
    from rich.table import Table

    table = Table(title="twi-asr models (--model ALIAS, a folder, a hub id org/name, or s3://...)")
    for col in ("alias", "source", "format", "base", "licence", "reported WER", "local"):
        table.add_column(col, overflow="fold")
    for r in rows:
        name = f"{r['alias']} (default)" if r["default"] else str(r["alias"])
        forms: dict[str, str | None] = r["forms"]  # type: ignore[assignment]
        local = "\n".join(f"{form}: {state}" for form, state in forms.items() if state is not None)
        table.add_row(
            name,
            str(r["source"]),
            str(r["format"]),
            str(r["base"]),
            str(r["licence"]),
            str(r["reported_wer"]),
            local,
        )
    console.stdout.print(table)
    console.stdout.print(
        f"cache: {cache}  (TWI_ASR_CACHE_DIR; converted models in {cache / 'ct2'}); "
        "hub models use the Hugging Face cache (HF_HOME)"
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
    default_language: Annotated[str | None, _DEFAULT_LANGUAGE] = None,
) -> None:
    """Rebuild a Hugging Face transformers checkpoint from a CTranslate2 Whisper folder (offline).

    CT2_DIR may also be an alias: ``twi-asr models to-hf base OUT`` (multilingual, no forced
    language: it detects, or takes --language).
    """
    from ..ct2_to_hf import convert_ct2_to_hf
    from ..languages import write_default_language
    from ..models import resolve_model

    src = resolve_model(str(ct2_dir)).path if not ct2_dir.exists() else ct2_dir
    out = convert_ct2_to_hf(src, out_dir, dtype=dtype)
    console.info(f"wrote a transformers Whisper checkpoint to {out}")
    if default_language:
        code = write_default_language(out, default_language)
        console.info(f"its default language is now {code}: --language tw decodes with <|{code}|>")


@app.command("convert")
def convert(
    src: Annotated[str, typer.Argument(help="A transformers Whisper checkpoint: folder, hub id or alias.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the CTranslate2 folder.")],
    quantization: Annotated[
        str, typer.Option("--quantization", "-q", help="int8 (CPU), int8_float16, float16 (GPU), float32.")
    ] = "int8",
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty OUT_DIR.")] = False,
) -> None:
    """Convert a transformers Whisper (a Twi fine-tune, say) for --engine ctranslate2.

    Uses CTranslate2's own converter where torch and transformers are installed, else the
    torch-free one (the same CTranslate2 code over numpy arrays; needs *.safetensors).
    """
    from ..convert import convert_hf_to_ct2
    from ..models import resolve_model

    out = convert_hf_to_ct2(resolve_model(src).path, out_dir, quantization=quantization, force=force)
    console.info(f"wrote a CTranslate2 ({quantization}) model to {out}: use --model {out}")


@app.command("bake")
def bake(
    spec: Annotated[str, typer.Argument(help="Any model: alias, hub id, local folder or s3:// prefix.")],
    out_dir: Annotated[Path, typer.Argument(help="The CTranslate2 folder to write (an image's /opt/model).")],
    quantization: Annotated[
        str | None,
        typer.Option(
            "--quantization", "-q", help="For a transformers checkpoint (default int8); ct2 is copied as is."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty OUT_DIR.")] = False,
    default_language: Annotated[str | None, _DEFAULT_LANGUAGE] = None,
) -> None:
    """Make OUT_DIR a CTranslate2 folder from any model, with twi-asr-model.json saying what it is.

    A CTranslate2 model is copied as it is; a transformers checkpoint is converted (torch-free
    when torch is absent). The card (source, format, converted_from, quantization,
    weights_hash) is printed as JSON. The Dockerfile's convert stage runs this.
    """
    from ..convert import bake as bake_model
    from ..languages import write_default_language

    card = bake_model(spec, out_dir, quantization=quantization, force=force)
    if default_language:
        card["default_language"] = write_default_language(out_dir, default_language)
    console.stdout.out(json.dumps(card, indent=2))
    how = f"converted ({card['quantization']})" if card["converted_from"] else "copied"
    console.info(f"{spec}: {how} into {out_dir} (weights {card['weights_hash']}): use --model {out_dir}")
