"""The backend (8000) next to straight calls to the inference server (8001): throughput, latency, overhead.

One running ``twi-asr serve --model tiny.en`` (CTranslate2, the alias's default engine) serves
both paths. The backend (``twi-asr backend serve``: SQLite, a local folder, its defaults: idle
workers poll the database every 1 s, and a submit wakes them at once) runs with 1 worker,
then 2 (``TWI_ASR_WORKERS``);
the reference is 8001 called through ``twi_asr.client.TwiAsrClient`` with as many requests in
flight (1, then 2). Cases:

- 100 short clips (3-6 s, espeak-ng, 100 sentences) and 3 five-minute files (clips and 0.8 s
  silences joined with sox). Backend: submit all (multipart, one after another), poll the job
  list until all are done. Direct: all queued here at the start, 1 or 2 in flight. Per case:
  jobs/min, p50/p95 submit->done, wall time, and the backend's overhead = (backend wall -
  direct wall) / direct wall at the same concurrency.
- one 30 s clip at a time: backend submit->done vs a direct call, median of 10 runs each,
  alternated (goal: overhead under 10 %).

A backend job is done at its ``finished_at`` (the server's clock, same machine), so the client's
polling interval is not in the figures; the 30 s rows also give when a 50 ms poll saw it. Timed
in-process (time.time / perf_counter): what is measured is a request to a running service, not
a process. The machine may be shared: ``others`` is the CPU share other processes took, and
``8000 CPU`` the backend process's CPU seconds over 8001's in that row (its cost, less noisy).

    python bench/backend.py            # ~10 min on a quiet 2-core machine; bench/results/backend.json
    python bench/backend.py --quick    # 20 clips, one 5-minute file, 3 runs of the 30 s clip
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    clean_env,
    machine_info,
    median,
    package_versions,
    print_cells,
    utc_now,
    write_json,
)
from server_load import cpu_snapshot, free_port, percentile, process_cpu_s, start_server, stop_server

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "backend.json"
CACHE = REPO_ROOT / "bench" / ".cache" / "backend"
SUBJECTS = ["The teacher", "My neighbour", "The old farmer", "Our driver", "The young doctor",
            "My grandmother", "The shop keeper", "A tall student", "The police officer",
            "Her little brother"]  # fmt: skip
ACTIONS = ["bought fresh bread at the market this morning.", "walked slowly along the river after lunch.",
           "cleaned the kitchen before the guests arrived.", "fixed the broken radio in the evening.",
           "read the newspaper under the mango tree.", "sold ten bags of rice on Monday.",
           "called the office to ask about the meeting.", "planted maize beside the new school.",
           "waited for the bus in the heavy rain.",
           "painted the front door a bright blue colour."]  # fmt: skip
SENTENCES = [f"{s} {a}" for i, s in enumerate(SUBJECTS) for a in ACTIONS[i:] + ACTIONS[:i]]
LONG_S, CLIP30_S, GAP_S = 300.0, 30.0, 0.8


# ------------------------------------------------------------------------------------- corpus
def seconds(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def sox(*args: str | Path) -> None:
    subprocess.run(["sox", *map(str, args)], check=True, capture_output=True, timeout=120)


def build_corpus(n_short: int, n_long: int) -> tuple[list[Path], list[Path], Path]:
    """Short clips (3-6 s), five-minute files and the 30 s clip, cached in bench/.cache/backend."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH: install it to build the benchmark audio")
    CACHE.mkdir(parents=True, exist_ok=True)
    manifest = CACHE / "manifest.json"
    recipe = {"sentences": SENTENCES, "long_s": LONG_S, "gap_s": GAP_S, "clip30_s": CLIP30_S}
    if not manifest.is_file() or json.loads(manifest.read_text()) != recipe:
        for i, text in enumerate(SENTENCES):
            raw, out = CACHE / "raw.wav", CACHE / f"short{i:03d}.wav"
            for speed in (150 + (i * 7) % 40, 210):  # varied pace; faster once if it runs over 6 s
                subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(raw), text],
                               check=True, capture_output=True, timeout=60)  # fmt: skip
                sox(raw, "-r", "16000", "-c", "1", "-b", "16", out, "pad", "0.25", "0.25")
                if seconds(out) <= 6.0:
                    break
            if seconds(out) < 3.0:
                sox(out, out.with_suffix(".tmp.wav"), "pad", "0", f"{3.05 - seconds(out):.3f}")
                out.with_suffix(".tmp.wav").replace(out)
        (CACHE / "raw.wav").unlink(missing_ok=True)
        sox("-n", "-r", "16000", "-c", "1", "-b", "16", gap := CACHE / "gap.wav", "trim", "0", str(GAP_S))
        shorts = [CACHE / f"short{i:03d}.wav" for i in range(len(SENTENCES))]
        for k, name in enumerate(["long0", "long1", "long2", "clip30"]):  # clips from 33 apart, 0.8 s gaps
            total = CLIP30_S if name == "clip30" else LONG_S
            parts = [p for i in range(k * 33, k * 33 + int(total / 3.5) + 2) for p in (shorts[i % 100], gap)]
            sox(*parts, CACHE / f"{name}.wav", "trim", "0", str(total))
        manifest.write_text(json.dumps(recipe, indent=2) + "\n")
    shorts = [CACHE / f"short{i:03d}.wav" for i in range(len(SENTENCES))]
    bad = [f"{p.name}: {seconds(p):.2f} s" for p in shorts if not 3.0 <= seconds(p) <= 6.0]
    if bad:
        raise SystemExit(f"clips outside 3-6 s: {', '.join(bad)}")
    return shorts[:n_short], [CACHE / f"long{k}.wav" for k in range(n_long)], CACHE / "clip30.wav"


