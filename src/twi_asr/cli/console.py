"""The CLI's console: :mod:`twi_asr.console`, re-exported so ``from . import console`` keeps working.

It lives below the CLI because :mod:`twi_asr.batch` writes through it too, and a
lower layer must not import the CLI. Patch ``twi_asr.console`` (the functions
read its ``stdout`` / ``stderr``), not this module.
"""

from __future__ import annotations

from ..console import error, info, is_interactive, stderr, stdout

__all__ = ["error", "info", "is_interactive", "stderr", "stdout"]
