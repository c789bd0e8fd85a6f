"""The backend's database layer on a real PostgreSQL server and on SQLite.

The Alembic migration must build exactly the schema the models describe, be
safe to run on every start (twice, or from two processes at once), keep Twi
text byte for byte, and a lost database must be a 503 that heals itself
when the server comes back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from sqlalchemy import inspect, select, text  # noqa: E402

from twi_asr.backend.db import migrate  # noqa: E402
from twi_asr.backend.db.engine import Database  # noqa: E402
from twi_asr.backend.db.models import Base, Job, User  # noqa: E402
from twi_asr.backend.errors import DatabaseUnavailable  # noqa: E402
from twi_asr.backend.settings import BackendSettings  # noqa: E402

from ..postgres import PgServer  # noqa: E402

TWI = "Mepɛ sɛ meda. Ɔkɔm de me. ŋ"
TABLES = {"users", "api_keys", "web_sessions", "uploads", "jobs", "webhook_deliveries"}


def _db(url: str) -> Database:
    return Database(BackendSettings(database_url=url).resolved_database_url())


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty database of each kind (PostgreSQL: a new database in the session's server)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'backend.db'}"
    db = _db(url)
    assert db.dialect == request.param
    yield db
    db.dispose()


def _schema(db: Database) -> dict[str, Any]:
    """Everything reflection says about our tables, comparable between two points in time."""
    insp = inspect(db.engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            "indexes": sorted((i["name"] or "", tuple(i["column_names"])) for i in insp.get_indexes(table)),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),  # fmt: skip
            "fks": sorted((f["name"] or "", f["referred_table"]) for f in insp.get_foreign_keys(table)),
        }
    return out


def _versions(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_upgrade_creates_the_schema_at_head(database: Database) -> None:
    assert migrate.current(database) is None
    head = migrate.head()
    assert head is not None
    assert migrate.upgrade(database) == head
    assert migrate.current(database) == head
    assert set(inspect(database.engine).get_table_names()) == TABLES | {"alembic_version"}


def test_upgrade_twice_is_a_noop(database: Database) -> None:
    migrate.upgrade(database)
    before = _schema(database)
    assert migrate.upgrade(database) == migrate.head()
    assert _schema(database) == before
    assert _versions(database) == [migrate.head()]


def test_migration_and_models_agree(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrate.upgrade(database)
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"the migrated {database.dialect} schema differs from models.py: {diff}"


def test_database_is_utf8_and_twi_text_round_trips(database: Database) -> None:
    migrate.upgrade(database)
    with database.engine.connect() as conn:
        if database.dialect == "postgresql":
            assert conn.execute(text("SHOW server_encoding")).scalar() == "UTF8"
            assert conn.execute(text("SHOW client_encoding")).scalar() == "UTF8"
        else:
            assert conn.execute(text("PRAGMA encoding")).scalar() == "UTF-8"

    with database.session() as s:
        user = User(name=TWI)
        s.add(user)
        s.flush()
        job = Job(user_id=user.id, filename=TWI + ".wav", source_uri="uploads/x.wav", text=TWI,
                  options={"prompt": TWI}, error_message=TWI)  # fmt: skip
        s.add(job)
        s.flush()
        user_id, job_id = user.id, job.id

    with database.session() as s:  # a new session: the values come from the database, not a cache
        user = s.get(User, user_id)
        job = s.scalars(select(Job).where(Job.id == job_id)).one()
        assert user.name == TWI
        assert (job.text, job.filename, job.error_message) == (TWI, TWI + ".wav", TWI)
        assert job.options == {"prompt": TWI}
        assert s.scalars(select(User).where(User.name == TWI)).one().id == user_id

    raw = "convert_to(text, 'UTF8')" if database.dialect == "postgresql" else "CAST(text AS BLOB)"
    with database.engine.connect() as conn:  # the bytes the database holds, not a decoded string
        stored = conn.execute(text(f"SELECT {raw} FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
    assert bytes(stored) == TWI.encode("utf-8")


def test_two_concurrent_upgrades_from_two_threads_both_succeed(postgres: PgServer, pg_url: str) -> None:
    dbs = [_db(pg_url), _db(pg_url)]
    barrier = threading.Barrier(len(dbs))
    results: list[Any] = [None] * len(dbs)

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = migrate.upgrade(dbs[i])
        except BaseException as exc:  # reported below, with the other thread's outcome
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(dbs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    try:
        hung = [t.name for t in threads if t.is_alive()]
        assert not hung, f"upgrade() still running after 15 s in {hung}: {results}"
        assert results == [migrate.head()] * len(dbs), results
        assert _versions(dbs[0]) == [migrate.head()]
        assert set(inspect(dbs[0].engine).get_table_names()) == TABLES | {"alembic_version"}
    finally:
        name = pg_url.rsplit("/", 1)[1]  # a hung upgrade holds the advisory lock: free it
        postgres.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        for db in dbs:
            db.dispose()


# Each process connects first, then waits for the other, so both reach upgrade() at the same moment.
_UPGRADE_PROCESS = """
import pathlib, sys, time
from twi_asr.backend.db import migrate
from twi_asr.backend.db.engine import Database
url, me, other = sys.argv[1:4]
db = Database(url)
db.ping()
migrate.head()
pathlib.Path(me).touch()
deadline = time.monotonic() + 60
while not pathlib.Path(other).exists() and time.monotonic() < deadline:
    time.sleep(0.002)
print(migrate.upgrade(db))
"""


def test_two_concurrent_upgrades_from_two_processes_both_succeed(pg_url: str, tmp_path: Path) -> None:
    """Two backend processes starting at once against a fresh database: env.py's advisory lock."""
    url = BackendSettings(database_url=pg_url).resolved_database_url()
    flags = [tmp_path / "a", tmp_path / "b"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE_PROCESS, url, str(me), str(other)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for me, other in (flags, flags[::-1])
    ]
    outs = [p.communicate(timeout=90) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.strip() == migrate.head()
    db = _db(pg_url)
    try:
        assert _versions(db) == [migrate.head()]
        assert set(inspect(db.engine).get_table_names()) == TABLES | {"alembic_version"}
    finally:
        db.dispose()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_ping_fails_while_the_server_is_down_and_recovers(postgres: PgServer, pg_url: str, mode: str) -> None:
    db = _db(pg_url)
    try:
        migrate.upgrade(db)
        db.ping()  # leaves a pooled connection behind, which the restart kills
        postgres.stop(mode)
        try:
            with pytest.raises(DatabaseUnavailable):
                db.ping()
            with pytest.raises(DatabaseUnavailable), db.session() as s:
                s.execute(text("SELECT 1"))
        finally:
            postgres.start()
        db.ping()  # pool_pre_ping: the dead pooled connection is replaced, not an error forever
        with db.session() as s:
            s.add(User(name="after-restart"))
        with db.session() as s:
            assert s.scalars(select(User.name)).all() == ["after-restart"]
    finally:
        db.dispose()
