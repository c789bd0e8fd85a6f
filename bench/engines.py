"""Benchmark: twi-asr's two engines against every peer a user would pick, same clips, same weights, one run.

What it measures, for tiny.en and for the multilingual base. Two inputs (``bench/corpus.py``):
60 short espeak-ng clips with known text (2-6 s each, ``bench/.cache/clips60``) and one
5-minute file (those clips read in order, again and again, 0.7 s apart). Every row is one
whole process (interpreter start, imports, model load, audio decoding, decoding, writing one
``.txt`` per input) so that its peak RSS is its own (rows: ``bench/engine_rows.py``):

* faster-whisper ``WhisperModel.transcribe`` per file, beam 5 and greedy; its
  ``BatchedInferencePipeline`` (batch 8) per file and on the long file;
* the transformers pipeline per file (on the long file: sequential long-form with
  timestamps, and ``chunk_length_s=30, batch_size=8``), and given the whole list with
  ``batch_size=8``;
* whisper.cpp through pywhispercpp (``bench/whispercpp_child.py``, GGML f16 weights made by
  ``bench/ggml_convert.py``), per file, beam 5 and greedy, at its default audio_ctx and over a
  sweep (``fit`` = clip + 1 s, and fixed frame counts); short clips only;
* twi-asr, both engines (ct2 int8, transformers fp32, transformers int8), library call and CLI,
  beam 5 and (ct2) greedy; on the long file also the sequential long-form path.

On base every row is told the language (English), so that no row pays for detection and all
do the same work; tiny.en rows are told nothing. Per row: wall seconds (median of
``--repeat`` runs, round-robin so drift hits every row alike), user+sys CPU seconds, RTF,
speed against the per-file peer, peak RSS (GNU ``time``), corpus WER (``twi_asr.text.wer``) and
the child's own import/load/work split. The targets and tables: ``bench/engine_report.py``.

Caveats. Our rows and faster-whisper keep Whisper's temperature fallback (it samples when a
result looks poor); the pipeline has none; whisper.cpp 1.8.5's beam search samples. Timings
mean something only on an otherwise idle machine: the load average is recorded, with a warning.

Run: ``python bench/engines.py [--models tiny.en base] [--only short|long] [--repeat N]
[--rows KEY ...] [--wcpp-ctx-b5 1024 ...] [--list]``. Results: ``bench/results/engines.json``.
Duration (estimated from single-thread CPU seconds on 8 clips and the last quiet 20-clip run,
not yet measured whole): both models, both sets, repeat 1, about 50 minutes on a quiet 2-core
EPYC, whisper.cpp's sweep about 22 of them; ``--lean`` (beam 5 sweeps only 1024) about 45;
``--lean --wcpp-ctx-b1 fit 768 1024`` about 40.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    ProcessRun,
    clean_env,
    machine_info,
    median,
    package_versions,
    rss_method,
    run_process,
    utc_now,
    warn_if_busy,
    write_json,
)
from corpus import InputSet, build_inputs
from engine_report import Row, one_line, pick_audio_ctx, print_targets, table, targets
from engine_rows import AUDIO_CTX_SWEEP, BEAM, ModelSet, RowSpec, row_specs, whispercpp_available
from transcribe_folder import tiny_en_ct2, tiny_en_hf

MODELS = ("tiny.en", "base")
PROCESS_TIMEOUT_S = 1800.0
DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "engines.json"
SCRATCH_BASE_CT2 = Path("/work/scratch/base-ct2")  # until the ``base`` alias resolves everywhere
DISTRIBUTIONS = ("twi-asr", "torch", "transformers", "ctranslate2", "faster-whisper", "pywhispercpp", "numpy")
LEAN_B5 = ["1024"]  # --lean: at beam 5 only the default and this audio_ctx


# --------------------------------------------------------------------------- weights
def base_ct2() -> Path:
    """The multilingual base in CTranslate2 layout: the ``base`` alias, else the shared scratch copy."""
    from twi_asr.models import resolve_model

    try:
        return resolve_model("base").path
    except Exception as exc:  # noqa: BLE001 - the alias may not exist yet; say which folder is used
        override = os.environ.get("BENCH_BASE_CT2")
        path = Path(override) if override else SCRATCH_BASE_CT2
        if not (path / "model.bin").is_file():
            msg = f"no base weights: resolve_model('base') failed ({exc}) and {path} has no model.bin"
            raise SystemExit(msg) from exc
        print(f"note: resolve_model('base') failed ({exc}); using {path}", file=sys.stderr)
        return path


def model_set(name: str, cache: Path, *, rebuild: bool, whispercpp: bool) -> ModelSet:
    """One model's CTranslate2 folder, its transformers copy and its GGML file (cached in ``cache``)."""
    ct2 = tiny_en_ct2() if name == "tiny.en" else base_ct2()
    hf = tiny_en_hf(ct2, cache / ("tiny-en-hf" if name == "tiny.en" else "base-hf"), rebuild=rebuild)
    ggml = None
    if whispercpp:
        from ggml_convert import ggml_weights

        ggml = ggml_weights(hf, cache / "ggml")
    return ModelSet(name, ct2, hf, ggml, None if name == "tiny.en" else "en")