# ------------------------------------------------------------------------------------ backend
class Backend:
    """A ``twi-asr backend serve`` with its own data folder, and one user's key."""

    def __init__(self, asr_url: str, workers: int, folder: Path) -> None:
        import httpx

        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = clean_env() | {
            "TWI_ASR_DATA_DIR": str(folder / f"data-{workers}"),
            "TWI_ASR_WORKERS": str(workers),
            "TWI_ASR_MAX_CONCURRENT_JOBS": "10000",  # all jobs of a case queued at once
        }
        cmd = [sys.executable, "-m", "twi_asr", "backend", "serve", "--host", "127.0.0.1",
               "--port", self.url.rsplit(":", 1)[1], "--asr-url", asr_url]  # fmt: skip
        self.command = shlex.join(["twi-asr", *cmd[3:]])
        self.log = folder / f"backend-{workers}.log"
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(cmd, stdout=sink, stderr=sink, env=self.env)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the backend did not start:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        make_user = [sys.executable, "-m", "twi_asr", "backend", "users", "create", "bench", "--json"]
        out = subprocess.run(make_user, env=self.env, capture_output=True, text=True, timeout=60, check=True)
        key = json.loads(out.stdout)["api_key"]
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=600)

    def submit(self, path: Path) -> tuple[str, float]:
        """POST /v1/jobs; (job id, the moment before the upload started)."""
        t = time.time()
        with path.open("rb") as fh:
            r = self.http.post("/v1/jobs", files={"file": (path.name, fh, "audio/wav")})
        if r.status_code != 202:
            raise SystemExit(f"submit {path.name}: {r.status_code} {r.text}")
        return str(r.json()["id"]), t

    def wait_all(self, ids: set[str], poll_s: float, timeout_s: float = 3600) -> dict[str, dict[str, Any]]:
        """Poll the job list (newest first, pages of 100) until every job in ``ids`` has ended."""
        ended: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(ended) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(ids) - len(ended)} backend jobs not done in {timeout_s:.0f} s")
            time.sleep(poll_s)
            cursor: str | None = None
            seen: set[str] = set()
            while not ids <= seen:  # ours are the newest: one page, unless a case has over 100 jobs
                page = self.http.get(
                    "/v1/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}
                )
                page.raise_for_status()
                body = page.json()
                for job in body["data"]:
                    seen.add(job["id"])
                    if job["id"] in ids and job["status"] in ("done", "failed", "cancelled"):
                        ended[job["id"]] = job
                cursor = body["next_cursor"]
                if cursor is None:
                    break
        return ended

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -------------------------------------------------------------------------------------- cases
def summary(lat: list[float], wall: float, failed: int) -> dict[str, Any]:
    return {"jobs": len(lat), "failed": failed, "wall_s": round(wall, 2),
            "jobs_per_min": round(60 * len(lat) / wall, 1), "p50_s": round(percentile(lat, 50), 3),
            "p95_s": round(percentile(lat, 95), 3)}  # fmt: skip


def via_backend(backend: Backend, files: list[Path], poll_s: float) -> tuple[dict[str, Any], list[str]]:
    t0 = time.time()
    submitted = dict(backend.submit(p) for p in files)
    ended = backend.wait_all(set(submitted), poll_s)
    done = [epoch(ended[i]["finished_at"]) for i in submitted]
    failed = sum(ended[i]["status"] != "done" for i in submitted)
    lat = [d - submitted[i] for d, i in zip(done, submitted, strict=True)]
    return summary(lat, max(done) - t0, failed), [str(ended[i]["text"] or "") for i in submitted]


