"""The database layer: the schema (SQLAlchemy 2 models), engine and sessions, and migrations."""
