"""``twi-asr batch`` and ``twi-asr eval`` as CI runs them: real processes, real tiny.en weights, real
espeak-ng speech, real ``twi-asr serve`` subprocesses on loopback ports.

- SIGKILL the batch mid-run, rerun: every input done exactly once, no partial files, report complete.
- Two servers, one SIGKILLed mid-run: the run still finishes every input, both servers served.
- A references file with one deliberate mismatch: ``--max-wer`` fails (exit 1) and the report and
  JUnit XML name the file; ``eval`` on the same outputs agrees.
- A folder with broken files (empty, text renamed .wav, a truncated mp3): they fail with their
  reasons, everything else is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from twi_asr.text import wer

from .conftest import Clip, _ffmpeg, speak
from .services import CREDS, EASY_SENTENCES, Server, start_moto, start_server, stop_server

pytestmark = pytest.mark.slow

LEDGER = Path(".twi-asr") / "ledger.jsonl"
MAX_WER = 0.35


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    clean.update({"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"})
    return clean


def batch_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "twi_asr", "batch", *map(str, args)]


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env())


def ledger_lines(out: Path) -> list[dict[str, object]]:
    path = out / LEDGER
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # the torn last line of a killed process
            lines.append(json.loads(line))
    return lines


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Clip]]:
    """32 clips of easy sentences in two sub-folders (16 each), with their texts."""
    root = tmp_path_factory.mktemp("batch-src")
    clips = []
    for i, text in enumerate(EASY_SENTENCES):
        folder = root / ("day1" if i < 16 else "day2")
        folder.mkdir(exist_ok=True)
        clips.append(Clip(speak(text, folder / f"s{i:02d}.wav"), text))
    return root, clips


def rel(root: Path, clip: Clip) -> str:
    return clip.path.relative_to(root).as_posix()


def assert_outputs_complete(out: Path, root: Path, clips: list[Clip]) -> None:
    """Every clip has its txt and json, the json parses, the text is what was said, no temp files."""
    hyps = []
    for clip in clips:
        stem = out / Path(rel(root, clip)).with_suffix("")
        txt = stem.with_suffix(".txt").read_text(encoding="utf-8")
        doc = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        assert " ".join(txt.split()) == " ".join(doc["text"].split())
        hyps.append(doc["text"])
    assert wer([c.text for c in clips], hyps) < MAX_WER
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".part"))]


# =========================================================================== kill and resume
def test_sigkill_mid_run_then_rerun_does_each_input_once(
    corpus: tuple[Path, list[Clip]], tmp_path: Path
) -> None:
    root, clips = corpus
    clips = clips[:16]
    out = tmp_path / "out"
    args = (root / "day1", "-o", out, "-f", "txt,json", "--model", "tiny.en", "--batch-size", "2")
    proc = subprocess.Popen(batch_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    try:
        wait_for(lambda: len(ledger_lines(out)) >= 2 or proc.poll() is not None, 120, "the first results")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    done_first = {str(r["relative"]) for r in ledger_lines(out) if r["status"] == "ok"}
    assert 2 <= len(done_first) < len(clips)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # a kill leaves no half files behind

    report = tmp_path / "report.json"
    second = run(*args, "--report", report)
    assert second.returncode == 0, second.stderr
    assert f"resuming: {len(done_first)} of {len(clips)}" in second.stderr
    rep = json.loads(report.read_text())
    assert rep["status"] == "complete" and rep["summary"]["ok"] == len(clips)
    assert rep["summary"]["done_in_earlier_runs"] == len(done_first)
    assert rep["summary"]["transcribed_this_run"] == len(clips) - len(done_first)
    assert {f["file"] for f in rep["files"] if f["done_in_earlier_run"]} == done_first
    ok_lines = Counter(str(r["relative"]) for r in ledger_lines(out) if r["status"] == "ok")
    assert set(ok_lines) == {c.path.name for c in clips}
    assert set(ok_lines.values()) == {1}, ok_lines  # every input transcribed once across both runs
    assert_outputs_complete(out, root / "day1", clips)

    third = run(*args)  # nothing left to do: no model load, exit 0
    assert third.returncode == 0 and f"resuming: {len(clips)} of {len(clips)}" in third.stderr


# =========================================================================== two servers, one dies
@pytest.fixture()
def two_servers(tmp_path: Path) -> Iterator[list[Server]]:
    servers = [start_server(tmp_path / f"server{i}.log") for i in range(2)]
    yield servers
    for s in servers:
        stop_server(s)


def test_two_servers_one_killed_mid_run_all_files_finish(
    corpus: tuple[Path, list[Clip]], two_servers: list[Server], tmp_path: Path
) -> None:
    root, clips = corpus
    a, b = two_servers
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    args = (root, "-o", out, "-f", "txt,json", "--server", a.url, "--server", b.url, "--jobs", "4",
            "--report", report)  # fmt: skip
    proc = subprocess.Popen(
        batch_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), text=True
    )
    try:
        wait_for(lambda: len(ledger_lines(out)) >= 4 or proc.poll() is not None, 120, "the first results")
        b.proc.send_signal(signal.SIGKILL)
        done_at_kill = len(ledger_lines(out))
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert done_at_kill < len(clips), "the batch finished before the server could be killed"
    assert proc.returncode == 0, stderr
    rep = json.loads(report.read_text())
    assert rep["summary"]["ok"] == len(clips) and rep["summary"]["failed"] == 0
    servers = rep["servers"]
    assert servers[a.url] > 0 and servers[b.url] > 0, servers
    assert servers[a.url] + servers[b.url] == len(clips)
    assert {f["server"] for f in rep["files"]} == {a.url, b.url}
    assert_outputs_complete(out, root, clips)


# =========================================================================== gates
def test_wer_gate_passes_then_fails_on_a_deliberate_mismatch(
    corpus: tuple[Path, list[Clip]], tmp_path: Path
) -> None:
    root, clips = corpus
    chosen = clips[:4]
    src = tmp_path / "src"
    src.mkdir()
    for c in chosen:
        (src / c.path.name).write_bytes(c.path.read_bytes())
    good = tmp_path / "good.tsv"
    good.write_text("".join(f"{c.path.name}\t{c.text}\n" for c in chosen), encoding="utf-8")
    out = tmp_path / "out"
    args = (src, "-o", out, "--model", "tiny.en", "-f", "txt", "--max-wer", "0.25")
    first = run(*args, "--references", good)
    assert first.returncode == 0, first.stderr

    wrong = chosen[2].path.name
    bad = tmp_path / "bad.tsv"  # one reference replaced by a different, longer sentence; keys by stem
    bad.write_text(
        "path\ttext\n"
        + "".join(
            f"{Path(c.path.name).stem}\t"
            f"{'Nothing in this reference matches the audio of the clip at all, not one word.' if c.path.name == wrong else c.text}\n"  # noqa: E501
            for c in chosen
        ),
        encoding="utf-8",
    )
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    second = run(*args, "--references", bad, "--report", report, "--junit", junit)
    assert second.returncode == 1, second.stderr
    assert "WER" in second.stderr and "FAILED" in second.stderr and wrong in second.stderr
    rep = json.loads(report.read_text())
    assert rep["summary"]["transcribed_this_run"] == 0  # resumed: scored without transcribing again
    (gate,) = rep["gates"]
    assert gate["passed"] is False and gate["value"] > 0.25
    assert gate["over"][0]["file"] == wrong
    by = {f["file"]: f for f in rep["files"]}
    assert by[wrong]["wer"] >= 0.9
    assert all(by[c.path.name]["wer"] < by[wrong]["wer"] for c in chosen if c.path.name != wrong)
    suite = ET.parse(junit).getroot()
    failures = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["WER <= 25.00%"]
    assert wrong in (failures[0].find("failure").text or "")  # type: ignore[union-attr]

    ev = subprocess.run([sys.executable, "-m", "twi_asr", "eval", str(out), str(bad), "--max-wer", "0.25",
                         "--report", str(tmp_path / "eval.json")],
                        capture_output=True, text=True, timeout=120, env=env())  # fmt: skip
    assert ev.returncode == 1, ev.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["summary"]["wer"] == pytest.approx(gate["value"])


# =========================================================================== bad files
def test_bad_files_are_reported_and_the_rest_written(corpus: tuple[Path, list[Clip]], tmp_path: Path) -> None:
    root, clips = corpus
    chosen = clips[4:7]
    src = tmp_path / "src"
    (src / "broken").mkdir(parents=True)
    for c in chosen:
        (src / c.path.name).write_bytes(c.path.read_bytes())
    (src / "broken" / "empty.wav").write_bytes(b"")
    (src / "broken" / "notes.wav").write_text("Meeting notes: this is text, not audio.\n" * 20)
    mp3 = tmp_path / "full.mp3"
    _ffmpeg("-i", chosen[0].path, "-c:a", "libmp3lame", mp3)
    (src / "broken" / "cut.mp3").write_bytes(mp3.read_bytes()[:200])
    out, report, junit = tmp_path / "out", tmp_path / "report.json", tmp_path / "junit.xml"
    proc = run(src, "-o", out, "--model", "tiny.en", "-f", "txt,srt", "--report", report, "--junit", junit)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    rep = json.loads(report.read_text())
    failed = {f["file"]: f for f in rep["files"] if f["status"] == "failed"}
    assert set(failed) == {"broken/empty.wav", "broken/notes.wav", "broken/cut.mp3"}
    assert all(f["error"] and f["error_code"] == "invalid_audio" for f in failed.values()), failed
    assert "empty" in failed["broken/empty.wav"]["error"]
    for c in chosen:
        text = (out / c.path.name).with_suffix(".txt").read_text(encoding="utf-8")
        assert wer(c.text, text) < MAX_WER, text
        assert (out / c.path.name).with_suffix(".srt").read_text(encoding="utf-8").startswith("1\n")
    assert not (out / "broken").exists() or not list((out / "broken").iterdir())
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert all(cases[name].find("failure") is not None for name in failed)
    assert sum(1 for c in cases.values() if c.find("failure") is None) == len(chosen)


# =========================================================================== S3 in, S3 out
def test_s3_in_s3_out_resumes_from_the_ledger_object(corpus: tuple[Path, list[Clip]], tmp_path: Path) -> None:
    import boto3

    root, clips = corpus
    chosen = clips[7:10]
    proc, url = start_moto(tmp_path / "moto.log")
    try:
        s3 = boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in CREDS.items() if "KEY" in k},
                          region_name="us-east-1")  # fmt: skip
        s3.create_bucket(Bucket="audio")
        for c in chosen:
            s3.put_object(Bucket="audio", Key=f"in/calls/{c.path.name}", Body=c.path.read_bytes())
        s3.put_object(Bucket="audio", Key="in/calls/readme.md", Body=b"not audio")
        s3_env = {**env(), **CREDS}
        cmd = batch_cmd("s3://audio/in/", "-o", "s3://audio/out/", "-f", "txt,json", "--model", "tiny.en",
                        "--s3-endpoint-url", url, "--report", tmp_path / "report.json")  # fmt: skip
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=s3_env)
        assert first.returncode == 0, first.stderr
        for c in chosen:
            body = s3.get_object(Bucket="audio", Key=f"out/calls/{Path(c.path.name).stem}.txt")["Body"].read()
            assert wer(c.text, body.decode("utf-8")) < MAX_WER
        ledger = s3.get_object(Bucket="audio", Key="out/.twi-asr/ledger.jsonl")["Body"].read().decode()
        assert len(ledger.splitlines()) == len(chosen)
        assert all(json.loads(line)["content"].startswith("etag:") for line in ledger.splitlines())
        rep = json.loads((tmp_path / "report.json").read_text())
        assert rep["summary"]["skipped_non_media"] == 1
        stem = "calls/" + Path(chosen[0].path.name).stem
        assert rep["files"][0]["outputs"] == [stem + ".txt", stem + ".json"]

        s3.put_object(Bucket="audio", Key=f"in/calls/{chosen[0].path.name}", Body=chosen[1].path.read_bytes())
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=s3_env)
        assert second.returncode == 0, second.stderr
        assert (
            f"resuming: {len(chosen) - 1} of {len(chosen)}" in second.stderr
        )  # the changed object is redone
        body = s3.get_object(Bucket="audio", Key=f"out/calls/{Path(chosen[0].path.name).stem}.txt")[
            "Body"
        ].read()
        assert wer(chosen[1].text, body.decode("utf-8")) < MAX_WER
    finally:
        proc.terminate()
        proc.wait(timeout=10)
