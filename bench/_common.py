"""Helpers shared by the benchmarks in ``bench/``: timed subprocesses, machine facts, versions.

Nothing here imports torch, transformers or ctranslate2: the benchmark's own
process must stay light so that it does not compete with the processes it
measures, and versions are read from package metadata instead.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"

# A child that runs the command and reports the peak RSS (KiB) of its own
# children: used when GNU time is missing. A fresh wrapper per command keeps
# RUSAGE_CHILDREN from carrying an earlier, larger child's peak.
_RUSAGE_WRAPPER = """\
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(f"{u.ru_maxrss} {u.ru_utime:.2f} {u.ru_stime:.2f}")
sys.exit(rc)
"""


@dataclass(frozen=True)
class ProcessRun:
    """One finished whole-process run: wall time, peak memory and how it ended."""

    wall_s: float
    peak_rss_kib: int | None
    returncode: int
    stderr_tail: str
    cpu_s: float | None = None
    """User + system CPU seconds of the process and its children (less noisy than wall on a busy machine)."""


def rss_method() -> str:
    """How peak RSS is measured on this machine (recorded in the results)."""
    return "GNU time %M" if Path(GNU_TIME).is_file() else "resource.getrusage(RUSAGE_CHILDREN) wrapper"


def _wrap_for_rss(cmd: list[str], rss_file: Path) -> list[str]:
    """Prefix ``cmd`` with whatever writes "peak RSS KiB, user s, system s" to ``rss_file``."""
    if Path(GNU_TIME).is_file():
        return [GNU_TIME, "-f", "%M %U %S", "-o", str(rss_file), *cmd]
    return [sys.executable, "-c", _RUSAGE_WRAPPER, str(rss_file), *cmd]


def _read_rss(rss_file: Path) -> tuple[int | None, float | None]:
    """Peak RSS (KiB) and user + system CPU seconds from ``rss_file``.

    GNU time may write a status line ("Command exited with non-zero status 1") first: the
    figures are the last three words.
    """
    try:
        words = rss_file.read_text().split()
    except OSError:
        return None, None
    if len(words) < 3 or not words[-3].isdigit():
        return None, None
    try:
        return int(words[-3]), round(float(words[-2]) + float(words[-1]), 2)
    except ValueError:
        return int(words[-3]), None


def run_process(cmd: list[str], *, env: dict[str, str], timeout_s: float) -> ProcessRun:
    """Run ``cmd`` to completion; wall time covers interpreter start, imports, load and work."""
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        rss_file = Path(tmp) / "rss"
        wrapped = _wrap_for_rss(cmd, rss_file)
        start = time.perf_counter()
        proc = subprocess.run(
            wrapped, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout_s
        )
        wall = time.perf_counter() - start
        rss, cpu = _read_rss(rss_file)
        return ProcessRun(
            wall_s=wall,
            peak_rss_kib=rss,
            returncode=proc.returncode,
            stderr_tail=proc.stderr[-2000:],
            cpu_s=cpu,
        )


def clean_env(drop_prefixes: tuple[str, ...] = ("TWI_ASR_",)) -> dict[str, str]:
    """The current environment, offline for Hugging Face, without our own overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1"})
    return env


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, RAM and OS of the machine the numbers came from."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "peak_rss_method": rss_method(),
    }


def package_versions(distributions: tuple[str, ...]) -> dict[str, str | None]:
    """Python's version plus each distribution's installed version (None if missing)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in distributions:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON through a temporary file (no half-written results)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def print_cells(header: list[str], body: list[list[str]], title: str, *, left: int = 1) -> None:
    """A rich table (the first ``left`` columns left-aligned), or aligned plain text without rich."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
        print(title)
        for line in (header, *body):
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        return
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < left else "right")
    for line in body:
        table.add_row(*line)
    Console(width=160).print(table)


def warn_if_busy(load_1m: float) -> None:
    """Say on stderr when other work on the machine is likely to skew the timings."""
    cores = os.cpu_count() or 1
    if load_1m > 0.5 * cores:
        print(
            f"warning: 1-minute load average {load_1m:.2f} on {cores} cores before the timed runs: "
            "other processes are competing for the CPU, timings will be skewed",
            file=sys.stderr,
        )
