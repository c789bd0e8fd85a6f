"""Fuzz ``decode_audio`` on mutated real files for a time budget: every outcome an Audio or an AudioError.

Seeds: one espeak-ng sentence encoded by ffmpeg as WAV (44.1 kHz stereo),
FLAC, MP3, Ogg Vorbis, Ogg Opus and M4A/AAC (``tests/integration/fuzz_media.py``).
Each case takes a seed, applies one to four mutations (bit flips, byte
writes, insertions, deletions, truncations, extreme values in parsed header
fields: sizes, rates, channel counts, lengths; splices with another format;
repeated chunks; zero-length and few-byte inputs; Ogg checksums recomputed
so damaged pages are decoded, not dropped), and decodes the result as bytes,
as a path or as a file object, a tenth of them with ``max_seconds=30``.

Every case runs in a watched child process (``tests/integration/fuzz_worker.py``)
with a per-case timeout, an address-space cap and its own peak-RSS reading,
so a hang is reported as "timeout" and a segfault as "crash" instead of
stopping the run. A case fails when it ends in anything but Audio/AudioError
or its peak memory grows past ``--memory-mb``. Failing inputs are saved under
``bench/results/fuzz_audio_crashes/`` (gitignored) with a JSON note of the
seed, mutations and outcome; ``--replay FILE`` decodes one again.

Cases are numbered and each one's mutations come from ``random.Random(f"{seed}-{n}")``,
so ``--seed`` and the case number reproduce an input whatever the worker count.

    python bench/fuzz_audio.py --seconds 300      # writes bench/results/fuzz_audio.json
    python bench/fuzz_audio.py --replay bench/results/fuzz_audio_crashes/ogg-000123-crash.bin

Exit status 1 when any case failed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, machine_info, package_versions, print_cells, utc_now, write_json

sys.path.insert(0, str(REPO_ROOT))  # the seeds, mutations and worker live with the integration tests
from tests.integration.fuzz_media import FORMATS, SEEDS, make_seeds, mutate, random_ops  # noqa: E402
from tests.integration.fuzz_worker import GOOD, INPUT_KINDS, DecodeWorker, Outcome  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "fuzz_audio.json"
DEFAULT_CRASHES = REPO_ROOT / "bench" / "results" / "fuzz_audio_crashes"
DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache" / "fuzz_audio"
DISTRIBUTIONS = ("twi-asr", "av", "soundfile", "soxr", "numpy")
OUTCOMES = ("audio", "audio_error", "other", "timeout", "crash", "memory")
LIMITED_SHARE = 0.1  # cases decoded with max_seconds=30
MAX_SAVED = 200


def build_case(seed: int, number: int, seeds: dict[str, bytes]) -> dict[str, Any]:
    """Case ``number`` of run ``seed``: its format, mutations, input kind, limit and bytes."""
    rng = random.Random(f"{seed}-{number}")
    fmt = FORMATS[number % len(FORMATS)]
    ops = random_ops(rng, fmt)
    return {
        "number": number,
        "format": fmt,
        "ops": ops,
        "kind": rng.choice(INPUT_KINDS),
        "max_seconds": 30.0 if rng.random() < LIMITED_SHARE else None,
        "data": mutate(seeds[fmt], ops, seeds),
    }


def verdict(outcome: Outcome, memory_bound: int) -> str:
    """The outcome's table column: its kind, or "memory" for a good outcome past the memory bound."""
    if outcome.kind in GOOD and outcome.peak_growth > memory_bound:
        return "memory"
    return outcome.kind


