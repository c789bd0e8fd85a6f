"""Geometry of the report's two inline SVG charts: the WER/CER histogram and the per-file RTF bars.

Only numbers and labels are computed here; the template draws the
``<svg>`` elements from them, so every label and tooltip (file names come
from users) passes through Jinja2's autoescaping and nothing here builds
markup. The charts are drawn in a fixed ``viewBox`` and scaled by the
browser: no script, no web font, nothing fetched.

Histogram bins are 10 points wide over 0-100 % (``[0, 10)``, ... ,
``[90, 100]``, so a fully wrong file lands in the last bin), plus a
``>100%`` bin, shown only when needed, for files whose insertions push the
rate past 1. The RTF chart has one bar per file in the order the files
finished, with a dashed line at RTF 1 (as slow as real time) when the
axis reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Bar",
    "Bin",
    "Chart",
    "RtfPoint",
    "Tick",
    "XLabel",
    "histogram_bins",
    "histogram_chart",
    "nice_ceiling",
    "rtf_chart",
]

HIST_SIZE = (480.0, 250.0)  # two histograms side by side on a laptop, one per row on a phone
RTF_SIZE = (960.0, 280.0)  # the full width: one bar per file
LEFT, RIGHT, TOP, BOTTOM = 58.0, 14.0, 22.0, 54.0  # room for y labels, counts, x labels, axis titles
MAX_X_LABELS = 20  # the RTF chart labels every k-th file beyond this


@dataclass(frozen=True)
class Bin:
    """One histogram bin: ``[low, high)`` as rates (the last regular bin includes 1.0)."""

    low: float
    high: float | None  # None: the open ">100%" bin
    count: int

    @property
    def label(self) -> str:
        """``0–10%``, ``90–100%`` or ``>100%``."""
        if self.high is None:
            return ">100%"
        return f"{self.low * 100:.0f}–{self.high * 100:.0f}%"


@dataclass(frozen=True)
class Bar:
    """A rectangle in viewBox units, its tooltip, and the value written above it (or "")."""

    x: float
    y: float
    width: float
    height: float
    title: str
    value: float
    text: str = ""
    css: str = "bar"


@dataclass(frozen=True)
class Tick:
    """A y-axis gridline at ``y`` (viewBox units) labelled ``label``."""

    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    """A label under the x axis, centred on ``x`` (viewBox units)."""

    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    """Everything the template needs to draw one chart."""

    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    x_labels: tuple[XLabel, ...]
    x_title: str
    y_title: str
    width: float
    height: float
    left: float = LEFT
    top: float = TOP
    reference_y: float | None = None  # a dashed line (RTF 1), or None
    reference_label: str = ""

    @property
    def plot_width(self) -> float:
        """Width of the plotting area (inside the axes)."""
        return self.width - LEFT - RIGHT

    @property
    def plot_height(self) -> float:
        """Height of the plotting area."""
        return self.height - TOP - BOTTOM

    @property
    def baseline(self) -> float:
        """The x axis, in viewBox units."""
        return self.top + self.plot_height


def histogram_bins(values: Sequence[float], width: float = 0.1) -> list[Bin]:
    """Count ``values`` (rates, 0.25 = 25 %) into bins of ``width`` over [0, 1], plus ``>100%`` when used."""
    n = round(1.0 / width)
    counts = [0] * n
    over = 0
    for v in values:
        if v > 1.0 + 1e-9:
            over += 1
        else:
            counts[min(n - 1, max(0, math.floor(v / width + 1e-9)))] += 1
    bins = [Bin(round(i * width, 6), round((i + 1) * width, 6), c) for i, c in enumerate(counts)]
    if over:
        bins.append(Bin(1.0, None, over))
    return bins


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (an axis top that reads well)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        top = step * 10.0**exp
        if top >= value * (1 - 1e-12):
            return top
    return 10.0 ** (exp + 1)


def _count_step(at_least: float) -> int:
    """The smallest whole step of 1, 2, 5 x 10^k (or 25 x 10^k) at or above ``at_least`` (0 -> 1)."""
    exp = 0
    while True:
        for mantissa in (1, 2, 5) if exp == 0 else (1, 2, 2.5, 5):
            step = round(mantissa * 10**exp)
            if step >= at_least:
                return step
        exp += 1


def _ticks(top: float, plot_h: float, fmt: str, count: int = 4) -> tuple[Tick, ...]:
    """``count`` + 1 gridlines from 0 to ``top`` (data units), placed in a plot ``plot_h`` high."""
    return tuple(
        Tick(TOP + plot_h - plot_h * i / count, format(top * i / count, fmt)) for i in range(count + 1)
    )


def histogram_chart(values: Sequence[float], metric: str) -> Chart:
    """The histogram of per-file ``metric`` rates (``"WER"`` or ``"CER"``) as bars with tooltips.

    The x labels sit on the bin edges (0, 10, ... 100, in percent) so they
    stay legible at phone width; the count is written above each non-empty bar.
    """
    bins = histogram_bins(values)
    top = 4.0 * _count_step(max(b.count for b in bins) / 4)  # four gridlines at round file counts
    width, height = HIST_SIZE
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / len(bins)
    bars = []
    for i, b in enumerate(bins):
        h = plot_h * b.count / top
        files = "file" if b.count == 1 else "files"
        bars.append(
            Bar(
                x=LEFT + i * slot + slot * 0.08,
                y=TOP + plot_h - h,
                width=slot * 0.84,
                height=h,
                title=f"{metric} {b.label}: {b.count} {files}",
                value=float(b.count),
                text=str(b.count) if b.count else "",
                css="bar bar-over" if b.high is None else "bar",
            )
        )
    regular = sum(1 for b in bins if b.high is not None)
    labels = [XLabel(LEFT + i * slot, f"{i * 100 // regular}") for i in range(regular + 1)]
    if len(bins) > regular:
        labels.append(XLabel(LEFT + (regular + 0.5) * slot, ">100"))
    return Chart(
        tuple(bars),
        _ticks(top, plot_h, ".0f"),
        tuple(labels),
        x_title=f"{metric} per file (%)",
        y_title="files",
        width=width,
        height=height,
    )


@dataclass(frozen=True)
class RtfPoint:
    """One file's real-time factor, in the order the files finished."""

    file: str
    rtf: float
    processing_s: float
    audio_s: float
    earlier_run: bool = False


