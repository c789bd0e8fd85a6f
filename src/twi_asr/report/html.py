"""The one-file HTML report of a ``twi-asr batch`` or ``twi-asr eval`` run (``--report-html``).

:func:`build_view` turns a :class:`~twi_asr.batch.report.BatchReport` into a
plain view model (numbers already formatted, files already sorted worst
first, diffs already aligned, chart geometry already laid out) and
:func:`render_html` renders it with the Jinja2 template
``templates/report.html.j2`` under autoescaping, so transcripts, file names
and error messages are always text, never markup.

The page is self-contained: inline CSS, inline SVG, one tiny inline script
(open the diffs before printing), no ``src=``/``href=`` to anywhere but its
own anchors, so it can be archived as a CI artifact and opened offline.
:func:`write_html_report` writes it atomically like the JSON report; it is
called after interrupts and failures too, so the page shows what was done.

``jinja2`` is imported inside :func:`render_html` only: ``twi-asr --help``
and ``import twi_asr.report`` stay cheap.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diff import WordDiff, diff_words
from .svg import Chart, RtfPoint, histogram_chart, rtf_chart

if TYPE_CHECKING:
    from ..batch.records import FileRecord
    from ..batch.report import BatchReport

__all__ = ["FileView", "ReportView", "build_view", "render_html", "write_html_report"]

TEMPLATE = "report.html.j2"


def pct(value: float | None) -> str:
    """``0.125`` -> ``12.50%``; None -> ``–``."""
    return "–" if value is None else f"{value:.2%}"


def clock(seconds: float | None) -> str:
    """``3725.4`` -> ``1:02:05``; ``4.2`` -> ``4.2 s``; None or 0 -> ``–``."""
    if not seconds:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass(frozen=True)
class FileView:
    """One scored file: its place in the worst-first order, its rates and its word diff."""

    rank: int
    anchor: str
    file: str
    wer: float
    cer: float | None
    audio_seconds: float
    diff: WordDiff
    reference: str
    hypothesis: str
    earlier_run: bool


@dataclass(frozen=True)
class Row:
    """A label/value line of the summary or settings (``bad`` colours it as a problem)."""

    label: str
    value: str
    bad: bool = False
    key: str = ""  # a stable data-key for tests and scripts


@dataclass(frozen=True)
class GateView:
    """One gate's verdict and the first files above its maximum."""

    label: str
    passed: bool
    message: str
    value: str


@dataclass(frozen=True)
class FailureView:
    """A failed input and why."""

    file: str
    code: str
    message: str


@dataclass
class ReportView:
    """Everything the template shows, already formatted."""

    title: str
    kind: str
    status: str
    status_note: str
    command: str
    version: str
    started: str
    finished: str
    cards: list[Row]
    summary: list[Row]
    gates: list[GateView]
    settings: list[Row]
    has_references: bool
    no_references_note: str
    overall_wer: str
    overall_cer: str
    scored: list[FileView] = field(default_factory=list)
    scoring_note: str = ""
    wer_chart: Chart | None = None
    cer_chart: Chart | None = None
    rtf: Chart | None = None
    rtf_note: str = ""
    rtf_stats: list[Row] = field(default_factory=list)
    failures: list[FailureView] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    unmatched_references: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)  # substitutions, deletions, insertions


def _flatten(settings: dict[str, Any], prefix: str = "") -> list[Row]:
    """``{"options": {"beam_size": 5}}`` -> a row ``options.beam_size 5``; empty values left out."""
    rows: list[Row] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, f"{name}.")
        elif value is None or value == [] or value == "":
            continue
        elif isinstance(value, (list, tuple)):
            rows.append(Row(name, ", ".join(str(v) for v in value), key=name))
        else:
            rows.append(Row(name, str(value), key=name))
    return rows