class Fuzzer:
    """Runs numbered cases on ``workers`` child processes until the deadline; collects the results."""

    def __init__(self, args: argparse.Namespace, seeds: dict[str, bytes]) -> None:
        self.args = args
        self.seeds = seeds
        self.memory_bound = int(args.memory_mb * 1024 * 1024)
        self.lock = threading.Lock()
        self.next_number = 0
        self.counts: dict[str, Counter[str]] = {fmt: Counter() for fmt in FORMATS}
        self.elapsed: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
        self.peak: dict[str, int] = dict.fromkeys(FORMATS, 0)
        self.peak_case: dict[str, int | None] = dict.fromkeys(FORMATS)  # rebuilt by build_case
        self.failures: list[dict[str, Any]] = []
        self.restarts = 0

    def run(self) -> float:
        deadline = time.monotonic() + self.args.seconds
        threads = [threading.Thread(target=self._loop, args=(deadline,)) for _ in range(self.args.workers)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - start

    def _loop(self, deadline: float) -> None:
        with DecodeWorker(timeout_s=self.args.timeout) as worker:
            while time.monotonic() < deadline:
                with self.lock:
                    number = self.next_number
                    self.next_number += 1
                case = build_case(self.args.seed, number, self.seeds)
                outcome = worker.run(case["data"], case["kind"], case["max_seconds"])
                self._record(case, outcome)
            with self.lock:
                self.restarts += worker.restarts

    def _record(self, case: dict[str, Any], outcome: Outcome) -> None:
        fmt, column = case["format"], verdict(outcome, self.memory_bound)
        with self.lock:
            self.counts[fmt][column] += 1
            self.elapsed[fmt].append(outcome.elapsed)
            if outcome.peak_growth > self.peak[fmt]:
                self.peak[fmt], self.peak_case[fmt] = outcome.peak_growth, case["number"]
            if column in GOOD:
                return
            note = {
                "number": case["number"],
                "format": fmt,
                "ops": case["ops"],
                "kind": case["kind"],
                "max_seconds": case["max_seconds"],
                "outcome": column,
                "detail": outcome.detail,
                "peak_growth_mib": round(outcome.peak_growth / 2**20, 1),
                "elapsed_s": round(outcome.elapsed, 3),
            }
            self.failures.append(note)
            if len(self.failures) <= MAX_SAVED:
                self.args.crashes.mkdir(parents=True, exist_ok=True)
                stem = self.args.crashes / f"{fmt}-{case['number']:06d}-{column}"
                stem.with_suffix(".bin").write_bytes(case["data"])
                stem.with_suffix(".json").write_text(json.dumps(note, indent=2) + "\n")


def summary(fuzzer: Fuzzer) -> list[dict[str, Any]]:
    rows = []
    for fmt in [*FORMATS, "all"]:
        counts: Counter[str] = (
            sum(fuzzer.counts.values(), Counter()) if fmt == "all" else fuzzer.counts[fmt]  # type: ignore[arg-type]
        )
        times = [t for f in FORMATS for t in fuzzer.elapsed[f]] if fmt == "all" else fuzzer.elapsed[fmt]
        peak = max(fuzzer.peak.values()) if fmt == "all" else fuzzer.peak[fmt]
        times.sort()
        rows.append(
            {
                "format": fmt,
                "cases": sum(counts.values()),
                **{k: counts.get(k, 0) for k in OUTCOMES},
                "median_ms": round(1000 * statistics.median(times), 1) if times else None,
                "max_ms": round(1000 * times[-1], 1) if times else None,
                "peak_growth_mib": round(peak / 2**20, 1),
                "peak_case": None if fmt == "all" else fuzzer.peak_case[fmt],
            }
        )
    return rows


def library_versions() -> dict[str, str]:
    """The C libraries doing the decoding: libsndfile, and the FFmpeg bundled with PyAV."""
    import av
    import soundfile

    return {"libsndfile": soundfile.__libsndfile_version__, "ffmpeg (PyAV)": av.ffmpeg_version_info}


def replay(path: Path, timeout: float) -> int:
    note = path.with_suffix(".json")
    meta = json.loads(note.read_text()) if note.is_file() else {}
    with DecodeWorker(timeout_s=timeout) as worker:
        outcome = worker.run(path.read_bytes(), meta.get("kind", "bytes"), meta.get("max_seconds"))
    print(json.dumps({"file": str(path), **outcome.__dict__}, indent=2))
    return 0 if outcome.kind in GOOD else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="child processes decoding at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-case timeout in seconds")
    parser.add_argument(
        "--memory-mb",
        type=float,
        default=320.0,
        help="per-case peak RSS growth bound (default 320: FFmpeg's 256 MiB allocation cap + 64)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--crashes", type=Path, default=DEFAULT_CRASHES)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the seed media are made")
    parser.add_argument("--replay", type=Path, help="decode one saved input again and print the outcome")
    args = parser.parse_args()
    if args.replay:
        return replay(args.replay, args.timeout)

    seeds = make_seeds(args.cache)
    fuzzer = Fuzzer(args, seeds)
    wall = fuzzer.run()
    rows = summary(fuzzer)
    total = rows[-1]
    header = ["format", "cases", *OUTCOMES, "median ms", "max ms", "peak MiB"]
    body = [[str(r[k]) for k in ("format", "cases", *OUTCOMES, "median_ms", "max_ms", "peak_growth_mib")]
            for r in rows]  # fmt: skip
    title = (
        f"decode_audio fuzz: {total['cases']} cases in {wall:.0f} s, seed {args.seed}, "
        f"{args.workers} workers, timeout {args.timeout:g} s, memory bound {args.memory_mb:g} MiB"
    )
    print_cells(header, body, title)
    failed = len(fuzzer.failures)
    payload = {
        "benchmark": "fuzz_audio",
        "date": utc_now(),
        "machine": machine_info(),
        "versions": {**package_versions(DISTRIBUTIONS), **library_versions()},
        "config": {
            "seconds": args.seconds,
            "seed": args.seed,
            "workers": args.workers,
            "timeout_s": args.timeout,
            "memory_bound_mib": args.memory_mb,
            "seeds": {fmt: {"file": SEEDS[fmt][0], "bytes": len(seeds[fmt])} for fmt in FORMATS},
        },
        "wall_s": round(wall, 1),
        "cases_per_s": round(total["cases"] / wall, 1) if wall else None,
        "worker_restarts": fuzzer.restarts,
        "rows": rows,
        "failures": fuzzer.failures[:MAX_SAVED],
        "failures_total": failed,
    }
    write_json(args.json, payload)
    print(
        f"{failed} failing cases; results in {args.json}" + (f", inputs in {args.crashes}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
