"""Soak: thousands of mixed requests against one ``twi-asr serve``; does its memory drift?

Four clients in a closed loop send a mix: short clips as json, verbose_json, text, srt and
streamed; uploads that are not audio (415), too short (400) or empty (422); bad options (400).
The server's RSS (``/proc/PID/status``) is sampled every ``--every`` requests; the drift is the
last sample against the first one after the warm-up. The reference is the same server at
the end of its warm-up: a server that leaks grows steadily past it.

    python bench/soak.py                      # 5,000 requests; writes bench/results/soak.json
"""

from __future__ import annotations

import argparse
import io
import itertools
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import REPO_ROOT, clean_env, machine_info, package_versions, print_cells, utc_now, write_json
from server_load import start_server, stop_server
from transcribe_folder import DEFAULT_CACHE, build_corpus

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "soak.json"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def kinds(payloads: list[bytes]) -> list[tuple[str, dict[str, str], bytes | None, int]]:
    """(name, form fields, file bytes, expected status), repeated in proportion."""
    import soundfile as sf

    blip = io.BytesIO()
    sf.write(blip, np.full(800, 0.1, dtype=np.float32), 16000, format="WAV")
    good = [("json", {}, p, 200) for p in payloads]
    mix = (
        good * 6
        + [
            ("verbose_json", {"response_format": "verbose_json"}, payloads[0], 200),
            ("text", {"response_format": "text"}, payloads[1], 200),
            ("srt", {"response_format": "srt"}, payloads[2], 200),
            ("stream", {"stream": "true"}, payloads[3], 200),
            ("not audio", {}, b"plain text, not audio\n" * 50, 415),
            ("too short", {}, blip.getvalue(), 400),
            ("empty", {}, b"", 422),
            ("bad option", {"language": "klingon"}, payloads[4], 400),
        ]
        * 3
    )
    return mix


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    import httpx

    clips = build_corpus(DEFAULT_CACHE / "clips")
    mix = kinds([c.path.read_bytes() for c in clips])
    log_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    server = start_server("soak", [], log_dir, clean_env())
    lock = threading.Lock()
    counter = itertools.count()
    curve: list[dict[str, float]] = []
    outcomes: Counter[str] = Counter()
    t0 = time.perf_counter()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=server.url, timeout=120) as http:
            while (n := next(counter)) < args.requests:
                name, data, body, expected = mix[int(rng.integers(len(mix)))]
                r = http.post("/v1/audio/transcriptions", files={"file": ("clip.wav", body)}, data=data)
                _ = r.content
                with lock:
                    outcomes[f"{name} {'ok' if r.status_code == expected else r.status_code}"] += 1
                    if (n + 1) % args.every == 0:
                        curve.append({"requests": n + 1, "rss_mib": round(rss_mib(server.pid), 1),
                                      "elapsed_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
                        print(
                            f"{n + 1} requests: RSS {curve[-1]['rss_mib']} MiB", file=sys.stderr, flush=True
                        )

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop_server(server)
    curve.sort(key=lambda c: c["requests"])
    after = [c for c in curve if c["requests"] >= args.warmup]
    drift = after[-1]["rss_mib"] / after[0]["rss_mib"] - 1 if len(after) >= 2 else float("nan")
    wrong = {k: v for k, v in outcomes.items() if not k.endswith(" ok")}
    print_cells(
        ["requests", "RSS MiB", "elapsed s"],
        [[str(c["requests"]), f"{c['rss_mib']:.1f}", f"{c['elapsed_s']:.0f}"] for c in curve],
        f"soak: {args.requests} mixed requests, {args.clients} clients; drift after warm-up "
        f"{100 * drift:+.1f}%",
    )
    write_json(
        args.json,
        {
            "benchmark": "soak",
            "date_utc": utc_now(),
            "command": shlex.join([sys.executable, *sys.argv]),
            "server_command": server.command,
            "machine": machine_info(),
            "versions": package_versions(("twi-asr", "ctranslate2", "uvicorn", "starlette")),
            "settings": vars(args) | {"json": str(args.json)},
            "curve": curve,
            "drift_after_warmup": round(drift, 4),
            "target_drift_max": 0.05,
            "outcomes": dict(sorted(outcomes.items())),
            "unexpected": wrong,
        },
    )
    print(f"results: {args.json}; unexpected outcomes: {wrong or 'none'}")
    return 0 if not wrong and drift < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