# --------------------------------------------------------------------------- measuring
def read_hypotheses(inputs: InputSet, out_dir: Path) -> tuple[list[str], int]:
    """The text written for each input (empty when missing) and how many were missing."""
    hyps, missing = [], 0
    for item in inputs.items:
        txt = out_dir / f"{item.path.stem}.txt"
        if txt.is_file():
            hyps.append(" ".join(txt.read_text(encoding="utf-8").split()))
        else:
            hyps.append("")
            missing += 1
    return hyps, missing


@dataclass(frozen=True)
class Run:
    """One timed process: how it ran, its WER, missing outputs and its own time split."""

    process: ProcessRun
    wer: float
    missing: int
    split_s: dict[str, float] | None


def run_once(spec: RowSpec, inputs: InputSet, env: dict[str, str]) -> Run:
    """One timed process into a fresh output folder."""
    from twi_asr.text import wer

    shutil.rmtree(spec.out_dir, ignore_errors=True)
    spec.out_dir.mkdir(parents=True)
    try:
        run = run_process(spec.cmd, env=env, timeout_s=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run = ProcessRun(PROCESS_TIMEOUT_S, None, 124, f"timed out after {PROCESS_TIMEOUT_S:.0f} s")
    hyps, missing = read_hypotheses(inputs, spec.out_dir)
    timings = spec.out_dir / "_timings.json"
    split = (
        {k: round(v, 3) for k, v in json.loads(timings.read_text()).items()} if timings.is_file() else None
    )
    return Run(run, wer([i.text for i in inputs.items], hyps), missing, split)


def summarise(spec: RowSpec, inputs: InputSet, runs: list[Run]) -> Row:
    """Fold the repeats of one row (median wall, CPU and WER, highest RSS, the split of the median run)."""
    walls = [r.process.wall_s for r in runs]
    wall = median(walls)
    rss = [r.process.peak_rss_kib for r in runs if r.process.peak_rss_kib is not None]
    cpus = [r.process.cpu_s for r in runs if r.process.cpu_s is not None]
    mid = min(runs, key=lambda r: abs(r.process.wall_s - wall))
    failed = any(r.process.returncode != 0 for r in runs)
    return Row(
        key=spec.key,
        name=spec.name,
        kind=spec.kind,
        family=spec.family,
        engine=spec.engine,
        beam=spec.beam,
        command=shlex.join(spec.cmd),
        files=len(inputs.items),
        audio_s=round(inputs.audio_s, 2),
        wall_s=round(wall, 3),
        rtf=round(wall / inputs.audio_s, 4),
        peak_rss_mib=round(max(rss) / 1024.0, 1) if rss else None,
        wer=round(median([r.wer for r in runs]), 4),
        exit_codes=[r.process.returncode for r in runs],
        cpu_s=round(median(cpus), 2) if cpus else None,
        audio_ctx=spec.audio_ctx,
        note=spec.note,
        walls_s=[round(w, 3) for w in walls],
        wers=[round(r.wer, 4) for r in runs],
        split_s=mid.split_s,
        missing_outputs=runs[-1].missing,
        stderr_tail=runs[-1].process.stderr_tail if failed else None,
    )


def warm_page_cache(env: dict[str, str]) -> None:
    """Import the heavy libraries once, untimed, so the first timed row is not the only cold one."""
    code = "import torch, transformers, faster_whisper, ctranslate2, twi_asr.cli\n"
    code += "try:\n import pywhispercpp.model\nexcept ImportError:\n pass"
    subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, timeout=300)


