"""``twi-asr bento serve|build``: thin wrappers over ``bentoml serve`` and ``bentoml build``.

The flags become ``TWI_ASR_*`` variables for the service (:mod:`twi_asr.bento.service` reads
them), so ``twi-asr bento serve --model base`` is ``TWI_ASR_MODEL=base bentoml serve
twi_asr.bento:TwiAsr``. The model is resolved before BentoML starts, so a wrong name fails here
with one line instead of in a worker's traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import console

app = typer.Typer(
    help="The opt-in BentoML service over the same engine (pip install 'twi-asr[bentoml]').",
    no_args_is_help=True,
)

SERVICE = "twi_asr.bento:TwiAsr"

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Alias, folder, hub id or s3:// (TWI_ASR_MODEL, default twi)."),
]
EngineOpt = Annotated[
    str | None, typer.Option("--engine", "-e", help="auto, transformers or ctranslate2 (TWI_ASR_ENGINE).")
]


def _bentoml() -> list[str]:
    """The ``bentoml`` command of this interpreter, or exit 3 with the extra to install."""
    from importlib.util import find_spec

    if find_spec("bentoml") is None:
        from ..errors import DependencyMissingError

        raise DependencyMissingError("the BentoML path needs its extra: pip install 'twi-asr[bentoml]'")
    return [sys.executable, "-m", "bentoml"]


def _environment(model: str | None, engine: str | None, **more: str | None) -> dict[str, str]:
    """This process's environment with the flags given set as ``TWI_ASR_*`` variables."""
    env = dict(os.environ)
    for name, value in {"model": model, "engine": engine, **more}.items():
        if value is not None:
            env[f"TWI_ASR_{name.upper()}"] = value
    return env


def _check_model(**flags: str | None) -> None:
    """Check the ``TWI_ASR_*`` settings with the flags given and resolve the model to load.

    Fails fast with one line and exit 2 (a bad variable) or 3 (no such model), where BentoML
    would print a worker's traceback.
    """
    from pydantic import ValidationError

    from ..engines import pick_engine
    from ..errors import UsageError
    from ..models import resolve_model
    from ..server.settings import ServerSettings
    from .options import settings_error

    try:
        settings = ServerSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise UsageError(settings_error(exc)) from None
    pick_engine(settings.engine, resolve_model(settings.model))


def _run(cmd: list[str], env: dict[str, str]) -> None:
    """Run ``cmd`` in the foreground; its exit code is ours (Ctrl-C is 130)."""
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 130
    if code:
        raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port.")] = 3000,
    model: ModelOpt = None,
    engine: EngineOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="BentoML worker processes, a model copy each (TWI_ASR_BENTO_WORKERS)."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="TWI_ASR_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1."
        ),
    ] = None,
) -> None:
    """Serve the engine as a BentoML service: /v1/audio/transcriptions, /readyz, /livez, /metrics."""
    cmd = _bentoml()
    env = _environment(model, engine, bento_workers=str(workers) if workers else None, api_key=api_key)
    _check_model(model=model, engine=engine, api_key=api_key)
    console.stderr.print(f"bentoml serve {SERVICE} on {host}:{port}")
    # exec, not a child: BentoML gets the signals (SIGTERM from docker stop or a test) itself.
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [*cmd, "serve", SERVICE, "--host", host, "--port", str(port)]
    os.execve(argv[0], argv, env)


@app.command()
def build(
    model: ModelOpt = None,
    engine: EngineOpt = None,
    version: Annotated[str | None, typer.Option("--version", help="The bento's version tag.")] = None,
    bentofile: Annotated[
        Path | None,
        typer.Option("--write-bentofile", help="Also keep the bentofile.yaml used, at this path."),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option("--base-image", help="Image `bentoml containerize` builds from (default: BentoML's)."),
    ] = None,
) -> None:
    """Build a bento of the service (this package's code, pinned requirements, the model variables)."""
    import tempfile

    from ..bento.bentofile import build_context, write_bentofile

    cmd = _bentoml()
    env = _environment(model, engine)
    _check_model(model=model, engine=engine)
    with tempfile.TemporaryDirectory(prefix="twi-asr-bento-") as tmp:
        path = Path(tmp) / "bentofile.yaml"
        write_bentofile(path, model=model, engine=engine, base_image=base_image)
        if bentofile is not None:
            bentofile.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        args = [*cmd, "build", "-f", str(path), str(build_context())]
        if version:
            args += ["--version", version]
        _run(args, env)
