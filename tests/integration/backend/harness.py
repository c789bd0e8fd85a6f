"""Real backend processes for the integration tests: ``twi-asr backend serve`` on a free port.

Each test module starts what it needs: a backend (SQLite or PostgreSQL, local
folder or S3 storage) in front of one or more real ``twi-asr serve`` processes
(tests/integration/services.py), a user with a key, and helpers to submit and
wait. Processes are stopped with SIGTERM (or killed with SIGKILL on purpose).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.services import free_port, stop_process, wait_until_up

READY_TIMEOUT_S = 60.0


@dataclass
class Backend:
    """A running backend process and how to reach it."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)
    args: list[str] = field(repr=False)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup (what a crash or an OOM kill does)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def backend_env(data_dir: Path, *, database_url: str | None = None, storage: str | None = None,
                extra: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    """A clean environment for the backend and its CLI (no TWI_ASR_* leaking in from the shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    env.update({"TWI_ASR_DATA_DIR": str(data_dir), "NO_COLOR": "1", "TWI_ASR_POLL_INTERVAL_S": "0.2"})
    if database_url:
        env["TWI_ASR_DATABASE_URL"] = database_url
    if storage:
        env["TWI_ASR_STORAGE"] = storage
    env.update(extra or {})
    return env


def start_backend(
    log: Path, env: dict[str, str], asr_urls: list[str], *flags: str, port: int | None = None
) -> Backend:
    """``python -m twi_asr backend serve`` on loopback, once ``/health`` answers."""
    port = port or free_port()
    args = [sys.executable, "-m", "twi_asr", "backend", "serve", "--host", "127.0.0.1", "--port", str(port)]
    for url in asr_urls:
        args += ["--asr-url", url]
    args += list(flags)
    with log.open("ab") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=sink, env=env)
    backend = Backend(f"http://127.0.0.1:{port}", proc, log, env, args)
    wait_until_up(
        proc, backend.url + "/health", READY_TIMEOUT_S, backend.log_tail, lambda: stop_backend(backend)
    )
    return backend


def restart(backend: Backend) -> Backend:
    """The same command on the same port (after a stop or a kill)."""
    port = int(backend.url.rsplit(":", 1)[1])
    asr = [backend.args[i + 1] for i, a in enumerate(backend.args) if a == "--asr-url"]
    flags = backend.args[backend.args.index("serve") + 5 :]
    flags = [f for i, f in enumerate(flags) if f != "--asr-url" and (i == 0 or flags[i - 1] != "--asr-url")]
    return start_backend(backend.log, backend.env, asr, *flags, port=port)


def stop_backend(backend: Backend) -> int:
    """SIGTERM, then SIGKILL after 30 s."""
    return stop_process(backend.proc)


def create_user(env: dict[str, str], name: str, *, admin: bool = False, password: str | None = None) -> str:
    """``twi-asr backend users create NAME --json`` against the backend's database; returns the key."""
    cmd = [sys.executable, "-m", "twi_asr", "backend", "users", "create", name, "--json"]
    if admin:
        cmd.append("--admin")
    if password is not None:
        cmd.append("--password")
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=60, input=(password or "") + "\n"
    )
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["api_key"])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(url: str, key: str, path: Path, **fields: Any) -> dict[str, Any]:
    """POST /v1/jobs with a file; returns the job (asserts 202)."""
    headers = auth(key) | fields.pop("headers", {})
    with path.open("rb") as fh:
        r = httpx.post(f"{url}/v1/jobs", headers=headers, files={"file": (path.name, fh, "audio/wav")},
                       data={k: str(v) for k, v in fields.items()}, timeout=120)  # fmt: skip
    assert r.status_code in (200, 202), r.text
    return dict(r.json())


def wait_job(url: str, key: str, job_id: str, *, timeout_s: float = 180.0,
             states: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict[str, Any]:  # fmt: skip
    """Poll GET /v1/jobs/ID until it reaches one of ``states``."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth(key), timeout=10)
            if r.status_code == 200:
                last = r.json()
                if last["status"] in states:
                    return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not reach {states} in {timeout_s:.0f} s: {last}")
