"""S3 for audio in, results out and model artifacts, against a real S3 endpoint over a socket.

A moto server runs on a loopback port for this module; boto3 talks to it via
``AWS_ENDPOINT_URL`` (or ``--s3-endpoint-url``) exactly as it would to AWS or
MinIO. Its request log is kept, so "downloaded once" is checked by counting
the GETs the server actually answered. A second moto server enforces IAM
(``INITIAL_NO_AUTH_ACTION_COUNT``): a user whose policy only allows reading
one bucket meets real AccessDenied answers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twi_asr.text import wer

from .conftest import Clip
from .services import CREDS, free_port, start_moto

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class MotoServer:
    url: str
    log: Path

    def requests(self, method: str, path: str) -> int:
        """How many ``METHOD`` requests for URLs starting with ``path`` the server has answered."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))  # 206s are coloured
        return len(re.findall(rf'"{method} {re.escape(path)}[^ ]* HTTP/1\.[01]"', text))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    proc, url = start_moto(log)
    yield MotoServer(url, log)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_endpoint(moto: MotoServer) -> str:
    return moto.url


@pytest.fixture(scope="module")
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in CREDS.items()
                                                           if k != "AWS_DEFAULT_REGION"},
                        region_name="us-east-1")  # fmt: skip


def _env(endpoint: str | None, tmp_path: Path, creds: dict[str, str] = CREDS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TWI_ASR_S3"))}
    env.update(creds)
    env["TWI_ASR_CACHE_DIR"] = str(tmp_path / "cache")
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def _run(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twi_asr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The run failed with exactly one ``error:`` line holding ``words``, and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


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
    s3, s3_endpoint: str, moto: MotoServer, speech_clips: list[Clip], tiny_en_ct2: Path, tmp_path: Path
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
    weights_gets = moto.requests("GET", "/models/whisper/tiny.en/model.bin")
    all_gets = moto.requests("GET", "/models/whisper/tiny.en/")
    assert weights_gets >= 1  # ranged GETs for a big file: one or more
    proc = _run("transcribe", clip.path, "--model", "s3://models/whisper/tiny.en", env=env)
    assert proc.returncode == 0, proc.stderr
    assert wer(clip.text, proc.stdout) < 0.35
    assert model_bin.stat().st_mtime_ns == first_mtime  # reused, not downloaded again
    assert moto.requests("GET", "/models/whisper/tiny.en/") == all_gets  # not one object GET the second time
    # a changed artifact is fetched again
    s3.put_object(Bucket="models", Key="whisper/tiny.en/config.json",
                  Body=(tiny_en_ct2 / "config.json").read_bytes() + b"\n")  # fmt: skip
    proc = _run("models", "path", "s3://models/whisper/tiny.en/", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (cached / "config.json").read_bytes() == (tiny_en_ct2 / "config.json").read_bytes() + b"\n"
    assert model_bin.stat().st_mtime_ns == first_mtime
    assert moto.requests("GET", "/models/whisper/tiny.en/model.bin") == weights_gets  # only config.json again
    assert moto.requests("GET", "/models/whisper/tiny.en/config.json") == 2


# ------------------------------------------------------------- results to S3
def test_s3_in_and_s3_out_end_to_end(  # type: ignore[no-untyped-def]
    s3, s3_endpoint: str, speech_clips: list[Clip], tmp_path: Path
) -> None:
    """``twi-asr transcribe s3://bucket/in -o s3://bucket/out --model tiny.en``, endpoint from the flag."""
    s3.create_bucket(Bucket="studio")
    clips = speech_clips[3:5]
    for i, clip in enumerate(clips):
        s3.upload_file(str(clip.path), "studio", f"in/day{i}/{clip.path.name}")
    env = _env(None, tmp_path)  # no AWS_ENDPOINT_URL: --s3-endpoint-url must carry it alone
    args = ("transcribe", "s3://studio/in", "-o", "s3://studio/out", "-f", "json,srt", "--model", "tiny.en",
            "--s3-endpoint-url", s3_endpoint)  # fmt: skip
    proc = _run(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    expected = [f"out/day{i}/{c.path.stem}.{f}" for i, c in enumerate(clips) for f in ("json", "srt")]
    assert _keys(s3, "studio", "out/") == sorted(expected)  # mirrors in/, nothing else written
    docs = {i: json.loads(s3.get_object(Bucket="studio", Key=f"out/day{i}/{c.path.stem}.json")["Body"].read())
            for i, c in enumerate(clips)}  # fmt: skip
    assert wer([c.text for c in clips], [docs[i]["text"] for i in range(len(clips))]) < 0.35
    srt = s3.get_object(Bucket="studio", Key=f"out/day0/{clips[0].path.stem}.srt")
    assert srt["ContentType"].startswith("application/x-subrip")
    assert b" --> " in srt["Body"].read()

    # --skip-existing: nothing is redone, nothing is rewritten
    stamps = {k: s3.head_object(Bucket="studio", Key=k)["ETag"] for k in expected}
    s3.put_object(Bucket="studio", Key=expected[0], Body=b"marker")  # would be overwritten by a redo
    proc = _run(*args, "--skip-existing", env=env)
    assert proc.returncode == 0, proc.stderr
    assert s3.get_object(Bucket="studio", Key=expected[0])["Body"].read() == b"marker"
    assert {k: s3.head_object(Bucket="studio", Key=k)["ETag"] for k in expected[1:]} == {
        k: stamps[k] for k in expected[1:]
    }


def test_output_to_a_missing_bucket_fails_before_any_work(s3_endpoint: str, speech_clips: list[Clip],
                                                          tmp_path: Path) -> None:  # fmt: skip
    # a model that does not exist: the bucket is checked first, so its error is the one we see
    proc = _run("transcribe", speech_clips[0].path, "-o", "s3://no-such-results/x", "--model", "nope/none",
                env=_env(s3_endpoint, tmp_path))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, "s3://no-such-results/x", "bucket does not exist")


def test_model_from_a_missing_bucket(s3_endpoint: str, speech_clips: list[Clip], tmp_path: Path) -> None:
    proc = _run("transcribe", speech_clips[0].path, "--model", "s3://no-such-models/m/",
                env=_env(s3_endpoint, tmp_path))  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # a missing model is an environment problem, like the hub's
    _one_line_error(proc, "s3://no-such-models/m/", "bucket does not exist")


def test_missing_input_bucket_is_one_line(s3_endpoint: str, tmp_path: Path) -> None:
    proc = _run("transcribe", "s3://no-such-bucket/x/", "--model", "tiny.en", env=_env(s3_endpoint, tmp_path))
    assert proc.returncode == 1, proc.stderr
    _one_line_error(proc, "s3://no-such-bucket/x/", "bucket does not exist")


# ---------------------------------------------------------------- pagination
def test_listing_returns_every_key_past_one_page(  # type: ignore[no-untyped-def]
    s3, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 keys is one S3 page: 1,001 media keys and 50 others need two pages, and all must come back."""
    from twi_asr import storage

    s3.create_bucket(Bucket="archive")
    keys = [f"calls/{i // 100:02d}/c{i:04d}.wav" for i in range(1001)]
    keys += [f"calls/notes/n{i}.txt" for i in range(50)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket="archive", Key=k, Body=b"x"), keys))
    for name, value in {**CREDS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    storage.set_endpoint_url(None)
    client = storage.s3_client()
    pages: list[int] = []
    event = "after-call.s3.ListObjectsV2"
    client.meta.events.register(event, lambda parsed, **_: pages.append(parsed["KeyCount"]))
    try:
        listed = list(storage.list_s3("s3://archive/calls/", client=client))
        assert len(pages) >= 2 and sum(pages) == len(keys)  # really paginated
        assert sorted(uri for uri, _ in listed) == sorted(f"s3://archive/{k}" for k in keys)
        found = storage.discover(["s3://archive/calls"])
        assert len(found.items) == 1001 and len(found.skipped) == 50 and found.missing == []
        assert found.items[0].relative == "00/c0000.wav"
    finally:
        client.meta.events.unregister(event)


# ------------------------------------------------------- credentials, endpoint
NO_CREDS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata probe either
}


@pytest.mark.parametrize(
    ("args", "uri"),
    [
        (("s3://calls/2026/",), "s3://calls/2026/"),
        (("{clip}", "-o", "s3://calls/out"), "s3://calls/out"),
        (("{clip}", "--model", "s3://models/whisper/tiny.en/"), "s3://models/whisper/tiny.en/"),
    ],
    ids=["input", "output", "model"],
)
def test_missing_credentials_say_what_to_set(
    s3_endpoint: str, speech_clips: list[Clip], tmp_path: Path, args: tuple[str, ...], uri: str
) -> None:
    argv = [a.format(clip=speech_clips[0].path) for a in args]
    proc = _run("transcribe", *argv, env=_env(s3_endpoint, tmp_path, creds=NO_CREDS))
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, uri, "no AWS credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "aws configure")


def test_unreachable_endpoint_is_named(speech_clips: list[Clip], tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = _run("transcribe", "s3://calls/2026/", "--s3-endpoint-url", dead, env=_env(None, tmp_path))
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, f"cannot reach the S3 endpoint {dead}", "--s3-endpoint-url")
    assert time.monotonic() - started < 60


def test_bad_endpoint_flag_is_a_usage_error(tmp_path: Path) -> None:
    env = _env(None, tmp_path)
    proc = _run("transcribe", "s3://calls/2026/", "--s3-endpoint-url", "localhost:9000", env=env)
    assert proc.returncode == 2, proc.stderr
    _one_line_error(proc, "localhost:9000", "expected a URL")


# ---------------------------------------------------------------- AccessDenied
@dataclass(frozen=True)
class IamS3:
    url: str
    admin: dict[str, str]
    reader: dict[str, str]  # may list and read bucket "shelf"; nothing else


@pytest.fixture(scope="module")
def iam_s3(tmp_path_factory: pytest.TempPathFactory, speech_clips: list[Clip]) -> Iterator[IamS3]:
    """A moto server that enforces IAM after its first 6 requests (the 6 that create two users)."""
    import boto3

    log = tmp_path_factory.mktemp("moto-iam") / "requests.log"
    proc, url = start_moto(log, {"INITIAL_NO_AUTH_ACTION_COUNT": "6"})
    try:
        iam = boto3.client("iam", endpoint_url=url, aws_access_key_id="boot", aws_secret_access_key="boot",
                           region_name="us-east-1")  # fmt: skip
        policies = {
            "admin": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            "reader": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
                        "Resource": ["arn:aws:s3:::shelf", "arn:aws:s3:::shelf/*"]}],
        }  # fmt: skip
        creds: dict[str, dict[str, str]] = {}
        for user, statements in policies.items():  # 3 unauthenticated requests per user
            iam.create_user(UserName=user)
            document = json.dumps({"Version": "2012-10-17", "Statement": statements})
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=document)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            creds[user] = {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        admin = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                             aws_access_key_id=creds["admin"]["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=creds["admin"]["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        for bucket in ("shelf", "vault"):
            admin.create_bucket(Bucket=bucket)
            admin.upload_file(str(speech_clips[0].path), bucket, f"in/{speech_clips[0].path.name}")
        yield IamS3(url, creds["admin"], creds["reader"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_reader_can_read_what_its_policy_allows(iam_s3: IamS3, tmp_path: Path) -> None:
    """The control: this user on this server works where its policy allows (so the denials below are real)."""
    proc = _run("transcribe", "s3://shelf/in/", "--model", "tiny.en",
                env=_env(iam_s3.url, tmp_path, creds=iam_s3.reader))  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # list + get allowed on shelf
    assert proc.stdout.strip()


def test_access_denied_on_input(iam_s3: IamS3, tmp_path: Path) -> None:
    proc = _run("transcribe", "s3://vault/in/", "--model", "tiny.en",
                env=_env(iam_s3.url, tmp_path, creds=iam_s3.reader))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, "s3://vault/in/", "access denied", "AccessDenied")


def test_access_denied_on_output(iam_s3: IamS3, tmp_path: Path) -> None:
    """Reading s3://shelf is allowed, writing there is not: the first PUT stops the run with exit 3."""
    proc = _run("transcribe", "s3://shelf/in/", "-o", "s3://shelf/out", "--model", "tiny.en",
                env=_env(iam_s3.url, tmp_path, creds=iam_s3.reader))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, "s3://shelf/out/", "access denied", "AccessDenied")


def test_access_denied_on_model(iam_s3: IamS3, speech_clips: list[Clip], tmp_path: Path) -> None:
    proc = _run("transcribe", speech_clips[0].path, "--model", "s3://vault/in/",
                env=_env(iam_s3.url, tmp_path, creds=iam_s3.reader))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, "s3://vault/in/", "access denied")


def test_unknown_keys_are_rejected_with_a_hint(iam_s3: IamS3, tmp_path: Path) -> None:
    env = _env(iam_s3.url, tmp_path)  # the "test" keys: unknown to this server's IAM
    proc = _run("transcribe", "s3://shelf/in/", "--model", "tiny.en", env=env)
    assert proc.returncode == 3, proc.stderr
    _one_line_error(proc, "s3://shelf/in/", "rejected the credentials", "InvalidAccessKeyId", "aws configure")
