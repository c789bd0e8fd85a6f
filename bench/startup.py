"""Benchmark: start-up costs and the server's memory.

What it measures, each as whole processes on this machine:

* ``twi-asr --help`` and ``twi-asr transcribe --help``: wall time and peak RSS (target: under
  0.3 s; the CLI imports no torch, transformers, ctranslate2 or numpy for that);
* model load, in a child that reports its own split: importing ``twi_asr``, then
  ``load_transcriber("tiny.en", engine=...)`` (imports of the engine's libraries included), then
  the first transcript of a 3 s clip (first-call costs included), for each engine;
* the first transcript from the CLI: ``twi-asr transcribe clip.wav --model ...``, start to exit;
* the server: ``twi-asr serve --model tiny.en``: seconds to ``/ready``, the first request's
  latency, and the process's RSS after that request (``VmRSS``) and its peak (``VmHWM``), from
  ``/proc`` (target: under 1 GiB). The same for the transformers engine (informational).

Median of ``--repeat`` runs for the timings. Results: ``bench/results/startup.json``, with the
machine, versions and date; a one-line summary on stdout.

Run: ``python bench/startup.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    clean_env,
    machine_info,
    median,
    package_versions,
    print_cells,
    run_process,
    utc_now,
    warn_if_busy,
    write_json,
)
from server_load import free_port
from transcribe_folder import build_corpus, tiny_en_ct2, tiny_en_hf, twi_asr_executable

DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "startup.json"
DISTRIBUTIONS = ("twi-asr", "typer", "rich", "torch", "transformers", "ctranslate2", "faster-whisper")
HELP_TARGET_S = 0.3
SERVER_RSS_TARGET_MIB = 1024.0
READY_TIMEOUT_S = 180.0

# argv: model engine clip; prints one JSON line with its own timings (seconds)
LOAD_SCRIPT = """\
import json, sys, time
t0 = time.perf_counter()
import twi_asr
t1 = time.perf_counter()
from twi_asr import decode_audio, load_transcriber
asr = load_transcriber(sys.argv[1], engine=sys.argv[2])
t2 = time.perf_counter()
[r] = asr.transcribe([decode_audio(sys.argv[3]).samples])
t3 = time.perf_counter()
print(json.dumps({"import_twi_asr_s": t1 - t0, "load_s": t2 - t1, "first_transcript_s": t3 - t2,
                  "text": r.text}))
"""


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> dict[str, Any]:
    """Median wall time and highest peak RSS of ``repeat`` runs of ``cmd``."""
    runs = [run_process(cmd, env=env, timeout_s=600) for _ in range(repeat)]
    rss = [r.peak_rss_kib for r in runs if r.peak_rss_kib is not None]
    return {
        "command": shlex.join(cmd),
        "wall_s": round(median([r.wall_s for r in runs]), 3),
        "walls_s": [round(r.wall_s, 3) for r in runs],
        "peak_rss_mib": round(max(rss) / 1024, 1) if rss else None,
        "exit_codes": [r.returncode for r in runs],
    }


def load_split(model: str, engine: str, clip: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    """The child's own import / load / first-transcript seconds (medians) for one engine."""
    splits: list[dict[str, Any]] = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT, model, engine, str(clip)],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        splits.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("import_twi_asr_s", "load_s", "first_transcript_s")
    return {k: round(median([s[k] for s in splits]), 3) for k in keys} | {"text": splits[-1]["text"]}


