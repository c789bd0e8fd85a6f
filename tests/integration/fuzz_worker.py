"""A watched child process that runs :func:`twi_asr.audio.decode_audio` on one input at a time.

Fuzzing needs three things a plain in-process call cannot give: a hang inside
FFmpeg or libsndfile must be noticed and reported rather than waited on, a
segfault must not take the fuzzer down, and each case's memory must be
measured on its own. So every case goes to a long-lived child over a pipe;
the parent waits at most ``timeout_s`` for its answer, then kills and
replaces the child ("timeout"); a child that dies is replaced too ("crash",
with its stderr tail). The child caps its address space (``RLIMIT_AS``) so a
header that talks the decoder into a 10 GB allocation fails there
(MemoryError, reported as an "other" exception) instead of swapping the
machine, and resets its peak RSS before each case (``/proc/self/clear_refs``)
so that ``peak_growth`` is that case's own.

Outcomes: ``audio`` and ``audio_error`` are the contract; ``other`` (any other
exception), ``timeout`` and ``crash`` are bugs, and so is a case whose
``peak_growth`` passes the caller's bound.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INPUT_KINDS = ("bytes", "path", "file")
GOOD = ("audio", "audio_error")
_HEADER = "<QBd"  # input length, kind index, max_seconds (0: none)


@dataclass(frozen=True)
class Outcome:
    """What one decode did: ``kind`` is audio, audio_error, other, timeout or crash."""

    kind: str
    detail: str = ""  # the exception's type and message, or why the child went away
    seconds: float = 0.0  # decoded duration (audio)
    level: float = 0.0  # RMS of the decoded samples (audio)
    elapsed: float = 0.0
    peak_growth: int = 0  # bytes of RSS above the child's level before the case
    warnings: tuple[str, ...] = ()


class DecodeWorker:
    """One child process; :meth:`run` sends it an input and waits at most ``timeout_s``."""

    def __init__(self, timeout_s: float = 10.0, address_space: int = 6 << 30) -> None:
        self.timeout_s = timeout_s
        self.address_space = address_space
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  closed by close()

    def __enter__(self) -> DecodeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, data: bytes, kind: str = "bytes", max_seconds: float | None = None) -> Outcome:
        """Decode ``data`` handed over as ``kind`` (bytes, a path to a temp file, or a file object)."""
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        start = time.monotonic()
        try:
            proc.stdin.write(
                struct.pack(_HEADER, len(data), INPUT_KINDS.index(kind), max_seconds or 0.0) + data
            )
            proc.stdin.flush()
        except BrokenPipeError:
            return self._died(time.monotonic() - start)
        line = b""
        deadline = start + self.timeout_s
        fd = proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._kill()
                return Outcome("timeout", f"no answer in {self.timeout_s:g} s", elapsed=self.timeout_s)
            chunk = os.read(fd, 65536)
            if not chunk:
                return self._died(time.monotonic() - start)
            line += chunk
        reply = json.loads(line)
        return Outcome(
            reply["kind"],
            reply.get("detail", ""),
            reply.get("seconds", 0.0),
            reply.get("level", 0.0),
            reply["elapsed"],
            reply["peak_growth"],
            tuple(reply.get("warnings", ())),
        )

    def close(self) -> None:
        """Stop the child (closing its stdin ends its loop) and drop the stderr file."""
        if self._proc is not None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
            self._proc = None
        self._stderr.close()

    # ------------------------------------------------------------------ internals

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._stderr.seek(0)
            self._stderr.truncate()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")])}
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.fuzz_worker", str(self.address_space)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=REPO_ROOT,
                env=env,
            )
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self.restarts += 1

    def _died(self, elapsed: float) -> Outcome:
        assert self._proc is not None
        rc = self._proc.wait()
        self._stderr.seek(0)
        tail = self._stderr.read()[-1500:].decode("utf-8", "replace").strip()
        self._proc = None
        self.restarts += 1
        return Outcome("crash", f"worker exited with {rc}: {tail}", elapsed=elapsed)


# --------------------------------------------------------------------------- the child


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def _serve(address_space: int) -> None:
    """The child's loop: read (length, kind, limit, bytes) from stdin, answer one JSON line per case."""
    import faulthandler
    import resource

    import av  # noqa: F401  imported before the limit and the baseline, like a server has them
    import numpy
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    from twi_asr.audio import decode_audio
    from twi_asr.errors import AudioError

    faulthandler.enable()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a C library prints goes to stderr, never into the answers
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, hard))
    stdin = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="fuzz-audio-") as tmp:
        path = os.path.join(tmp, "input")
        while header := stdin.read(struct.calcsize(_HEADER)):
            size, kind_index, limit = struct.unpack(_HEADER, header)
            max_seconds = limit or None
            data = stdin.read(size)
            kind = INPUT_KINDS[kind_index]
            if kind != "bytes":
                with open(path, "wb") as fh:
                    fh.write(data)
            reply: dict[str, object] = {}
            _reset_peak()
            base = _peak_rss()
            start = time.perf_counter()
            try:
                if kind == "path":
                    audio = decode_audio(path, max_seconds=max_seconds)
                elif kind == "file":
                    with open(path, "rb") as fh:
                        audio = decode_audio(fh, max_seconds=max_seconds)
                else:
                    audio = decode_audio(data, max_seconds=max_seconds)
                level = float(numpy.sqrt(numpy.mean(numpy.square(audio.samples, dtype=numpy.float64))))
                reply.update(kind="audio", seconds=audio.duration, level=level, warnings=list(audio.warnings))
            except AudioError as exc:
                reply.update(kind="audio_error", detail=f"{type(exc).__name__}: {exc}")
            except BaseException as exc:  # noqa: BLE001  the finding: anything else
                reply.update(kind="other", detail=f"{type(exc).__name__}: {exc}"[:2000])
            reply.update(elapsed=time.perf_counter() - start, peak_growth=max(0, _peak_rss() - base))
            del data
            answers.write(json.dumps(reply).encode() + b"\n")
            answers.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
