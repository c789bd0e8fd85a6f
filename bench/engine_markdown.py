"""README tables from ``bench/results/engines.json``: the engines benchmark as Markdown.

Why it exists. The README's speed section must show the numbers of the last quiet run, not a
hand copy that drifts from them; this prints them in the README's shape, to paste or to diff:

    python bench/engine_markdown.py [RESULTS_JSON]

Per (model, input set): every row but the whisper.cpp sweep, whose default and chosen audio_ctx
rows are kept (the whole sweep is one line below the table), with wall and CPU seconds, speed
against the per-file peer (faster-whisper beam 5 for CTranslate2 and whisper.cpp rows, the
pipeline for transformers rows), peak RSS and WER; then every target with its ratio.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from _common import REPO_ROOT
from engine_report import Row, reference_of

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "engines.json"
SET_TITLES = {"short": "short clips", "long": "one long file"}


def _ref(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The per-file peer a row's speed is shown against (``engine_report.reference_of``'s choice)."""
    ref = reference_of(Row(**row), [Row(**r) for r in rows])
    return None if ref is None else next(r for r in rows if r["key"] == ref.key)


def _label(row: dict[str, Any], chosen: set[str]) -> str:
    name = row["name"]
    if row["kind"] == "ours":
        name = f"**{name}**"
    if row["key"] in chosen:
        name += " (the sweep's pick)"
    return name


def _kept(rows: list[dict[str, Any]], sweep: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """Rows for the table: whisper.cpp only at its default and chosen audio_ctx."""
    chosen = {s["chosen"]["key"] for s in sweep.values() if s}
    defaults = {s["default"]["key"] for s in sweep.values() if s}
    keep = [r for r in rows if r["family"] != "whisper.cpp" or r["key"] in chosen | defaults]
    return keep, chosen


def rows_table(model: str, set_name: str, payload: dict[str, Any]) -> list[str]:
    """The Markdown table of one (model, input set)."""
    rows = payload["results"][model][set_name]
    sweep = payload.get("whispercpp_sweep", {}).get(model, {}) if set_name == "short" else {}
    kept, chosen = _kept(rows, sweep)
    inputs = payload["settings"]["inputs"][set_name]
    out = [
        f"| {model}, {SET_TITLES[set_name]}: {inputs['files']} file(s), {inputs['audio_s']:.0f} s "
        "| engine | beam | wall s | CPU s | speed | peak RSS MiB | WER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in kept:
        ref = _ref(r, rows)
        speed = "-" if ref is None or not r["wall_s"] else f"{ref['wall_s'] / r['wall_s']:.2f}x"
        cpu = "-" if r.get("cpu_s") is None else f"{r['cpu_s']:.1f}"
        rss = "-" if r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:.0f}"
        out.append(
            f"| {_label(r, chosen)} | {r['engine']} | {r['beam']} | {r['wall_s']:.1f} | {cpu} | {speed} "
            f"| {rss} | {r['wer']:.1%} |"
        )
    for s in sweep.values():
        if s:
            points = ", ".join(f"{p['audio_ctx']} {p['wall_s']:.0f} s / {p['wer']:.1%}" for p in s["sweep"])
            out.append("")
            out.append(f"whisper.cpp audio_ctx sweep, beam {s['beam']} (wall / WER): {points}.")
    return out


def _target_line(t: dict[str, Any]) -> str:
    state = "n/a" if t.get("met") is None else ("met" if t["met"] else "**missed**")
    if t.get("met") is None:
        return f"| {t['what']} | - | - | - | {state} |"
    if t["kind"] == "speed":
        ctx = f" (audio_ctx {t['audio_ctx']})" if "audio_ctx" in t else ""
        lib = f", library {t['lib_ratio']:.2f}x" if "lib_ratio" in t else ""
        return (
            f"| {t['what']}{ctx} | {t['ratio']:.2f}x{lib} | {t['needed']}x "
            f"| {t['wer']:.1%} vs {t['peer_wer']:.1%} | {state} |"
        )
    if t["kind"] == "wer":
        req = "" if t["required"] else " (not required)"
        wers = f"{t['wer']:.1%} vs {t['peer_wer']:.1%}"
        return f"| {t['what']} | {t['speed_ratio']:.2f}x faster | - | {wers} | {state}{req} |"
    return (
        f"| {t['what']} | {t['ratio']:.2f}x ({t['rss_mib']:.0f} vs {t['peer_rss_mib']:.0f} MiB) "
        f"| {t['needed']} | - | {state} |"
    )


def targets_table(payload: dict[str, Any]) -> list[str]:
    """Every model's targets: ratio (CLI, and the library call), what was needed, WERs, met."""
    out = ["| target | ratio (CLI) | needed | WER ours vs peer | |", "|---|---|---|---|---|"]
    for model, ts in payload["targets"].items():
        out.append(f"| *{model}* | | | | |")
        out += [_target_line(t) for t in ts]
    return out


def render(payload: dict[str, Any]) -> str:
    """The whole Markdown: one table per (model, input set), then the targets."""
    parts: list[str] = []
    for model, sets in payload["results"].items():
        for set_name in sets:
            parts += [*rows_table(model, set_name, payload), ""]
    parts += targets_table(payload)
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the Markdown of the results file named, or of the default one."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_JSON
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"engine_markdown: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    if "whispercpp_sweep" not in payload:
        print(f"engine_markdown: {path} is not an engines.py result of this version", file=sys.stderr)
        return 2
    sys.stdout.write(render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
