"""The batch runner end to end with a fake engine on real WAV files: outputs, resume, changed inputs,
interrupts, bad files, gates, --docker through a fake container, and the CLI's exit codes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from twi_asr.batch.dispatch import Endpoint, ServerPool
from twi_asr.batch.ledger import LEDGER_NAME
from twi_asr.batch.runner import BatchConfig, run_batch
from twi_asr.cli import main
from twi_asr.types import TranscribeOptions, Transcript

SR = 16000


class FakeEngine:
    """Says "clip of N samples"; can raise KeyboardInterrupt on its ``interrupt_at``-th call."""

    engine = "fake"
    model_name = "fake"
    device = "cpu"
    batch_size = 2

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.seen = 0
        self.interrupt_at = interrupt_at

    def transcribe(
        self, audios: Sequence[np.ndarray], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        self.seen += len(audios)
        return [
            Transcript(text=f"clip of {len(a)} samples", language="en", duration=len(a) / SR) for a in audios
        ]


def wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return path


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for i in range(5):
        wav(root / f"c{i}.wav", 0.5 + i * 0.1)
    wav(root / "sub" / "deep.wav", 0.3)
    return root


def config(src: Path, out: Path, **kw: Any) -> BatchConfig:
    return BatchConfig(sources=[str(src)], out=str(out), formats=("txt", "json"), interactive=False, **kw)


def test_outputs_mirror_the_tree_and_the_report_has_every_file(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    engine = FakeEngine()
    report = run_batch(config(src, out, report=str(tmp_path / "r.json")), transcriber=engine)
    assert report.exit_code == 0 and engine.seen == 6
    assert (out / "sub" / "deep.txt").read_text() == "clip of 4800 samples\n"
    assert json.loads((out / "c0.json").read_text())["text"] == "clip of 8000 samples"
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["summary"]["ok"] == 6 and rep["status"] == "complete"
    assert {f["file"] for f in rep["files"]} == {
        "c0.wav",
        "c1.wav",
        "c2.wav",
        "c3.wav",
        "c4.wav",
        "sub/deep.wav",
    }
    assert not [p for p in out.rglob("*.tmp")]


def test_a_rerun_does_nothing_a_changed_file_and_a_deleted_output_are_redone(
    src: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_batch(config(src, out), transcriber=FakeEngine())
    again = FakeEngine()
    report = run_batch(config(src, out), transcriber=again)
    assert again.seen == 0 and report.summary()["done_in_earlier_runs"] == 6 and report.exit_code == 0

    wav(src / "c1.wav", 1.0)  # new content
    (out / "c3.json").unlink()  # an output gone
    third = FakeEngine()
    report = run_batch(config(src, out), transcriber=third)
    assert third.seen == 2
    redone = {r.relative for r in report.records if not r.previous_run}
    assert redone == {"c1.wav", "c3.wav"}
    assert (out / "c1.txt").read_text() == "clip of 16000 samples\n"

    forced = FakeEngine()
    run_batch(config(src, out, resume=False), transcriber=forced)
    assert forced.seen == 6


def test_other_decoding_options_redo_everything(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(config(src, out), transcriber=FakeEngine())
    engine = FakeEngine()
    run_batch(config(src, out, options=TranscribeOptions(beam_size=1)), transcriber=engine)
    assert engine.seen == 6


def test_an_interrupt_writes_the_report_then_a_rerun_finishes(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[Any] = []
    with pytest.raises(KeyboardInterrupt):
        # --batch-size 2: engine calls of two clips, so the interrupt comes after the first call
        reports = {"report": str(tmp_path / "r.json"), "junit": str(tmp_path / "j.xml")}
        run_batch(config(src, out, batch_size=2, **reports),
                  transcriber=FakeEngine(interrupt_at=2), on_report=seen.append)  # fmt: skip
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["status"] == "interrupted" and seen[0].exit_code == 130
    statuses = [f["status"] for f in rep["files"]]
    assert statuses.count("ok") == 2 and statuses.count("pending") == 4
    assert len((out / LEDGER_NAME).read_text().splitlines()) == 2
    assert (tmp_path / "j.xml").is_file()

    engine = FakeEngine()
    report = run_batch(config(src, out), transcriber=engine)
    assert engine.seen == 4 and report.exit_code == 0
    assert sum(r.previous_run for r in report.records) == 2


def test_bad_files_fail_alone(src: Path, tmp_path: Path) -> None:
    (src / "empty.wav").write_bytes(b"")
    (src / "notes.wav").write_text("not audio at all\n" * 20)
    out = tmp_path / "out"
    report = run_batch(config(src, out), transcriber=FakeEngine())
    assert report.exit_code == 1
    failed = {r.relative: r for r in report.failed}
    assert set(failed) == {"empty.wav", "notes.wav"}
    assert all(r.error and r.error_code == "invalid_audio" for r in failed.values())
    assert len(list(out.glob("*.txt"))) == 5 and (out / "sub" / "deep.txt").is_file()
    assert not (out / "empty.txt").exists()


def test_references_and_gates(src: Path, tmp_path: Path) -> None:
    refs = tmp_path / "refs.tsv"
    refs.write_text("c0.wav\tclip of 8000 samples\nc1\tclip of 9600 samples\nsub/deep.wav\tsomething else\n")
    out = tmp_path / "out"
    passing = run_batch(config(src, out, references=str(refs), max_wer=0.5), transcriber=FakeEngine())
    assert passing.exit_code == 0 and passing.scores is not None and passing.scores.files == 3
    failing = run_batch(config(src, out, references=str(refs), max_wer=0.1), transcriber=FakeEngine())
    assert failing.exit_code == 1
    assert [o["file"] for o in failing.gates[0].over] == ["sub/deep.wav"]


def test_docker_runs_through_the_container_url(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import twi_asr.containers as containers

    events: list[str] = []

    @contextlib.contextmanager
    def fake_container(**kw: Any) -> Iterator[str]:
        events.append(f"start {kw['image']} {kw['model']}")
        yield "http://127.0.0.1:9999"
        events.append("stop")

    class Client:
        def transcribe(self, data: bytes, options: Any = None, *, filename: str) -> Transcript:
            return Transcript(text=f"remote {filename}", language="en", duration=1.0)

        def health(self) -> bool:
            return True

    urls: list[list[str]] = []

    def factory(servers: list[str]) -> ServerPool:
        urls.append(servers)
        return ServerPool([Endpoint(url=u, client=Client()) for u in servers], jobs=2)

    monkeypatch.setattr(containers, "serving_container", fake_container)
    out = tmp_path / "out"
    report = run_batch(
        config(src, out, docker=True, image="twi-asr:test", model="tiny.en"), pool_factory=factory
    )
    assert events == ["start twi-asr:test tiny.en", "stop"]
    assert urls == [["http://127.0.0.1:9999"]]
    assert report.exit_code == 0 and (out / "c2.txt").read_text() == "remote c2.wav\n"
    assert report.served == {"http://127.0.0.1:9999": 6}


# --------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--max-wer", "25"], "between 0 and 1"),
        (["--max-wer", "0.2"], "need references"),
        (["--server", "http://x:1", "--docker"], "do not go together"),
        (["--server", "http://x:1", "--engine", "ctranslate2"], "local engine"),
        (["-f", "docx"], "unknown output format"),
        (["--references", "/nonexistent/refs.tsv"], "does not exist"),
        (["--language", "klingon"], "language"),
    ],
)
def test_bad_usage_is_exit_2_with_one_line(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    code = main(["batch", str(src), "-o", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err


def test_no_inputs_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 1
    assert "no audio" in capsys.readouterr().err


def test_no_server_is_exit_3(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["batch", str(src), "-o", str(tmp_path / "out"), "--server", "http://127.0.0.1:9"])
    assert code == 3
    assert "no twi-asr server answers" in capsys.readouterr().err


def test_eval_scores_existing_outputs(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run_batch(config(src, out), transcriber=FakeEngine())
    refs = tmp_path / "refs.csv"
    refs.write_text(
        "file,text\nc0.wav,clip of 8000 samples\nsub/deep,four wrong words here\nmissing.wav,gone\n"
    )
    rep_path = tmp_path / "eval.json"
    code = main(["eval", str(out), str(refs), "--max-wer", "0.9", "--report", str(rep_path)])
    assert code == 1  # a reference without an output is a failure
    rep = json.loads(rep_path.read_text())
    by = {f["file"]: f for f in rep["files"]}
    assert by["c0"]["wer"] == 0.0 and by["sub/deep"]["wer"] == 1.0
    assert by["missing.wav"]["status"] == "failed"
    refs.write_text("c0.wav,clip of 8000 samples\nc1.wav,clip of 9600 samples\n")
    assert main(["eval", str(out), str(refs), "--max-wer", "0.0"]) == 0
