"""Debian's headless Chromium driven by Playwright, for the tests that open pages in a real browser.

No Playwright browser download: ``executable_path`` is /usr/bin/chromium (``apt-get install
chromium``; scripts/setup.sh does). Without it or the ``playwright`` package the test is skipped,
unless TWI_ASR_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
BASE_ARGS = ("--no-sandbox", "--disable-dev-shm-usage")
# Where the browser tests save their screenshots; CI sets TWI_ASR_ARTIFACTS and keeps the folder.
SCREENSHOTS = Path(os.environ.get("TWI_ASR_ARTIFACTS", "artifacts")) / "screenshots"


def fake_microphone(clip: Path) -> list[str]:
    """Chromium flags that make ``clip`` the microphone (allowed without asking) and let audio autoplay."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}",
        "--autoplay-policy=no-user-gesture-required",
    ]


@contextmanager
def chromium(extra_args: Sequence[str] = ()) -> Iterator[Any]:
    """A launched headless Chromium (closed on exit), or a skip (a failure in CI) saying what is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium; scripts/setup.sh does)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("TWI_ASR_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (TWI_ASR_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*BASE_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()