def direct(asr_url: str, files: list[Path], in_flight: int) -> tuple[dict[str, Any], list[str]]:
    from twi_asr.client import TwiAsrClient

    local = threading.local()

    def one(path: Path) -> tuple[float, str]:
        if not hasattr(local, "client"):
            local.client = TwiAsrClient(asr_url, timeout=1800)
        text = local.client.transcribe(path).text
        return time.time(), text

    t0 = time.time()
    with ThreadPoolExecutor(in_flight) as pool:
        results = list(pool.map(one, files))
    done = [d for d, _ in results]
    return summary([d - t0 for d in done], max(done) - t0, 0), [t for _, t in results]


def measured(fn: Any, pids: list[int]) -> dict[str, Any]:
    """Run ``fn``; its row plus the CPU share of the machine other processes took meanwhile."""
    before, cpu0, t0 = cpu_snapshot(pids), [process_cpu_s(p) or 0.0 for p in pids], time.perf_counter()
    row, texts = fn()
    after, cpu1, wall = cpu_snapshot(pids), [process_cpu_s(p) or 0.0 for p in pids], time.perf_counter() - t0
    row["asr_cpu_s"], row["backend_cpu_s"] = (round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True))
    row["backend_cpu_vs_asr"] = round(row["backend_cpu_s"] / (row["asr_cpu_s"] or 1.0), 4)
    if before and after:
        others = (after[0] - before[0]) - (after[1] - before[1]) - (after[2] - before[2])
        row["others_cpu_share"] = round(max(0.0, others) / (wall * (os.cpu_count() or 1)), 3)
    row["texts"] = texts
    return row


