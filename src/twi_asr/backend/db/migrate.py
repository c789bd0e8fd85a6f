"""Run the Alembic migrations from the installed package (no alembic.ini needed).

``upgrade(db)`` brings any database to the newest schema; it runs on every
backend start and with ``twi-asr backend migrate``. ``current(db)`` says
which revision a database is at.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .engine import Database

__all__ = ["current", "head", "upgrade"]

_HERE = Path(__file__).parent / "migrations"
_LOCK = threading.Lock()  # Alembic's context and op proxies are process-global: one upgrade at a time


def _config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(db: Database, revision: str = "head") -> str | None:
    """Migrate to ``revision`` (the newest by default); returns the revision now current."""
    from alembic import command

    with _LOCK, db.engine.connect() as conn:  # other processes: the advisory lock in env.py
        command.upgrade(_config(conn), revision)
        conn.commit()
    return current(db)


def current(db: Database) -> str | None:
    """The database's revision (None: not migrated yet)."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    """The newest revision this package ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()
