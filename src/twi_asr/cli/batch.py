"""``twi-asr batch``: a CI-grade run over many inputs, resumable, scored, gated, reported.

The work is :func:`twi_asr.batch.runner.run_batch`; this module parses
flags, turns SIGTERM (what CI systems send on cancel) into the same clean
stop as Ctrl-C, and prints the summary table.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from . import console
from .options import BatchSizeOpt, ComputeTypeOpt, DeviceOpt, EngineOpt, LanguageOpt, LongFormOpt

if TYPE_CHECKING:
    from ..batch.report import BatchReport


def parse_temperatures(spec: str) -> tuple[float, ...]:
    """``0,0.2,0.4`` -> ``(0.0, 0.2, 0.4)``; a usage error otherwise."""
    try:
        return tuple(float(t) for t in spec.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"--temperature {spec!r}: expected numbers like 0,0.2,0.4") from None


def check_rate(value: float | None, flag: str) -> float | None:
    """A gate maximum is a rate between 0 and 1 (``25%`` is written 0.25)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise UsageError(f"{flag} {value}: a rate between 0 and 1 (0.25 means 25%)")
    return value


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt in the main thread: flush, report, exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_report(report: BatchReport, *, max_failures: int = 20) -> None:
    """The closing table, the failures (first ``max_failures``) and each gate's verdict, on stderr."""
    from rich.table import Table

    status = "" if report.status == "complete" else f" ({report.status})"
    table = Table(title=f"twi-asr {report.kind}{status}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value, bad in report.summary_rows():
        table.add_row(label, value, style="red" if bad else None)
    console.stderr.print(table)
    failed = report.failed
    for rec in failed[:max_failures]:
        console.error(
            f"{rec.relative}: {rec.error}" if rec.relative not in (rec.error or "") else str(rec.error)
        )
    if len(failed) > max_failures:
        console.error(f"... and {len(failed) - max_failures} more failed inputs (see --report)")
    for gate in report.gates:
        (console.info if gate.passed else console.error)(gate.message())


def batch(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Folders (recursive), globs, files, s3:// prefixes, or manifests (.csv/.tsv/.jsonl)."
        ),
    ],
    out: Annotated[
        str, typer.Option("--output", "-o", help="Output folder or s3://bucket/prefix (mirrors the sources).")
    ],
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: txt, json, srt, vtt, tsv, or all.")
    ] = "txt",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            envvar="TWI_ASR_MODEL",
            help="Alias, folder, hub id or s3://bucket/models/name/ (default twi; with --docker the "
            "image's own).",
        ),
    ] = None,  # fmt: skip
    engine: EngineOpt = "auto",
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "default",
    batch_size: BatchSizeOpt = 0,
    long_form: LongFormOpt = "auto",
    language: LanguageOpt = "auto",
    task: Annotated[
        str, typer.Option("--task", help="transcribe, or translate (to English).")
    ] = "transcribe",
    beam_size: Annotated[int, typer.Option("--beam-size", min=1, help="1 = greedy (faster).")] = 5,
    temperature: Annotated[
        str, typer.Option("--temperature", help="Fallback ladder, e.g. 0,0.2,0.4 (one value: no fallback).")
    ] = "0,0.2,0.4,0.6,0.8,1.0",
    prompt: Annotated[str | None, typer.Option("--prompt", help="Initial prompt (names, spellings).")] = None,
    word_timestamps: Annotated[
        bool, typer.Option("--word-timestamps/--no-word-timestamps", help="Per-word times (json, tsv).")
    ] = False,
    server: Annotated[
        list[str] | None,
        typer.Option("--server", help="twi-asr server URL; repeat to spread the work over several."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="TWI_ASR_API_KEY", help="API key for the servers.")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Requests in flight (with --server/--docker).")
    ] = 4,
    docker: Annotated[
        bool, typer.Option("--docker", help="Start the server image (docker-py), use it, stop it afterwards.")
    ] = False,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Image for --docker (twi-asr:cpu, or twi-asr:cuda with --gpu)."),
    ] = None,
    gpu: Annotated[
        bool, typer.Option("--gpu", help="With --docker: NVIDIA GPUs, image twi-asr:cuda.")
    ] = False,
    references: Annotated[
        str | None,
        typer.Option(
            "--references", "-r", help="TSV/CSV: input path (relative to SRC) or file name, then text."
        ),
    ] = None,
    max_wer: Annotated[
        float | None, typer.Option("--max-wer", help="Fail (exit 1) when overall WER is above.")
    ] = None,
    max_cer: Annotated[
        float | None, typer.Option("--max-cer", help="Fail (exit 1) when overall CER is above.")
    ] = None,
    report: Annotated[str | None, typer.Option("--report", help="Write the JSON report here.")] = None,
    report_html: Annotated[
        str | None,
        typer.Option(
            "--report-html",
            help="Write a self-contained HTML report here (worst files with word diffs, charts, failures).",
        ),
    ] = None,
    junit: Annotated[
        str | None, typer.Option("--junit", help="Write JUnit XML here (CI test results).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Skip inputs done by an earlier run into the same OUT."),
    ] = True,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--s3-endpoint-url", envvar="TWI_ASR_S3_ENDPOINT_URL", help="S3-compatible endpoint URL."
        ),
    ] = None,
    progress_every: Annotated[
        float,
        typer.Option("--progress-every", min=0.0, help="Seconds between plain progress lines (CI logs)."),
    ] = 15.0,
) -> None:
    """Transcribe many inputs for CI: resumable, scored against references, gated, reported.

    Exit codes: 0 all ok and gates passed, 1 failed inputs or a failed gate,
    2 bad usage, 3 environment (no model, no server, no Docker), 130
    interrupted (the ledger and report are written first; rerun to resume).
    """
    from ..batch.runner import BatchConfig, run_batch
    from ..languages import resolve_language
    from ..types import TranscribeOptions
    from ..writers import parse_formats

    fmts = parse_formats(formats)
    resolve_language(language, checkpoint_default=None)  # a bad --language is exit 2 before a slow load
    options = TranscribeOptions(
        language=language,
        task=task,  # type: ignore[arg-type]
        beam_size=beam_size,
        temperatures=parse_temperatures(temperature),
        initial_prompt=prompt,
        word_timestamps=word_timestamps,
    )
    if (server or docker) and (engine != "auto" or device != "auto" or compute_type != "default"):
        raise UsageError("--engine/--device/--compute-type are for the local engine, not --server/--docker")
    config = BatchConfig(
        sources=list(sources),
        out=out,
        formats=fmts,
        options=options,
        model=model,
        engine=engine,
        device=device,
        compute_type=compute_type,
        batch_size=batch_size,
        long_form=long_form,
        servers=list(server or []),
        api_key=api_key,
        jobs=jobs,
        docker=docker,
        image=image or ("twi-asr:cuda" if gpu else "twi-asr:cpu"),
        gpu=gpu,
        references=references,
        max_wer=check_rate(max_wer, "--max-wer"),
        max_cer=check_rate(max_cer, "--max-cer"),
        resume=resume,
        report=report,
        report_html=report_html,
        junit=junit,
        s3_endpoint_url=s3_endpoint_url,
        progress_every_s=progress_every,
        command=shlex.join(["twi-asr", *sys.argv[1:]]),
    )
    with sigterm_as_interrupt():
        result = run_batch(config, on_report=print_report)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
