"""Alembic migrations of the backend's schema (run by ``twi-asr backend migrate`` and on start)."""
