"""The resume ledger (what counts as done, torn lines, S3 rewrite mode) and the report (scores, gates,
JSON, JUnit XML, exit codes)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twi_asr.batch.ledger import LEDGER_NAME, Ledger, config_fingerprint, content_id
from twi_asr.batch.records import FileRecord
from twi_asr.batch.report import BatchReport, evaluate_gates, score_records
from twi_asr.storage import InputItem


def ok(rel: str, *, content: str = "sha256:aa", config: str = "cfg", text: str = "x") -> FileRecord:
    return FileRecord(relative=rel, source=f"/src/{rel}", status="ok", content=content, config=config,
                      outputs=[rel.rsplit(".", 1)[0] + ".txt"], formats=["txt"], audio_seconds=2.0,
                      wall_seconds=0.5, text=text)  # fmt: skip


# --------------------------------------------------------------------------- ledger
def test_records_survive_a_reopen_and_the_last_line_wins(tmp_path: Path) -> None:
    led = Ledger(local_path=tmp_path / LEDGER_NAME)
    led.add(FileRecord(relative="a.wav", source="/a.wav", status="failed", error="boom"))
    led.add(ok("a.wav"))
    led.add(ok("b.wav"))
    again = Ledger(local_path=tmp_path / LEDGER_NAME)
    assert set(again.records) == {"a.wav", "b.wav"}
    assert again.records["a.wav"].status == "ok"
    assert again.done("a.wav", "sha256:aa", "cfg", ["txt"]) is not None


@pytest.mark.parametrize(
    ("content", "config", "formats", "why"),
    [
        ("sha256:bb", "cfg", ["txt"], "the input changed"),
        ("sha256:aa", "other", ["txt"], "another model or options"),
        ("sha256:aa", "cfg", ["txt", "srt"], "a format it never wrote"),
        ("unreadable", "cfg", ["txt"], "unreadable content is never done"),
    ],
)
def test_done_only_when_everything_matches(
    tmp_path: Path, content: str, config: str, formats: list[str], why: str
) -> None:
    led = Ledger(local_path=tmp_path / LEDGER_NAME)
    led.add(ok("a.wav", content="unreadable" if content == "unreadable" else "sha256:aa"))
    assert led.done("a.wav", content, config, formats) is None, why


def test_failed_inputs_are_not_done(tmp_path: Path) -> None:
    led = Ledger(local_path=tmp_path / LEDGER_NAME)
    led.add(FileRecord(relative="a.wav", source="/a.wav", status="failed", content="sha256:aa", config="cfg"))
    assert led.done("a.wav", "sha256:aa", "cfg", []) is None


def test_missing_outputs_make_an_input_not_done(tmp_path: Path) -> None:
    led = Ledger(local_path=tmp_path / LEDGER_NAME)
    led.add(ok("a.wav"))
    assert led.done("a.wav", "sha256:aa", "cfg", ["txt"], lambda names: False) is None
    assert led.done("a.wav", "sha256:aa", "cfg", ["txt"], lambda names: names == ["a.txt"]) is not None


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_clean(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    led = Ledger(local_path=path)
    led.add(ok("a.wav"))
    with path.open("ab") as f:  # a kill in the middle of a write
        f.write(b'{"relative": "b.wav", "sta')
    led2 = Ledger(local_path=path)
    assert led2.torn_lines == 1 and set(led2.records) == {"a.wav"}
    led2.add(ok("c.wav"))
    led3 = Ledger(local_path=path)
    assert set(led3.records) == {"a.wav", "c.wav"}
    assert led3.torn_lines == 1


class MemorySink:
    """An OutputSink in memory that counts writes (S3 rewrite mode)."""

    location = "s3://bucket/out"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes = 0

    def write(self, relative: str, data: bytes) -> str:
        self.objects[relative] = data
        self.writes += 1
        return f"{self.location}/{relative}"

    def exists(self, relative: str) -> bool:
        return relative in self.objects

    def read(self, relative: str) -> bytes | None:
        return self.objects.get(relative)


def test_s3_mode_rewrites_the_whole_ledger_at_most_every_interval() -> None:
    sink = MemorySink()
    led = Ledger.open("s3://bucket/out", sink, flush_every_s=3600)  # type: ignore[arg-type]
    led.add(ok("a.wav"))
    led.add(ok("b.wav"))
    assert sink.writes == 0  # not yet due
    led.flush()
    assert sink.writes == 1
    led.flush()
    assert sink.writes == 1  # nothing new, no PUT
    lines = sink.objects[LEDGER_NAME].decode().splitlines()
    assert [json.loads(x)["relative"] for x in lines] == ["a.wav", "b.wav"]
    assert set(Ledger.open("s3://bucket/out", sink).records) == {"a.wav", "b.wav"}  # type: ignore[arg-type]


def test_s3_mode_flushes_when_due() -> None:
    sink = MemorySink()
    led = Ledger(sink=sink, flush_every_s=0.0)  # type: ignore[arg-type]
    led.add(ok("a.wav"))
    assert sink.writes == 1


def test_content_id_follows_the_bytes(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"one")
    item = InputItem(source=str(f), relative="a.wav")
    first = content_id(item)
    assert first.startswith("sha256:") and content_id(item) == first
    f.write_bytes(b"two")
    assert content_id(item) != first
    assert content_id(InputItem(source=str(tmp_path / "gone.wav"), relative="gone.wav")) == "unreadable"


def test_config_fingerprint_is_stable_and_sensitive() -> None:
    a = config_fingerprint({"model": "tiny.en", "options": {"beam": 5}})
    assert a == config_fingerprint({"options": {"beam": 5}, "model": "tiny.en"})
    assert a != config_fingerprint({"model": "tiny.en", "options": {"beam": 1}})


# --------------------------------------------------------------------------- report
def records() -> list[FileRecord]:
    return [
        ok("good.wav", text="ɛyɛ adeɛ pa"),
        ok("bad.wav", text="something else entirely"),
        FileRecord(
            relative="broken.wav",
            source="/src/broken.wav",
            status="failed",
            error="not audio",
            error_code="invalid_audio",
        ),  # fmt: skip
        ok("noref.wav", text="whatever"),
        FileRecord(relative="later.wav", source="/src/later.wav", status="pending"),
    ]


REFS = {"good.wav": "Ɛyɛ adeɛ pa!", "bad.wav": "the right words here", "broken.wav": "one two"}


def test_scores_per_file_and_overall_with_failures_as_empty() -> None:
    recs = records()
    scores = score_records(recs, REFS)
    by = {r.relative: r for r in recs}
    assert by["good.wav"].wer == 0.0  # Twi-aware: case, punctuation, ɛ kept
    assert by["bad.wav"].wer == 1.0
    assert by["broken.wav"].wer is None and by["noref.wav"].wer is None and by["later.wav"].wer is None
    assert scores is not None and scores.files == 3
    # good 0/3, bad 4/4 substitutions, broken 2/2 deletions -> 6 errors / 9 words
    assert scores.wer == pytest.approx(6 / 9)


def test_gate_fails_and_names_the_files_worst_first() -> None:
    recs = records()
    scores = score_records(recs, REFS)
    wer_gate, cer_gate = evaluate_gates(recs, scores, max_wer=0.25, max_cer=0.99)
    assert not wer_gate.passed and wer_gate.value == pytest.approx(round(6 / 9, 4))
    assert [o["file"] for o in wer_gate.over] == ["bad.wav", "broken.wav"]
    assert "bad.wav" in wer_gate.message() and "FAILED" in wer_gate.message()
    assert cer_gate.passed


def test_a_gate_with_nothing_to_score_fails() -> None:
    (gate,) = evaluate_gates(records(), None, max_wer=0.5)
    assert not gate.passed and "nothing to score" in gate.message()


def make_report(**kw: object) -> BatchReport:
    recs = records()
    rep = BatchReport(command="twi-asr batch src -o out", records=recs, wall_seconds=4.0, **kw)  # type: ignore[arg-type]
    rep.scores = score_records(recs, REFS)
    rep.gates = evaluate_gates(recs, rep.scores, max_wer=0.25)
    return rep


def test_exit_codes() -> None:
    assert make_report().exit_code == 1
    assert make_report(status="interrupted").exit_code == 130
    clean = BatchReport(command="x", records=[ok("a.wav")])
    assert clean.exit_code == 0
    clean.records.append(FileRecord(relative="b", source="b", status="pending"))
    assert clean.exit_code == 1  # unfinished work is not success


def test_json_report_has_every_file_and_the_summary() -> None:
    rep = json.loads(make_report().to_json())
    assert [f["file"] for f in rep["files"]] == [
        "good.wav",
        "bad.wav",
        "broken.wav",
        "noref.wav",
        "later.wav",
    ]
    s = rep["summary"]
    assert (s["files"], s["ok"], s["failed"], s["pending"], s["scored_files"]) == (5, 3, 1, 1, 3)
    assert s["audio_seconds"] == 6.0 and s["real_time_factor"] == pytest.approx(4.0 / 6.0, abs=1e-4)
    assert rep["gates"][0]["passed"] is False and rep["gates"][0]["over"][0]["file"] == "bad.wav"
    broken = rep["files"][2]
    assert broken["status"] == "failed" and broken["error"] == "not audio"
    assert rep["files"][0]["text"] == "ɛyɛ adeɛ pa"  # UTF-8, not escaped


def test_junit_marks_failures_skips_and_gates() -> None:
    root = ET.fromstring(make_report().to_junit())
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 6  # 5 files + 1 gate
    assert root.get("failures") == "2" and root.get("skipped") == "1"
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"broken.wav", "WER <= 25.00%"}
    assert failed["broken.wav"].get("type") == "invalid_audio"  # type: ignore[union-attr]
    assert "bad.wav" in (failed["WER <= 25.00%"].text or "")  # type: ignore[union-attr]
    skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
    assert skipped == ["later.wav"]
