"""``twi-asr eval HYP REF``: score outputs that already exist, with the same rules as ``batch``.

HYP is a folder of outputs as ``batch`` or ``transcribe -o`` writes them:
for each input a ``.txt`` (used first) or a ``.json`` (its ``text``), at any
depth. A hypothesis is named by its path relative to HYP without the suffix
(``day1/a``); reference keys match it by that path or by the file stem, with
or without the input's extension (``day1/a.wav``, ``a.wav``, ``a``).

A reference with no hypothesis counts as a *failed* file (an empty
transcript in the overall scores), so a missing output cannot make the
numbers look better; hypotheses without a reference are listed, not scored.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from .records import FileRecord
from .references import load_references
from .report import BatchReport, evaluate_gates, score_records

__all__ = ["Hypotheses", "evaluate_folder", "load_hypotheses"]


@dataclass
class Hypotheses:
    """Transcripts found under HYP, keyed by their path without suffix."""

    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # key -> the file it came from
    unreadable: list[str] = field(default_factory=list)


def load_hypotheses(folder: str | os.PathLike[str]) -> Hypotheses:
    """Read every ``.txt`` and ``.json`` output under ``folder`` (``.txt`` wins when both exist)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"{folder} is not a folder of outputs")
    found = Hypotheses()
    for suffix in (".json", ".txt"):  # .txt second, so it overrides
        for path in sorted(root.rglob(f"*{suffix}")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue  # .twi-asr/ (the ledger) and temp files
            key = rel.with_suffix("").as_posix()
            try:
                raw = path.read_text(encoding="utf-8")
                text = " ".join(raw.split()) if suffix == ".txt" else str(json.loads(raw).get("text", ""))
            except (OSError, UnicodeDecodeError, ValueError, AttributeError):
                found.unreadable.append(rel.as_posix())
                continue
            found.texts[key] = text.strip()
            found.files[key] = rel.as_posix()
    return found


def _match(refs: dict[str, str], hyps: Hypotheses) -> tuple[dict[str, str], list[str]]:
    """``{hypothesis key or missing ref key: reference}`` and the reference keys with no hypothesis."""
    by_stem: dict[str, list[str]] = {}
    for key in hyps.texts:
        by_stem.setdefault(PurePosixPath(key).name, []).append(key)
    paired: dict[str, str] = {}
    missing: list[str] = []
    for ref_key, text in refs.items():
        no_suffix = str(PurePosixPath(ref_key).with_suffix("")) if PurePosixPath(ref_key).suffix else ref_key
        if ref_key in hyps.texts or no_suffix in hyps.texts:
            hit = ref_key if ref_key in hyps.texts else no_suffix
        else:
            candidates = by_stem.get(PurePosixPath(no_suffix).name, [])
            if len(candidates) > 1:
                raise UsageError(
                    f"reference {ref_key!r} fits {len(candidates)} outputs ({', '.join(candidates[:3])}); "
                    "use paths relative to HYP"
                )
            hit = candidates[0] if candidates and "/" not in no_suffix else None
        if hit is None:
            missing.append(ref_key)
            continue
        if hit in paired:
            raise UsageError(f"two references ({ref_key!r} and another) name the same output {hit!r}")
        paired[hit] = text
    return paired, missing


def evaluate_folder(
    hyp: str | os.PathLike[str],
    references: str | os.PathLike[str],
    *,
    max_wer: float | None = None,
    max_cer: float | None = None,
    command: str = "",
) -> BatchReport:
    """Score HYP against the references file; a :class:`BatchReport` with per-file and overall rates."""
    t0 = time.perf_counter()
    refs = load_references(references)
    if not refs:
        raise UsageError(f"{references} has no references in it")
    hyps = load_hypotheses(hyp)
    paired, missing = _match(refs, hyps)
    records: list[FileRecord] = []
    scoring: dict[str, str] = {}
    for key, ref in paired.items():
        records.append(FileRecord(relative=key, source=hyps.files[key], status="ok", text=hyps.texts[key]))
        scoring[key] = ref
    for key in missing:
        records.append(
            FileRecord(
                relative=key,
                source=key,
                status="failed",
                error=f"no output for {key} in {hyp}",
                error_code="missing_output",
            )
        )
        scoring[key] = refs[key]
    for name in hyps.unreadable:
        records.append(
            FileRecord(
                relative=name,
                source=name,
                status="failed",
                error=f"{name}: unreadable",
                error_code="unreadable",
            )
        )
    report = BatchReport(
        command=command,
        kind="eval",
        records=records,
        settings={"hyp": str(hyp), "references": str(references), "max_wer": max_wer, "max_cer": max_cer},
    )
    report.unmatched_references = []
    report.scores = score_records(records, scoring)
    report.gates = evaluate_gates(records, report.scores, max_wer=max_wer, max_cer=max_cer)
    report.wall_seconds = time.perf_counter() - t0
    report.settings["unscored_outputs"] = sorted(set(hyps.texts) - set(paired))
    return report
