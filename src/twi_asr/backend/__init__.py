"""The backend on port 8000, "the brains": users, API keys, uploads, jobs, webhooks.

It never loads a model: audio goes to the inference server(s) on 8001 through
:mod:`twi_asr.client`. State lives in a SQL database (SQLAlchemy 2 + Alembic;
embedded SQLite by default, PostgreSQL in production) and in object storage
(a local folder by default, S3 or any S3-compatible store). Layers, top down:
``api`` (routes parse and shape) -> ``services`` (business rules) ->
``db`` and ``blobs`` (small interfaces). Install with ``pip install 'twi-asr[backend]'``.
"""
