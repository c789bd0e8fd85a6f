"""Tests for twi_asr.storage: discovery of local inputs (files, folders, globs), S3 URI parsing,
S3 error mapping and the S3 operations (against a moto server on a loopback port, in a thread).

Discovery only looks at names and the file system, never at content, so the
"media" files here are a few bytes of nothing with the right extension.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from twi_asr.errors import EnvironmentProblem, InputError, InputNotFoundError, UsageError
from twi_asr.storage import Discovery, InputItem, _glob_base, _unique, discover, is_media, split_s3


def touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def rels(found: Discovery) -> list[str]:
    return [i.relative for i in found.items]


def stems(found: Discovery) -> list[str]:
    return [str(PurePosixPath(i.relative).with_suffix("")) for i in found.items]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """rec/ with media at two depths, non-media, hidden files and a hidden folder."""
    root = tmp_path / "rec"
    touch(
        root,
        "b.wav",
        "a.MP3",
        "notes.txt",
        "cover.jpg",
        ".hidden.wav",
        ".git/objects/x.wav",
        "day1/c.flac",
        "day1/d.m4a",
        "day1/readme.md",
        "day1/deep/e.ogg",
        "day1/.DS_Store",
    )
    return root


# ------------------------------------------------------------------ folders
def test_folder_is_recursive_and_media_only(tree: Path) -> None:
    found = discover([str(tree)])
    assert sorted(rels(found)) == ["a.MP3", "b.wav", "day1/c.flac", "day1/d.m4a", "day1/deep/e.ogg"]
    assert all(not i.explicit for i in found.items)
    assert all(Path(i.source).is_file() for i in found.items)
    assert found.missing == []


def test_folder_counts_non_media_in_skipped(tree: Path) -> None:
    found = discover([str(tree)])
    assert sorted(Path(s).name for s in found.skipped) == ["cover.jpg", "notes.txt", "readme.md"]


def test_folder_ignores_hidden_files_and_folders(tree: Path) -> None:
    found = discover([str(tree)])
    everything = [i.source for i in found.items] + found.skipped
    assert not any("/." in s.replace(os.sep, "/") for s in everything), everything


def test_folder_order_is_sorted_and_deterministic(tree: Path) -> None:
    first = discover([str(tree)])
    second = discover([str(tree)])
    assert first == second
    # within each folder, files come in sorted name order
    by_folder: dict[str, list[str]] = {}
    for rel in rels(first):
        parent = str(PurePosixPath(rel).parent)
        by_folder.setdefault(parent, []).append(PurePosixPath(rel).name)
    for names in by_folder.values():
        assert names == sorted(names)


def test_folder_with_trailing_slash_gives_the_same_names(tree: Path) -> None:
    assert rels(discover([str(tree) + "/"])) == rels(discover([str(tree)]))


def test_empty_folder_is_not_missing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    found = discover([str(tmp_path / "empty")])
    assert found.items == [] and found.missing == [] and found.skipped == []


# ------------------------------------------------------------ explicit files
def test_explicit_media_file(tree: Path) -> None:
    found = discover([str(tree / "day1" / "c.flac")])
    assert found.items == [InputItem(source=str(tree / "day1" / "c.flac"), relative="c.flac", explicit=True)]


def test_explicit_non_media_file_is_still_an_item(tree: Path) -> None:
    found = discover([str(tree / "notes.txt")])
    assert rels(found) == ["notes.txt"]
    assert found.items[0].explicit is True
    assert found.skipped == []


def test_explicit_hidden_file_is_still_an_item(tree: Path) -> None:
    found = discover([str(tree / ".hidden.wav")])
    assert rels(found) == [".hidden.wav"]


def test_relative_spec(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    found = discover(["rec/day1"])
    assert sorted(rels(found)) == ["c.flac", "d.m4a", "deep/e.ogg"]


# ---------------------------------------------------------------- globs
def test_glob_in_one_folder(tree: Path) -> None:
    found = discover([str(tree / "day1" / "*.flac")])
    assert rels(found) == ["c.flac"]
    assert found.items[0].explicit is False  # a glob selects media, like a folder


def test_double_star_glob_names_are_relative_to_the_glob_base(tree: Path) -> None:
    found = discover([str(tree / "**" / "*.wav")])
    # hidden files and folders are not matched by ``*`` / ``**``
    assert rels(found) == ["b.wav"]
    found = discover([str(tree / "**" / "*.ogg")])
    assert rels(found) == ["day1/deep/e.ogg"]
    found = discover([str(tree / "day1" / "**" / "*")])
    assert sorted(rels(found)) == ["c.flac", "d.m4a", "deep/e.ogg"]  # media only
    assert [Path(p).name for p in found.skipped] == ["readme.md"]  # counted, not failed


def test_relative_double_star_glob(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    found = discover(["**/*.ogg", "day1/*.m4a"])
    assert rels(found) == ["day1/deep/e.ogg", "d.m4a"]


def test_glob_matches_come_sorted(tmp_path: Path) -> None:
    touch(tmp_path, "c.wav", "a.wav", "b.wav")
    assert rels(discover([str(tmp_path / "*.wav")])) == ["a.wav", "b.wav", "c.wav"]


def test_glob_base() -> None:
    assert _glob_base("rec/day1/*.wav") == Path("rec/day1")
    assert _glob_base("rec/**/x?.wav") == Path("rec")
    assert _glob_base("*.wav") == Path(".")
    assert _glob_base("/data/[ab]/*.wav") == Path("/data")


def test_tilde_glob_keeps_subfolders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    touch(tmp_path, "rec/sub1/a.wav", "rec/sub2/a.wav")
    found = discover(["~/rec/**/*.wav"])
    assert rels(found) == ["sub1/a.wav", "sub2/a.wav"]


def test_tilde_folder_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    touch(tmp_path, "rec/sub1/a.wav")
    assert rels(discover(["~/rec"])) == ["sub1/a.wav"]


# --------------------------------------------------------------- missing
def test_missing_specs_are_listed(tree: Path) -> None:
    found = discover(
        [str(tree / "nope.wav"), str(tree / "b.wav"), str(tree / "*.nothing"), str(tree / "no-dir")]
    )
    assert rels(found) == ["b.wav"]
    assert found.missing == [str(tree / "nope.wav"), str(tree / "*.nothing"), str(tree / "no-dir")]


def test_glob_matching_only_folders_is_missing(tmp_path: Path) -> None:
    (tmp_path / "d1").mkdir()
    found = discover([str(tmp_path / "d*")])
    assert found.items == []
    assert found.missing == [str(tmp_path / "d*")]


# ------------------------------------------------------------- duplicates
def test_duplicates_are_deduplicated(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    wav = str(tree / "b.wav")
    found = discover([wav, wav, "b.wav", "./b.wav", str(tree / "*.wav"), str(tree)])
    sources = [Path(i.source).resolve() for i in found.items]
    assert len(sources) == len(set(sources))
    assert sources.count((tree / "b.wav").resolve()) == 1
    # the first spec that named it wins: explicit, with its plain name
    assert found.items[0] == InputItem(source=wav, relative="b.wav", explicit=True)
    assert sorted(rels(found)) == ["a.MP3", "b.wav", "day1/c.flac", "day1/d.m4a", "day1/deep/e.ogg"]


# ------------------------------------------------------ clashing relative names
def test_same_stem_different_extension_gets_distinct_output_stems(tmp_path: Path) -> None:
    """``a.wav`` and ``a.mp3`` would both write ``a.txt``: the second one is renamed."""
    touch(tmp_path, "a.wav", "a.mp3", "b.wav")
    found = discover([str(tmp_path)])
    assert len(found.items) == 3
    assert len(set(stems(found))) == 3
    assert sorted(rels(found)) == ["a-2.wav", "a.mp3", "b.wav"]


def test_same_name_from_two_explicit_files_is_made_unique(tmp_path: Path) -> None:
    touch(tmp_path, "x/a.wav", "y/a.wav", "z/a.wav")
    found = discover([str(tmp_path / d / "a.wav") for d in "xyz"])
    assert rels(found) == ["a.wav", "a-2.wav", "a-3.wav"]


def test_unique_gives_distinct_stems() -> None:
    taken: set[str] = set()
    names = ["a.wav", "a.mp3", "a.flac", "a-2.wav", "sub/a.wav", "sub/a.ogg", "b"]
    out = [_unique(n, taken) for n in names]
    out_stems = [str(PurePosixPath(n).with_suffix("")) for n in out]
    assert len(set(out_stems)) == len(names), out
    assert out[:3] == ["a.wav", "a-2.mp3", "a-3.flac"]
    assert out[4:6] == ["sub/a.wav", "sub/a-2.ogg"]
    # the suffix and the folder are kept
    for before, after in zip(names, out, strict=True):
        assert PurePosixPath(before).suffix == PurePosixPath(after).suffix
        assert PurePosixPath(before).parent == PurePosixPath(after).parent


def test_unique_is_a_no_op_without_clashes() -> None:
    taken: set[str] = set()
    assert [_unique(n, taken) for n in ["a.wav", "b.wav", "sub/a.wav"]] == ["a.wav", "b.wav", "sub/a.wav"]


# ------------------------------------------------------------------- misc
@pytest.mark.parametrize("name", ["a.wav", "A.WAV", "x/y.mp3", "clip.webm", "v.MP4", "s.opus", "r.3gp"])
def test_is_media_true(name: str) -> None:
    assert is_media(name)


@pytest.mark.parametrize("name", ["a.txt", "wav", "a.wav.bak", "noext", ".wav", "a.jpg"])
def test_is_media_false(name: str) -> None:
    assert not is_media(name)


def test_input_item_is_s3() -> None:
    assert InputItem(source="s3://b/k.wav", relative="k.wav").is_s3
    assert not InputItem(source="/tmp/s3:/k.wav", relative="k.wav").is_s3


# -------------------------------------------------------------------- S3
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b.wav", ("bucket", "a/b.wav")),
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket", ("bucket", "")),
        ("s3://my.bucket-1/a//b", ("my.bucket-1", "a//b")),
    ],
)
def test_split_s3(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3(uri) == expected


@pytest.mark.parametrize("uri", ["bucket/key", "http://bucket/key", "S3://bucket/key", "s3:/bucket/key", ""])
def test_split_s3_rejects_non_s3_uris(uri: str) -> None:
    with pytest.raises(UsageError, match="not an s3:// URI"):
        split_s3(uri)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key"])
def test_split_s3_rejects_a_missing_bucket(uri: str) -> None:
    with pytest.raises(UsageError, match="no bucket"):
        split_s3(uri)


# ------------------------------------------------------ S3: endpoint override
@pytest.fixture
def clean_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from twi_asr import storage

    monkeypatch.delenv("TWI_ASR_S3_ENDPOINT_URL", raising=False)
    storage.set_endpoint_url(None)
    yield
    storage.set_endpoint_url(None)


def test_endpoint_precedence(clean_endpoint: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from twi_asr.storage import resolve_endpoint_url, set_endpoint_url

    assert resolve_endpoint_url() is None  # boto3 then reads AWS_ENDPOINT_URL itself
    monkeypatch.setenv("TWI_ASR_S3_ENDPOINT_URL", "http://env:1")
    assert resolve_endpoint_url() == "http://env:1"
    set_endpoint_url("http://flag:2")
    assert resolve_endpoint_url() == "http://flag:2"
    assert resolve_endpoint_url("http://arg:3") == "http://arg:3"
    set_endpoint_url("  ")
    assert resolve_endpoint_url() == "http://env:1"


@pytest.mark.parametrize("url", ["localhost:9000", "ftp://x", "s3://bucket"])
def test_set_endpoint_url_rejects_non_http(clean_endpoint: None, url: str) -> None:
    from twi_asr.storage import set_endpoint_url

    with pytest.raises(UsageError, match="expected a URL"):
        set_endpoint_url(url)


def test_s3_client_is_reused_until_the_aws_environment_changes(
    clean_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("boto3")
    from twi_asr.storage import s3_client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "one")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    first = s3_client()
    assert s3_client() is first
    assert first.meta.endpoint_url == "http://127.0.0.1:1"  # AWS_ENDPOINT_URL, read by boto3 itself
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another")
    assert s3_client() is not first
    assert s3_client("http://127.0.0.1:2").meta.endpoint_url == "http://127.0.0.1:2"


def test_importing_storage_does_not_load_boto3() -> None:
    code = (
        "import sys, twi_asr.storage, twi_asr.sinks\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -------------------------------------------------------- S3: error mapping
def _client_error(code: str, status: int = 400, op: str = "GetObject") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": f"the {code} message"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)  # fmt: skip


@pytest.mark.parametrize(
    ("make", "kind", "exit_code", "words"),
    [
        (lambda: _client_error("NoSuchBucket", 404), InputNotFoundError, 1, ["bucket does not exist"]),
        (lambda: _client_error("NoSuchKey", 404), InputNotFoundError, 1, ["no such object"]),
        (lambda: _client_error("404", 404, "HeadObject"), InputNotFoundError, 1, ["no such object"]),
        (lambda: _client_error("AccessDenied", 403), EnvironmentProblem, 3, ["access denied", "policy"]),
        (lambda: _client_error("403", 403, "HeadObject"), EnvironmentProblem, 3, ["access denied"]),
        (lambda: _client_error("AllAccessDisabled", 403), EnvironmentProblem, 3, ["access denied"]),
        (lambda: _client_error("InvalidAccessKeyId", 403), EnvironmentProblem, 3, ["rejected the credentials",
                                                                                   "AWS_ACCESS_KEY_ID"]),
        (lambda: _client_error("SignatureDoesNotMatch", 403), EnvironmentProblem, 3, ["rejected"]),
        (lambda: _client_error("InvalidBucketName"), UsageError, 2, ["not a valid bucket name"]),
        (lambda: _client_error("SlowDown", 503), InputError, 1, ["SlowDown", "the SlowDown message"]),
    ],
)  # fmt: skip
def test_client_errors_are_mapped(
    make: Callable[[], Exception], kind: type, exit_code: int, words: list[str]
) -> None:
    pytest.importorskip("botocore")
    from twi_asr.storage import s3_error

    err = s3_error(make(), "s3://b/k.wav")
    assert type(err) is kind
    assert err.exit_code == exit_code  # type: ignore[attr-defined]
    message = err.message  # type: ignore[attr-defined]
    assert message.startswith("s3://b/k.wav") and "\n" not in message
    for word in words:
        assert word in message


def test_missing_credentials_say_what_to_set() -> None:
    pytest.importorskip("botocore")
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError, ProfileNotFound

    from twi_asr.storage import s3_error

    err = s3_error(NoCredentialsError(), "s3://b/p/")
    assert isinstance(err, EnvironmentProblem) and err.exit_code == 3
    words = ("no AWS credentials", "s3://b/p/", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws configure")
    for word in (*words, "AWS_PROFILE"):
        assert word in err.message
    err = s3_error(PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), "s3://b/p/")
    assert isinstance(err, EnvironmentProblem) and "AWS_SECRET_ACCESS_KEY" in err.message
    err = s3_error(ProfileNotFound(profile="nope"), "s3://b/p/")
    assert isinstance(err, EnvironmentProblem) and "nope" in err.message and "aws configure" in err.message


def test_unreachable_endpoint_is_named() -> None:
    pytest.importorskip("botocore")
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    from twi_asr.storage import s3_error

    for exc in (EndpointConnectionError(endpoint_url="http://minio:9000/b"),
                ConnectTimeoutError(endpoint_url="http://minio:9000/b")):  # fmt: skip
        err = s3_error(exc, "s3://b/k")
        assert isinstance(err, EnvironmentProblem)
        assert "cannot reach the S3 endpoint http://minio:9000/b" in err.message
        assert "--s3-endpoint-url" in err.message


def test_other_exceptions_pass_through() -> None:
    pytest.importorskip("botocore")
    from twi_asr.storage import s3_error

    exc = ValueError("mine")
    assert s3_error(exc, "s3://b/k") is exc


# --------------------------------------------- S3: against a real moto server
@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, clean_endpoint: None) -> Any:
    """A fresh bucket's name and a client, with the AWS environment pointed at the moto server."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint)  # our own: tests hook its events
    client.bucket = f"b-{os.urandom(4).hex()}"  # type: ignore[attr-defined]
    client.create_bucket(Bucket=client.bucket)
    return client


