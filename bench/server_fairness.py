"""Short requests while a 20-minute upload is transcribed: p95 latency and the long file's wall time.

The server's own row (engine lanes auto: two single-threaded CTranslate2 workers on this CPU,
one kept for short work) next to the reference, the same server with one two-threaded engine
lane (``--engine-workers 1``: the previous design, every request behind the batch in the
engine). Same clips, same run. For each: the p95 of 3 s requests sent one every second on
an idle server, the 20-minute upload alone, then both together.

    python bench/server_fairness.py            # writes bench/results/server_fairness.json
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO_ROOT, clean_env, machine_info, package_versions, print_cells, utc_now, write_json
from server_load import peak_rss_kib, percentile, reset_peak_rss, start_server, stop_server
from transcribe_folder import DEFAULT_CACHE, build_corpus

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "server_fairness.json"
ROWS = (("twi-asr serve (lanes auto)", []), ("reference: one engine lane", ["--engine-workers", "1"]))
LONG_S = 1200.0


def long_file(clips: list[Any], folder: Path) -> Path:
    """The corpus's clips in turn, 0.5 s apart, until 20 minutes."""
    import soundfile as sf

    gap = np.zeros(8000, dtype=np.float32)
    parts, total, i = [], 0.0, 0
    while total < LONG_S:
        audio, rate = sf.read(str(clips[i % len(clips)].path), dtype="float32")
        assert rate == 16000
        parts += [audio, gap]
        total += (len(audio) + len(gap)) / 16000
        i += 1
    path = folder / "twenty-minutes.wav"
    sf.write(str(path), np.concatenate(parts)[: int(LONG_S * 16000)], 16000, subtype="PCM_16")
    return path


def post(url: str, path: Path, timeout: float = 900) -> float:
    import httpx

    t0 = time.perf_counter()
    with path.open("rb") as fh:
        r = httpx.post(url + "/v1/audio/transcriptions", files={"file": (path.name, fh)}, timeout=timeout)
    r.raise_for_status()
    return time.perf_counter() - t0


def paced(
    url: str, shorts: list[Path], interval: float, n: int | None, stop: threading.Event | None
) -> list[float]:
    """Short requests one at a time, one every ``interval`` seconds (a steady trickle of users)."""
    out: list[float] = []
    start = time.perf_counter()
    i = 0
    while (n is None or i < n) and not (stop is not None and stop.is_set()):
        out.append(post(url, shorts[i % len(shorts)]))
        i += 1
        time.sleep(max(0.0, start + i * interval - time.perf_counter()))
    return out


def measure(url: str, shorts: list[Path], long: Path, n_idle: int, interval: float) -> dict[str, Any]:
    for p in shorts[:3]:
        post(url, p)  # warm-up
    idle = paced(url, shorts, interval, n_idle, None)
    alone = post(url, long)
    done = threading.Event()
    wall: list[float] = []

    def long_one() -> None:
        wall.append(post(url, long))
        done.set()

    worker = threading.Thread(target=long_one)
    worker.start()
    busy = paced(url, shorts, interval, None, done)
    worker.join()
    return {
        "idle_p95_s": round(percentile(idle, 95), 3),
        "busy_p95_s": round(percentile(busy, 95), 3),
        "busy_requests": len(busy),
        "p95_ratio": round(percentile(busy, 95) / percentile(idle, 95), 2),
        "long_alone_s": round(alone, 1),
        "long_with_traffic_s": round(wall[0], 1),
        "long_growth": round(wall[0] / alone - 1, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idle-requests", type=int, default=30)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between short requests")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    clips = build_corpus(DEFAULT_CACHE / "clips")
    shorts = [c.path for c in clips]
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fair-"))
    long = long_file(clips, log_dir)
    rows = []
    for label, flags in ROWS:
        print(f"{label} ...", file=sys.stderr, flush=True)
        server = start_server(label.split(":")[0].replace(" ", "-"), flags, log_dir, clean_env())
        try:
            reset_peak_rss(server.pid)
            row = {
                "server": label,
                "command": server.command,
                **measure(server.url, shorts, long, args.idle_requests, args.interval),
            }
            row["peak_rss_mib"] = round((peak_rss_kib(server.pid) or 0) / 1024, 1)
            rows.append(row)
        finally:
            stop_server(server)
    header = ["server", "idle p95 s", "busy p95 s", "ratio", "20-min alone s", "20-min busy s", "growth"]
    body = [
        [r["server"], f"{r['idle_p95_s']:.3f}", f"{r['busy_p95_s']:.3f}", f"{r['p95_ratio']:.2f}x",
         f"{r['long_alone_s']:.1f}", f"{r['long_with_traffic_s']:.1f}", f"{100 * r['long_growth']:+.0f}%"]
        for r in rows
    ]  # fmt: skip
    print_cells(header, body, f"3 s requests during a 20-minute upload, tiny.en, CPU x{os.cpu_count()}")
    write_json(
        args.json,
        {
            "benchmark": "server_fairness",
            "date_utc": utc_now(),
            "command": shlex.join([sys.executable, *sys.argv]),
            "machine": machine_info(),
            "versions": package_versions(("twi-asr", "ctranslate2", "faster-whisper", "uvicorn")),
            "settings": {
                "long_s": LONG_S,
                "short_clips": len(shorts),
                "idle_requests": args.idle_requests,
                "client": f"httpx, one short request every {args.interval:g} s beside the long upload",
            },  # fmt: skip
            "targets": {"p95_ratio_max": 2.0, "long_growth_max": 0.2},
            "rows": rows,
        },
    )
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
