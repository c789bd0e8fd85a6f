"""Benchmark: the HTTP server under concurrent load, request batching on vs. off.

What it measures. ``twi-asr serve`` gathers concurrent requests into engine
batches (up to ``--max-batch-size`` clips, waiting ``--max-wait-ms`` for
company). This script starts the server twice from the same build, once with
the default flags (batching on) and once with ``--no-batching`` (one clip per
engine call), and drives both with the same clips at 1, 4, 8 and 16
concurrent clients: a fixed number of requests per level (``--requests``,
default 32), each client sending its next request as soon as the previous one
is answered (closed loop).

Per row: throughput in audio seconds per wall second, requests per second,
p50/p95 latency, the mean engine batch size (from the server's own
``twi_asr_batch_size`` histogram), the server's peak RSS during that level
(``VmHWM`` of ``/proc/PID/status``, reset through ``/proc/PID/clear_refs``
before each level where the kernel allows it) and the corpus WER of the
answers (batching must not cost accuracy). Results go to
``bench/results/server_load.json``.

Fairness. Both servers run at once but only one is loaded at a time; levels
alternate between them (on, off, on, off ...) so that drift on the machine
hits both alike. Each server gets an untimed warm-up first. The client is
this process (httpx in threads): on a small machine it shares the CPU with
the server, like any real client on the same host would; its cost is the
same for both modes. Same clips as ``bench/transcribe_folder.py`` (20
espeak-ng English sentences, 2-6 s, cached in ``bench/.cache/clips``), same
tiny.en CTranslate2 weights, the server's defaults otherwise (beam 5, int8).

Target checked and reported: with batching on, throughput at 8 clients is at
least twice the 1-client figure.

Run: ``python bench/server_load.py [--requests N] [--levels 1,4,8,16]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
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
    warn_if_busy,
    write_json,
)
from transcribe_folder import DEFAULT_CACHE, Clip, build_corpus

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "server_load.json"
DISTRIBUTIONS = ("twi-asr", "ctranslate2", "faster-whisper", "fastapi", "uvicorn", "httpx")
MODEL = "tiny.en"
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 300.0
MODES = (("batching on", []), ("batching off", ["--no-batching"]))
TARGET_CLIENTS, TARGET_FACTOR = 8, 2.0


# --------------------------------------------------------------------------- server process
@dataclass
class ServerProcess:
    """A running ``twi-asr serve`` and where it writes its log."""

    mode: str
    flags: list[str]
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    command: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(mode: str, flags: list[str], log_dir: Path, env: dict[str, str]) -> ServerProcess:
    """Start ``python -m twi_asr serve --model tiny.en`` and wait until /ready says 200."""
    import httpx

    port = free_port()
    log = log_dir / f"server-{mode.replace(' ', '-')}.log"
    cmd = [sys.executable, "-m", "twi_asr", "serve", "--model", MODEL,
           "--host", "127.0.0.1", "--port", str(port), "--log-text", *flags]  # fmt: skip
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    shown = shlex.join(["twi-asr", *cmd[3:]])
    server = ServerProcess(mode, flags, f"http://127.0.0.1:{port}", proc, log, shown)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{mode} server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise SystemExit(
                f"{mode} server not ready in {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-2000:]}"
            )
        time.sleep(0.1)


def stop_server(server: ServerProcess) -> None:
    """SIGTERM, then SIGKILL if it will not go."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_kib(pid: int) -> int | None:
    """``VmHWM`` of ``/proc/PID/status`` in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ticks_to_s(ticks: int) -> float:
    return ticks / float(os.sysconf("SC_CLK_TCK"))


def machine_busy_s() -> float | None:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return _ticks_to_s(user + nice + system + irq + softirq + steal)


def process_cpu_s(pid: int | str) -> float | None:
    """User + system CPU seconds of one process (``/proc/PID/stat``)."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return _ticks_to_s(int(rest[11]) + int(rest[12]))
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(pids: list[int]) -> tuple[float, float, float] | None:
    """(machine busy, our servers, this process) CPU seconds, to tell our load from others'."""
    busy, me = machine_busy_s(), process_cpu_s("self")
    servers = [process_cpu_s(p) for p in pids]
    if busy is None or me is None or any(x is None for x in servers):
        return None
    return busy, sum(x for x in servers if x is not None), me


