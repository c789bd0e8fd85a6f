"""``--report-html`` end to end: a real ``twi-asr batch`` (subprocess, real tiny.en, espeak-ng
clips, one deliberately wrong reference and one broken file), then the page opened in a real headless
Chromium (Debian's /usr/bin/chromium driven by Playwright): the wrong reference is the worst file,
its diff marks exactly the words changed, the histogram has bars, the page asks the network for
nothing; ``twi-asr eval --report-html`` on the same outputs agrees. Desktop and phone-width
screenshots go to ``$TWI_ASR_ARTIFACTS/screenshots`` (``artifacts/`` by default).

Skipped without the browser or the playwright package, unless TWI_ASR_REQUIRE_BROWSER=1 (CI),
where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twi_asr.text import normalize_twi

from .browser import SCREENSHOTS, chromium
from .conftest import speak
from .services import EASY_SENTENCES

pytestmark = pytest.mark.slow

SAID = EASY_SENTENCES[:4]  # sentences tiny.en hears right (the batch tests rely on that too)
WRONG = 2  # "My brother plays football every Saturday morning."
# The wrong reference: "brother" -> "sister" (a substitution), "every" left out (the transcript's
# "every" is an insertion) and "in the park" added (deleted from the transcript's point of view).
WRONG_REFERENCE = "My sister plays football Saturday morning in the park."


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    clean.update({"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"})
    return clean


def twi_asr(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twi_asr", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())


@dataclass(frozen=True)
class Run:
    out: Path
    refs: Path
    report: dict[str, Any]
    batch_html: Path
    eval_html: Path
    wrong: str  # the file name of the clip with the wrong reference
    heard_right: bool  # tiny.en's words for that clip are exactly what was said


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("report-html")
    src = root / "src"
    src.mkdir()
    names = []
    for i, text in enumerate(SAID):
        names.append(speak(text, src / f"s{i:02d}.wav").name)
    (src / "notes.wav").write_text("Meeting notes: this is text, not audio.\n" * 20)  # fails: a failure row
    refs = root / "refs.tsv"
    lines = [f"{n}\t{WRONG_REFERENCE if i == WRONG else SAID[i]}\n" for i, n in enumerate(names)]
    refs.write_text("path\ttext\n" + "".join(lines), encoding="utf-8")
    out, report, batch_html = root / "out", root / "report.json", root / "report.html"
    batch = twi_asr("batch", src, "-o", out, "--model", "tiny.en", "-f", "txt,json", "--references", refs,
                    "--max-wer", "0.25", "--report", report, "--report-html", batch_html)  # fmt: skip
    assert batch.returncode == 1, batch.stderr  # the broken file fails; the WER gate passes
    assert batch_html.is_file(), batch.stderr
    rep = json.loads(report.read_text(encoding="utf-8"))
    by = {f["file"]: f for f in rep["files"]}
    wrong = names[WRONG]
    # Heard right (as here), the marks are checked one by one; a CPU where tiny.en hears a word
    # otherwise still has every changed reference word marked.
    heard_right = normalize_twi(by[wrong]["text"]) == normalize_twi(SAID[WRONG])
    assert by["notes.wav"]["status"] == "failed"
    eval_html = root / "eval.html"
    ev = twi_asr("eval", out, refs, "--report-html", eval_html, timeout=120)
    assert ev.returncode == 0, ev.stderr
    return Run(out, refs, rep, batch_html, eval_html, wrong, heard_right)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@dataclass
class Opened:
    page: Any
    requests: list[str]
    problems: list[str]  # page errors and console errors (a CSP violation is one)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []
    opened: list[Opened] = []

    def _open(path: Path, width: int = 1280, height: int = 900) -> Opened:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        seen = Opened(page, [], [])
        page.on("request", lambda req: seen.requests.append(req.url))
        page.on("pageerror", lambda exc: seen.problems.append(str(exc)))
        page.on("console", lambda msg: seen.problems.append(msg.text) if msg.type == "error" else None)
        page.goto(path.resolve().as_uri())
        page.wait_for_load_state("load")
        opened.append(seen)
        return seen

    yield _open
    for context in contexts:
        context.close()
    for seen in opened:
        assert not seen.problems, f"errors on the page: {seen.problems}"


def _marks(page: Any, file: str) -> dict[str, list[str]]:
    """The diff marks of ``file``'s section: sub titles, deleted and inserted texts."""
    diff = page.locator(f'article.diff-file[data-file="{file}"] .diff')
    return {
        "sub": diff.locator(".sub").evaluate_all("els => els.map(e => e.getAttribute('title'))"),
        "del": diff.locator("del.del").all_text_contents(),
        "ins": diff.locator("ins.ins").all_text_contents(),
    }