def measure(
    specs: list[RowSpec], inputs: InputSet, repeat: int, env: dict[str, str], label: str
) -> list[Row]:
    """Run every row ``repeat`` times, round-robin; progress (with each run's wall) on stderr."""
    runs: dict[int, list[Run]] = {i: [] for i in range(len(specs))}
    for r in range(repeat):
        for i, spec in enumerate(specs):
            print(
                f"[{label} {r + 1}/{repeat} {i + 1}/{len(specs)}] {spec.key}: {spec.name} ({spec.engine}, "
                f"beam {spec.beam}) ...",
                end="",
                file=sys.stderr,
                flush=True,
            )
            run = run_once(spec, inputs, env)
            runs[i].append(run)
            print(
                f" {run.process.wall_s:.1f} s, WER {run.wer:.3f}, rc {run.process.returncode}",
                file=sys.stderr,
                flush=True,
            )
    return [summarise(spec, inputs, runs[i]) for i, spec in enumerate(specs)]


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to time")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median wall time is reported")
    p.add_argument("--only", choices=("short", "long"), help="time one input set only")
    p.add_argument(
        "--rows",
        nargs="*",
        default=None,
        help="keep rows whose key, name, engine or kind ('ours', 'peer') contains one of these substrings",
    )
    p.add_argument(
        "--wcpp-ctx-b1",
        nargs="*",
        default=list(AUDIO_CTX_SWEEP),
        help="whisper.cpp audio_ctx values swept at beam 1 (the default is always run)",
    )
    p.add_argument(
        "--wcpp-ctx-b5",
        nargs="*",
        default=list(AUDIO_CTX_SWEEP),
        help="whisper.cpp audio_ctx values swept at beam 5 (the default is always run)",
    )
    p.add_argument(
        "--lean",
        action="store_true",
        help=f"trim the sweep: all values at beam 1, only {LEAN_B5} at b5 (~30%% less whisper.cpp time)",
    )
    p.add_argument("--no-whispercpp", action="store_true", help="skip the whisper.cpp rows")
    p.add_argument(
        "--wer-tolerance", type=float, default=0.0, help="a target's WER may exceed the peer's by this"
    )
    p.add_argument("--list", action="store_true", help="print the rows that would run, and exit")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="clips and converted weights")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument("--out-dir", type=Path, help="where rows write their text (default: CACHE_DIR/outputs)")
    p.add_argument("--rebuild", action="store_true", help="regenerate the inputs and the converted weights")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed page-cache warm-up import")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.lean:
        args.wcpp_ctx_b5 = list(LEAN_B5)
    return args