def clip30(backend: Backend, asr_url: str, path: Path, runs: int) -> dict[str, Any]:
    """One 30 s clip at a time: backend submit->done vs a direct call, alternated, ``runs`` each."""
    from twi_asr.client import TwiAsrClient

    client = TwiAsrClient(asr_url, timeout=600)
    back: list[dict[str, float]] = []
    straight: list[float] = []
    for i in range(runs):
        for which in ("backend", "direct") if i % 2 == 0 else ("direct", "backend"):
            if which == "direct":
                t = time.perf_counter()
                client.transcribe(path)
                straight.append(time.perf_counter() - t)
                continue
            job_id, t_submit = backend.submit(path)
            while (job := backend.http.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
                time.sleep(0.05)
            seen = time.time()
            assert job["status"] == "done", job
            timings = job["timings"] or {}
            back.append({"done_s": epoch(job["finished_at"]) - t_submit, "seen_s": seen - t_submit,
                         **{k: float(timings.get(k, 0.0)) for k in ("queued_s", "asr_s")}})  # fmt: skip
    client.close()
    done, seen, direct_s = (median([b["done_s"] for b in back]), median([b["seen_s"] for b in back]),
                            median(straight))  # fmt: skip
    return {
        "runs": runs,
        "backend_done_median_s": round(done, 3),
        "backend_seen_median_s": round(seen, 3),
        "backend_queued_median_s": round(median([b["queued_s"] for b in back]), 3),
        "backend_asr_call_median_s": round(median([b["asr_s"] for b in back]), 3),
        "direct_median_s": round(direct_s, 3),
        "overhead": round(done / direct_s - 1, 4),
        "overhead_seen": round(seen / direct_s - 1, 4),
        "backend_done_s": [round(b["done_s"], 3) for b in back],
        "direct_s": [round(x, 3) for x in straight],
    }


def idle_cpu(pid: int, window_s: float = 10.0) -> float | None:
    """The share of one core an idle backend burns (its workers polling), over ``window_s``."""
    a, _, b = process_cpu_s(pid), time.sleep(window_s), process_cpu_s(pid)
    return None if a is None or b is None else round((b - a) / window_s, 3)


# --------------------------------------------------------------------------------------- main
def report(rows: list[dict[str, Any]], L: dict[str, Any], what: str) -> None:
    """The two tables: bulk cases, and the 30 s clip one at a time."""
    header = ["case", "path", "in flight", "jobs/min", "p50 s", "p95 s", "wall s", "overhead", "8000 CPU",
              "others"]  # fmt: skip
    body = [
        [r["case"], r["path"], str(r["in_flight"]), f"{r['jobs_per_min']:.1f}", f"{r['p50_s']:.2f}",
         f"{r['p95_s']:.2f}", f"{r['wall_s']:.1f}", f"{100 * r['overhead']:+.1f}%" if "overhead" in r else "",
         f"{100 * r['backend_cpu_vs_asr']:.1f}%", f"{100 * r.get('others_cpu_share', 0):.0f}%"]
        for r in rows
    ]  # fmt: skip
    print_cells(header, body, f"backend (8000) vs direct (8001), {what}", left=2)
    pct = {k: f"{100 * L[k]:+.1f}%" for k in ("overhead", "overhead_seen")}
    print_cells(
        ["30 s clip, one at a time", "median s", "overhead"],
        [["direct to 8001", f"{L['direct_median_s']:.3f}", ""],
         ["backend submit->done", f"{L['backend_done_median_s']:.3f}", pct["overhead"]],
         ["backend, seen by a 50 ms poll", f"{L['backend_seen_median_s']:.3f}", pct["overhead_seen"]]],
        f"median of {L['runs']} runs each (goal: overhead under 10%); backend queued "
        f"{L['backend_queued_median_s']:.2f} s, its 8001 call {L['backend_asr_call_median_s']:.2f} s",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="20 clips, one 5-minute file, 3 runs of the 30 s clip"
    )
    p.add_argument("--poll", type=float, default=0.5, help="seconds between job-list polls (bulk cases)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    n_short, n_long, runs = (20, 1, 3) if args.quick else (100, 3, 10)
    shorts, longs, c30 = build_corpus(n_short, n_long)
    folder = Path(tempfile.mkdtemp(prefix="bench-backend-"))
    load_before = os.getloadavg()[0]
    server = start_server("asr", [], folder, clean_env())
    rows: list[dict[str, Any]] = []
    backends: list[dict[str, Any]] = []
    latency30: dict[str, Any] = {}
    try:
        import httpx

        card = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]
        direct(server.url, shorts[:4], 1)  # warm-up
        cases = [(f"{len(shorts)} short (3-6 s)", shorts), (f"{len(longs)} x 5 min", longs)]
        for n in (1, 2):
            print(f"backend with {n} worker(s) ...", file=sys.stderr, flush=True)
            backend = Backend(server.url, n, folder)
            try:
                backends.append(
                    {"workers": n, "command": backend.command, "idle_cpu": idle_cpu(backend.proc.pid)}
                )
                via_backend(backend, shorts[:2], args.poll)  # warm-up
                pids = [server.pid, backend.proc.pid]
                for case, files in cases:
                    paths = {"backend": lambda f=files: via_backend(backend, f, args.poll),  # noqa: B023
                             "direct": lambda f=files: direct(server.url, f, n)}  # noqa: B023  # fmt: skip
                    order = ("backend", "direct") if n == 1 else ("direct", "backend")  # drift hits both
                    got = {k: measured(paths[k], pids) for k in order}
                    b, d = got["backend"], got["direct"]
                    b["overhead"] = round(b["wall_s"] / d["wall_s"] - 1, 4)
                    b["same_text"] = sum(x == y for x, y in zip(b.pop("texts"), d.pop("texts"), strict=True))
                    rows += [{"case": case, "path": f"backend, {n} worker(s)", "in_flight": n, **b},
                             {"case": case, "path": "direct to 8001", "in_flight": n, **d}]  # fmt: skip
                    print(f"  {case}: backend {b['wall_s']} s, direct {d['wall_s']} s", file=sys.stderr)
                if n == 2:
                    latency30 = clip30(backend, server.url, c30, runs)
            finally:
                backend.stop()
    finally:
        stop_server(server)
    report(rows, latency30, f"tiny.en {card['engine']}, CPU x{os.cpu_count()}")
    write_json(
        args.json,
        {
            "benchmark": "backend",
            "date_utc": utc_now(),
            "command": shlex.join([sys.executable, *sys.argv]),
            "machine": machine_info() | {"load_1m_before": round(load_before, 2)},
            "versions": package_versions(
                ("twi-asr", "ctranslate2", "faster-whisper", "fastapi", "sqlalchemy")
            ),
            "settings": {
                "asr": server.command,
                "model_card": card,
                "backends": backends,
                "backend_env": "TWI_ASR_WORKERS=1|2, TWI_ASR_MAX_CONCURRENT_JOBS=10000; SQLite, local folder",
                "short_clips": len(shorts),
                "short_audio_s": round(sum(map(seconds, shorts)), 1),
                "long_files": len(longs),
                "long_s": LONG_S,
                "client_poll_s": args.poll,
                "timing": "in-process (time.time / perf_counter); backend 'done' = the job's finished_at",
                "note": "shared machine: others_cpu_share is the CPU other processes took during a row",
            },
            "targets": {"clip30_overhead_max": 0.10},
            "rows": rows,
            "clip30": latency30,
        },
    )
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
