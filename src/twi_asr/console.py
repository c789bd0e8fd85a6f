"""Where the CLI and the batch runner write: results to stdout, everything else to stderr.

A neutral place below both: :mod:`twi_asr.batch` reports progress through it
without importing :mod:`twi_asr.cli` (``twi_asr.cli.console`` re-exports it).

A rich progress bar when stderr is a terminal; plain, timestamp-free lines
otherwise, so CI logs carry no control codes.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)


def is_interactive() -> bool:
    """True when a person watches stderr (progress bars make sense)."""
    return sys.stderr.isatty() and stderr.is_terminal


def error(message: str) -> None:
    """One line, red when on a terminal: what went wrong and what to do."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def info(message: str, **kwargs: Any) -> None:
    """A status line on stderr."""
    stderr.print(message, soft_wrap=True, **kwargs)
