"""Batch progress: periodic plain lines without control codes in CI, a rich bar on a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from twi_asr import console
from twi_asr.batch.progress import BatchProgress
from twi_asr.batch.records import FileRecord


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def rec(name: str, *, failed: bool = False) -> FileRecord:
    return FileRecord(
        relative=name,
        source=f"/src/{name}",
        status="failed" if failed else "ok",
        audio_seconds=0.0 if failed else 360.0,
        error="not audio" if failed else None,
    )


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(
        console, "stderr", Console(file=buf, width=200, force_terminal=False, color_system=None)
    )
    return buf


def test_plain_lines_are_periodic_and_failures_immediate(captured: io.StringIO) -> None:
    clock = Clock()
    with BatchProgress(4, interactive=False, every_s=10, clock=clock) as p:
        clock.t = 1
        p.done(rec("a.wav"))
        assert captured.getvalue() == ""  # not due yet
        clock.t = 12
        p.done(rec("b.wav"))
        clock.t = 13
        p.done(rec("bad.wav", failed=True))
    lines = captured.getvalue().splitlines()
    assert lines[0].startswith("batch: 2/4 files, 0 failed, 0.200 h audio, 10.0 files/min, ETA 0m12s")
    assert lines[1] == "failed: bad.wav: not audio"
    assert lines[2].startswith("batch: 3/4 files, 1 failed, 0.200 h audio") and "13.0 s elapsed" in lines[2]
    assert "\x1b" not in captured.getvalue()


def test_eta_uses_audio_when_the_total_is_known() -> None:
    clock = Clock()
    p = BatchProgress(10, total_audio_s=3600.0, interactive=False, clock=clock)
    clock.t = 60
    p.done(rec("a.wav"))  # 360 s of audio in 60 s: 3240 s left at the same pace is 540 s
    assert p.eta_s() == pytest.approx(540.0)


def test_a_terminal_gets_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buf, width=200, force_terminal=True))
    with BatchProgress(2, interactive=True) as p:
        p.done(rec("a.wav"))
        p.done(rec("bad.wav", failed=True))
    out = buf.getvalue()
    assert "2/2" in out and "files" in out and "h audio" in out and "files/min" in out
    assert "failed" in out and "bad.wav" in out
