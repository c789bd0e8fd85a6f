"""Benchmark: ``twi-asr batch`` over 100 clips, local engine and through 1 and 2 servers, vs. a plain loop.

What it measures. ``twi-asr batch CLIPS -o OUT`` as a CI job runs it, as a
whole process (interpreter start, imports, model load or server check,
hashing for the ledger, decoding, writing, the ledger line per file, the
report), in three set-ups:

* the local engine (CTranslate2 int8, tiny.en), cross-file batches;
* ``--server URL --jobs 8`` against one ``twi-asr serve`` process;
* ``--server A --server B --jobs 8`` against two server processes;

next to the reference: the smallest honest script one would write instead,
a ``faster_whisper.WhisperModel`` loop calling ``model.transcribe(path,
beam_size=5)`` per file in one process and writing one .txt per clip.

Servers are started (and warmed with one request) before the timed batch
runs, since a CI job talks to servers that are already up; their start-up
is not in the batch rows. Every row uses beam 5 and Whisper's temperature
fallback (the servers' default and the CLI's default). Each batch row runs
with ``--no-resume`` into a fresh folder, so nothing is skipped.

Same clips for every row: 100 espeak-ng English clips, 25 sentences x 2
voices (en-us, en-gb) x 2 speeds (160 and 190 words per minute), 16 kHz
mono WAV, cached in ``bench/.cache/batch-clips`` (git-ignored). Per row: wall
seconds (median of ``--repeat``), files per minute, real-time factor (wall
over audio; lower is faster), peak RSS of the timed process, corpus WER.
Results go to ``bench/results/batch.json``.

Caveats. On 2 cores, two server processes compete for the same cores as
one; the 2-server row shows the dispatch overhead and spread, not a
speed-up that needs more hardware. Timings are only meaningful on an
otherwise idle machine: the 1-minute load average before timing is
recorded, with a warning when it is high.

Run: ``python bench/batch.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    clean_env,
    machine_info,
    package_versions,
    print_cells,
    rss_method,
    utc_now,
    warn_if_busy,
    write_json,
)
from server_load import start_server, stop_server
from transcribe_folder import (
    FASTER_WHISPER_LOOP,
    Clip,
    Row,
    RowSpec,
    _wav_seconds,
    measure,
    speak,
    tiny_en_ct2,
    twi_asr_executable,
    warm_page_cache,
)

BEAM_SIZE = 5
JOBS = 8
DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "batch.json"
DISTRIBUTIONS = ("twi-asr", "ctranslate2", "faster-whisper", "fastapi", "uvicorn", "httpx")
VOICES = ("en-us", "en-gb")
SPEEDS = (160, 190)

SENTENCES = [
    "Please call Stella and ask her to bring these things from the store.",
    "The sun is shining and the sky is clear.",
    "My brother plays football every Saturday morning.",
    "The children walked to school along the river.",
    "Turn off the lights before you leave the office.",
    "The train to the city leaves at seven in the evening.",
    "Doctors recommend drinking plenty of clean water every day.",
    "Our team finished the project two weeks early.",
    "Music filled the hall as the people started to dance.",
    "Please close the window because it is raining outside.",
    "The nurse checked the baby and smiled at the mother.",
    "The price of petrol went up again this month.",
    "My sister is learning to play the guitar.",
    "The football match was cancelled because of the heavy rain.",
    "They painted the house white and planted flowers in front.",
    "The old bridge was closed for repairs last week.",
    "The dog slept under the table all afternoon.",
    "Please send me the report before the meeting on Friday.",
    "I would like a cup of tea with milk and sugar.",
    "The plane landed safely despite the strong wind.",
    "We planted tomatoes and peppers in the garden.",
    "The radio said that the roads were flooded.",
    "She wrote a long letter to her grandmother in Kumasi.",
    "A small boat crossed the lake in the morning fog.",
    "Everyone agreed that the new road was a great improvement.",
]
VARIANTS = [(v, s) for v in VOICES for s in SPEEDS]


# --------------------------------------------------------------------------- corpus
def build_corpus(folder: Path, *, rebuild: bool = False) -> list[Clip]:
    """100 clips (25 sentences x 4 voice/speed variants) with a manifest; rebuilt when the recipe changes."""
    manifest = folder / "manifest.json"
    recipe = {"sentences": SENTENCES, "variants": VARIANTS}
    if (
        rebuild
        or not manifest.is_file()
        or json.loads(manifest.read_text()) != json.loads(json.dumps(recipe))
    ):
        for tool in ("espeak-ng", "ffmpeg"):
            if shutil.which(tool) is None:
                raise SystemExit(f"{tool} is not on PATH: install it to build the benchmark clips")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for v, (voice, speed) in enumerate(VARIANTS):
            for i, text in enumerate(SENTENCES):
                speak(text, folder / f"clip{v}{i:02d}.wav", voice=voice, speed=speed)
        manifest.write_text(json.dumps(recipe, indent=2) + "\n")
    return [
        Clip(folder / f"clip{v}{i:02d}.wav", text, _wav_seconds(folder / f"clip{v}{i:02d}.wav"))
        for v in range(len(VARIANTS))
        for i, text in enumerate(SENTENCES)
    ]


# --------------------------------------------------------------------------- rows
def row_specs(clips_dir: Path, ct2: Path, scripts: Path, outputs: Path, servers: list[str]) -> list[RowSpec]:
    """Our three set-ups and the faster-whisper loop; every row writes ``<stem>.txt`` into its folder."""
    cli = twi_asr_executable()
    fw_script = scripts / "faster_whisper_loop.py"
    fw_script.write_text(FASTER_WHISPER_LOOP.format(beam=BEAM_SIZE))
    common = ["-f", "txt", "--beam-size", str(BEAM_SIZE), "--no-resume", "--progress-every", "3600"]

    def batch(name: str, extra: list[str]) -> list[str]:
        return [cli, "batch", str(clips_dir), "-o", str(outputs / name), *common, *extra]

    one, two = servers[:1], servers[:2]
    return [
        RowSpec("twi-asr batch, local engine", "ours", "ctranslate2 int8",
                batch("local", ["--model", "tiny.en"]), outputs / "local"),
        RowSpec("twi-asr batch, 1 server", "ours", "ctranslate2 int8",
                batch("server1", [x for u in one for x in ("--server", u)] + ["--jobs", str(JOBS)]),
                outputs / "server1"),
        RowSpec("twi-asr batch, 2 servers", "ours", "ctranslate2 int8",
                batch("server2", [x for u in two for x in ("--server", u)] + ["--jobs", str(JOBS)]),
                outputs / "server2"),
        RowSpec("faster-whisper loop", "reference", "ctranslate2 int8",
                [sys.executable, str(fw_script), str(ct2), str(clips_dir), str(outputs / "ref-fw")],
                outputs / "ref-fw"),
    ]  # fmt: skip


def versus(rows: list[Row]) -> list[str]:
    """Each row's wall time relative to the faster-whisper loop."""
    ref = next((r.wall_s for r in rows if r.kind == "reference"), None)
    return [f"{r.wall_s / ref:.2f}x" if ref else "-" for r in rows]