def _count_gets(client: Any) -> list[str]:
    """Record the key of every GetObject the client sends (the way to prove a cache hit)."""
    gets: list[str] = []
    client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    return gets


def test_read_bytes_streams_in_chunks(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from twi_asr import storage, storage_transfer

    data = os.urandom(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket=s3.bucket, Key="big.wav", Body=data)
    sizes: list[int] = []
    real = storage_transfer._stream_object

    def spy(bucket: str, key: str, sink: Any, client: Any) -> int:
        class Recorder:
            def write(self, chunk: bytes) -> None:
                sizes.append(len(chunk))
                sink.write(chunk)

        return real(bucket, key, Recorder(), client)  # type: ignore[arg-type]

    monkeypatch.setattr(storage_transfer, "_stream_object", spy)
    assert storage.read_bytes(f"s3://{s3.bucket}/big.wav") == data
    assert len(sizes) >= 4 and max(sizes) <= storage._CHUNK  # never one read of the whole body


def test_open_s3_spills_big_objects_to_disk(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from twi_asr import storage, storage_transfer

    monkeypatch.setattr(storage_transfer, "_SPOOL_MAX", 1000)
    s3.put_object(Bucket=s3.bucket, Key="a.wav", Body=b"x" * 5000)
    with storage.open_s3(f"s3://{s3.bucket}/a.wav") as f:
        assert f._rolled  # type: ignore[attr-defined]  # on disk, not in memory
        assert f.read() == b"x" * 5000


def test_download_is_atomic_and_maps_a_missing_key(s3: Any, tmp_path: Path) -> None:
    from twi_asr import storage

    s3.put_object(Bucket=s3.bucket, Key="d/a.wav", Body=b"abc")
    assert storage.download(f"s3://{s3.bucket}/d/a.wav", tmp_path / "x" / "a.wav").read_bytes() == b"abc"
    with pytest.raises(InputNotFoundError, match="no such object"):
        storage.download(f"s3://{s3.bucket}/d/nope.wav", tmp_path / "x" / "b.wav")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["a.wav"]  # no .part left


def test_missing_key_and_bucket_on_read(s3: Any) -> None:
    from twi_asr import storage

    with pytest.raises(InputNotFoundError, match="no such object"):
        storage.read_bytes(f"s3://{s3.bucket}/nope.wav")
    with pytest.raises(InputNotFoundError, match="bucket does not exist"):
        storage.read_bytes("s3://no-such-bucket-x/a.wav")
    with pytest.raises(InputNotFoundError, match="bucket does not exist"):
        list(storage.list_s3("s3://no-such-bucket-x/"))


def test_s3_exists(s3: Any) -> None:
    from twi_asr.storage import s3_exists

    s3.put_object(Bucket=s3.bucket, Key="a/b.txt", Body=b"1")
    assert s3_exists(f"s3://{s3.bucket}/a/b.txt")
    assert not s3_exists(f"s3://{s3.bucket}/a/c.txt")
    assert not s3_exists(f"s3://{s3.bucket}/a")  # a prefix is not an object


def test_list_s3_names_are_relative_and_folders_markers_skipped(s3: Any) -> None:
    from twi_asr.storage import list_s3

    for key in ("in/a.wav", "in/day1/b.mp3", "in/day1/", "inside/c.wav"):
        s3.put_object(Bucket=s3.bucket, Key=key, Body=b"x")
    assert sorted(rel for _, rel in list_s3(f"s3://{s3.bucket}/in/")) == ["a.wav", "day1/b.mp3"]
    # without the slash it is still the folder (as `aws s3 cp --recursive` reads it): not inside/c.wav
    assert sorted(rel for _, rel in list_s3(f"s3://{s3.bucket}/in")) == ["a.wav", "day1/b.mp3"]
    # an exact key is that object, named by its file name
    assert list(list_s3(f"s3://{s3.bucket}/in/day1/b.mp3")) == [(f"s3://{s3.bucket}/in/day1/b.mp3", "b.mp3")]


def test_sync_downloads_once_then_only_what_changed(s3: Any, tmp_path: Path) -> None:
    from twi_asr.storage import sync_prefix_to_folder

    for name, body in {"config.json": b"{}", "model.bin": b"w" * 2048, "sub/vocab.txt": b"a\nb\n"}.items():
        s3.put_object(Bucket=s3.bucket, Key=f"models/m/{name}", Body=body)
    s3.put_object(Bucket=s3.bucket, Key="models/m2/other.bin", Body=b"not ours")  # a sibling prefix
    gets = _count_gets(s3)
    dest = tmp_path / "cache"
    sync_prefix_to_folder(f"s3://{s3.bucket}/models/m", dest, client=s3)
    assert sorted(gets) == ["models/m/config.json", "models/m/model.bin", "models/m/sub/vocab.txt"]
    assert (dest / "sub" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert not (dest / "other.bin").exists()
    ledger = json.loads((dest / ".etags.json").read_text())
    assert sorted(ledger) == ["config.json", "model.bin", "sub/vocab.txt"]

    gets.clear()
    sync_prefix_to_folder(f"s3://{s3.bucket}/models/m/", dest, client=s3)
    assert gets == []  # everything reused: no GET at all

    s3.put_object(Bucket=s3.bucket, Key="models/m/config.json", Body=b'{"changed": 1}')
    s3.delete_object(Bucket=s3.bucket, Key="models/m/sub/vocab.txt")
    sync_prefix_to_folder(f"s3://{s3.bucket}/models/m/", dest, client=s3)
    assert gets == ["models/m/config.json"]
    assert (dest / "config.json").read_bytes() == b'{"changed": 1}'
    assert not (dest / "sub" / "vocab.txt").exists()  # gone upstream, gone here
    assert sorted(json.loads((dest / ".etags.json").read_text())) == ["config.json", "model.bin"]


def test_sync_refetches_a_damaged_file_and_survives_a_torn_ledger(s3: Any, tmp_path: Path) -> None:
    from twi_asr.storage import sync_prefix_to_folder

    s3.put_object(Bucket=s3.bucket, Key="m/model.bin", Body=b"w" * 100)
    dest = tmp_path / "cache"
    sync_prefix_to_folder(f"s3://{s3.bucket}/m/", dest, client=s3)
    (dest / "model.bin").write_bytes(b"w" * 10)  # truncated by someone
    gets = _count_gets(s3)
    sync_prefix_to_folder(f"s3://{s3.bucket}/m/", dest, client=s3)
    assert gets == ["m/model.bin"] and (dest / "model.bin").read_bytes() == b"w" * 100
    (dest / ".etags.json").write_text("{torn")
    sync_prefix_to_folder(f"s3://{s3.bucket}/m/", dest, client=s3)
    assert gets == ["m/model.bin", "m/model.bin"]
    assert json.loads((dest / ".etags.json").read_text())["model.bin"].endswith(":100")


def test_sync_keeps_what_was_fetched_when_interrupted(s3: Any, tmp_path: Path) -> None:
    from twi_asr.storage import sync_prefix_to_folder

    for name in ("a.bin", "b.bin", "c.bin"):
        s3.put_object(Bucket=s3.bucket, Key=f"m/{name}", Body=name.encode())

    class CtrlCOnC:
        """The real client, except that fetching c.bin is interrupted (Ctrl-C)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def download_file(self, bucket: str, key: str, filename: str) -> None:
            if key == "m/c.bin":
                Path(filename).write_bytes(b"c")  # half-written when the interrupt lands
                raise KeyboardInterrupt
            s3.download_file(bucket, key, filename)

    dest = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        sync_prefix_to_folder(f"s3://{s3.bucket}/m/", dest, client=CtrlCOnC())
    assert sorted(json.loads((dest / ".etags.json").read_text())) == ["a.bin", "b.bin"]
    assert sorted(p.name for p in dest.iterdir()) == [".etags.json", "a.bin", "b.bin"]  # no .part left
    gets = _count_gets(s3)
    sync_prefix_to_folder(f"s3://{s3.bucket}/m/", dest, client=s3)
    assert gets == ["m/c.bin"]  # resumed: only what was missing


def test_sync_ignores_keys_that_climb_out(s3: Any, tmp_path: Path) -> None:
    from twi_asr.storage import sync_prefix_to_folder

    s3.put_object(Bucket=s3.bucket, Key="m/ok.bin", Body=b"1")
    s3.put_object(Bucket=s3.bucket, Key="m/../../escape.bin", Body=b"2")
    dest = tmp_path / "a" / "cache"
    sync_prefix_to_folder(f"s3://{s3.bucket}/m/", dest, client=s3)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.bin")) == ["a/cache/ok.bin"]


def test_sync_of_an_empty_prefix_is_not_found(s3: Any, tmp_path: Path) -> None:
    from twi_asr.storage import sync_prefix_to_folder

    with pytest.raises(InputNotFoundError, match="nothing under"):
        sync_prefix_to_folder(f"s3://{s3.bucket}/nothing/", tmp_path / "c", client=s3)
