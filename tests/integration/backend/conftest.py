"""Fixtures of the backend's integration tests: a real PostgreSQL server and a real S3 endpoint (moto).

One PostgreSQL cluster per test session (about 2 s to make and start); every
test that asks for ``pg_url`` gets its own fresh, empty database in it, so
tests never see each other's rows or schema.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from ..postgres import PgServer, start_postgres
from ..services import start_moto


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """The session's PostgreSQL server (skipped without the binaries, unless TWI_ASR_REQUIRE_POSTGRES=1)."""
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres: PgServer, request: pytest.FixtureRequest) -> str:
    """``postgresql://twi:twi@127.0.0.1:PORT/<fresh db>``: a new empty database for this test."""
    if not postgres.is_running():  # a test that stopped the server and failed before starting it again
        postgres.start()
    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return postgres.new_database(f"t{uuid.uuid4().hex[:8]}_{stem}")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 endpoint on loopback (``moto_server``); yields its URL. Credentials: ``services.CREDS``."""
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
