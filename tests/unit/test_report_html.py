"""``--report-html``: the word diff, the histogram bins, the page's escaping and self-containment,
the no-references and failure cases, and the runner/CLI writing it (also on an interrupt)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from twi_asr.batch.records import FileRecord
from twi_asr.batch.report import BatchReport, evaluate_gates, score_records
from twi_asr.batch.runner import run_batch
from twi_asr.cli import main
from twi_asr.report import build_view, render_html, write_html_report
from twi_asr.report.diff import DiffToken, diff_words
from twi_asr.report.svg import RtfPoint, histogram_bins, histogram_chart, nice_ceiling, rtf_chart
from twi_asr.text import error_rates

from .test_batch_runner import FakeEngine, config, wav


# ------------------------------------------------------------------------------------------ helpers
class Elements(HTMLParser):
    """Every element as (tag, attrs, text inside it), for asserting on the page without a browser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "line", "br", "input", "link", "img"):
            self._open.append(len(self.found) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            i = self._open.pop()
            if self.found[i][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for i in self._open:
            self.found[i][2].append(data)

    def select(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[dict[str, Any]]:
        out = []
        for t, a, text in self.found:
            if tag and t != tag:
                continue
            if cls and cls not in a.get("class", "").split():
                continue
            if any(a.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            out.append({"tag": t, "attrs": a, "text": "".join(text)})
        return out


def parse(page: str) -> Elements:
    p = Elements()
    p.feed(page)
    return p


def rec(
    name: str,
    text: str | None,
    *,
    status: str = "ok",
    audio: float = 3.0,
    wall: float = 0.3,
    finished: str | None = None,
    **kw: Any,
) -> FileRecord:
    return FileRecord(
        name,
        f"/src/{name}",
        status,  # type: ignore[arg-type]
        text=text,
        audio_seconds=audio,
        wall_seconds=wall,
        finished_utc=finished,
        **kw,
    )


def report_of(records: list[FileRecord], refs: dict[str, str] | None, **kw: Any) -> BatchReport:
    r = BatchReport(
        command="twi-asr batch src -o out",
        records=records,
        wall_seconds=2.0,
        started_utc="2024-05-01T10:00:00+00:00",
        finished_utc="2024-05-01T10:00:05+00:00",
        settings={"model": "tiny.en", "engine": "auto", "options": {"beam_size": 5}},
        **kw,
    )
    r.scores = score_records(records, refs or {})
    r.gates = evaluate_gates(records, r.scores, max_wer=0.25 if refs else None)
    return r


# ------------------------------------------------------------------------------------------ diff
def test_a_substitution_a_deletion_and_an_insertion_are_their_own_tokens() -> None:
    d = diff_words("The quick brown fox jumps.", "the quack fox jumps high")
    assert d.tokens == (
        DiffToken("equal", "the", "the"),
        DiffToken("sub", "quick", "quack"),
        DiffToken("del", "brown", ""),
        DiffToken("equal", "fox jumps", "fox jumps"),
        DiffToken("ins", "", "high"),
    )
    assert (d.substitutions, d.deletions, d.insertions, d.hits) == (1, 1, 1, 3)
    assert d.wer == pytest.approx(error_rates("The quick brown fox jumps.", "the quack fox jumps high").wer)


@pytest.mark.parametrize(
    ("ref", "hyp"),
    [
        ("Mepɛ sɛ mekɔ fie.", "mepɛ sɛ me kɔ fie"),
        ("Ɛyɛ papa, ɔdɔ ŋ", "ɛyɛ papa ɔdɔ"),
        ("a b c d e f", "x a b d e f g h"),
        ("", "something said"),
        ("words nobody said", ""),
        ("", ""),
        ("m'ani agye", "m’ani agye!"),
    ],
)
def test_the_diff_counts_are_the_edits_behind_the_wer(ref: str, hyp: str) -> None:
    d = diff_words(ref, hyp)
    rates = error_rates(ref, hyp)
    assert (d.substitutions, d.deletions, d.insertions) == (
        rates.substitutions,
        rates.deletions,
        rates.insertions,
    )
    assert d.wer == pytest.approx(rates.wer)
    assert d.ref_words == rates.ref_words


def test_substitution_runs_split_into_one_token_per_word() -> None:
    d = diff_words("one two three", "uno dos three")
    assert [t.kind for t in d.tokens] == ["sub", "sub", "equal"]
    assert [(t.ref, t.hyp) for t in d.tokens[:2]] == [("one", "uno"), ("two", "dos")]


# ------------------------------------------------------------------------------------------ page marks
def test_the_page_marks_the_edits_with_semantic_elements_and_a_legend() -> None:
    r = report_of([rec("a.wav", "the quack fox jumps high")], {"a.wav": "The quick brown fox jumps."})
    page = parse(render_html(r))
    (diff,) = page.select("p", "diff")
    assert diff["attrs"]["data-file"] == "a.wav"
    subs = [
        e for e in page.select("span", "sub") if e["attrs"].get("title") != "reference word → transcript word"
    ]
    assert [s["attrs"]["title"] for s in subs] == ["quick → quack"]
    assert "quick" in subs[0]["text"] and "quack" in subs[0]["text"]
    assert [e["text"] for e in page.select("del", "del")][-1] == "brown"
    assert [e["text"] for e in page.select("ins", "ins")][-1] == "high"
    (legend,) = page.select(id="legend")
    assert (
        legend["text"].count("substitution") == 1
        and "deletion" in legend["text"]
        and "insertion" in legend["text"]
    )


def test_twi_letters_round_trip_as_utf8() -> None:
    ref, hyp = "Mepɛ sɛ mekɔ fie, Ɔdɔ ŋ", "mepɛ sɛ mekɔ fie ɔdɔ ŋ"
    r = report_of([rec("ɔkɔm/ɛ.wav", hyp)], {"ɔkɔm/ɛ.wav": ref})
    raw = render_html(r).encode("utf-8")
    page = raw.decode("utf-8")
    assert '<meta charset="utf-8">' in page
    assert "mepɛ sɛ mekɔ fie ɔdɔ ŋ" in page  # the normalised diff (lower case, no punctuation)
    assert "Mepɛ sɛ mekɔ fie, Ɔdɔ ŋ" in page  # the reference as written
    assert "&#" not in page.split("<style>")[1]  # letters as letters, not numeric entities
    row = parse(page).select("tr", "file-row")[0]
    assert row["attrs"]["data-file"] == "ɔkɔm/ɛ.wav" and row["attrs"]["data-wer"] == "0.0000"


def test_markup_in_transcripts_names_and_errors_is_escaped() -> None:
    evil = 'hello <script>alert("x")</script> <img src=x onerror=alert(1)>'
    records = [
        rec('<b>x</b>".wav', evil),
        rec("bad.wav", None, status="failed", error="<script>boom()</script>", error_code="invalid_audio"),
    ]
    r = report_of(records, {'<b>x</b>".wav': "hello <i>there</i>"})
    page = render_html(r)
    assert page.count("<script") == 1  # only the page's own print helper
    assert "<img" not in page and "<b>x</b>" not in page and "<i>there" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page  # the transcript as written, as text
    assert "&lt;script&gt;boom()&lt;/script&gt;" in page
    assert 'data-file="&lt;b&gt;x&lt;/b&gt;&#34;.wav"' in page


def test_the_page_loads_nothing_from_the_network() -> None:
    records = [rec(f"c{i}.wav", "some words here", finished=f"2024-05-01T10:00:0{i}+00:00") for i in range(3)]
    records.append(rec("f.wav", None, status="failed", error="broken", error_code="invalid_audio"))
    page = render_html(report_of(records, {f"c{i}.wav": "some other words here" for i in range(3)}))
    assert "http://" not in page and "https://" not in page
    for tag, attrs, _ in parse(page).found:
        for key in ("src", "href", "xlink:href", "action", "data", "poster", "srcset", "formaction"):
            if key in attrs:
                assert attrs[key].startswith("#"), (tag, key, attrs[key])  # own anchors only
        assert not any("//" in v for v in attrs.values()), (tag, attrs)  # no protocol-relative URL either
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # and the CSP forbids any load should one creep in


# ------------------------------------------------------------------------------------------ charts
def test_histogram_bins_count_rates_into_tenths_and_an_overflow_bin() -> None:
    bins = histogram_bins([0.0, 0.05, 0.1, 0.25, 0.2999, 0.3, 0.95, 1.0, 1.5, 2.0])
    assert [b.count for b in bins] == [2, 1, 2, 1, 0, 0, 0, 0, 0, 2, 2]
    assert bins[0].label == "0–10%" and bins[9].label == "90–100%" and bins[-1].label == ">100%"
    assert len(histogram_bins([0.0, 1.0])) == 10  # no overflow bin unless needed
    assert sum(b.count for b in histogram_bins([0.1 * i for i in range(11)])) == 11


def test_the_histogram_svg_has_a_bar_per_bin_with_tooltips_and_axis_labels() -> None:
    records = [rec(f"c{i}.wav", hyp) for i, hyp in enumerate(["a b c d", "a b c x", "a x x x", "a b c d"])]
    r = report_of(records, {f"c{i}.wav": "a b c d" for i in range(4)})
    page = render_html(r)
    svg = page.split('id="wer-histogram"')[1].split("</svg>")[0]
    counts = [float(v) for v in re.findall(r'<rect class="bar[^"]*"[^>]*data-value="([\d.]+)"', svg)]
    assert counts == [2, 0, 1, 0, 0, 0, 0, 1, 0, 0]  # WER 0, 0, 0.25, 0.75
    assert "<title>WER 0–10%: 2 files</title>" in svg and "<title>WER 70–80%: 1 file</title>" in svg
    assert "WER per file (%)" in svg and ">files<" in svg
    assert 'id="cer-histogram"' in page
    chart = histogram_chart([0.0, 0.5], "CER")
    assert [t.label for t in chart.ticks] == ["0", "1", "2", "3", "4"]
    assert [t.label for t in histogram_chart([0.05] * 76, "WER").ticks] == ["0", "20", "40", "60", "80"]
    assert [t.label for t in histogram_chart([0.05] * 92, "WER").ticks] == ["0", "25", "50", "75", "100"]
    assert [t.label for t in histogram_chart([0.05] * 7, "WER").ticks] == ["0", "2", "4", "6", "8"]


def test_rtf_chart_in_finish_order_with_tooltips() -> None:
    records = [
        rec("late.wav", "x", audio=2.0, wall=1.0, finished="2024-05-01T10:00:09+00:00"),
        rec("early.wav", "x", audio=4.0, wall=0.4, finished="2024-05-01T10:00:01+00:00"),
        rec("untimed.wav", "x", audio=0.0, wall=0.0, finished="2024-05-01T10:00:02+00:00"),
    ]
    view = build_view(report_of(records, None))
    assert view.rtf is not None
    assert [b.title.split(":")[0] for b in view.rtf.bars] == ["#1 early.wav", "#2 late.wav"]
    assert [round(b.value, 3) for b in view.rtf.bars] == [0.1, 0.5]
    assert "1 finished file(s) have no processing time recorded" in view.rtf_note
    page = render_html(report_of(records, None))
    assert page.count('class="rtf-bar"') == 2 and 'id="rtf-chart"' in page
    assert nice_ceiling(0.37) == 0.5 and nice_ceiling(1.0) == 1.0 and nice_ceiling(3.2) == 5.0
    many = rtf_chart([RtfPoint(f"f{i}", 0.1, 0.1, 1.0) for i in range(500)])
    assert len(many.bars) == 500 and len(many.x_labels) <= 21 and many.x_labels[-1].label == "500"


def test_no_processing_times_are_said_in_words_not_drawn() -> None:
    records = [rec("a.wav", "x", audio=0.0, wall=0.0)]
    page = parse(render_html(report_of(records, None)))
    (missing,) = page.select(id="rtf-missing")
    assert "no file has a processing time" in missing["text"]
    assert not page.select(id="rtf-chart")


# ------------------------------------------------------------------------------------------ cases
def test_worst_files_first_then_the_rest_in_wer_order() -> None:
    refs = {
        "good.wav": "one two three four",
        "bad.wav": "one two three four",
        "mid.wav": "one two three four",
    }
    records = [
        rec("good.wav", "one two three four"),
        rec("bad.wav", "one nine"),
        rec("mid.wav", "one two three"),
    ]
    page = parse(render_html(report_of(records, refs)))
    rows = page.select("tr", "file-row")
    assert [r["attrs"]["data-file"] for r in rows] == ["bad.wav", "mid.wav", "good.wav"]
    assert [float(r["attrs"]["data-wer"]) for r in rows] == [0.75, 0.25, 0.0]
    diffs = page.select("p", "diff")
    assert [d["attrs"]["data-file"] for d in diffs] == ["bad.wav", "mid.wav", "good.wav"]
    assert page.select("table", id="worst")


def test_without_references_the_page_says_so_and_keeps_summary_rtf_and_failures() -> None:
    records = [
        rec("a.wav", "hello", finished="2024-05-01T10:00:01+00:00"),
        rec("b.wav", None, status="failed", error="b.wav: not audio", error_code="invalid_audio"),
    ]
    page_text = render_html(report_of(records, None))
    page = parse(page_text)
    (note,) = page.select(id="no-references")
    assert "No input has a reference, so there is no WER" in note["text"]
    assert not page.select(id="worst") and not page.select(id="wer-histogram")
    assert page.select(id="summary") and page.select(id="rtf-chart")
    assert [r["attrs"]["data-file"] for r in page.select("tr", "failure-row")] == ["b.wav"]
    assert page.select(id="overall-wer")[0]["text"] == "–"


def test_failures_are_listed_with_code_and_message() -> None:
    records = [
        rec("ok.wav", "one two"),
        rec("empty.wav", None, status="failed", error="empty.wav: no audio", error_code="invalid_audio"),
        rec("gone.wav", None, status="failed", error="gone.wav: no such file", error_code="not_found"),
    ]
    r = report_of(records, {"ok.wav": "one two", "empty.wav": "a b"})
    page = parse(render_html(r))
    rows = page.select("tr", "failure-row")
    assert [(x["attrs"]["data-file"], x["attrs"]["data-code"]) for x in rows] == [
        ("empty.wav", "invalid_audio"),
        ("gone.wav", "not_found"),
    ]
    assert "gone.wav: no such file" in rows[1]["text"]
    assert (
        "count in the overall WER and CER as empty transcripts" in page.select(id="scoring-note")[0]["text"]
    )
    assert [c["attrs"]["data-key"] for c in page.select("div", "card", **{"class": "card bad"})] == [
        "failed",
        "gates",
    ]


def test_an_interrupted_run_says_so(tmp_path: Path) -> None:
    records = [rec("a.wav", "x"), rec("b.wav", None, status="pending")]
    r = report_of(records, None, status="interrupted")
    page = parse(render_html(r))
    assert page.select(id="status")[0]["attrs"]["data-status"] == "interrupted"
    assert "1 input(s) were not reached" in page.select(id="status-note")[0]["text"]
    assert "b.wav" in page.select(id="pending")[0]["text"]


def test_written_atomically_as_utf8(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "report.html"
    r = report_of([rec("ɛ.wav", "ɔdɔ")], {"ɛ.wav": "ɔdɔ"})
    assert write_html_report(r, target) == target
    assert "ɔdɔ" in target.read_bytes().decode("utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


# ------------------------------------------------------------------------------------------ wiring
def test_batch_writes_the_page_also_when_interrupted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(4):
        wav(src / f"c{i}.wav", 0.5 + i * 0.1)
    refs = tmp_path / "refs.tsv"
    refs.write_text("c0.wav\tclip of 8000 samples\nc1.wav\tclip of many samples\n", encoding="utf-8")
    html = tmp_path / "report.html"
    cfg = config(src, tmp_path / "out", batch_size=2, references=str(refs), report_html=str(html))
    with pytest.raises(KeyboardInterrupt):
        run_batch(cfg, transcriber=FakeEngine(interrupt_at=2))
    page = parse(html.read_text(encoding="utf-8"))
    assert page.select(id="status")[0]["attrs"]["data-status"] == "interrupted"
    rows = page.select("tr", "file-row")
    assert [r["attrs"]["data-file"] for r in rows] == ["c1.wav", "c0.wav"]  # what was done is kept
    assert page.select(id="pending") and page.select(id="rtf-chart")


def test_the_cli_options_write_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for command in ("batch", "eval"):
        assert main([command, "--help"]) == 0
        assert "--report-html" in capsys.readouterr().out
    src = tmp_path / "src"
    wav(src / "c0.wav", 0.5)
    out, html = tmp_path / "out", tmp_path / "b.html"
    run_batch(config(src, out, report_html=str(html)), transcriber=FakeEngine())
    assert 'id="no-references"' in html.read_text(encoding="utf-8")
    refs = tmp_path / "refs.csv"
    refs.write_text("c0.wav,clip of 8000 samples\nmissing.wav,gone\n", encoding="utf-8")
    ev = tmp_path / "eval.html"
    assert main(["eval", str(out), str(refs), "--report-html", str(ev)]) == 1
    page = parse(ev.read_text(encoding="utf-8"))
    assert [r["attrs"]["data-file"] for r in page.select("tr", "file-row")] == ["c0"]
    assert [r["attrs"]["data-code"] for r in page.select("tr", "failure-row")] == ["missing_output"]
    assert "no processing times" in page.select(id="rtf-missing")[0]["text"]
    assert page.select("h1")[0]["text"].startswith("twi-asr eval report")


def test_importing_the_package_loads_neither_jinja2_nor_jiwer() -> None:
    code = (
        "import json, sys\nimport twi_asr.report\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('jinja2', 'jiwer'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
