"""``twi-asr transcribe``: files, folders, globs and s3:// prefixes -> text and subtitle files.

Outputs go to stdout, a local folder or an ``s3://bucket/prefix`` through
:mod:`twi_asr.sinks`; either way names mirror the inputs and cannot leave OUT.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import DEFAULT_BATCH_SIZE, DEFAULT_MODEL
from ..errors import EnvironmentProblem, InputError, UsageError
from ..types import TranscribeOptions
from ..writers import render
from . import console
from .options import (
    BatchSizeOpt,
    ComputeTypeOpt,
    DeviceOpt,
    EngineOpt,
    LanguageOpt,
    LongFormOpt,
    ModelOpt,
)
from .progress import Reporter, Summary

if TYPE_CHECKING:
    from ..engines.base import Transcriber
    from ..pipeline import ItemResult
    from ..sinks import OutputSink

S3EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint-url",
        envvar="TWI_ASR_S3_ENDPOINT_URL",
        help="S3-compatible endpoint (MinIO, moto...) for s3:// inputs, outputs and models; "
        "AWS_ENDPOINT_URL also works.",
    ),
]


def transcribe(
    inputs: Annotated[
        list[str], typer.Argument(help="Audio/video files, folders (recursive), globs or s3:// prefixes.")
    ],
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Folder or s3://bucket/prefix: one file per input and format (mirrors folders).",
        ),
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: txt, json, srt, vtt, tsv, or all.")
    ] = "txt",
    model: ModelOpt = DEFAULT_MODEL,
    engine: EngineOpt = "auto",
    language: LanguageOpt = "auto",
    task: Annotated[
        str, typer.Option("--task", help="transcribe, or translate (to English).")
    ] = "transcribe",
    beam_size: Annotated[int, typer.Option("--beam-size", min=1, help="1 = greedy (faster).")] = 5,
    temperature: Annotated[
        str,
        typer.Option("--temperature", help="Fallback ladder, e.g. 0,0.2,0.4 (a single value: no fallback)."),
    ] = "0,0.2,0.4,0.6,0.8,1.0",
    prompt: Annotated[str | None, typer.Option("--prompt", help="Initial prompt (names, spellings).")] = None,
    word_timestamps: Annotated[
        bool, typer.Option("--word-timestamps/--no-word-timestamps", help="Per-word times (json, tsv).")
    ] = False,
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "default",
    batch_size: BatchSizeOpt = DEFAULT_BATCH_SIZE,
    long_form: LongFormOpt = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite/--skip-existing", help="Redo inputs whose outputs already exist.")
    ] = True,
    server: Annotated[
        str | None,
        typer.Option("--server", envvar="TWI_ASR_SERVER", help="Send audio to a twi-asr server URL instead."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="TWI_ASR_API_KEY", help="API key for --server.")
    ] = None,
    s3_endpoint_url: S3EndpointOpt = None,
) -> None:
    """Transcribe audio locally. Without -o, text goes to stdout."""
    from ..writers import parse_formats

    fmts = parse_formats(formats)
    if s3_endpoint_url:
        from ..storage import set_endpoint_url

        set_endpoint_url(s3_endpoint_url)
    if output_dir is None and len(fmts) > 1:
        raise UsageError("several formats need --output-dir/-o (stdout takes one format)")
    try:
        temps = tuple(float(t) for t in temperature.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"--temperature {temperature!r}: expected numbers like 0,0.2,0.4") from None
    from ..languages import resolve_language

    resolve_language(language, checkpoint_default=None)  # a bad --language is exit 2 before a slow load
    options = TranscribeOptions(
        language=language,
        task=task,
        beam_size=beam_size,
        temperatures=temps,  # type: ignore[arg-type]
        initial_prompt=prompt,
        word_timestamps=word_timestamps,
    )
    run_transcribe(
        inputs,
        output_dir=output_dir,
        formats=fmts,
        options=options,
        model=model,
        engine=engine,
        device=device,
        compute_type=compute_type,
        batch_size=batch_size,
        overwrite=overwrite,
        server=server,
        api_key=api_key,
        long_form=long_form,
    )


def run_transcribe(
    inputs: list[str],
    *,
    output_dir: str | Path | None,
    formats: tuple[str, ...],
    options: TranscribeOptions,
    model: str,
    engine: str,
    device: str,
    compute_type: str,
    batch_size: int,
    overwrite: bool,
    server: str | None = None,
    api_key: str | None = None,
    long_form: str = "auto",
) -> None:
    """Open the output, discover, load the engine (or connect to a server), run, write, summarise.

    ``output_dir`` is a folder or ``s3://bucket/prefix`` (None: stdout). It is
    opened first, so a missing bucket or an unwritable folder fails before
    any model is loaded.
    """
    from ..engines import load_transcriber
    from ..pipeline import group_size, run_pipeline
    from ..sinks import open_sink, output_name
    from ..storage import discover

    started = time.perf_counter()
    sink = open_sink(output_dir) if output_dir is not None else None
    found = discover(inputs)
    summary = Summary(skipped=len(found.skipped))
    for spec in found.missing:
        summary.record_failure(spec, InputError(f"{spec}: no such file, folder or matching glob"))
    items = found.items
    if sink is not None and not overwrite:
        items = [i for i in items if not all(sink.exists(output_name(i.relative, f)) for f in formats)]
        summary.already_done = len(found.items) - len(items)
    if not found.items and not found.missing:
        raise InputError(f"no audio or video files found in {', '.join(inputs)}")

    if items:
        transcriber = _connect(server, api_key, batch_size) if server else None
        if transcriber is None:
            with console.stderr.status(f"loading model {model} ...", spinner="dots"):
                transcriber = load_transcriber(
                    model,
                    engine=engine,
                    device=device,
                    compute_type=compute_type,
                    batch_size=batch_size,
                    long_form=long_form,
                )
        with Reporter(items, summary) as reporter:
            for result in run_pipeline(
                items,
                transcriber,
                options,
                batch_size=batch_size or group_size(getattr(transcriber, "batch_size", 1)),
                on_start=reporter.started,
            ):
                _emit(result, sink, formats, many=len(found.items) > 1)
                reporter.finished(result)
    summary.wall_seconds = time.perf_counter() - started
    summary.print()
    if summary.failed:
        raise typer.Exit(1)


def _connect(server: str, api_key: str | None, batch_size: int) -> Transcriber:
    """A transcriber that sends clips to a running server; exit 3 when it is not there."""
    from ..client import RemoteTranscriber, TwiAsrClient

    client = TwiAsrClient(server, api_key=api_key)
    if not client.health():
        raise EnvironmentProblem(f"no twi-asr server answers at {server} (is `twi-asr serve` running?)")
    return RemoteTranscriber(client, batch_size=batch_size or 8)


def _emit(result: ItemResult, sink: OutputSink | None, formats: tuple[str, ...], *, many: bool) -> None:
    """Write one finished result now, so nothing done is lost if a later input fails.

    A sink that cannot take it (disk full, read-only folder, S3 access
    denied) raises an :class:`EnvironmentProblem` that stops the run; what
    is written stays.
    """
    if result.transcript is None:
        return
    if sink is not None:
        from ..sinks import write_outputs

        write_outputs(sink, result.transcript, result.item.relative, formats)
        return
    fmt = formats[0]
    if fmt == "json":  # one JSON document per line (JSON Lines) on stdout
        body = json.dumps(result.transcript.to_dict(), ensure_ascii=False)
    else:
        body = render(result.transcript, fmt).rstrip("\n")
        if many:
            body = f"==> {result.item.relative} <==\n{body}"
    console.stdout.out(body, highlight=False)
