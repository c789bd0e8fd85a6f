"""The page at ``/`` in a real headless Chromium (Debian's, driven by Playwright) against a real
``twi-asr serve --model tiny.en``: upload, streamed deltas, segment table, SRT/VTT downloads,
recording through Chromium's fake microphone, a server error, and (with stubbed responses) Twi
letters, a mid-stream error, the API key and the page's own SSE parser and subtitle writers.

Needs /usr/bin/chromium (``apt-get install chromium``) and the ``playwright`` package; no
Playwright browser download. Skipped when either is missing, unless TWI_ASR_REQUIRE_BROWSER=1
(CI), where that is a failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from twi_asr.text import wer

from .browser import chromium, fake_microphone
from .conftest import _ffmpeg, speak
from .services import EASY_SENTENCES, Server, start_server, stop_server

pytestmark = pytest.mark.slow

API = "**/v1/audio/transcriptions"
WAIT_MS = 240_000  # tiny.en on a loaded 2-core machine; the long clip takes the most
SRT_STAMP = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"
VTT_STAMP = r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d"
TWI = ["Mepɛ sɛ mekɔ fie.", "Nkyerɛwde: ɛ ɔ ŋ Ɛ Ɔ Ŋ."]


@dataclass(frozen=True)
class Clips:
    short: Path
    short_text: str
    long: Path
    long_text: str
    mic: Path  # what Chromium's fake microphone plays
    mic_text: str
    mic_seconds: float
    not_audio: Path


def _seconds(path: Path) -> float:
    import soundfile

    return float(soundfile.info(str(path)).duration)


def _silence(path: Path, seconds: float) -> Path:
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", f"{seconds}", "-c:a", "pcm_s16le", path)
    return path


def _concat(parts: list[Path], out: Path) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:a", "pcm_s16le", out)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("page-clips")
    short_text = EASY_SENTENCES[0]
    short = speak(short_text, folder / "sentence.wav")
    # ~75 s: 14 sentences with 1.5 s pauses, so the server cuts it into several pieces.
    pause = _silence(folder / "pause.wav", 1.5)
    said = EASY_SENTENCES[1:15]
    parts: list[Path] = []
    for i, sentence in enumerate(said):
        parts += [speak(sentence, folder / f"long{i:02d}.wav"), pause]
    long = _concat(parts, folder / "long.wav")
    mic_text = EASY_SENTENCES[19]
    lead = _silence(folder / "lead.wav", 0.5)
    mic = _concat([lead, speak(mic_text, folder / "mic_speech.wav"), pause], folder / "mic.wav")
    not_audio = folder / "notes.wav"
    not_audio.write_text("Meeting notes: this is text, not audio.\n" * 20)
    return Clips(short, short_text, long, " ".join(said), mic, mic_text, _seconds(mic), not_audio)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("page-server") / "server.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser(clips: Clips) -> Iterator[Any]:
    with chromium(fake_microphone(clips.mic)) as launched:
        yield launched


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, accept_downloads=True, permissions=["microphone"])
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    answer = pg.goto("/")
    assert answer is not None and answer.status == 200, (
        f"GET / answered {answer and answer.status}: create_app must call server.page.mount_page(app)"
    )
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# ------------------------------------------------------------------------------------------ helpers
def _wait_done(page: Any, timeout: int = WAIT_MS) -> str:
    page.wait_for_selector("#live-text[data-state='done'], #live-text[data-state='error']", timeout=timeout)
    state = page.get_attribute("#live-text", "data-state")
    assert state == "done", f"the page shows an error: {page.text_content('#status')}"
    return page.inner_text("#live-text")


def _rows(page: Any) -> list[tuple[float, float, str]]:
    def secs(clock: str) -> float:
        *hm, s = clock.split(":")
        return float(s) + 60 * float(hm[-1]) + (3600 * float(hm[0]) if len(hm) == 2 else 0)

    cells = page.eval_on_selector_all(
        "#segments tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )
    for start, end, _ in cells:
        assert re.fullmatch(r"(\d+:)?\d\d:\d\d\.\d", start) and re.fullmatch(r"(\d+:)?\d\d:\d\d\.\d", end)
    return [(secs(a), secs(b), t) for a, b, t in cells]


def _download(page: Any, selector: str) -> tuple[str, str]:
    with page.expect_download() as info:
        page.click(selector)
    dl = info.value
    return dl.suggested_filename, Path(dl.path()).read_bytes().decode("utf-8")


def _cue_text(subtitles: str) -> str:
    lines = [ln for ln in subtitles.splitlines() if ln.strip() and "-->" not in ln]
    return " ".join(ln for ln in lines if not ln.isdigit() and ln != "WEBVTT")


def _sse(*events: dict[str, Any]) -> bytes:
    return "".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events).encode("utf-8")


# --------------------------------------------------------------------------------- real server
def test_upload_streams_text_table_and_downloads(page: Any, clips: Clips, tmp_path: Path) -> None:
    assert page.evaluate("document.characterSet") == "UTF-8"
    assert page.is_disabled("#transcribe-btn")
    page.set_input_files("#file-input", str(clips.short))
    assert "sentence.wav" in page.inner_text("#file-name")
    page.click("#transcribe-btn")
    text = _wait_done(page)
    assert wer(clips.short_text, text) < 0.35, text
    assert page.get_attribute("#status", "data-kind") == "ok"

    rows = _rows(page)
    assert rows and all(end >= start for start, end, _ in rows)
    assert rows[-1][1] <= _seconds(clips.short) + 0.5

    name, srt = _download(page, "#download-srt")
    assert name == "sentence.srt"
    blocks = srt.strip().split("\n\n")
    for i, block in enumerate(blocks, 1):
        lines = block.split("\n")
        assert lines[0] == str(i) and re.fullmatch(SRT_STAMP, lines[1]) and lines[2].strip(), block
    assert wer(clips.short_text, _cue_text(srt)) < 0.35, srt

    name, vtt = _download(page, "#download-vtt")
    assert name == "sentence.vtt"
    assert vtt.startswith("WEBVTT\n\n") and re.search(VTT_STAMP, vtt), vtt
    assert wer(clips.short_text, _cue_text(vtt)) < 0.35, vtt
    page.screenshot(path=str(tmp_path / "page-desktop.png"), full_page=True)


def test_long_clip_shows_deltas_before_done(page: Any, clips: Clips, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.set_input_files("#file-input", str(clips.long))
    page.evaluate(
        """() => {
        const live = document.getElementById('live-text');
        window.__snaps = [];
        new MutationObserver(() => window.__snaps.push({
            state: live.dataset.state, deltas: Number(live.dataset.deltas),
            chars: live.textContent.length, t: performance.now()})
        ).observe(live, {childList: true, subtree: true, characterData: true, attributes: true});
    }"""
    )
    page.click("#transcribe-btn")
    text = _wait_done(page)
    snaps = page.evaluate("window.__snaps")
    streaming = [s for s in snaps if s["state"] == "streaming" and s["deltas"] >= 1 and s["chars"] > 0]
    done = [s for s in snaps if s["state"] == "done"]
    assert streaming, f"no text was shown before the done event: {snaps}"
    assert done and streaming[0]["t"] < done[0]["t"]
    assert wer(clips.long_text, text) < 0.35, text

    rows = _rows(page)
    assert len(rows) >= 5, rows
    starts = [start for start, _, _ in rows]
    assert starts == sorted(starts) and starts[-1] > 30, rows
    assert all(end >= start for start, end, _ in rows)
    _, srt = _download(page, "#download-srt")
    assert len(re.findall(SRT_STAMP, srt)) == len(rows)
    assert wer(clips.long_text, _cue_text(srt)) < 0.35
    # Readable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "page-phone.png"), full_page=True)


def test_record_with_fake_microphone(page: Any, clips: Clips) -> None:
    page.click("#record-btn")
    page.wait_for_selector("#record-btn[aria-pressed='true']")
    page.wait_for_timeout(int(clips.mic_seconds * 1000) + 300)
    assert page.inner_text("#record-timer") != "00:00.0"
    page.click("#record-btn")
    page.wait_for_selector("#record-btn[aria-pressed='false']")
    # Functions, not strings: the page's CSP has no 'unsafe-eval', which string predicates need.
    page.wait_for_function("() => document.getElementById('file-name').textContent.includes('.webm')")
    assert page.evaluate("document.getElementById('preview').src.startsWith('blob:')")
    page.click("#transcribe-btn")
    text = _wait_done(page)
    said = set(re.findall(r"[a-z]+", clips.mic_text.lower()))
    heard = set(re.findall(r"[a-z]+", text.lower()))
    assert len(said & heard) >= 0.7 * len(said), f"heard {text!r} for {clips.mic_text!r}"


def test_non_audio_file_shows_the_servers_message(page: Any, clips: Clips, server: Server) -> None:
    with clips.not_audio.open("rb") as f:
        answer = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": f}, timeout=60)
    assert answer.status_code >= 400
    message = answer.json()["error"]["message"]
    page.set_input_files("#file-input", str(clips.not_audio))
    page.click("#transcribe-btn")
    page.wait_for_selector("#live-text[data-state='error']", timeout=60_000)
    status = page.inner_text("#status")
    assert message in status, status
    assert page.get_attribute("#status", "data-kind") == "error"
    assert page.is_hidden("#results")
    assert page.is_enabled("#transcribe-btn")  # ready for another try


def test_with_an_api_key_the_page_opens_and_the_key_unlocks_the_api(
    browser: Any, clips: Clips, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = "page-test-key"
    srv = start_server(tmp_path_factory.mktemp("page-keyed") / "server.log", env={"TWI_ASR_API_KEY": key})
    context = browser.new_context(base_url=srv.url)
    try:
        pg = context.new_page()
        assert pg.goto("/").status == 200  # the page and its assets need no key
        assert pg.evaluate("typeof window.TwiAsrPage") == "object"
        pg.set_input_files("#file-input", str(clips.short))
        pg.click("#transcribe-btn")
        pg.wait_for_selector("#live-text[data-state='error']", timeout=60_000)
        assert "API key" in pg.inner_text("#status")
        pg.fill("#api-key", key)
        pg.click("#transcribe-btn")
        assert wer(clips.short_text, _wait_done(pg)) < 0.35
    finally:
        context.close()
        stop_server(srv)


# ------------------------------------------------------------------ stubbed server answers
def test_twi_letters_render_and_survive_the_downloads(page: Any, clips: Clips) -> None:
    sent: list[bytes] = []
    body = _sse(
        {"type": "transcript.text.delta", "delta": TWI[0],
         "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": TWI[0]}]},
        {"type": "transcript.text.delta", "delta": " " + TWI[1],
         "segments": [{"id": 1, "start": 1.5, "end": 61.25, "text": " " + TWI[1]}]},
        {"type": "transcript.text.done", "text": " ".join(TWI), "usage": {"type": "duration", "seconds": 62},
         "language": "tw", "duration": 61.3,
         "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": TWI[0]},
                      {"id": 1, "start": 1.5, "end": 61.25, "text": " " + TWI[1]}]},
    )  # fmt: skip

    def fulfill(route: Any) -> None:
        sent.append(route.request.post_data_buffer or b"")
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}, body=body)

    page.route(API, fulfill)
    page.set_input_files("#file-input", str(clips.short))
    page.click("#transcribe-btn")
    assert _wait_done(page) == " ".join(TWI)
    form = sent[0].decode("utf-8", "replace")
    for name, value in [("stream", "true"), ("language", "tw"), ("response_format", "json"),
                        ("timestamp_granularities[]", "segment")]:  # fmt: skip
        assert re.search(rf'name="{re.escape(name)}"\r\n\r\n{re.escape(value)}\r\n', form), name
    assert page.eval_on_selector_all("#live-text .delta", "s => s.length") == 2
    assert _rows(page) == [(0.0, 1.5, TWI[0]), (1.5, pytest.approx(61.3), TWI[1])]
    # The glyphs come from a real font, not boxes: each Twi letter is as wide as in a font that has it.
    widths = page.evaluate(
        """() => { const c = document.createElement('canvas').getContext('2d');
        c.font = getComputedStyle(document.getElementById('live-text')).font;
        return ['ɛ', 'ɔ', 'ŋ', '\\u{10FFFD}'].map(ch => c.measureText(ch).width); }"""
    )
    assert all(w > 0 for w in widths[:3]) and widths[:3] != [widths[3]] * 3

    _, srt = _download(page, "#download-srt")
    assert (
        srt == f"1\n00:00:00,000 --> 00:00:01,500\n{TWI[0]}\n\n2\n00:00:01,500 --> 00:01:01,250\n{TWI[1]}\n"
    )
    _, vtt = _download(page, "#download-vtt")
    assert vtt == (
        f"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{TWI[0]}\n\n00:00:01.500 --> 00:01:01.250\n{TWI[1]}\n"
    )
    assert "ɛ ɔ ŋ" in page.inner_text("#segments")


def test_error_mid_stream_keeps_the_text_and_says_why(page: Any, clips: Clips) -> None:
    body = _sse(
        {"type": "transcript.text.delta", "delta": "The first piece.",
         "segments": [{"id": 0, "start": 0.0, "end": 2.0, "text": "The first piece."}]},
        {"type": "error", "error": {"code": "timeout", "message": "no result within 300 s <b>bold</b>"}},
    )  # fmt: skip
    page.route(API, lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    page.set_input_files("#file-input", str(clips.short))
    page.click("#transcribe-btn")
    page.wait_for_selector("#live-text[data-state='error']")
    assert page.inner_text("#live-text") == "The first piece."
    assert "no result within 300 s <b>bold</b>" in page.inner_text("#status")  # shown as text, not HTML
    assert page.locator("#status b").count() == 0


def test_api_key_is_sent_kept_in_the_tab_and_401_is_explained(page: Any, clips: Clips) -> None:
    seen: list[str | None] = []

    def unauthorised(route: Any) -> None:
        seen.append(route.request.headers.get("authorization"))
        error = {"error": {"code": "invalid_api_key", "message": "missing or wrong API key"}}
        route.fulfill(status=401, content_type="application/json", body=json.dumps(error))

    page.route(API, unauthorised)
    page.set_input_files("#file-input", str(clips.short))
    page.click("#transcribe-btn")
    page.wait_for_selector("#live-text[data-state='error']")
    assert seen == [None]
    status = page.inner_text("#status")
    assert "API key" in status and "missing or wrong API key" in status

    page.fill("#api-key", "s3cret")
    with page.expect_request(API):
        page.click("#transcribe-btn")
    page.wait_for_selector("#live-text[data-state='error']")
    page.wait_for_selector("#transcribe-btn:enabled")
    assert seen[-1] == "Bearer s3cret"
    page.reload()
    assert page.input_value("#api-key") == "s3cret"


def test_keyboard_alone_reaches_the_controls(page: Any) -> None:
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order[:4] == ["file-input", "record-btn", "language", "api-key"], order
    for control in ("file-input", "record-btn", "language", "api-key", "transcribe-btn"):
        named = "id => { const el = document.getElementById(id); return el.labels.length || el.innerText; }"
        assert page.evaluate(named, control), control


def test_a_file_dropped_on_the_zone_is_chosen(page: Any) -> None:
    assert page.is_disabled("#transcribe-btn")
    transfer = page.evaluate_handle(
        """() => { const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(2048)], 'dropped ɛ.wav', {type: 'audio/wav'})); return dt; }"""
    )
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    assert "over" in page.get_attribute("#drop-zone", "class")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert page.inner_text("#file-name") == "dropped ɛ.wav (2 KB)"
    assert "over" not in page.get_attribute("#drop-zone", "class")
    assert page.is_enabled("#transcribe-btn")


def test_the_pages_parser_and_writers(page: Any) -> None:
    result = page.evaluate(
        """() => { const P = window.TwiAsrPage; const p = P.createEventParser();
        const events = [...p.feed(': comment\\r\\n\\r\\ndata: {"type":"a","t":"ɛ'),
                        ...p.feed('"}\\r\\n\\r\\nda'), ...p.feed('ta: {"type":"b"}\\n'),
                        ...p.feed('\\n'), ...p.feed('data: {"type":"c"}'), ...p.end()];
        return {events, clocks: [0, 9.96, 61.25, 3725.5].map(P.formatClock),
                stamps: [P.formatStamp(3723.4567, ','), P.formatStamp(59.9996, '.')],
                joins: [P.joinDelta('a', 'b'), P.joinDelta('a ', 'b'), P.joinDelta('', 'b')],
                srt: P.toSrt([{start: 0, end: 1, text: ' two\\n\\nlines --> x '},
                              {start: 1, end: 2, text: ' '}]),
                vtt: P.toVtt([])}; }"""
    )
    assert result["events"] == [{"type": "a", "t": "ɛ"}, {"type": "b"}, {"type": "c"}]
    assert result["clocks"] == ["00:00.0", "00:10.0", "01:01.3", "1:02:05.5"]
    assert result["stamps"] == ["01:02:03,457", "00:01:00.000"]
    assert result["joins"] == ["a b", "a b", "b"]
    assert result["srt"] == "1\n00:00:00,000 --> 00:00:01,000\ntwo lines -> x\n"
    assert result["vtt"] == "WEBVTT\n"


def test_page_and_assets_are_served_as_utf8_out_of_the_schema(server: Server) -> None:
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<meta charset="utf-8">' in page.text
    for asset, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        answer = httpx.get(f"{server.url}/static/{asset}", timeout=10)
        assert answer.status_code == 200 and kind in answer.headers["content-type"], asset
    assert "/" not in httpx.get(server.url + "/openapi.json", timeout=10).json()["paths"]
