"""Progress while transcribing and the summary table at the end.

On a terminal: a rich bar over audio seconds (so one long file moves the bar
as much as many short ones) with a files column. Elsewhere (CI logs, pipes):
one plain line per finished input, no control codes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from rich.markup import escape

from ..errors import TwiAsrError
from . import console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ..pipeline import ItemResult
    from ..storage import InputItem


@dataclass
class Summary:
    """Counts for the closing table and the exit code."""

    ok: int = 0
    skipped: int = 0
    already_done: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """How many inputs failed."""
        return len(self.failures)

    def record_failure(self, name: str, error: TwiAsrError) -> None:
        """Remember a failed input and why."""
        self.failures.append((name, error.message))

    def print(self) -> None:
        """The closing table on stderr: files, audio minutes, wall time, real-time factor."""
        from rich.table import Table

        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0
        table = Table(title="twi-asr transcribe", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("files transcribed", str(self.ok))
        table.add_row("files failed", str(self.failed), style="red" if self.failed else None)
        if self.skipped:
            table.add_row("non-audio files skipped", str(self.skipped))
        if self.already_done:
            table.add_row("already done (skipped)", str(self.already_done))
        table.add_row("audio minutes", f"{self.audio_seconds / 60:.2f}")
        table.add_row("wall time (s)", f"{self.wall_seconds:.2f}")
        table.add_row("real-time factor", f"{rtf:.3f}" if self.audio_seconds else "-")
        console.stderr.print(table)
        for name, message in self.failures:
            console.error(f"{name}: {message}" if name not in message else message)


class Reporter:
    """Feeds the progress display and the summary as results arrive."""

    def __init__(self, items: Sequence[InputItem], summary: Summary) -> None:
        self.items = items
        self.summary = summary
        self.done = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._audio_task: TaskID | None = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> Reporter:
        if console.is_interactive():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console.stderr,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("transcribing", total=len(self.items), unit="files")
            total_audio = _probe_total(self.items)
            if total_audio:
                self._audio_task = self._progress.add_task(
                    "audio", total=round(total_audio, 1), unit="s of audio"
                )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def started(self, item: InputItem, seconds: float) -> None:
        """An input's audio reached the engine."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"{item.relative} ({seconds:.0f} s)")

    def finished(self, result: ItemResult) -> None:
        """An input is done (written, or failed)."""
        self.done += 1
        self.summary.audio_seconds += result.audio_seconds
        if result.error is not None:
            self.summary.record_failure(result.item.source, result.error)
        else:
            self.summary.ok += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1)
            if self._audio_task is not None:
                self._progress.update(self._audio_task, advance=round(result.audio_seconds, 1))
            if result.error is not None:
                self._progress.console.print(
                    f"[red]failed[/] {escape(result.item.relative)}: {escape(result.error.message)}",
                    markup=True,
                    highlight=False,
                )
        else:
            status = "ok" if result.error is None else f"FAILED: {result.error.message}"
            elapsed = time.perf_counter() - self._t0
            console.info(
                f"[{self.done}/{len(self.items)}] {result.item.relative} "
                f"({result.audio_seconds:.1f} s audio, {elapsed:.1f} s elapsed) {status}",
                markup=False,
            )


def _probe_total(items: Sequence[InputItem]) -> float:
    """Total audio seconds of the local inputs, from headers (cheap); 0 when unknown.

    Drives the second bar, so one long file moves the display as it should.
    S3 inputs are not probed (that would download them twice).
    """
    from ..audio import probe_duration

    total = 0.0
    for item in items:
        if item.is_s3:
            return 0.0
        total += probe_duration(item.source) or 0.0
    return total
