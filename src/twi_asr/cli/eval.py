"""``twi-asr eval HYP REF``: WER and CER of existing outputs, with the same gates and reports as batch."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer

from .batch import check_rate, print_report


def evaluate(
    hyp: Annotated[
        str, typer.Argument(help="Folder of .txt/.json outputs (as batch or transcribe -o write).")
    ],
    references: Annotated[
        str,
        typer.Argument(help="TSV/CSV: input path (relative to SRC) or file name, then the reference text."),
    ],
    max_wer: Annotated[
        float | None, typer.Option("--max-wer", help="Fail (exit 1) when overall WER is above.")
    ] = None,
    max_cer: Annotated[
        float | None, typer.Option("--max-cer", help="Fail (exit 1) when overall CER is above.")
    ] = None,
    report: Annotated[str | None, typer.Option("--report", help="Write the JSON report here.")] = None,
    report_html: Annotated[
        str | None,
        typer.Option("--report-html", help="Write a self-contained HTML report here (worst files, diffs)."),
    ] = None,
    junit: Annotated[str | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
) -> None:
    """Score outputs against references (Twi-aware); exit 1 on a missing output or a failed gate."""
    from ..batch.evaluation import evaluate_folder
    from ..batch.report import write_file_atomic

    result = evaluate_folder(
        hyp,
        references,
        max_wer=check_rate(max_wer, "--max-wer"),
        max_cer=check_rate(max_cer, "--max-cer"),
        command=shlex.join(["twi-asr", *sys.argv[1:]]),
    )
    if report:
        write_file_atomic(report, result.to_json())
    if junit:
        write_file_atomic(junit, result.to_junit(suite="twi-asr eval"))
    if report_html:
        from ..report import write_html_report

        write_html_report(result, report_html)
    print_report(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