def batch_histogram(url: str) -> tuple[float, float]:
    """(count, sum) of the server's ``twi_asr_batch_size`` histogram."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text

    def sample(name: str) -> float:
        m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    return sample("twi_asr_batch_size_count"), sample("twi_asr_batch_size_sum")


# --------------------------------------------------------------------------- load
@dataclass
class Row:
    """One measured level: a mode at a number of concurrent clients."""

    mode: str
    batching: bool
    clients: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    audio_s: float
    throughput: float
    """Audio seconds transcribed per wall second."""
    requests_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    mean_batch_size: float | None
    peak_rss_mib: float | None
    wer: float
    server_cpu_cores: float | None
    """CPU seconds the loaded server used per wall second (2.0 = both cores of a 2-core machine)."""
    client_cpu_cores: float | None
    """The same for this process (the clients)."""
    other_cpu_cores: float | None
    """The same for everything else on the machine: other work that skews the numbers."""
    speedup_vs_1_client: float | None = None
    vs_batching_off: float | None = None
    error_samples: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def drive(
    url: str, clips: list[Clip], payloads: list[bytes], clients: int, requests: int
) -> tuple[float, list[tuple[int, float, str | None, str]]]:
    """Send ``requests`` requests from ``clients`` closed-loop clients.

    Returns the wall time and, per request, (clip index, latency, text or None, error or "").
    """
    import httpx

    counter = iter(range(requests))
    lock = threading.Lock()
    results: list[tuple[int, float, str | None, str]] = []
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:

        def client() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                k = i % len(clips)
                t0 = time.perf_counter()
                try:
                    r = http.post(
                        "/v1/audio/transcriptions",
                        files={"file": (clips[k].path.name, payloads[k], "audio/wav")},
                        data={"response_format": "json"},
                    )
                    latency = time.perf_counter() - t0
                    if r.status_code == 200:
                        out: tuple[int, float, str | None, str] = (k, latency, r.json()["text"], "")
                    else:
                        out = (k, latency, None, f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    out = (k, time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}")
                with lock:
                    results.append(out)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for f in [pool.submit(client) for _ in range(clients)]:
                f.result()
        wall = time.perf_counter() - start
    return wall, results


def measure(
    server: ServerProcess,
    clips: list[Clip],
    payloads: list[bytes],
    clients: int,
    requests: int,
    all_pids: list[int],
) -> tuple[Row, bool]:
    """One level on one server; the bool says whether the peak RSS is this level's own."""
    from twi_asr.text import wer

    own_peak = reset_peak_rss(server.pid)
    count0, sum0 = batch_histogram(server.url)
    cpu0, srv0 = cpu_snapshot(all_pids), process_cpu_s(server.pid)
    wall, results = drive(server.url, clips, payloads, clients, requests)
    cpu1, srv1 = cpu_snapshot(all_pids), process_cpu_s(server.pid)
    count1, sum1 = batch_histogram(server.url)
    server_cores = client_cores = other_cores = None
    if cpu0 and cpu1 and srv0 is not None and srv1 is not None:
        busy, ours, me = (b - a for a, b in zip(cpu0, cpu1, strict=True))
        server_cores = round((srv1 - srv0) / wall, 2)
        client_cores = round(me / wall, 2)
        other_cores = round(max(0.0, busy - ours - me) / wall, 2)
    rss = peak_rss_kib(server.pid)
    good = [(k, lat, text) for k, lat, text, err in results if text is not None]
    errors = [err for _, _, text, err in results if text is None]
    audio = sum(clips[k].seconds for k, _, _ in good)
    latencies = [lat for _, lat, _, _ in results]
    batches = count1 - count0
    return Row(
        mode=server.mode,
        batching="--no-batching" not in server.flags,
        clients=clients,
        requests=requests,
        ok=len(good),
        errors=len(errors),
        wall_s=round(wall, 3),
        audio_s=round(audio, 2),
        throughput=round(audio / wall, 3),
        requests_per_s=round(len(good) / wall, 3),
        latency_p50_s=round(percentile(latencies, 50), 3),
        latency_p95_s=round(percentile(latencies, 95), 3),
        latency_max_s=round(max(latencies), 3),
        mean_batch_size=round((sum1 - sum0) / batches, 2) if batches else None,
        peak_rss_mib=round(rss / 1024.0, 1) if rss is not None else None,
        wer=round(wer([clips[k].text for k, _, _ in good], [t for _, _, t in good]), 4) if good else 1.0,
        server_cpu_cores=server_cores,
        client_cpu_cores=client_cores,
        other_cpu_cores=other_cores,
        error_samples=errors[:3],
    ), own_peak


