"""Tests for the ``twi-asr`` CLI: exit codes, stdout/stderr, outputs on disk.

The engine is a fake: ``twi_asr.engines.load_transcriber`` is replaced (the
CLI imports it from that module at call time), and the fake's transcript
text is the clip's sample count, so outputs can be matched to inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import twi_asr.cli
from twi_asr.cli import main
from twi_asr.errors import DependencyMissingError, EnvironmentProblem, ModelNotFoundError
from twi_asr.languages import resolve_language
from twi_asr.types import Segment, TranscribeOptions, Transcript

SR = 16000


def text_for(n_samples: int) -> str:
    return f"{n_samples} samples"


class FakeTranscriber:
    engine = "fake"
    device = "cpu"

    def __init__(self, model_name: str, fail_on_call: int | None = None, check_language: bool = False):
        self.model_name = model_name
        self.calls = 0
        self.seen: list[int] = []
        self.fail_on_call = fail_on_call
        self.check_language = check_language

    def transcribe(
        self, audios: Sequence[np.ndarray], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        self.calls += 1
        if self.check_language and options is not None:  # as the real engines do
            resolve_language(options.language, checkpoint_default=None)
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.seen.extend(len(a) for a in audios)
        out = []
        for a in audios:
            duration = len(a) / SR
            text = text_for(len(a))
            seg = Segment(id=0, start=0.0, end=duration, text=text)
            out.append(
                Transcript(
                    text=text,
                    language="en",
                    duration=duration,
                    segments=(seg,),
                    model=self.model_name,
                    engine=self.engine,
                )
            )
        return out


class Loader:
    """Replaces load_transcriber; remembers how it was called and what it built."""

    def __init__(self, raises: BaseException | None = None, **fake_kwargs: Any) -> None:
        self.raises = raises
        self.fake_kwargs = fake_kwargs
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.transcribers: list[FakeTranscriber] = []

    def __call__(self, *args: Any, **kwargs: Any) -> FakeTranscriber:
        self.calls.append((args, kwargs))
        if self.raises is not None:
            raise self.raises
        fake = FakeTranscriber(str(args[0] if args else kwargs.get("model")), **self.fake_kwargs)
        self.transcribers.append(fake)
        return fake

    @property
    def seen(self) -> list[int]:
        return [n for t in self.transcribers for n in t.seen]


@pytest.fixture(autouse=True)
def _clean_cli_state(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL", "ENGINE", "DEVICE", "COMPUTE_TYPE", "LANGUAGE", "BATCH_SIZE"):
        monkeypatch.delenv(f"TWI_ASR_{name}", raising=False)
    monkeypatch.setitem(twi_asr.cli._state, "verbose", False)


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Loader]:
    def _install(raises: BaseException | None = None, **fake_kwargs: Any) -> Loader:
        loader = Loader(raises, **fake_kwargs)
        monkeypatch.setattr("twi_asr.engines.load_transcriber", loader)
        return loader

    return _install


def write_wav(path: Path, n_samples: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n_samples, dtype=np.float32) / SR
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), SR, subtype="PCM_16")
    return path


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """in/ with three good clips (one in a subfolder), one non-audio file and one broken .wav."""
    root = tmp_path / "in"
    write_wav(root / "a.wav", 1600)
    write_wav(root / "b.wav", 3200)
    write_wav(root / "sub" / "c.wav", 4800)
    (root / "broken.wav").write_text("I am text, not audio\n" * 10)
    (root / "notes.txt").write_text("not media")
    return root


# ------------------------------------------------------------------ success
def test_single_file_prints_text_on_stdout(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 8000)
    loader = install()
    rc = main(["transcribe", str(wav), "-m", "tiny.en", "--batch-size", "3", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out == text_for(8000) + "\n"
    assert "Traceback" not in err
    assert len(loader.calls) == 1
    args, kwargs = loader.calls[0]
    assert args == ("tiny.en",)
    assert kwargs["batch_size"] == 3
    assert kwargs["device"] == "cpu"
    assert kwargs["engine"] == "auto"
    assert kwargs["long_form"] == "auto"
    main(["transcribe", str(wav), "--long-form", "sequential"])
    assert loader.calls[-1][1]["long_form"] == "sequential"


def test_several_files_on_stdout_get_headers(
    folder: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    install()
    rc = main(["transcribe", str(folder / "a.wav"), str(folder / "b.wav")])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert out == f"==> a.wav <==\n{text_for(1600)}\n==> b.wav <==\n{text_for(3200)}\n"


def test_json_without_output_dir_is_one_document_per_line(
    folder: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    install()
    rc = main(["transcribe", str(folder / "a.wav"), str(folder / "sub"), "-f", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    docs = [json.loads(line) for line in lines]
    assert [d["text"] for d in docs] == [text_for(1600), text_for(4800)]
    for d in docs:
        assert d["engine"] == "fake"
        assert d["segments"][0]["text"] == d["text"]
        assert set(d["timings"]) == {"decode_audio", "inference", "total"}


def test_output_dir_mirrors_subfolders(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "in"
    write_wav(root / "sub" / "x.wav", 1600)
    write_wav(root / "sub" / "deeper" / "y.wav", 3200)
    write_wav(root / "z.wav", 800)
    out_dir = tmp_path / "out"
    install()
    rc = main(["transcribe", str(root), "-o", str(out_dir), "-f", "txt,srt"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out == ""
    assert files_under(out_dir) == [
        "sub/deeper/y.srt",
        "sub/deeper/y.txt",
        "sub/x.srt",
        "sub/x.txt",
        "z.srt",
        "z.txt",
    ]
    assert (out_dir / "sub" / "x.txt").read_text() == text_for(1600) + "\n"
    assert "-->" in (out_dir / "sub" / "deeper" / "y.srt").read_text()


def test_format_all_writes_every_format(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install()
    assert main(["transcribe", str(wav), "-o", str(tmp_path / "out"), "-f", "all"]) == 0
    assert files_under(tmp_path / "out") == ["clip.json", "clip.srt", "clip.tsv", "clip.txt", "clip.vtt"]


def test_skip_existing_does_not_redo_done_files(
    folder: Path, tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    inputs = [str(folder / "a.wav"), str(folder / "b.wav"), str(folder / "sub")]
    first = install()
    assert main(["transcribe", *inputs, "-o", str(out_dir), "-f", "txt,json"]) == 0
    assert sorted(first.seen) == [1600, 3200, 4800]
    done = out_dir / "a.txt"
    done.write_text("kept\n")

    second = install()
    assert main(["transcribe", *inputs, "-o", str(out_dir), "-f", "txt,json", "--skip-existing"]) == 0
    assert second.seen == []
    assert done.read_text() == "kept\n"

    (out_dir / "b.json").unlink()  # b is only half done: redo it, and only it
    third = install()
    assert main(["transcribe", *inputs, "-o", str(out_dir), "-f", "txt,json", "--skip-existing"]) == 0
    assert third.seen == [3200]
    assert done.read_text() == "kept\n"
    assert (out_dir / "b.json").is_file()
    capsys.readouterr()

    fourth = install()  # the default (--overwrite) redoes everything
    assert main(["transcribe", *inputs, "-o", str(out_dir), "-f", "txt,json"]) == 0
    assert sorted(fourth.seen) == [1600, 3200, 4800]
    assert done.read_text() == text_for(1600) + "\n"


# ------------------------------------------------------------ failing inputs
def test_folder_with_a_bad_file_writes_the_others_and_names_it(
    folder: Path, tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    loader = install()
    main(["transcribe", str(folder), "-o", str(out_dir)])
    out, err = capsys.readouterr()
    assert files_under(out_dir) == ["a.txt", "b.txt", "sub/c.txt"]
    assert (out_dir / "b.txt").read_text() == text_for(3200) + "\n"
    assert "broken.wav" in err
    assert "Traceback" not in err
    assert out == ""
    assert sorted(loader.seen) == [1600, 3200, 4800]


def test_folder_with_a_bad_file_exits_1(
    folder: Path, tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    install()
    assert main(["transcribe", str(folder), "-o", str(tmp_path / "out")]) == 1


def test_missing_path_is_reported(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    loader = install()
    missing = tmp_path / "nope.wav"
    main(["transcribe", str(missing)])
    out, err = capsys.readouterr()
    assert out == ""
    assert "nope.wav" in err
    assert "no such file" in err
    assert "Traceback" not in err
    assert loader.calls == []  # nothing to do: the model is not even loaded


def test_missing_path_next_to_a_good_one_still_transcribes_the_good_one(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "ok.wav", 1600)
    install()
    main(["transcribe", str(tmp_path / "nope.wav"), str(wav)])
    out, err = capsys.readouterr()
    assert text_for(1600) in out
    assert "nope.wav" in err


def test_missing_path_exits_1(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    install()
    assert main(["transcribe", str(tmp_path / "nope.wav")]) == 1


def test_folder_without_media_exits_1(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    loader = install()
    assert main(["transcribe", str(tmp_path / "docs")]) == 1
    err = capsys.readouterr().err
    assert "no audio or video files found" in err
    assert loader.calls == []


# ----------------------------------------------------------------- bad usage
def test_several_formats_without_output_dir_exit_2(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    loader = install()
    assert main(["transcribe", str(wav), "-f", "srt,vtt"]) == 2
    out, err = capsys.readouterr()
    assert "--output-dir" in err
    assert out == ""
    assert loader.calls == []


def test_unknown_format_exits_2(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    loader = install()
    assert main(["transcribe", str(wav), "-f", "docx"]) == 2
    err = capsys.readouterr().err
    assert "'docx'" in err
    assert "srt" in err
    assert loader.calls == []


@pytest.mark.parametrize(
    "argv",
    [
        ["transcribe", "--bogus-flag", "x.wav"],
        ["transcribe", "x.wav", "--beam-size", "0"],
        ["transcribe", "x.wav", "--temperature", "hot"],
        ["transcribe", "x.wav", "--task", "summarise"],
        ["no-such-command"],
    ],
)
def test_bad_usage_exits_2(
    argv: list[str], install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    loader = install()
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert loader.calls == []


def test_unknown_language_exits_2(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    """The real engines validate --language (resolve_language); the fake does the same here."""
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install(check_language=True)
    assert main(["transcribe", str(wav), "--language", "klingon"]) == 2
    out, err = capsys.readouterr()
    assert "unknown language 'klingon'" in err
    assert "Traceback" not in err
    assert out == ""


def test_unknown_language_is_rejected_before_loading_the_model(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    loader = install()
    assert main(["transcribe", str(wav), "--language", "klingon"]) == 2
    assert loader.calls == []


@pytest.mark.parametrize("language", ["tw", "akan", "en", "English", "auto"])
def test_known_languages_are_accepted(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str], language: str
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install(check_language=True)
    assert main(["transcribe", str(wav), "--language", language]) == 0


# -------------------------------------------------------- environment errors
@pytest.mark.parametrize(
    "error",
    [
        ModelNotFoundError("model 'x/y' is not in the local cache. Use --model tiny.en"),
        EnvironmentProblem("no GPU here"),
        DependencyMissingError("pip install 'twi-asr[ct2]'"),
    ],
)
def test_environment_problem_exits_3_without_traceback(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install(raises=error)
    assert main(["transcribe", str(wav), "-m", "x/y"]) == 3
    out, err = capsys.readouterr()
    assert str(error) in err
    assert "Traceback" not in err
    assert out == ""


def test_environment_problem_with_verbose_shows_the_traceback(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install(raises=ModelNotFoundError("model 'x/y' not found"))
    assert main(["--verbose", "transcribe", str(wav), "-m", "x/y"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "model 'x/y' not found" in err


def test_unexpected_error_exits_1_with_one_line(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install(raises=RuntimeError("kaboom"))
    assert main(["transcribe", str(wav)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "RuntimeError" in lines[0]
    assert "kaboom" in lines[0]
    assert "--verbose" in lines[0]
    assert out == ""


def test_unexpected_error_with_verbose_shows_the_traceback(
    tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "clip.wav", 1600)
    install(raises=RuntimeError("kaboom"))
    assert main(["-v", "transcribe", str(wav)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "kaboom" in err


# ---------------------------------------------------------------- interrupt
def _interrupted_run(folder: Path, out_dir: Path, install: Callable[..., Loader]) -> int:
    """Three clips one per batch; the fake engine raises KeyboardInterrupt on the second."""
    install(fail_on_call=2)
    inputs = [str(folder / "a.wav"), str(folder / "b.wav"), str(folder / "sub" / "c.wav")]
    return main(["transcribe", *inputs, "-o", str(out_dir), "-f", "txt,json", "--batch-size", "1"])


def test_keyboard_interrupt_keeps_finished_outputs(
    folder: Path, tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    _interrupted_run(folder, out_dir, install)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # a.wav finished before the interrupt: both its outputs are complete; nothing else, no temp files
    assert files_under(out_dir) == ["a.json", "a.txt"]
    assert (out_dir / "a.txt").read_text() == text_for(1600) + "\n"
    assert json.loads((out_dir / "a.json").read_text())["text"] == text_for(1600)


def test_keyboard_interrupt_exits_130_with_a_message(
    folder: Path, tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _interrupted_run(folder, tmp_path / "out", install)
    err = capsys.readouterr().err
    assert rc == 130
    assert "interrupted" in err


# ------------------------------------------------------------------- models
def test_models_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    aliases = {m["alias"]: m for m in doc["models"]}
    assert {"tiny.en", "twi"} <= set(aliases)
    assert aliases["twi"]["default"] is True
    assert aliases["tiny.en"]["format"] == "ctranslate2"
    assert isinstance(doc["cache_dir"], str)
    for m in doc["models"]:
        assert {"source", "format", "base", "licence", "reported_wer", "status", "description"} <= set(m)


def test_models_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny.en" in out
    assert "twi" in out


def test_no_arguments_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main([])
    captured = capsys.readouterr()
    assert rc in (0, 2)
    assert "transcribe" in captured.out + captured.err


def test_bad_batch_size_env_is_a_clean_usage_error() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TWI_ASR_BATCH_SIZE": "lots"}
    proc = subprocess.run(
        [sys.executable, "-m", "twi_asr", "--help"], capture_output=True, text=True, env=env, timeout=30
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 2)


# ------------------------------------------------------------------- output
def test_s3_output_without_credentials_fails_before_any_work(
    folder: Path,
    install: Callable[..., Loader],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loader = install()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["transcribe", str(folder / "a.wav"), "-o", "s3://bucket/out"]) == 3
    err = capsys.readouterr().err
    assert "no AWS credentials" in err and "Traceback" not in err
    assert loader.calls == []  # the sink is opened before the model loads


def test_unwritable_output_dir_is_an_environment_problem(
    folder: Path, tmp_path: Path, install: Callable[..., Loader], capsys: pytest.CaptureFixture[str]
) -> None:
    install()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    rc = main(["transcribe", str(folder / "a.wav"), "-o", str(blocker / "out")])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "cannot write to" in err and "Traceback" not in err
