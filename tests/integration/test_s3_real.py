"""S3 for audio in and model artifacts, against a real S3 endpoint over a socket.

A moto server runs on a loopback port for this module; boto3 talks to it via
``AWS_ENDPOINT_URL`` exactly as it would to AWS or MinIO.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from twi_asr.text import wer

from .conftest import Clip

pytestmark = pytest.mark.slow

CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    cmd = [str(server)] if server.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in CREDS.items()
                                                           if k != "AWS_DEFAULT_REGION"},
                        region_name="us-east-1")  # fmt: skip


def _env(endpoint: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **CREDS, "AWS_ENDPOINT_URL": endpoint, "TWI_ASR_CACHE_DIR": str(tmp_path / "cache")}


def _run(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twi_asr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def test_transcribe_an_s3_prefix(s3, s3_endpoint: str, speech_clips: list[Clip], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="calls")
    for i, clip in enumerate(speech_clips[:3]):
        s3.upload_file(str(clip.path), "calls", f"2026/day{i % 2}/{clip.path.name}")
    s3.put_object(Bucket="calls", Key="2026/README.txt", Body=b"not audio")
    out = tmp_path / "out"
    proc = _run("transcribe", "s3://calls/2026/", "-o", out, "-f", "json", "--model", "tiny.en",
                env=_env(s3_endpoint, tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = {p.relative_to(out).as_posix(): json.loads(p.read_text()) for p in out.rglob("*.json")}
    expected = {f"day{i % 2}/{c.path.stem}.json": c.text for i, c in enumerate(speech_clips[:3])}
    assert set(docs) == set(expected)  # the key layout under the prefix is mirrored
    assert wer(list(expected.values()), [docs[k]["text"] for k in expected]) < 0.35


def test_missing_bucket_is_a_clear_failure(s3_endpoint: str, tmp_path: Path) -> None:
    proc = _run("transcribe", "s3://no-such-bucket/x/", "--model", "tiny.en", env=_env(s3_endpoint, tmp_path))
    assert proc.returncode in (1, 3), proc.stderr
    assert "bucket does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_model_from_s3_is_downloaded_once(  # type: ignore[no-untyped-def]
    s3, s3_endpoint: str, speech_clips: list[Clip], tiny_en_ct2: Path, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="models")
    for f in tiny_en_ct2.iterdir():
        if f.is_file():
            s3.upload_file(str(f), "models", f"whisper/tiny.en/{f.name}")
    env = _env(s3_endpoint, tmp_path)
    clip = speech_clips[0]
    proc = _run("transcribe", clip.path, "--model", "s3://models/whisper/tiny.en/", env=env)
    assert proc.returncode == 0, proc.stderr
    assert wer(clip.text, proc.stdout) < 0.35
    [cached] = list((tmp_path / "cache" / "s3").iterdir())
    model_bin = cached / "model.bin"
    first_mtime = model_bin.stat().st_mtime_ns
    proc = _run("transcribe", clip.path, "--model", "s3://models/whisper/tiny.en", env=env)
    assert proc.returncode == 0, proc.stderr
    assert model_bin.stat().st_mtime_ns == first_mtime  # reused, not downloaded again
    # a changed artifact is fetched again
    s3.put_object(Bucket="models", Key="whisper/tiny.en/config.json",
                  Body=(tiny_en_ct2 / "config.json").read_bytes() + b"\n")  # fmt: skip
    proc = _run("models", "path", "s3://models/whisper/tiny.en/", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (cached / "config.json").read_bytes() == (tiny_en_ct2 / "config.json").read_bytes() + b"\n"
    assert model_bin.stat().st_mtime_ns == first_mtime
