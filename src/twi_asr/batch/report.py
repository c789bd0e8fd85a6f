"""Scores, gates and the three views of a finished run: JSON report, JUnit XML, summary rows.

Scoring uses :mod:`twi_asr.text` (the Twi-aware normaliser; never an
English one). Per file: WER and CER of its transcript against its reference.
Overall: corpus-level WER and CER (total edits over total reference words or
characters), the number a regression gate should look at. A file that
*failed* but has a reference counts in the overall scores as an empty
transcript (all deletions): a run must not score better by failing the hard
files. Inputs an interrupted run never reached are left out.

Gates (``--max-wer``, ``--max-cer``) compare the overall rate with the
maximum; the report lists, worst first, the files above the maximum so a
failing gate says where to look. A gate with nothing to measure (no input
had a reference) fails: a check that checked nothing must not pass.
"""

from __future__ import annotations

import json
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EnvironmentProblem
from .records import FileRecord

__all__ = ["BatchReport", "Gate", "evaluate_gates", "score_records", "write_file_atomic"]


@dataclass
class Gate:
    """One threshold on an overall rate, and how the run did against it."""

    metric: str  # "wer" or "cer"
    maximum: float
    value: float | None = None
    passed: bool = False
    over: list[dict[str, Any]] = field(default_factory=list)  # files above the maximum, worst first

    @property
    def label(self) -> str:
        """``WER <= 25.00%``."""
        return f"{self.metric.upper()} <= {self.maximum:.2%}"

    def message(self, limit: int = 10) -> str:
        """One line: the verdict and the worst files."""
        if self.value is None:
            return f"{self.label}: nothing to score (no input has a reference)"
        verdict = "passed" if self.passed else "FAILED"
        text = f"{self.metric.upper()} {self.value:.2%} (max {self.maximum:.2%}): {verdict}"
        if self.over and not self.passed:
            shown = ", ".join(f"{o['file']} {o[self.metric]:.0%}" for o in self.over[:limit])
            more = f" and {len(self.over) - limit} more" if len(self.over) > limit else ""
            text += f"; files above the maximum: {shown}{more}"
        return text


@dataclass(frozen=True)
class Scores:
    """Overall scores of the files that have references."""

    wer: float
    cer: float
    files: int
    ref_words: int


def score_records(records: Sequence[FileRecord], references: dict[str, str]) -> Scores | None:
    """Set ``reference``, ``wer`` and ``cer`` on each record that has a reference; the overall scores.

    ``references`` maps a record's ``relative`` to its reference text.
    Returns None when no record could be scored.
    """
    from ..text import error_rates

    refs: list[str] = []
    hyps: list[str] = []
    for rec in records:
        ref = references.get(rec.relative)
        rec.reference = ref
        rec.wer = rec.cer = None
        if ref is None or rec.status == "pending":
            continue
        hyp = rec.text if rec.status == "ok" and rec.text is not None else ""
        if rec.status == "ok":
            per_file = error_rates(ref, hyp)
            rec.wer, rec.cer = round(per_file.wer, 4), round(per_file.cer, 4)
        refs.append(ref)
        hyps.append(hyp)
    if not refs:
        return None
    overall = error_rates(refs, hyps)
    return Scores(wer=overall.wer, cer=overall.cer, files=len(refs), ref_words=overall.ref_words)


def evaluate_gates(
    records: Sequence[FileRecord],
    scores: Scores | None,
    *,
    max_wer: float | None = None,
    max_cer: float | None = None,
) -> list[Gate]:
    """A :class:`Gate` per given maximum, judged on the overall scores."""
    gates: list[Gate] = []
    for metric, maximum in (("wer", max_wer), ("cer", max_cer)):
        if maximum is None:
            continue
        gate = Gate(metric=metric, maximum=maximum)
        if scores is not None:
            gate.value = round(getattr(scores, metric), 4)
            gate.passed = gate.value <= maximum
        over = []
        for rec in records:
            value = getattr(rec, metric)
            if rec.reference is not None and rec.status == "failed":
                over.append({"file": rec.relative, metric: 1.0, "error": rec.error})
            elif value is not None and value > maximum:
                over.append({"file": rec.relative, metric: value})
        gate.over = sorted(over, key=lambda o: -o[metric])
        gates.append(gate)
    return gates