def _check_report(page: Any, worst: str, scored: int, exact: bool) -> None:
    assert page.evaluate("document.characterSet") == "UTF-8"
    rows = page.locator("#worst tr.file-row")
    assert rows.count() == scored
    assert rows.first.get_attribute("data-file") == worst
    wers = [float(w) for w in rows.evaluate_all("rs => rs.map(r => r.dataset.wer)")]
    assert wers == sorted(wers, reverse=True) and wers[0] > 0.5 and all(w < wers[0] for w in wers[1:])
    # The first diff on the page is the worst file's, and it marks exactly the words changed.
    assert page.locator(".diff").first.get_attribute("data-file") == worst
    marks = _marks(page, worst)
    ref_side = " ".join([t.split(" → ")[0] for t in marks["sub"]] + marks["del"]).split()
    assert {"sister", "in", "the", "park"} <= set(ref_side), marks  # every changed word is marked
    if exact:
        assert marks == {"sub": ["sister → brother"], "del": ["in the park"], "ins": ["every"]}
        sub = page.locator(f'article.diff-file[data-file="{worst}"] .sub').first
        assert sub.inner_text().replace("\n", "").split("→") == ["sister", "brother"]
    # The histogram: a bar per bin, the bars' counts add up to the scored files, tooltips on them.
    bars = page.locator("#wer-histogram rect.bar")
    assert bars.count() >= 10
    counts = [float(v) for v in bars.evaluate_all("bs => bs.map(b => b.dataset.value)")]
    assert sum(counts) == scored
    heights = bars.evaluate_all("bs => bs.map(b => b.getBBox().height)")
    assert sum(1 for h in heights if h > 0) >= 2  # the right files and the wrong one are in different bins
    assert "file" in bars.first.locator("title").text_content()
    assert page.locator("#wer-histogram").is_visible()


def test_batch_report_in_a_browser(run: Run, open_page: Any) -> None:
    scored = len(SAID)
    desk = open_page(run.batch_html)
    page = desk.page
    _check_report(page, run.wrong, scored, run.heard_right)
    assert page.get_attribute("#status", "data-status") == "complete"
    assert page.locator("#gates .gate").get_attribute("data-passed") == "true"
    assert page.locator("#overall-wer").inner_text() == f"{run.report['summary']['wer']:.2%}"
    failures = page.locator("#failures tr.failure-row")
    assert failures.count() == 1 and failures.first.get_attribute("data-file") == "notes.wav"
    (broken,) = [f for f in run.report["files"] if f["file"] == "notes.wav"]
    assert failures.first.get_attribute("data-code") == broken["error_code"]
    assert broken["error"] in failures.first.inner_text()
    rtf_bars = page.locator("#rtf-chart rect.rtf-bar")
    assert rtf_bars.count() == scored  # every transcribed clip, none invented for the broken one
    assert "RTF" in rtf_bars.first.locator("title").text_content()
    assert desk.requests == [run.batch_html.resolve().as_uri()], desk.requests  # nothing from the network

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report-desktop.png"), full_page=True)

    phone = open_page(run.batch_html, width=390, height=844)
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390  # tables scroll, not the page
    assert phone.page.locator("#worst tr.file-row").first.get_attribute("data-file") == run.wrong
    phone.page.screenshot(path=str(SCREENSHOTS / "report-phone.png"), full_page=True)
    assert phone.requests == [run.batch_html.resolve().as_uri()]

    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"


def test_eval_report_on_the_same_outputs_agrees(run: Run, open_page: Any) -> None:
    opened = open_page(run.eval_html)
    page = opened.page
    worst = Path(run.wrong).stem  # eval names outputs by their path without the suffix
    _check_report(page, worst, len(SAID), run.heard_right)
    assert page.locator("h1").inner_text().startswith("twi-asr eval report")
    assert page.locator("#overall-wer").inner_text() == f"{run.report['summary']['wer']:.2%}"
    assert "no processing times" in page.locator("#rtf-missing").inner_text()
    assert opened.requests == [run.eval_html.resolve().as_uri()]
    page.screenshot(path=str(SCREENSHOTS / "report-eval-desktop.png"), full_page=True)