def print_table(rows: list[Row], title: str) -> None:
    """Ours next to the reference."""
    header = ["row", "kind", "wall s", "time vs ref", "files/min", "audio s", "RTF", "peak RSS MiB", "WER",
              "exit"]  # fmt: skip
    body = [
        [r.name, r.kind, f"{r.wall_s:.2f}", vs, f"{r.files_per_min:.1f}", f"{r.audio_s:.1f}", f"{r.rtf:.3f}",
         "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}", f"{r.wer:.2%}",
         ",".join(map(str, r.exit_codes))]
        for r, vs in zip(rows, versus(rows), strict=True)
    ]  # fmt: skip
    print_cells(header, body, title, left=2)


def one_line_summary(rows: list[Row]) -> str:
    """Files per minute and RTF of every row, in one line."""
    parts = [f"{r.name}: {r.files_per_min:.0f} files/min, RTF {r.rtf:.3f}, WER {r.wer:.1%}" for r in rows]
    files, audio = (rows[0].files, rows[0].audio_s) if rows else (0, 0.0)
    return f"batch: {files} clips, {audio:.0f} s audio; " + "; ".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median wall time is reported")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the clips are kept")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument("--rebuild", action="store_true", help="regenerate the clips")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed page-cache warm-up import")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def warm_server(url: str, clip: Path) -> None:
    """One untimed request, so the first timed one does not pay for lazy initialisation."""
    from twi_asr.client import TwiAsrClient

    with TwiAsrClient(url) as client:
        client.transcribe(clip)


def main(argv: list[str] | None = None) -> int:
    """Build the clips, start the servers, time every row, print the table and write the JSON results."""
    args = parse_args(argv)
    cache: Path = args.cache_dir.resolve()
    clips = build_corpus(cache / "batch-clips", rebuild=args.rebuild)
    ct2 = tiny_en_ct2()
    env = clean_env()
    if not args.no_warmup:
        warm_page_cache(env)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp_dir = Path(tmp)
        servers = []
        try:
            for i in range(2):
                servers.append(start_server(f"batch-{i}", [], tmp_dir, env))
            for s in servers:
                warm_server(s.url, clips[0].path)
            specs = row_specs(
                cache / "batch-clips", ct2, tmp_dir, cache / "batch-outputs", [s.url for s in servers]
            )
            load_before = os.getloadavg()[0]
            warn_if_busy(load_before)
            rows = measure(specs, clips, args.repeat, env)
        finally:
            for s in servers:
                stop_server(s)
    audio = sum(c.seconds for c in clips)
    print_table(rows, f"{len(clips)} clips, {audio:.1f} s of audio, tiny.en, beam {BEAM_SIZE}, CPU")
    payload: dict[str, Any] = {
        "benchmark": "batch",
        "date_utc": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {
            "clips": len(clips),
            "audio_s": round(audio, 2),
            "beam_size": BEAM_SIZE,
            "jobs": JOBS,
            "repeat": args.repeat,
            "warmup": not args.no_warmup,
            "load_average_1m_before": round(load_before, 2),
            "peak_rss": rss_method() + "; of the timed process only (the server rows' servers are not in it)",
            "servers": "started and warmed before timing; not in the rows' wall time",
            "weights": str(ct2),
        },
        "rows": [asdict(r) | {"vs_reference": vs} for r, vs in zip(rows, versus(rows), strict=True)],
    }
    summary = one_line_summary(rows)
    payload["summary"] = summary
    write_json(args.json, payload)
    print(f"results: {args.json}")
    print(summary)
    return 0 if all(code == 0 for r in rows for code in r.exit_codes) else 1


if __name__ == "__main__":
    sys.exit(main())