def write_file_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a local report file through a temp file and a rename (a reader never sees half of it)."""
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror or exc}") from exc
    return target


@dataclass
class BatchReport:
    """Everything the run did, ready to be written as JSON, JUnit XML or a summary table."""

    command: str
    records: list[FileRecord]
    kind: str = "batch"  # "batch" or "eval" (scoring existing outputs)
    status: str = "complete"  # complete | interrupted | aborted
    started_utc: str | None = None
    finished_utc: str | None = None
    wall_seconds: float = 0.0  # this run, whole process
    settings: dict[str, Any] = field(default_factory=dict)
    skipped_non_media: int = 0
    unmatched_references: list[str] = field(default_factory=list)
    scores: Scores | None = None
    gates: list[Gate] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    abort_reason: str | None = None

    # ------------------------------------------------------------ numbers
    def count(self, status: str) -> int:
        """Records with this status."""
        return sum(1 for r in self.records if r.status == status)

    @property
    def failed(self) -> list[FileRecord]:
        """The failed records."""
        return [r for r in self.records if r.status == "failed"]

    @property
    def gates_passed(self) -> bool:
        """True when every gate passed (or there are none)."""
        return all(g.passed for g in self.gates)

    @property
    def exit_code(self) -> int:
        """0 all ok and gates passed; 1 failures, unfinished inputs or a failed gate; 130 interrupted."""
        if self.status == "interrupted":
            return 130
        if self.failed or self.count("pending") or not self.gates_passed:
            return 1
        return 0

    def summary(self) -> dict[str, Any]:
        """The headline numbers (also the JSON report's ``summary``)."""
        ok = [r for r in self.records if r.status == "ok"]
        this_run = [r for r in ok if not r.previous_run]
        audio_total = sum(r.audio_seconds for r in ok)
        audio_run = sum(r.audio_seconds for r in this_run)
        wall = self.wall_seconds
        return {
            "files": len(self.records),
            "ok": len(ok),
            "failed": self.count("failed"),
            "pending": self.count("pending"),
            "done_in_earlier_runs": sum(1 for r in ok if r.previous_run),
            "transcribed_this_run": len(this_run),
            "skipped_non_media": self.skipped_non_media,
            "audio_seconds": round(audio_total, 3),
            "audio_hours": round(audio_total / 3600.0, 4),
            "audio_seconds_this_run": round(audio_run, 3),
            "wall_seconds": round(wall, 3),
            "real_time_factor": round(wall / audio_run, 4) if audio_run > 0 else None,
            "files_per_minute": round(len(this_run) / wall * 60.0, 2) if wall > 0 and this_run else None,
            "wer": round(self.scores.wer, 4) if self.scores else None,
            "cer": round(self.scores.cer, 4) if self.scores else None,
            "scored_files": self.scores.files if self.scores else 0,
            "unmatched_references": len(self.unmatched_references),
            "gates_passed": self.gates_passed,
            "exit_code": self.exit_code,
        }

    # ------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """The JSON report: settings, summary, gates, servers, then one entry per file."""
        from .. import __version__

        files = []
        for r in self.records:
            d = {
                "file": r.relative,
                "source": r.source,
                "status": r.status,
                "audio_seconds": round(r.audio_seconds, 3),
                "wall_seconds": round(r.wall_seconds, 3),
                "rtf": round(r.rtf, 4) if r.rtf is not None else None,
                "wer": r.wer,
                "cer": r.cer,
                "error": r.error,
                "error_code": r.error_code,
                "outputs": r.outputs,
                "server": r.server,
                "done_in_earlier_run": r.previous_run,
                "content": r.content,
                "text": r.text,
                "reference": r.reference,
            }
            files.append(d)
        return {
            "tool": f"twi-asr {self.kind}",
            "version": __version__,
            "command": self.command,
            "status": self.status,
            "abort_reason": self.abort_reason,
            "started_utc": self.started_utc,
            "finished_utc": self.finished_utc,
            "settings": self.settings,
            "summary": self.summary(),
            "gates": [asdict(g) | {"label": g.label, "message": g.message()} for g in self.gates],
            "servers": self.served,
            "unmatched_references": self.unmatched_references,
            "files": files,
        }

    def to_json(self) -> bytes:
        """The JSON report as UTF-8 bytes (Twi letters kept as they are)."""
        return (json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")

    def to_junit(self, suite: str = "twi-asr batch") -> bytes:
        """JUnit XML: a test case per input (failure = it failed, skipped = never reached) and per gate."""
        cases: list[ET.Element] = []
        n_fail = n_skip = 0
        for r in self.records:
            case = ET.Element(
                "testcase", classname="twi-asr.files", name=r.relative, time=f"{r.wall_seconds:.3f}"
            )
            if r.status == "failed":
                n_fail += 1
                failure = ET.SubElement(
                    case, "failure", message=r.error or "failed", type=r.error_code or "error"
                )
                failure.text = f"{r.source}: {r.error}"
            elif r.status == "pending":
                n_skip += 1
                ET.SubElement(case, "skipped", message="not reached: the run was interrupted")
            else:
                props = ET.SubElement(case, "properties")
                ET.SubElement(props, "property", name="audio_seconds", value=f"{r.audio_seconds:.3f}")
                for metric in ("wer", "cer"):
                    value = getattr(r, metric)
                    if value is not None:
                        ET.SubElement(props, "property", name=metric, value=f"{value:.4f}")
                out = ET.SubElement(case, "system-out")
                out.text = r.text or ""
            cases.append(case)
        for g in self.gates:
            case = ET.Element("testcase", classname="twi-asr.gates", name=g.label, time="0")
            if not g.passed:
                n_fail += 1
                failure = ET.SubElement(case, "failure", message=g.message(limit=5), type=f"{g.metric}_gate")
                failure.text = "\n".join(f"{o['file']}\t{o[g.metric]:.4f}" for o in g.over) or g.message()
            cases.append(case)
        root = ET.Element(
            "testsuites",
            name=suite,
            tests=str(len(cases)),
            failures=str(n_fail),
            errors="0",
            skipped=str(n_skip),
            time=f"{self.wall_seconds:.3f}",
        )
        ts = ET.SubElement(
            root,
            "testsuite",
            name=suite,
            tests=str(len(cases)),
            failures=str(n_fail),
            errors="0",
            skipped=str(n_skip),
            time=f"{self.wall_seconds:.3f}",
            timestamp=self.started_utc or "",
        )
        props = ET.SubElement(ts, "properties")
        for key, value in self.summary().items():
            if value is not None:
                ET.SubElement(props, "property", name=key, value=str(value))
        ts.extend(cases)
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"

    def summary_rows(self) -> list[tuple[str, str, bool]]:
        """``(label, value, is_bad)`` rows of the closing table."""
        s = self.summary()
        if self.kind == "eval":
            rows = [
                ("outputs scored", str(s["ok"]), False),
                ("references without an output", str(s["failed"]), bool(s["failed"])),
            ]
            if self.scores is not None:
                rows.append(("WER", f"{self.scores.wer:.2%}", False))
                rows.append(("CER", f"{self.scores.cer:.2%}", False))
            rows += [(g.label, "passed" if g.passed else "FAILED", not g.passed) for g in self.gates]
            return rows
        rows: list[tuple[str, str, bool]] = [
            ("files", str(s["files"]), False),
            ("transcribed this run", str(s["transcribed_this_run"]), False),
        ]
        if s["done_in_earlier_runs"]:
            rows.append(("done in earlier runs (skipped)", str(s["done_in_earlier_runs"]), False))
        rows.append(("failed", str(s["failed"]), bool(s["failed"])))
        if s["pending"]:
            rows.append(("not reached", str(s["pending"]), True))
        if s["skipped_non_media"]:
            rows.append(("non-audio files skipped", str(s["skipped_non_media"]), False))
        rows += [
            ("audio hours (all ok files)", f"{s['audio_hours']:.3f}", False),
            ("wall time (s)", f"{s['wall_seconds']:.1f}", False),
            (
                "real-time factor (this run)",
                "-" if s["real_time_factor"] is None else f"{s['real_time_factor']:.3f}",
                False,
            ),
            (
                "files per minute (this run)",
                "-" if s["files_per_minute"] is None else f"{s['files_per_minute']:.1f}",
                False,
            ),
        ]
        if self.scores is not None:
            rows.append((f"WER ({self.scores.files} files)", f"{self.scores.wer:.2%}", False))
            rows.append((f"CER ({self.scores.files} files)", f"{self.scores.cer:.2%}", False))
        for url, n in self.served.items():
            rows.append((f"served by {url}", str(n), False))
        for g in self.gates:
            rows.append((g.label, "passed" if g.passed else "FAILED", not g.passed))
        return rows
