"""The self-contained HTML report of a batch or eval run (``--report-html``).

- :mod:`.html`: the view model and the Jinja2 rendering, :func:`write_html_report`.
- :mod:`.diff`: the word alignment of reference and hypothesis, as marked tokens.
- :mod:`.svg`: the geometry of the WER/CER histogram and the real-time-factor chart.

Importing this package is cheap (no jinja2, no jiwer until a page is rendered).
"""

from __future__ import annotations

from .html import build_view, render_html, write_html_report

__all__ = ["build_view", "render_html", "write_html_report"]
