"""A real PostgreSQL server for a test session: Debian's binaries, a temp cluster, a free loopback port.

The backend's database tests (and anything else that needs PostgreSQL) start
one of these instead of mocking a database. PostgreSQL refuses to run as
root, so under root the cluster belongs to the ``postgres`` OS user (created
by Debian's package) and every server command runs as that user through
``runuser`` (or ``su``). The cluster is UTF-8 (Twi letters must survive byte
for byte), the role and database ``twi``/``twi`` log in with a password over
TCP on 127.0.0.1 (scram-sha-256), and the local socket trusts the admin.

No binaries: the test is skipped, unless ``TWI_ASR_REQUIRE_POSTGRES=1``
(CI), where it fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from .services import free_port

__all__ = ["PgServer", "find_bin_dir", "start_postgres"]

ROLE = PASSWORD = DATABASE = "twi"
ADMIN = "postgres"
START_TIMEOUT_S = 60
# Test settings: a small server that does not fsync. Commits still reach the OS before they return
# (no synchronous_commit=off), so a `stop("immediate")` - a crash of the server - keeps them.
SERVER_FLAGS = "-c fsync=off -c full_page_writes=off -c shared_buffers=32MB -c max_connections=200"
_SOCKET_PATH_MAX = 90  # a Unix socket path must stay under 108 bytes, ".s.PGSQL.NNNNN" included


@dataclass
class PgServer:
    """One running (or stopped) PostgreSQL cluster; ``url`` is ``postgresql://twi:twi@127.0.0.1:PORT/twi``."""

    url: str
    port: int
    data_dir: Path
    bin_dir: Path
    socket_dir: Path = field(repr=False)
    log: Path = field(repr=False)
    run_as: str | None = field(default=None, repr=False)  # the OS user for server commands (under root)
    owned_dir: Path | None = field(default=None, repr=False)  # a temp dir of ours, removed by close()
    _db_count: int = field(default=0, repr=False)

    # --- server control -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        opts = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 {SERVER_FLAGS}"
        res = self._pg("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-o", opts,
                       "-w", "-t", str(START_TIMEOUT_S), "start", check=False)  # fmt: skip
        if res.returncode != 0:
            pytest.fail(
                f"PostgreSQL did not start (pg_ctl: {res.returncode}):\n{res.stdout}\n{self.log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (disconnect clients, clean shutdown) or ``immediate`` (like a crash)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        if self.is_running():
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop (``mode``) and start again on the same port and data."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def close(self) -> None:
        """Stop the server and remove the temp dir this helper made (if it made one)."""
        try:
            self.stop("fast")
        finally:
            if self.owned_dir is not None:
                shutil.rmtree(self.owned_dir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    # --- databases ------------------------------------------------------------------------------

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser over the local socket; its output (unaligned, no header)."""
        cmd = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", str(self.socket_dir), "-p", str(self.port), "-U", ADMIN, "-d", database,
               "-c", statement]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.socket_dir)
        if res.returncode != 0:
            raise RuntimeError(f"psql failed on {statement!r}: {res.stderr.strip()}")
        return res.stdout.strip()

    def new_database(self, name: str | None = None) -> str:
        """A fresh, empty UTF-8 database owned by ``twi``; returns its ``postgresql://`` URL."""
        if name is None:
            self._db_count += 1
            name = f"twi_test_{self._db_count}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self.sql(f"CREATE DATABASE \"{name}\" OWNER {ROLE} ENCODING 'UTF8' TEMPLATE template0")
        return self.url_for(name)

    def url_for(self, database: str) -> str:
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    # --- internals ------------------------------------------------------------------------------

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run_as(self.run_as, [str(self.bin_dir / tool), *args], cwd=self.socket_dir, check=check)


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb and pg_ctl (or ``TWI_ASR_PG_BIN``, or PATH)."""
    candidates: list[Path] = []
    if os.environ.get("TWI_ASR_PG_BIN"):
        candidates.append(Path(os.environ["TWI_ASR_PG_BIN"]))
    versions = [
        p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.replace(".", "").isdigit()
    ]
    candidates += sorted(versions, key=lambda p: [int(x) for x in p.parent.name.split(".")], reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for cand in candidates:
        if all((cand / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return cand
    return None


def start_postgres(tmp_path: Path) -> PgServer:
    """Make a cluster under a temp dir, start it on a free port, create role and database ``twi``."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _missing("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin; "
                 "install them with `apt-get install postgresql` (scripts/setup.sh does)")  # fmt: skip
    run_as: str | None = None
    owned: Path | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses root. pytest's temp dirs are root-only (0700), so the cluster gets its own.
        run_as = ADMIN
        try:
            import pwd

            pw = pwd.getpwnam(run_as)
        except KeyError:
            _missing(f"running as root and there is no {run_as!r} OS user to run PostgreSQL as")
        owned = base = Path(tempfile.mkdtemp(prefix="twi-pg-"))
        os.chown(base, pw.pw_uid, pw.pw_gid)
    else:
        base = tmp_path / "postgres"
        base.mkdir(parents=True, exist_ok=True)
        if len(str(base)) > _SOCKET_PATH_MAX:
            owned = base = Path(tempfile.mkdtemp(prefix="twi-pg-"))
    data = base / "data"
    _initdb(bin_dir, data, run_as, cwd=base)

    last_error: BaseException | None = None
    for _ in range(3):  # a free port can be taken between free_port() and the server's bind
        port = free_port()
        server = PgServer(url="", port=port, data_dir=data, bin_dir=bin_dir, socket_dir=base,
                          log=base / "server.log", run_as=run_as, owned_dir=owned)  # fmt: skip
        server.url = server.url_for(DATABASE)
        try:
            server.start()
            break
        except pytest.fail.Exception as exc:
            last_error = exc
    else:
        raise last_error  # type: ignore[misc]
    try:
        encoding = server.sql("SHOW server_encoding")
        if encoding != "UTF8":
            pytest.fail(f"the test cluster's encoding is {encoding}, not UTF8")
        server.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        server.sql(f"CREATE DATABASE {DATABASE} OWNER {ROLE} ENCODING 'UTF8' TEMPLATE template0")
    except BaseException:
        server.close()
        raise
    return server


def _initdb(bin_dir: Path, data: Path, run_as: str | None, cwd: Path) -> None:
    common = [str(bin_dir / "initdb"), "-D", str(data), "-U", ADMIN, "-E", "UTF8",
              "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]  # fmt: skip
    res = _run_as(run_as, [*common, "--locale=C.UTF-8"], cwd=cwd, check=False)
    if res.returncode != 0:  # no C.UTF-8 locale on this system: the C locale still stores UTF-8
        shutil.rmtree(data, ignore_errors=True)
        res = _run_as(run_as, [*common, "--no-locale"], cwd=cwd, check=False)
    if res.returncode != 0:
        pytest.fail(f"initdb failed ({res.returncode}):\n{res.stdout[-3000:]}")


def _run_as(
    user: str | None, cmd: list[str], *, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (as ``user`` when given, from root), stdout and stderr together."""
    if user is not None:
        if shutil.which("runuser"):
            cmd = ["runuser", "-u", user, "--", *cmd]
        else:
            cmd = ["su", user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    res = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    if check and res.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({res.returncode}): {res.stdout.strip()[-2000:]}")
    return res


def _missing(reason: str) -> NoReturn:
    if os.environ.get("TWI_ASR_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason + " (TWI_ASR_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)
