"""Batch progress: a rich bar on a terminal, a plain line every ``every_s`` seconds in CI logs.

The bar shows files done out of total, audio hours done, files per minute
and the ETA. Plain mode prints the same facts as one line with no control
codes (``batch: 40/100 files, 2 failed, 0.05 h audio, 31.2 files/min, ETA
2m05s``) at most every ``every_s`` seconds, each failure at once, and a
final line.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from .. import console

if TYPE_CHECKING:
    from .records import FileRecord

__all__ = ["BatchProgress"]


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class BatchProgress:
    """Feed it :meth:`done` per finished input; it decides what to show."""

    def __init__(
        self,
        total: int,
        *,
        total_audio_s: float | None = None,
        interactive: bool | None = None,
        every_s: float = 15.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.total = total
        self.total_audio_s = total_audio_s or None
        self.interactive = console.is_interactive() if interactive is None else interactive
        self.every_s = every_s
        self.clock = clock
        self.finished = 0
        self.failed = 0
        self.audio_s = 0.0
        self._t0 = clock()
        self._last_line = self._t0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> BatchProgress:
        if self.interactive and self.total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files"),
                TextColumn("{task.fields[audio]}"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[failed]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console.stderr,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("batch", total=self.total, **self._fields())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif self.total:
            console.info(self.line(final=True), markup=False)

    # ------------------------------------------------------------ numbers
    def rate_per_min(self) -> float | None:
        """Files per minute so far."""
        elapsed = self.clock() - self._t0
        return self.finished / elapsed * 60.0 if elapsed > 0 and self.finished else None

    def eta_s(self) -> float | None:
        """Seconds left, by audio done when the total audio is known, else by files."""
        elapsed = self.clock() - self._t0
        if not self.finished or elapsed <= 0:
            return None
        if self.total_audio_s and self.audio_s > 0:
            return elapsed / self.audio_s * max(0.0, self.total_audio_s - self.audio_s)
        return elapsed / self.finished * (self.total - self.finished)

    def _fields(self) -> dict[str, str]:
        rate = self.rate_per_min()
        return {
            "audio": f"{self.audio_s / 3600:.3f} h audio",
            "rate": f"{rate:.1f} files/min" if rate else "- files/min",
            "failed": f"[red]{self.failed} failed[/]" if self.failed else "",
        }

    def line(self, *, final: bool = False) -> str:
        """The plain progress line."""
        rate = self.rate_per_min()
        parts = [
            f"batch: {self.finished}/{self.total} files",
            f"{self.failed} failed",
            f"{self.audio_s / 3600:.3f} h audio",
            f"{rate:.1f} files/min" if rate else "- files/min",
        ]
        if final:
            parts.append(f"{self.clock() - self._t0:.1f} s elapsed")
        else:
            parts.append(f"ETA {_eta(self.eta_s())}")
        return ", ".join(parts)

    # ------------------------------------------------------------ events
    def done(self, rec: FileRecord) -> None:
        """An input finished (ok or failed)."""
        self.finished += 1
        self.audio_s += rec.audio_seconds
        if rec.status == "failed":
            self.failed += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, **self._fields())
            if rec.status == "failed":
                self._progress.console.print(
                    f"[red]failed[/] {escape(rec.relative)}: {escape(rec.error or '')}", highlight=False
                )
            return
        if rec.status == "failed":
            shown = rec.error if rec.source in (rec.error or "") else f"{rec.relative}: {rec.error}"
            console.info(f"failed: {shown}", markup=False)
        now = self.clock()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            console.info(self.line(), markup=False)