def vm_kib(pid: int, field: str) -> int | None:
    """A ``/proc/PID/status`` field (VmRSS, VmHWM) in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it will not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def server_row(model: str, engine: str, clip: Path, env: dict[str, str], logs: Path) -> dict[str, Any]:
    """Start the server, time /ready and the first request, read its RSS, stop it."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "twi_asr", "serve", "--model", model, "--engine", engine,
           "--host", "127.0.0.1", "--port", str(port), "--log-text"]  # fmt: skip
    log = logs / f"server-{engine}.log"
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > READY_TIMEOUT_S:
                raise SystemExit(f"server not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        rss_ready = vm_kib(proc.pid, "VmRSS")
        t1 = time.perf_counter()
        with clip.open("rb") as f:
            resp = httpx.post(url + "/v1/audio/transcriptions", files={"file": (clip.name, f, "audio/wav")},
                              data={"model": "whisper-1"}, timeout=300)  # fmt: skip
        first = time.perf_counter() - t1
        resp.raise_for_status()
        rss, hwm = vm_kib(proc.pid, "VmRSS"), vm_kib(proc.pid, "VmHWM")
    finally:
        stop(proc)
    return {
        "command": shlex.join(["twi-asr", *cmd[3:]]),
        "ready_s": round(ready, 3),
        "first_request_s": round(first, 3),
        "rss_ready_mib": round(rss_ready / 1024, 1) if rss_ready else None,
        "rss_after_request_mib": round(rss / 1024, 1) if rss else None,
        "peak_rss_mib": round(hwm / 1024, 1) if hwm else None,
        "text": resp.json().get("text", ""),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="runs per timing; the median is reported")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="clips and converted weights")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Time everything, print a table, write the JSON results."""
    args = parse_args(argv)
    clip = build_corpus(args.cache_dir / "clips")[0].path
    ct2 = tiny_en_ct2()
    hf = tiny_en_hf(ct2, args.cache_dir / "tiny-en-hf")
    env = clean_env()
    cli = twi_asr_executable()
    subprocess.run([cli, "--help"], env=env, capture_output=True, check=False)  # page cache, untimed
    load_before = os.getloadavg()[0]
    warn_if_busy(load_before)
    engines = {"ctranslate2": str(ct2), "transformers": str(hf)}
    help_rows = {
        "twi-asr --help": timed([cli, "--help"], env, max(5, args.repeat)),
        "twi-asr transcribe --help": timed([cli, "transcribe", "--help"], env, max(5, args.repeat)),
    }
    loads = {e: load_split(m, e, clip, env, args.repeat) for e, m in engines.items()}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        first_cli = {
            e: timed([cli, "transcribe", str(clip), "--model", m, "--engine", e, "-o", str(Path(tmp) / e)],
                     env, args.repeat)
            for e, m in engines.items()
        }  # fmt: skip
        servers = {
            "ctranslate2": server_row("tiny.en", "ctranslate2", clip, env, Path(tmp)),
            "transformers": server_row(str(hf), "transformers", clip, env, Path(tmp)),
        }
    load_after = os.getloadavg()[0]

    body = [[name, f"{r['wall_s']:.3f}", f"{r['peak_rss_mib']:.0f}", "-"] for name, r in help_rows.items()]
    for e, s in loads.items():
        body.append(
            [
                f"{e}: import twi_asr / load_transcriber / first transcript (in process)",
                f"{s['import_twi_asr_s']:.2f} / {s['load_s']:.2f} / {s['first_transcript_s']:.2f}",
                "-",
                "-",
            ]
        )
    for e, r in first_cli.items():
        body.append(
            [
                f"{e}: twi-asr transcribe one 3 s clip (whole process)",
                f"{r['wall_s']:.2f}",
                f"{r['peak_rss_mib']:.0f}",
                "-",
            ]
        )
    for e, s in servers.items():
        times = f"{s['ready_s']:.2f}; {s['first_request_s']:.2f}"
        body.append([f"{e}: twi-asr serve, to /ready; first request", times, f"{s['peak_rss_mib']:.0f}",
                     f"{s['rss_after_request_mib']:.0f}"])  # fmt: skip
    print_cells(["what", "seconds", "peak RSS MiB", "RSS after request MiB"], body, "start-up, tiny.en")

    help_s = help_rows["twi-asr --help"]["wall_s"]
    server_rss = servers["ctranslate2"]["peak_rss_mib"]
    targets = {
        "help_under_0_3_s": {"value": help_s, "met": help_s < HELP_TARGET_S},
        "server_tiny_en_rss_under_1_gib": {"value": server_rss, "met": server_rss is not None
                                           and server_rss < SERVER_RSS_TARGET_MIB},
    }  # fmt: skip
    write_json(args.json, {
        "benchmark": "startup",
        "date_utc": utc_now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "settings": {"repeat": args.repeat, "clip": str(clip), "weights": engines,
                     "load_average_1m_before": round(load_before, 2),
                     "load_average_1m_after": round(load_after, 2)},
        "targets": targets,
        "help": help_rows,
        "load_in_process": loads,
        "first_transcript_cli": first_cli,
        "server": servers,
    })  # fmt: skip

    def verdict(key: str) -> str:
        return "met" if targets[key]["met"] else "NOT met"

    print(
        f"startup: --help {help_s:.3f} s ({verdict('help_under_0_3_s')} < 0.3 s); load tiny.en "
        f"ct2 {loads['ctranslate2']['load_s']:.2f} s, transformers {loads['transformers']['load_s']:.2f} s; "
        f"CLI first transcript ct2 {first_cli['ctranslate2']['wall_s']:.2f} s; server (ct2) ready "
        f"{servers['ctranslate2']['ready_s']:.2f} s, peak RSS {server_rss} MiB "
        f"({verdict('server_tiny_en_rss_under_1_gib')} < 1 GiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