def warm_up(server: ServerProcess, clips: list[Clip], payloads: list[bytes]) -> None:
    """Untimed: a few requests alone and in a crowd, so lazy initialisation is not timed."""
    drive(server.url, clips, payloads, 1, 2)
    drive(server.url, clips, payloads, 8, 16)


# --------------------------------------------------------------------------- report
def finish_rows(rows: list[Row]) -> None:
    """Fill in speed-up vs. the same mode at 1 client, and batching on vs. off at the same level."""
    one = {r.mode: r.throughput for r in rows if r.clients == 1}
    off = {r.clients: r.throughput for r in rows if not r.batching}
    for r in rows:
        if r.mode in one and one[r.mode] > 0:
            r.speedup_vs_1_client = round(r.throughput / one[r.mode], 2)
        if r.batching and off.get(r.clients):
            r.vs_batching_off = round(r.throughput / off[r.clients], 2)


def table_cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the results table."""
    header = ["clients", "mode", "audio s/s", "x 1 client", "on/off", "req/s", "p50 s", "p95 s",
              "mean batch", "peak RSS MiB", "WER", "errors", "CPU srv/cli/other"]  # fmt: skip

    def f(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    body = [
        [str(r.clients), r.mode, f"{r.throughput:.2f}", f(r.speedup_vs_1_client, ".2f") + "x",
         f(r.vs_batching_off, ".2f") + ("x" if r.vs_batching_off is not None else ""),
         f"{r.requests_per_s:.2f}", f"{r.latency_p50_s:.2f}", f"{r.latency_p95_s:.2f}",
         f(r.mean_batch_size, ".1f"), f(r.peak_rss_mib, ".0f"), f"{r.wer:.2%}", str(r.errors),
         "/".join(f(x, ".1f") for x in (r.server_cpu_cores, r.client_cpu_cores, r.other_cpu_cores))]
        for r in rows
    ]  # fmt: skip
    return header, body


def print_table(rows: list[Row], title: str) -> None:
    """The result table, ours next to the reference."""
    header, body = table_cells(rows)
    print_cells(header, body, title, left=2)


def target_check(rows: list[Row]) -> dict[str, Any]:
    """Batching on: throughput at 8 clients >= 2x the 1-client figure."""
    on = {r.clients: r for r in rows if r.batching}
    if 1 not in on or TARGET_CLIENTS not in on:
        return {"checked": False, "reason": f"levels 1 and {TARGET_CLIENTS} were not both measured"}
    factor = on[TARGET_CLIENTS].throughput / on[1].throughput if on[1].throughput else 0.0
    return {
        "checked": True,
        "description": f"batching on: throughput at {TARGET_CLIENTS} clients >= {TARGET_FACTOR:g}x 1 client",
        "throughput_1_client": on[1].throughput,
        f"throughput_{TARGET_CLIENTS}_clients": on[TARGET_CLIENTS].throughput,
        "factor": round(factor, 2),
        "met": factor >= TARGET_FACTOR,
    }


def one_line_summary(rows: list[Row], target: dict[str, Any]) -> str:
    """The headline numbers in one line."""
    parts = []
    for clients in sorted({r.clients for r in rows}):
        on = next((r for r in rows if r.clients == clients and r.batching), None)
        off = next((r for r in rows if r.clients == clients and not r.batching), None)
        if on and off:
            parts.append(f"{clients} clients {on.throughput:.1f} vs {off.throughput:.1f} audio s/s")
    verdict = (
        f"target (8 clients >= 2x 1 client, batching on): {target['factor']:.2f}x, "
        + ("met" if target["met"] else "NOT met")
        if target.get("checked")
        else "target not checked"
    )
    return "server_load: batching on vs off: " + "; ".join(parts) + f"; {verdict}"


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Load the twi-asr server (tiny.en) at several client counts, batching on vs. off.",
    )
    p.add_argument("--requests", type=int, default=32, help="requests per level and mode")
    p.add_argument("--levels", default="1,4,8,16", help="concurrent clients per level, comma-separated")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the clips are cached")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument("--rebuild", action="store_true", help="regenerate the clips")
    p.add_argument("--keep-logs", action="store_true", help="print where the server logs are and keep them")
    args = p.parse_args(argv)
    try:
        args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        p.error("--levels takes integers, e.g. 1,4,8,16")
    if args.requests < 1 or not args.levels or min(args.levels) < 1:
        p.error("--requests and every level must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the clips, start both servers, measure every level, print and write the results."""
    args = parse_args(argv)
    clips = build_corpus(args.cache_dir.resolve() / "clips", rebuild=args.rebuild)
    payloads = [c.path.read_bytes() for c in clips]
    env = clean_env()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    servers: list[ServerProcess] = []
    rss_own: list[bool] = []
    rows: list[Row] = []
    try:
        for mode, flags in MODES:
            print(f"starting the server, {mode} ...", file=sys.stderr, flush=True)
            servers.append(start_server(mode, flags, log_dir, env))
        for server in servers:
            warm_up(server, clips, payloads)
        load_before = os.getloadavg()[0]
        warn_if_busy(load_before)
        for clients in args.levels:
            for server in servers:
                print(f"{server.mode}: {clients} clients x {args.requests} requests ...", file=sys.stderr,
                      flush=True)  # fmt: skip
                row, own = measure(server, clips, payloads, clients, args.requests, [s.pid for s in servers])
                rows.append(row)
                rss_own.append(own)
        commands = {s.mode: s.command for s in servers}
    finally:
        for server in servers:
            stop_server(server)
        if args.keep_logs:
            print(f"server logs: {log_dir}", file=sys.stderr)
        else:
            for log in log_dir.glob("*.log"):
                log.unlink()
            log_dir.rmdir()
    finish_rows(rows)
    mean_clip = sum(c.seconds for c in clips) / len(clips)
    title = (
        f"twi-asr serve, {MODEL} (CTranslate2 int8, beam 5), {len(clips)} clips of "
        f"{min(c.seconds for c in clips):.1f}-{max(c.seconds for c in clips):.1f} s, "
        f"{args.requests} requests per row, CPU x{os.cpu_count()}"
    )
    print_table(rows, title)
    target = target_check(rows)
    peak_rss_method = (
        "VmHWM of /proc/PID/status, reset with /proc/PID/clear_refs before each row"
        if all(rss_own)
        else "VmHWM of /proc/PID/status since the server started (clear_refs not allowed)"
    )
    payload: dict[str, Any] = {
        "benchmark": "server_load",
        "date_utc": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": {**machine_info(), "peak_rss_method": peak_rss_method},
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {
            "model": MODEL,
            "clips": len(clips),
            "clip_seconds_mean": round(mean_clip, 2),
            "clip_seconds_median": round(median([c.seconds for c in clips]), 2),
            "requests_per_row": args.requests,
            "levels": args.levels,
            "client": "httpx in threads, closed loop, in the benchmark process on the same machine",
            "server_commands": commands,
            "load_average_1m_before": round(load_before, 2),
            "peak_rss": peak_rss_method,
            "warmup": "2 requests alone, then 16 from 8 clients, per server, untimed",
        },
        "rows": [asdict(r) for r in rows],
        "target": target,
    }
    others = [r.other_cpu_cores for r in rows if r.other_cpu_cores is not None]
    payload["max_other_cpu_cores"] = max(others) if others else None
    summary = one_line_summary(rows, target)
    if others and max(others) > 0.2:
        note = f"other processes used up to {max(others):.1f} CPU cores during the rows: numbers are skewed"
        print(f"warning: {note}", file=sys.stderr)
        summary += f" ({note})"
    payload["summary"] = summary
    write_json(args.json, payload)
    print(f"results: {args.json}")
    print(summary)
    return 0 if all(r.errors == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