def _summary_rows(report: BatchReport) -> list[Row]:
    s = report.summary()
    rows = [
        Row("files", str(s["files"]), key="files"),
        Row("done", str(s["ok"]), key="ok"),
        Row("failed", str(s["failed"]), bad=bool(s["failed"]), key="failed"),
    ]
    if report.kind == "batch":
        rows.append(Row("transcribed this run", str(s["transcribed_this_run"]), key="transcribed_this_run"))
        rows.append(Row("done in earlier runs (skipped)", str(s["done_in_earlier_runs"]), key="earlier"))
        rows.append(Row("not reached", str(s["pending"]), bad=bool(s["pending"]), key="pending"))
        rows.append(Row("non-audio files skipped", str(s["skipped_non_media"]), key="skipped_non_media"))
        rows.append(Row("audio duration (ok files)", clock(s["audio_seconds"]), key="audio"))
    else:
        rows.append(Row("audio duration", "not known (eval reads text outputs only)", key="audio"))
    rows.append(
        Row("wall time", clock(s["wall_seconds"]) if s["wall_seconds"] >= 0.05 else "< 0.1 s", key="wall")
    )
    if s["real_time_factor"] is not None and report.kind == "batch":
        rows.append(Row("real-time factor (this run)", f"{s['real_time_factor']:.3f}", key="rtf"))
    if s["files_per_minute"] is not None and report.kind == "batch":
        rows.append(Row("files per minute (this run)", f"{s['files_per_minute']:.1f}", key="fpm"))
    if report.scores is not None:
        n = report.scores.files
        rows.append(
            Row(f"WER ({n} files, {report.scores.ref_words} words)", pct(report.scores.wer), key="wer")
        )
        rows.append(Row(f"CER ({n} files)", pct(report.scores.cer), key="cer"))
    for url, count in report.served.items():
        rows.append(Row(f"served by {url}", str(count), key="served"))
    if report.gates:
        ok = report.gates_passed
        rows.append(Row("gates", "passed" if ok else "FAILED", bad=not ok, key="gates"))
    rows.append(Row("exit code", str(s["exit_code"]), bad=bool(s["exit_code"]), key="exit_code"))
    return rows


def _cards(report: BatchReport) -> list[Row]:
    """The headline figures at the top of the page (the full list is in the run details)."""
    s = report.summary()
    cards = [
        Row("WER (overall)", pct(report.scores.wer) if report.scores else "–", key="wer"),
        Row("CER (overall)", pct(report.scores.cer) if report.scores else "–", key="cer"),
        Row("files", str(s["files"]), key="files"),
        Row("done", str(s["ok"]), key="ok"),
        Row("failed", str(s["failed"]), bad=bool(s["failed"]), key="failed"),
    ]
    if s["pending"]:
        cards.append(Row("not reached", str(s["pending"]), bad=True, key="pending"))
    if report.kind == "batch":
        cards.append(Row("audio (ok files)", clock(s["audio_seconds"]), key="audio"))
    cards.append(
        Row("wall time", clock(s["wall_seconds"]) if s["wall_seconds"] >= 0.05 else "< 0.1 s", key="wall")
    )
    if s["real_time_factor"] is not None and report.kind == "batch":
        cards.append(Row("real-time factor", f"{s['real_time_factor']:.3f}", key="rtf"))
    if report.gates:
        ok = report.gates_passed
        cards.append(Row("gates", "passed" if ok else "FAILED", bad=not ok, key="gates"))
    settings = report.settings
    if report.kind == "batch":
        model = settings.get("model") or ("the image's own" if settings.get("backend") == "docker" else "–")
        cards.append(Row("model", str(model), key="model"))
        backend = settings.get("backend") or "local"
        engine = f"{settings.get('engine', 'auto')} ({backend})" if backend == "local" else backend
        cards.append(Row("engine", engine, key="engine"))
    return cards


def _status_note(report: BatchReport) -> str:
    pending = report.count("pending")
    if report.status == "interrupted":
        return (
            f"The run was interrupted: {pending} input(s) were not reached. Everything finished before "
            "the interrupt is in this report; rerun the same command to resume."
        )
    if report.status == "aborted":
        return f"The run stopped early: {report.abort_reason or 'an environment problem'}."
    return ""


def _finish_order(records: list[FileRecord]) -> list[FileRecord]:
    """Records in the order they finished (``finished_utc``, to the second; ties in input order)."""
    indexed = list(enumerate(records))
    indexed.sort(key=lambda pair: (pair[1].finished_utc or "", pair[0]))
    return [rec for _, rec in indexed]


def _rtf_section(report: BatchReport) -> tuple[Chart | None, str, list[Row]]:
    ok = [r for r in report.records if r.status == "ok"]
    timed = [r for r in _finish_order(ok) if r.audio_seconds > 0 and r.wall_seconds > 0]
    untimed = len(ok) - len(timed)
    if report.kind == "eval":
        return (
            None,
            (
                "This is an evaluation of outputs that already exist: no audio was processed, so there "
                "are no processing times and no real-time factor to show."
            ),
            [],
        )
    if not timed:
        why = "no file finished" if not ok else "no file has a processing time and an audio duration recorded"
        return None, f"No real-time factor to show: {why}.", []
    points = [
        RtfPoint(
            r.relative, r.wall_seconds / r.audio_seconds, r.wall_seconds, r.audio_seconds, r.previous_run
        )
        for r in timed
    ]
    rtfs = [p.rtf for p in points]
    notes = [
        "Real-time factor = processing seconds / audio seconds. Processing time per file is its audio "
        "decode plus its share of the engine batch it ran in "
        "(local engine) or its request time (servers); below 1 is faster than real time."
    ]
    if untimed:
        notes.append(f"{untimed} finished file(s) have no processing time recorded and are not shown.")
    if any(p.earlier_run for p in points):
        notes.append("Lighter bars were done in an earlier run (resumed), with that run's timings.")
    if max(rtfs) < 1.0:
        notes.append("Every file was processed faster than real time.")
    stats = [
        Row("files timed", str(len(points)), key="rtf_files"),
        Row("median RTF", f"{statistics.median(rtfs):.3f}", key="rtf_median"),
        Row("slowest RTF", f"{max(rtfs):.3f}", key="rtf_max"),
        Row("slowest file", points[rtfs.index(max(rtfs))].file, key="rtf_slowest"),
        Row("processing time (sum)", clock(sum(p.processing_s for p in points)), key="rtf_sum"),
    ]
    return rtf_chart(points), " ".join(notes), stats


