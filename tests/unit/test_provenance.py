"""Provenance a running server reports (twi_asr.provenance) and secrets read from files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from twi_asr import __version__
from twi_asr.provenance import build_info, file_sha256, git_commit


@pytest.fixture(autouse=True)
def _fresh_build_info() -> object:
    build_info.cache_clear()
    yield
    build_info.cache_clear()


def test_build_info_reads_the_image_variables_and_hashes_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_bytes(b"numpy==2.0.0 --hash=sha256:00\n")
    monkeypatch.setenv("TWI_ASR_LOCK_FILE", str(lock))
    monkeypatch.setenv("TWI_ASR_BUILD_COMMIT", "0123abc")
    monkeypatch.setenv("TWI_ASR_BUILD_CREATED", "2026-12-02T03:00:00Z")
    monkeypatch.setenv("TWI_ASR_BUILD_SOURCE", "https://example.org/twi-asr")
    monkeypatch.setenv("TWI_ASR_IMAGE_ID", "sha256:feed")
    info = build_info()
    assert info.version == __version__
    assert info.commit == "0123abc" and info.image_id == "sha256:feed"
    assert info.created == "2026-12-02T03:00:00Z" and info.source == "https://example.org/twi-asr"
    assert info.lock_sha256 == hashlib.sha256(lock.read_bytes()).hexdigest() == file_sha256(lock)


def test_unknown_fields_are_none_not_empty_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWI_ASR_LOCK_FILE", "TWI_ASR_BUILD_CREATED", "TWI_ASR_BUILD_SOURCE", "TWI_ASR_IMAGE_ID"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("TWI_ASR_LOCK_FILE", "/nonexistent/lock")
    info = build_info()
    assert info.lock_sha256 is None and info.created is None and info.image_id is None


def test_git_commit_of_this_checkout_and_none_for_site_packages(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        commit = git_commit(repo)
        assert commit is not None and len(commit.split("-")[0]) == 40
    assert git_commit(tmp_path / "lib" / "site-packages" / "twi_asr") is None
    assert git_commit(Path("/")) is None


def test_api_key_file_fills_the_key_and_a_bad_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twi_asr.server.settings import ServerSettings

    key = tmp_path / "key"
    key.write_text("s3cret-key\n")
    monkeypatch.delenv("TWI_ASR_API_KEY", raising=False)
    monkeypatch.setenv("TWI_ASR_API_KEY_FILE", str(key))
    settings = ServerSettings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret-key"
    monkeypatch.setenv("TWI_ASR_API_KEY", "from-env")
    assert ServerSettings().api_key.get_secret_value() == "from-env"  # the plain variable wins
    monkeypatch.delenv("TWI_ASR_API_KEY")
    for bad, why in ((tmp_path / "missing", "no such file"), (tmp_path / "empty", "the file is empty")):
        if bad.name == "empty":
            bad.write_text("  \n")
        monkeypatch.setenv("TWI_ASR_API_KEY_FILE", str(bad))
        with pytest.raises(ValidationError, match=why):
            ServerSettings()


def test_backend_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twi_asr.backend.settings import BackendSettings

    (tmp_path / "asr").write_text("asr-key")
    (tmp_path / "signing").write_text("signing-key")
    for name in ("TWI_ASR_ASR_API_KEY", "TWI_ASR_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWI_ASR_ASR_API_KEY_FILE", str(tmp_path / "asr"))
    monkeypatch.setenv("TWI_ASR_SECRET_KEY_FILE", str(tmp_path / "signing"))
    s = BackendSettings()
    assert s.asr_api_key is not None and s.asr_api_key.get_secret_value() == "asr-key"
    assert s.secret_key is not None and s.secret_key.get_secret_value() == "signing-key"
