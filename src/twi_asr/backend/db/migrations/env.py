"""Alembic environment: runs on the connection :func:`twi_asr.backend.db.migrate.upgrade` hands it.

On PostgreSQL a session advisory lock makes concurrent starts of several
backend processes migrate one at a time instead of racing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from twi_asr.backend.db.models import Base

LOCK_ID = 7_461_205_311  # any constant shared by every twi-asr backend

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
if connection.dialect.name == "postgresql":
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_ID})
try:
    with context.begin_transaction():
        context.run_migrations()
finally:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_ID})
        connection.commit()
