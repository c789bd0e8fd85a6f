"""``twi-asr backend``: the product backend on port 8000 (serve, worker, migrate, users).

Every flag has a ``TWI_ASR_*`` variable (``--asr-url`` is ``TWI_ASR_ASR_URL``,
comma-separated), so a container is configured by its environment alone.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Annotated, Any

import typer

from . import console

app = typer.Typer(
    help="The backend on port 8000: users, API keys, uploads, jobs, webhooks.", no_args_is_help=True
)
users_app = typer.Typer(help="Manage users and their API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL (TWI_ASR_DATABASE_URL; default SQLite in the data dir)."
    ),
]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="A folder or s3://bucket/prefix (TWI_ASR_STORAGE).")
]
AsrUrlOpt = Annotated[
    list[str] | None,
    typer.Option("--asr-url", help="An inference server (8001); repeat for failover (TWI_ASR_ASR_URL)."),
]
DataDirOpt = Annotated[
    str | None,
    typer.Option("--data-dir", help="Where the default database and storage live (TWI_ASR_DATA_DIR)."),
]


def _settings(**overrides: Any) -> Any:
    """BackendSettings from the environment, then the flags given; a bad value is exit 2."""
    from ..errors import UsageError

    try:
        from pydantic import ValidationError

        from ..backend.settings import BackendSettings
    except ImportError as exc:
        from ..errors import DependencyMissingError

        raise DependencyMissingError("the backend needs its extra: pip install 'twi-asr[backend]'") from exc
    given = {k: v for k, v in overrides.items() if v not in (None, [], ())}
    try:
        return BackendSettings(**given)
    except ValidationError as exc:
        from .options import settings_error

        raise UsageError(settings_error(exc)) from None


def _database(settings: Any) -> Any:
    from ..backend.db.engine import Database
    from ..backend.db.migrate import upgrade
    from ..errors import EnvironmentProblem

    db = Database(settings.resolved_database_url())
    try:
        upgrade(db)
    except Exception as exc:
        raise EnvironmentProblem(
            f"cannot open the database {_safe_url(settings)}: {_first_line(exc)}"
        ) from exc
    return db


def _safe_url(settings: Any) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url()).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface (TWI_ASR_BACKEND_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port (TWI_ASR_BACKEND_PORT, 8000).")
    ] = None,
    asr_url: AsrUrlOpt = None,
    database_url: DatabaseOpt = None,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=0, help="Job worker threads here (TWI_ASR_WORKERS, 2).")
    ] = None,
    asr_api_key: Annotated[
        str | None, typer.Option("--asr-api-key", help="Key of the 8001 servers (TWI_ASR_ASR_API_KEY).")
    ] = None,
) -> None:
    """Serve the backend API (and run job workers) until SIGTERM or Ctrl-C."""
    import uvicorn

    from ..backend.api.app import build_context, create_app

    settings = _settings(
        backend_host=host,
        backend_port=port,
        asr_url=asr_url,
        database_url=database_url,
        storage=storage,
        data_dir=data_dir,
        workers=workers,
        asr_api_key=asr_api_key,
    )
    _logging(settings.log_level)
    ctx = _open(build_context, settings)
    signal.signal(signal.SIGTERM, lambda *_: None)  # a drained SIGTERM exits 0 (see twi-asr serve)
    console.info(
        f"twi-asr backend on http://{settings.backend_host}:{settings.backend_port} "
        f"(ASR {', '.join(settings.asr_url)}; {settings.workers} workers)"
    )
    uvicorn.run(
        create_app(settings, context=ctx),
        host=settings.backend_host,
        port=settings.backend_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        server_header=False,
    )


def _open(build: Any, settings: Any) -> Any:
    from ..errors import EnvironmentProblem, TwiAsrError

    try:
        return build(settings)
    except TwiAsrError:
        raise
    except Exception as exc:
        raise EnvironmentProblem(f"cannot start the backend: {_first_line(exc)}") from exc


def _logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def worker(
    asr_url: AsrUrlOpt = None,
    database_url: DatabaseOpt = None,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker threads.")] = 2,
) -> None:
    """Run job workers only (no HTTP): add machines to a shared database and storage."""
    import threading

    from ..backend.api.app import build_context
    from ..backend.worker import WorkerPool

    settings = _settings(
        asr_url=asr_url, database_url=database_url, storage=storage, data_dir=data_dir, workers=workers
    )
    _logging(settings.log_level)
    ctx = _open(build_context, settings)
    pool = WorkerPool(settings, ctx.db, ctx.blobs, ctx.asr, ctx.metrics)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pool.start(settings.workers)
    console.info(f"twi-asr backend worker: {settings.workers} threads on {_safe_url(settings)}")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    pool.stop(timeout_s=20.0)


@app.command()
def migrate(database_url: DatabaseOpt = None, data_dir: DataDirOpt = None) -> None:
    """Bring the database to the newest schema (also done on every start)."""
    from ..backend.db.migrate import current, head

    settings = _settings(database_url=database_url, data_dir=data_dir)
    db = _database(settings)
    console.info(f"database {_safe_url(settings)} is at revision {current(db)} (newest: {head()})")


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits, . _ @ + -).")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage users.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name": ..., "api_key": ...}.')] = False,
    password: Annotated[
        bool,
        typer.Option("--password", help="Also set a password for web login (asked, or read from stdin)."),
    ] = False,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user and print its first API key (shown this once)."""
    from ..backend.services import users

    secret = _read_password() if password else None
    db = _database(_settings(database_url=database_url, data_dir=data_dir))
    with db.session() as s:
        user, made = users.create_user(s, name, admin=admin, password=secret)
        out = {"name": user.name, "id": user.id, "admin": user.is_admin, "api_key": made.api_key}
    if as_json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        console.info(f"created user {user.name}{' (admin)' if admin else ''}; its API key, shown once:")
        print(made.api_key)


def _read_password() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\n")


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one user each.")] = False,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Every user."""
    from ..backend.services import users

    db = _database(_settings(database_url=database_url, data_dir=data_dir))
    with db.session() as s:
        rows = [
            {"name": u.name, "id": u.id, "admin": u.is_admin, "disabled": u.disabled}
            for u in users.list_users(s)
        ]
    for r in rows:
        if as_json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            role, state = "admin" if r["admin"] else "user", "disabled" if r["disabled"] else "active"
            print(f"{r['name']}\t{role}\t{state}")


@users_app.command("key")
def users_key(
    name: Annotated[str, typer.Argument(help="The user.")],
    key_name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "cli",
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name": ..., "api_key": ...}.')] = False,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make another API key for a user (shown once)."""
    from ..backend.services import users

    db = _database(_settings(database_url=database_url, data_dir=data_dir))
    with db.session() as s:
        made = users.create_key(s, users.get_user(s, name), key_name)
        out = {"name": name, "key_id": made.row.id, "api_key": made.api_key}
    print(json.dumps(out, ensure_ascii=False) if as_json else made.api_key)
