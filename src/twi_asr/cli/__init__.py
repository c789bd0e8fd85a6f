"""The ``twi-asr`` command: one Typer app, one sub-app per command group, one error boundary.

:func:`main` is the console script. It turns every :class:`TwiAsrError` into
a one-line message and its exit code (0 ok, 1 some inputs failed, 2 bad
usage, 3 environment, 130 interrupted); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from .. import __version__
from ..errors import TwiAsrError
from . import console
from .backend import app as backend_app
from .batch import batch
from .bento import app as bento_app
from .docker import app as docker_app
from .eval import evaluate
from .models import app as models_app
from .serve import serve
from .transcribe import transcribe

app = typer.Typer(
    name="twi-asr",
    help="Whisper speech recognition for production: Twi (Akan) first, any checkpoint welcome.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(no_args_is_help=True)(transcribe)
app.command()(serve)
app.command(no_args_is_help=True)(batch)
app.command("eval", no_args_is_help=True)(evaluate)
app.add_typer(models_app, name="models")
app.add_typer(docker_app, name="docker")
app.add_typer(backend_app, name="backend")
app.add_typer(bento_app, name="bento")

_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        console.stdout.print(f"twi-asr {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and full tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options."""
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with the single error boundary; returns (and exits with) the exit code."""
    code = 0
    try:
        # Without standalone mode typer *returns* the code of a typer.Exit (and 130 for Ctrl-C).
        result = app(args=argv, standalone_mode=False, prog_name="twi-asr")
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except TwiAsrError as exc:
        if _state["verbose"]:
            console.stderr.print_exception()
        console.error(exc.message)
        code = exc.exit_code
    except Exception as exc:
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):  # click usage errors
            show(file=sys.stderr)
            code = exc.exit_code  # type: ignore[attr-defined]
            return _finish(code, argv)
        # a bug: say so briefly, traceback with --verbose
        if _state["verbose"]:
            console.stderr.print_exception()
        console.error(f"unexpected {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)")
        code = 1
    return _finish(code, argv)


def _finish(code: int, argv: list[str] | None) -> int:
    if code == 130:
        console.error("interrupted; outputs written so far are kept")
    if argv is None:
        sys.exit(code)
    return code
