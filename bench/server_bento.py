"""Benchmark: ``twi-asr serve`` against the BentoML service over the same engine, same clips, one run.

What it measures. The same tiny.en CTranslate2 weights served three ways at once on loopback:
``twi-asr serve`` with its defaults (batching on: 8 clips, 20 ms; two engine lanes on a
multi-core CPU), and ``bentoml serve twi_asr.bento:TwiAsr`` with one worker process (all
cores) and with two (a model copy each, half the cores each: BentoML's own way to use more
cores). Each is driven with the clips of ``bench/server_load.py`` at 1, 4, 8 and 16
closed-loop clients, ``--requests`` per level. Only one server runs at a time (an idle BentoML
keeps its supervisor busy, which would tax whichever server is measured): for each level every
server is started, warmed up untimed, measured and stopped, the servers taking turns level by
level so drift hits all alike.

Per row: throughput (audio s per wall s), p50/p95 latency, the mean engine batch (ours:
``twi_asr_batch_size``; BentoML: ``bentoml_service_adaptive_batch_size``), peak RSS of the
server's whole process tree (the sum of every process's ``VmHWM``, reset before each level:
an upper bound on the tree's peak, the same method for both), the tree's CPU use and the
corpus WER of the answers.

Target checked: ``twi-asr serve`` at least 1.2x the best BentoML configuration's throughput
at 8 clients, with a p95 latency no worse. Results go to ``bench/results/server_bento.json``.

Run: ``python bench/server_bento.py [--requests N] [--levels 1,4,8,16]`` (needs twi-asr[bentoml]).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    clean_env,
    machine_info,
    package_versions,
    print_cells,
    utc_now,
    warn_if_busy,
    write_json,
)
from server_load import drive, free_port, peak_rss_kib, percentile, process_cpu_s, reset_peak_rss
from transcribe_folder import DEFAULT_CACHE, Clip, build_corpus

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "server_bento.json"
DISTRIBUTIONS = ("twi-asr", "bentoml", "ctranslate2", "faster-whisper", "fastapi", "uvicorn", "httpx")
MODEL = "tiny.en"
READY_TIMEOUT_S = 240.0
TARGET_CLIENTS, TARGET_FACTOR = 8, 1.2
OURS = "twi-asr serve"


@dataclass
class Served:
    """One running server: what it is, where it listens, its process, the metric of its batches."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    command: str
    batch_metric: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start(name: str, cmd: list[str], ready: str, env: dict[str, str], log_dir: Path, metric: str) -> Served:
    """Start ``cmd`` in its own process group and wait until ``ready`` answers 200."""
    import httpx

    port = int(cmd[cmd.index("--port") + 1])
    log = log_dir / (re.sub(r"\W+", "-", name) + ".log")
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    served = Served(name, f"http://127.0.0.1:{port}", proc, log, shlex.join(cmd[2:]), metric)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(served.url + ready, timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise SystemExit(f"{name} not ready in {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (``/proc/*/stat`` parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(rest[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def batches(served: Served) -> tuple[float, float]:
    """(count, sum) of the server's batch-size histogram, summed over its label sets."""
    import httpx

    text = httpx.get(served.url + "/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " "))
        )

    # Prometheus' multiprocess mode (BentoML's) writes no _count: the +Inf bucket is the count.
    inf = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(served.batch_metric + "_bucket{") and 'le="+Inf"' in line
    )
    return inf, total(served.batch_metric + "_sum")


@dataclass
class Row:
    """One server at one number of concurrent clients."""

    server: str
    clients: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    throughput: float
    latency_p50_s: float
    latency_p95_s: float
    mean_batch_size: float | None
    peak_rss_mib: float | None
    processes: int
    server_cpu_cores: float | None
    wer: float
    vs_ours: float | None = None
    error_samples: list[str] = field(default_factory=list)


def measure(served: Served, clips: list[Clip], payloads: list[bytes], clients: int, requests: int) -> Row:
    """One level on one server."""
    from twi_asr.text import wer

    pids = tree(served.proc.pid)
    for p in pids:
        reset_peak_rss(p)
    cpu0 = [process_cpu_s(p) for p in pids]
    count0, sum0 = batches(served)
    wall, results = drive(served.url, clips, payloads, clients, requests)
    count1, sum1 = batches(served)
    cpu1 = [process_cpu_s(p) for p in pids]
    rss = [peak_rss_kib(p) for p in pids]
    used = sum(b - a for a, b in zip(cpu0, cpu1, strict=True) if a is not None and b is not None)
    good = [(k, text) for k, _, text, _ in results if text is not None]
    errors = [err for _, _, text, err in results if text is None]
    latencies = [lat for _, lat, _, _ in results]
    n = count1 - count0
    return Row(
        server=served.name,
        clients=clients,
        requests=requests,
        ok=len(good),
        errors=len(errors),
        wall_s=round(wall, 3),
        throughput=round(sum(clips[k].seconds for k, _ in good) / wall, 3),
        latency_p50_s=round(percentile(latencies, 50), 3),
        latency_p95_s=round(percentile(latencies, 95), 3),
        mean_batch_size=round((sum1 - sum0) / n, 2) if n else None,
        peak_rss_mib=round(sum(r for r in rss if r) / 1024.0, 1) if any(rss) else None,
        processes=len(pids),
        server_cpu_cores=round(used / wall, 2),
        wer=round(wer([clips[k].text for k, _ in good], [t for _, t in good]), 4) if good else 1.0,
        error_samples=errors[:3],
    )


def target_check(rows: list[Row]) -> dict[str, Any]:
    """Ours at 8 clients >= 1.2x the best BentoML row's throughput, p95 no worse."""
    at = [r for r in rows if r.clients == TARGET_CLIENTS]
    ours = next((r for r in at if r.server == OURS), None)
    theirs = [r for r in at if r.server != OURS]
    if ours is None or not theirs:
        return {"checked": False, "reason": f"{TARGET_CLIENTS} clients not measured on both"}
    best = max(theirs, key=lambda r: r.throughput)
    factor = ours.throughput / best.throughput if best.throughput else 0.0
    p95_ok = ours.latency_p95_s <= best.latency_p95_s
    return {
        "checked": True,
        "description": f"{OURS} >= {TARGET_FACTOR:g}x the best BentoML throughput at "
        f"{TARGET_CLIENTS} clients, p95 no worse",
        "best_bentoml": best.server,
        "factor": round(factor, 2),
        "p95_ours_s": ours.latency_p95_s,
        "p95_bentoml_s": best.latency_p95_s,
        "met": factor >= TARGET_FACTOR and p95_ok,
    }


def print_rows(rows: list[Row], title: str) -> None:
    header = ["clients", "server", "audio s/s", "vs ours", "p50 s", "p95 s", "mean batch", "peak RSS MiB",
              "procs", "CPU cores", "WER", "errors"]  # fmt: skip

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    body = [
        [str(r.clients), r.server, f"{r.throughput:.2f}", f(r.vs_ours, ".2f") + ("x" if r.vs_ours else ""),
         f"{r.latency_p50_s:.2f}", f"{r.latency_p95_s:.2f}", f(r.mean_batch_size, ".1f"),
         f(r.peak_rss_mib, ".0f"), str(r.processes), f(r.server_cpu_cores, ".2f"), f"{r.wer:.2%}",
         str(r.errors)]
        for r in sorted(rows, key=lambda r: (r.clients, r.server != OURS, r.server))
    ]  # fmt: skip
    print_cells(header, body, title, left=2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="twi-asr serve vs the BentoML service, same engine and clips.")
    p.add_argument("--requests", type=int, default=32, help="requests per level and server")
    p.add_argument("--levels", default="1,4,8,16", help="concurrent clients per level, comma-separated")
    p.add_argument("--bento-workers", default="1,2", help="BentoML worker counts to serve, comma-separated")
    p.add_argument("--ours-flags", default="", help="extra twi-asr serve flags, e.g. '--max-batch-size 4'")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the clips are cached")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    args = p.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    args.bento_workers = [int(x) for x in args.bento_workers.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clips = build_corpus(args.cache_dir.resolve() / "clips")
    payloads = [c.path.read_bytes() for c in clips]
    log_dir = Path(tempfile.mkdtemp(prefix="bench-bento-"))
    env = {**clean_env(("TWI_ASR_", "BENTOML_")), "BENTOML_HOME": str(log_dir / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    py = [sys.executable, "-m"]
    configs: list[tuple[str, list[str], str, dict[str, str], str]] = [
        (OURS, [*py, "twi_asr", "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", "{port}",
                "--log-text", *shlex.split(args.ours_flags)], "/ready", env, "twi_asr_batch_size"),
    ]  # fmt: skip
    for workers in args.bento_workers:
        cmd = [*py, "bentoml", "serve", "twi_asr.bento:TwiAsr", "--host", "127.0.0.1", "--port", "{port}"]
        wenv = {**env, "TWI_ASR_MODEL": MODEL, "TWI_ASR_BENTO_WORKERS": str(workers)}
        name = f"bentoml, {workers} worker{'s' if workers > 1 else ''}"
        configs.append((name, cmd, "/readyz", wenv, "bentoml_service_adaptive_batch_size"))
    rows: list[Row] = []
    commands: dict[str, str] = {}
    load_before = os.getloadavg()[0]
    warn_if_busy(load_before)
    # One server alive at a time (an idle BentoML still spends CPU in its supervisor), each level
    # on a fresh start after an untimed warm-up, the servers taking turns level by level.
    for clients in args.levels:
        for name, cmd, ready, cenv, metric in configs:
            port = str(free_port())
            served = start(name, [port if c == "{port}" else c for c in cmd], ready, cenv, log_dir, metric)
            commands[name] = served.command
            try:
                drive(served.url, clips, payloads, 1, 2)
                drive(served.url, clips, payloads, 8, 16)
                print(f"{name}: {clients} clients x {args.requests} requests", file=sys.stderr, flush=True)
                rows.append(measure(served, clips, payloads, clients, args.requests))
            finally:
                served.stop()
    ours = {r.clients: r.throughput for r in rows if r.server == OURS}
    for r in rows:
        if ours.get(r.clients):
            r.vs_ours = round(r.throughput / ours[r.clients], 2)
    title = (f"twi-asr serve vs BentoML, {MODEL} (CTranslate2 int8, beam 5), {len(clips)} clips, "
             f"{args.requests} requests per row, CPU x{os.cpu_count()}")  # fmt: skip
    print_rows(rows, title)
    target = target_check(rows)
    verdict = "target not checked"
    if target.get("checked"):
        verdict = (
            f"ours / best BentoML at {TARGET_CLIENTS} clients {target['factor']:.2f}x "
            f"(needs {TARGET_FACTOR}x), "
            f"p95 {target['p95_ours_s']:.2f} vs {target['p95_bentoml_s']:.2f} s: "
            + ("met" if target["met"] else "NOT met")
        )
    write_json(args.json, {
        "benchmark": "server_bento",
        "date_utc": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {"model": MODEL, "clips": len(clips), "requests_per_row": args.requests,
                     "levels": args.levels, "server_commands": commands,
                     "load_average_1m_before": round(load_before, 2),
                     "peak_rss": "sum of VmHWM over the server's process tree, reset before each row"},
        "rows": [asdict(r) for r in rows],
        "target": target,
        "summary": verdict,
    })  # fmt: skip
    print(f"results: {args.json}")
    print(verdict)
    return 0 if all(r.errors == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
