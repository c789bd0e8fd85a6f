"""Real services the integration tests start on loopback: ``twi-asr serve`` processes and moto S3.

Shared by several test modules (server, S3, batch, docker), so each starts
and stops them the same way: a free port, wait until the service answers,
SIGTERM then SIGKILL.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT_S = 120.0  # generous: a loaded 2-core machine can take long to import and load
CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

# 32 different sentences, so that 32 concurrent requests each say something else. Chosen among
# sentences that tiny.en transcribes (nearly) right from espeak-ng, so that a wrong answer means a
# mix-up, not the model's accent trouble (it hears "The quick brown fox" as "The quick roundfark").
EASY_SENTENCES = [
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
    "The hospital is open every day of the week.",
    "Our car broke down on the way to the airport.",
    "She bought a new phone for her son.",
    "The students cleaned the classroom after the exam.",
    "My father works in a bank in the city centre.",
    "Write your name at the top of the page.",
    "Fresh fish arrives at the harbour early every morning.",
]
assert len(set(EASY_SENTENCES)) == 32


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def metric(text: str, name: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(log: Path, *flags: str, env: dict[str, str] | None = None) -> Server:
    """``python -m twi_asr serve --model tiny.en ...`` on a free loopback port, once /ready says 200."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    full_env.update({"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", **(env or {})})
    cmd = [sys.executable, "-m", "twi_asr", "serve", "--model", "tiny.en",
           "--host", "127.0.0.1", "--port", str(port), *flags]  # fmt: skip
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=full_env)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    wait_until_up(proc, server.url + "/ready", READY_TIMEOUT_S, server.log_tail, lambda: stop_server(server))
    return server


def wait_until_up(proc: subprocess.Popen[bytes], url: str, timeout_s: float, tail: Callable[[], str],
                  give_up: Callable[[], object]) -> None:  # fmt: skip
    """Poll ``url`` until it answers 200; fail the test (log tail shown) if the process dies or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode} before {url} answered:\n{tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            give_up()
            pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{tail()}")
        time.sleep(0.1)


def stop_server(server: Server) -> int:
    return stop_process(server.proc)


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 30 s; the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def start_moto(log: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    cmd = [str(server)] if server.exists() else [sys.executable, "-m", "moto.server"]
    with log.open("wb") as sink:
        proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=sink, stderr=sink,
                                env={**os.environ, **(extra_env or {})})  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("moto_server did not start")