def rtf_chart(points: Sequence[RtfPoint]) -> Chart:
    """One bar per file (finish order) of processing seconds per audio second; a dashed line at 1."""
    peak = max((p.rtf for p in points), default=0.0)
    top = nice_ceiling(max(peak, 1e-3))
    width, height = RTF_SIZE
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    n = max(1, len(points))
    slot = plot_w / n
    gap = 0.1 if slot > 4 else 0.0  # thin bars touch rather than vanish
    bars = []
    for i, p in enumerate(points):
        h = plot_h * min(p.rtf, top) / top
        when = " (done in an earlier run)" if p.earlier_run else ""
        bars.append(
            Bar(
                x=LEFT + i * slot + slot * gap,
                y=TOP + plot_h - h,
                width=max(slot * (1 - 2 * gap), 0.5),
                title=(
                    f"#{i + 1} {p.file}: RTF {p.rtf:.3f} "
                    f"({p.processing_s:.2f} s for {p.audio_s:.2f} s of audio){when}"
                ),
                height=h,
                value=p.rtf,
                css="rtf-bar rtf-earlier" if p.earlier_run else "rtf-bar",
            )
        )
    step = max(1, math.ceil(n / MAX_X_LABELS))
    shown = [i for i in range(len(points)) if i % step == 0 or i == len(points) - 1]
    if len(shown) > 1 and shown[-1] - shown[-2] < step:
        shown.pop(-2)  # the last file's label instead of one crowding it
    labels = tuple(XLabel(LEFT + (i + 0.5) * slot, str(i + 1)) for i in shown)
    ref_y = TOP + plot_h - plot_h / top if top >= 1.0 else None
    mantissa = top / 10.0 ** math.floor(math.log10(top))
    intervals = 4 if math.isclose(mantissa, 2.0) else 5  # steps of 0.5, 0.2 or 1 (x 10^k), never 0.125
    return Chart(
        tuple(bars),
        _ticks(top, plot_h, ".3g", intervals),
        labels,
        x_title="files, in the order they finished",
        y_title="real-time factor",
        width=width,
        height=height,
        reference_y=ref_y,
        reference_label="real time (RTF 1)",
    )