def _payload(
    args: argparse.Namespace,
    models: dict[str, ModelSet],
    inputs: dict[str, InputSet],
    results: dict[str, dict[str, list[Row]]],
    loads: tuple[float, float],
    started: float,
    complete: bool,
) -> dict[str, Any]:
    sweep = {
        m: {f"beam{b}": pick_audio_ctx(res.get("short", []), b) for b in (1, BEAM)}
        for m, res in results.items()
    }
    return {
        "benchmark": "engines",
        "date_utc": utc_now(),
        "complete": complete,
        "duration_s": round(time.monotonic() - started, 1),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {
            "beam_size": BEAM,
            "repeat": args.repeat,
            "warmup": not args.no_warmup,
            "load_average_1m_before": round(loads[0], 2),
            "load_average_1m_after": round(loads[1], 2),
            "peak_rss": rss_method(),
            "threads": {
                "torch": os.environ.get("OMP_NUM_THREADS", "torch default (physical cores)"),
                "ctranslate2": "default (all cores)",
                "whisper.cpp": os.cpu_count(),
            },
            "whispercpp_audio_ctx": {
                "beam1": ["default", *args.wcpp_ctx_b1],
                "beam5": ["default", *args.wcpp_ctx_b5],
                "fit": "clip + 1 s in encoder frames (50/s), capped at 1500",
            },
            "wer_tolerance": args.wer_tolerance,
            "models": {
                m: {
                    "ctranslate2": str(s.ct2),
                    "transformers": str(s.hf),
                    "ggml": None if s.ggml is None else str(s.ggml),
                    "language": s.language,
                }
                for m, s in models.items()
            },
            "inputs": {
                k: {"files": len(v.items), "audio_s": round(v.audio_s, 2), "folder": str(v.folder)}
                for k, v in inputs.items()
            },
        },
        "whispercpp_sweep": sweep,
        "targets": {m: targets(m, res, args.wer_tolerance) for m, res in results.items()},
        "results": {m: {k: [asdict(r) for r in v] for k, v in res.items()} for m, res in results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Build the inputs and weights, time every row, print the tables and write the JSON results."""
    args = parse_args(argv)
    started = time.monotonic()
    inputs = build_inputs(args.cache_dir, rebuild=args.rebuild)
    wcpp = not args.no_whispercpp and whispercpp_available()
    if not args.no_whispercpp and not wcpp:
        print(
            "warning: bench/whispercpp_child.py or bench/ggml_convert.py missing: no whisper.cpp rows",
            file=sys.stderr,
        )
    models = {m: model_set(m, args.cache_dir, rebuild=args.rebuild, whispercpp=wcpp) for m in args.models}
    sets = [args.only] if args.only else ["short", "long"]
    sweep = {1: args.wcpp_ctx_b1, BEAM: args.wcpp_ctx_b5}
    env = clean_env()
    outputs = args.out_dir or args.cache_dir / "outputs"
    results: dict[str, dict[str, list[Row]]] = {m: {} for m in models}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        plan = {
            (m, s): row_specs(models[m], inputs[s], Path(tmp), outputs, audio_ctx=sweep)
            for m in models
            for s in sets
        }
        if args.rows:
            plan = {k: [r for r in v if r.matches(args.rows)] for k, v in plan.items()}
        if args.list:
            for (m, s), specs in plan.items():
                for r in specs:
                    print(f"{m:8} {s:6} {r.key:18} {r.name} ({r.engine}, beam {r.beam})")
            return 0
        if not args.no_warmup:
            warm_page_cache(env)
        load_before = os.getloadavg()[0]
        warn_if_busy(load_before)
        for (m, s), specs in plan.items():
            results[m][s] = measure(specs, inputs[s], args.repeat, env, f"{m} {s}")
            partial = _payload(
                args, models, inputs, results, (load_before, os.getloadavg()[0]), started, False
            )
            write_json(args.json, partial)  # a late failure keeps what was measured
    loads = (load_before, os.getloadavg()[0])
    for m, s in plan:
        table(results[m][s], m, s, len(inputs[s].items), inputs[s].audio_s)
    payload = _payload(args, models, inputs, results, loads, started, True)
    write_json(args.json, payload)
    for m, ts in payload["targets"].items():
        print_targets(m, ts)
    print(one_line(payload["targets"]))
    failed = [(m, r) for res in results.values() for rows in res.values() for r in rows if not r.ok]
    for m, r in failed:
        print(
            f"{m} {r.key} failed (exit {r.exit_codes}, {r.missing_outputs} missing): {r.stderr_tail}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
