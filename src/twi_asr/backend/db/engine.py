"""The database engine and sessions: one place for connection settings and error mapping.

SQLite (the embedded default) gets WAL, a busy timeout and foreign keys, so a
web process and worker threads share it safely. PostgreSQL goes through
psycopg 3 with pre-ping, so a restarted server is reconnected, not an error
forever. A lost connection inside a unit of work becomes
:class:`~twi_asr.backend.errors.DatabaseUnavailable` (503), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import DatabaseUnavailable, InvalidInput

__all__ = ["Database"]


class Database:
    """An engine plus a session factory for one URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.orm import sessionmaker

        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20, pool_recycle=1800)
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        self.sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql`` (or whatever else SQLAlchemy was given)."""
        return str(self.engine.dialect.name)

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A unit of work: committed on success, rolled back on error; lost connections are 503s,
        values no column can hold (NUL in text, an integer past 32 bits) are 400 invalid_value."""
        from sqlalchemy.exc import DataError, DBAPIError, OperationalError

        session = self.sessions()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            if isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False):
                raise DatabaseUnavailable(
                    f"the database is unavailable ({_short(exc)}); retry shortly"
                ) from exc
            if isinstance(exc, DataError):  # a value sent that no column can hold: NUL in text, too big
                raise InvalidInput(f"a value cannot be stored ({_short(exc)})", code="invalid_value") from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """``SELECT 1``, or :class:`DatabaseUnavailable` saying why."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"the database is unavailable ({_short(exc)})") from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0][:200] if str(orig).strip() else type(orig).__name__
