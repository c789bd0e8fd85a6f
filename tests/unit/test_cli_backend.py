"""``twi-asr backend`` commands on a real SQLite database in a temp folder (no server, no ASR)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

from twi_asr.cli import main  # noqa: E402


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("TWI_ASR_DATABASE_URL", "TWI_ASR_STORAGE", "TWI_ASR_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TWI_ASR_DATA_DIR", str(tmp_path))
    return tmp_path


def test_users_create_prints_one_key_once_and_refuses_a_taken_name(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backend", "users", "create", "ama", "--admin", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["name"] == "ama" and made["admin"] is True and made["api_key"].startswith("twk_")
    assert (data_dir / "backend.db").exists()
    assert main(["backend", "users", "create", "ama"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert main(["backend", "users", "create", "kofi"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("twk_") and key != made["api_key"]
    assert main(["backend", "users", "list", "--json"]) == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert names == ["ama", "kofi"]


def test_a_bad_name_is_refused_with_a_reason(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backend", "users", "create", "../root"]) != 0
    assert "invalid user name" in capsys.readouterr().err


def test_migrate_says_the_revision(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backend", "migrate"]) == 0
    from twi_asr.backend.db.migrate import head

    err = capsys.readouterr().err
    assert head() == "0002"  # 0002: segment corrections
    assert "revision 0002" in err and "newest: 0002" in err


def test_an_unreachable_database_is_an_environment_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["backend", "migrate", "--database-url", "postgresql://twi:twi@127.0.0.1:9/none"])
    err = capsys.readouterr().err
    assert rc == 3 and "cannot open the database" in err and "Traceback" not in err
    assert "twi:twi@" not in err  # the password is not printed


def test_a_bad_setting_is_a_usage_error(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backend", "serve", "--port", "0"]) == 2
    assert "port" in capsys.readouterr().err
