"""``twi-asr bento serve|build`` refuse bad settings and unknown models in one line, before BentoML."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("bentoml")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    return subprocess.run(
        [sys.executable, "-m", "twi_asr", "bento", *args],
        capture_output=True,
        text=True,
        env={**base, "HF_HUB_OFFLINE": "1", **env},
        timeout=60,
    )


def test_a_bad_variable_is_exit_2_in_one_line() -> None:
    r = run("serve", "--model", "tiny.en", TWI_ASR_MAX_BATCH_SIZE="many")
    assert r.returncode == 2, r.stderr
    assert "max_batch_size" in r.stderr and "Traceback" not in r.stderr


def test_an_unknown_model_is_exit_3_before_bentoml_builds() -> None:
    r = run("build", "--model", "no-such-model")
    assert r.returncode == 3, r.stderr
    assert "no-such-model" in r.stderr and "Traceback" not in r.stderr