def _scored_files(records: list[FileRecord]) -> list[FileView]:
    scored = [r for r in records if r.wer is not None and r.reference is not None]
    scored.sort(key=lambda r: (-(r.wer or 0.0), -(r.cer or 0.0), r.relative))
    views = []
    for rank, rec in enumerate(scored, 1):
        hyp = rec.text or ""
        views.append(
            FileView(
                rank=rank,
                anchor=f"diff-{rank}",
                file=rec.relative,
                wer=float(rec.wer or 0.0),
                cer=rec.cer,
                audio_seconds=rec.audio_seconds,
                diff=diff_words(rec.reference or "", hyp),
                reference=rec.reference or "",
                hypothesis=hyp,
                earlier_run=rec.previous_run,
            )
        )
    return views


def build_view(report: BatchReport) -> ReportView:
    """The view model of ``report``: what the template shows, computed and formatted here."""
    from .. import __version__

    has_refs = report.scores is not None
    failed = report.failed
    scored = _scored_files(report.records)
    failed_with_ref = [r for r in failed if r.reference is not None]
    if report.kind == "eval":
        no_refs = "No output could be paired with a reference, so there is no WER or CER."
    else:
        no_refs = (
            "No input has a reference, so there is no WER or CER and no diff to show. "
            "Pass --references FILE (or a manifest with a text column) to score the run."
        )
    scoring_note = ""
    if failed_with_ref:
        scoring_note = (
            f"{len(failed_with_ref)} failed file(s) with a reference count in the overall WER and CER as "
            "empty transcripts (every reference word deleted); they are listed under Failures."
        )
    rtf, rtf_note, rtf_stats = _rtf_section(report)
    totals = {
        "substitutions": sum(f.diff.substitutions for f in scored),
        "deletions": sum(f.diff.deletions for f in scored),
        "insertions": sum(f.diff.insertions for f in scored),
    }
    return ReportView(
        title=f"twi-asr {report.kind} report",
        kind=report.kind,
        status=report.status,
        status_note=_status_note(report),
        command=report.command,
        version=__version__,
        started=report.started_utc or "",
        finished=report.finished_utc or "",
        cards=_cards(report),
        summary=_summary_rows(report),
        gates=[
            GateView(g.label, g.passed, g.message(), pct(g.value) if g.value is not None else "–")
            for g in report.gates
        ],
        settings=_flatten(report.settings),
        has_references=has_refs,
        no_references_note=no_refs,
        overall_wer=pct(report.scores.wer) if report.scores else "–",
        overall_cer=pct(report.scores.cer) if report.scores else "–",
        scored=scored,
        scoring_note=scoring_note,
        wer_chart=histogram_chart([f.wer for f in scored], "WER") if scored else None,
        cer_chart=(
            histogram_chart([f.cer for f in scored if f.cer is not None], "CER")
            if any(f.cer is not None for f in scored)
            else None
        ),
        rtf=rtf,
        rtf_note=rtf_note,
        rtf_stats=rtf_stats,
        failures=[FailureView(r.relative, r.error_code or "error", r.error or "failed") for r in failed],
        pending=[r.relative for r in report.records if r.status == "pending"],
        unmatched_references=list(report.unmatched_references),
        totals=totals,
    )


def render_html(report: BatchReport) -> str:
    """The report page as one HTML string (UTF-8 text; no external resources)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("twi_asr.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = pct
    env.filters["clock"] = clock
    return env.get_template(TEMPLATE).render(view=build_view(report))


def write_html_report(report: BatchReport, path: str | os.PathLike[str]) -> Path:
    """Render ``report`` and write it to ``path`` atomically (temp file + rename); the path written."""
    from ..batch.report import write_file_atomic

    return write_file_atomic(path, render_html(report).encode("utf-8"))
