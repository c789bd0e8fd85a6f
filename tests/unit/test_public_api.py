"""Guards the public API of ``twi_asr``: its names, its cheap import, and the console entry point.

A change here is a change users see: if a test fails because a name was
added or removed on purpose, update the expected list in the same commit.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import twi_asr

EXPECTED_ALL = [
    "Audio",
    "AudioError",
    "AudioTooLongError",
    "DependencyMissingError",
    "EnvironmentProblem",
    "InputError",
    "InputNotFoundError",
    "ModelNotFoundError",
    "Segment",
    "Timings",
    "TranscribeOptions",
    "Transcriber",
    "Transcript",
    "TwiAsrError",
    "UsageError",
    "Word",
    "__version__",
    "decode_audio",
    "load_transcriber",
]

#: Libraries that must not load on ``import twi_asr`` / ``import twi_asr.cli`` / ``--help``.
HEAVY = (
    "torch", "transformers", "ctranslate2", "faster_whisper", "boto3", "docker", "numpy",
    "bentoml", "_bentoml_sdk", "_bentoml_impl", "jinja2", "jiwer",
)  # fmt: skip


def _run_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _heavy_loaded_after(statement: str) -> list[str]:
    """Run ``statement`` in a fresh interpreter; the heavy top-level modules it loaded."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_all_is_the_expected_sorted_list() -> None:
    assert twi_asr.__all__ == EXPECTED_ALL
    assert sorted(twi_asr.__all__) == twi_asr.__all__
    assert len(set(twi_asr.__all__)) == len(twi_asr.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(twi_asr, name)
    assert value is not None
    assert name in dir(twi_asr)


def test_lazy_names_are_the_real_objects() -> None:
    from twi_asr.audio import Audio, decode_audio
    from twi_asr.engines import load_transcriber
    from twi_asr.engines.base import Transcriber

    assert twi_asr.Audio is Audio
    assert twi_asr.decode_audio is decode_audio
    assert twi_asr.load_transcriber is load_transcriber
    assert twi_asr.Transcriber is Transcriber


def test_error_classes_form_one_tree_with_exit_codes() -> None:
    for name in EXPECTED_ALL:
        value = getattr(twi_asr, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, twi_asr.TwiAsrError), name
            assert value.exit_code in (1, 2, 3), name
    assert twi_asr.UsageError.exit_code == 2
    assert twi_asr.ModelNotFoundError.exit_code == 3
    assert twi_asr.AudioError.exit_code == 1


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = twi_asr.no_such_name  # type: ignore[attr-defined]


def test_version_matches_installed_metadata() -> None:
    from importlib.metadata import version

    assert twi_asr.__version__ == version("twi-asr")


@pytest.mark.parametrize("statement", ["import twi_asr", "import twi_asr.cli"])
def test_import_does_not_load_heavy_libraries(statement: str) -> None:
    assert _heavy_loaded_after(statement) == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["bento", "--help"], ["bento", "serve", "--help"], ["batch", "--help"], ["eval", "--help"]],
)
def test_help_path_does_not_load_heavy_libraries(argv: list[str]) -> None:
    statement = (
        "import runpy\n"
        f"sys.argv = ['twi-asr', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('twi_asr', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    assert _heavy_loaded_after(statement) == []


def test_module_help_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twi_asr", "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "transcribe" in proc.stdout
    assert "models" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_module_version_prints_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twi_asr", "--version"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"twi-asr {twi_asr.__version__}"


def test_main_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from twi_asr.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"twi-asr {twi_asr.__version__}"
