"""The web app on 8000 in a real headless Chromium (Debian's, driven by Playwright), against a REAL
backend (PostgreSQL, local storage, job workers) in front of a REAL ``twi-asr serve --model tiny.en``.

What a person does: sign in, upload ``ɔkɔm nsɛm.wav``, wait, read the words, click a segment (the
player seeks), download and parse the srt, correct a segment (a fresh download has it, the original
is kept), sign out (the job is gone from view); record through Chromium's fake microphone; keys and
password on the account page; the admin page; another user's job is a 404 and a post without the
CSRF token is refused. Screenshots at desktop and phone width go to ``$TWI_ASR_ARTIFACTS/screenshots``.

Needs /usr/bin/chromium and the ``playwright`` package; skipped without them unless
TWI_ASR_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("fastapi")

from twi_asr.text import wer  # noqa: E402

from ..browser import SCREENSHOTS as SHOTS  # noqa: E402
from ..browser import chromium, fake_microphone  # noqa: E402
from ..conftest import _ffmpeg, speak  # noqa: E402
from ..services import EASY_SENTENCES, Server, free_port, start_server, stop_server  # noqa: E402
from .harness import (  # noqa: E402
    Backend,
    auth,
    backend_env,
    create_user,
    start_backend,
    stop_backend,
    wait_job,
)

pytestmark = pytest.mark.slow

FILENAME = "ɔkɔm nsɛm.wav"
WAIT_MS = 240_000  # tiny.en on a loaded 2-core machine
SRT_STAMP = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"
EDIT = "Mepɛ sɛ mekɔ fie ɛnnɛ ŋwɔ"  # ɛ ɔ ŋ through the edit, the database and the download
PASSWORD = "correct horse battery"
PHONE = {"width": 390, "height": 844}
ROWS_ARE = "n => document.querySelectorAll('#jobs tbody tr').length === n"


@dataclass(frozen=True)
class Clips:
    twi_named: Path  # three sentences with pauses: several segments
    said: list[str]
    dropped: list[tuple[Path, str]]  # dropped on the page together
    mic: Path
    mic_text: str
    mic_seconds: float


@dataclass(frozen=True)
class Site:
    backend: Backend
    asr: Server
    dead_asr: str  # a second ASR URL where nothing listens: the admin page says so
    users: dict[str, str]  # name -> API key

    @property
    def url(self) -> str:
        return self.backend.url


def _seconds(path: Path) -> float:
    import soundfile

    return float(soundfile.info(str(path)).duration)


def _concat(parts: list[Path], out: Path) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:a", "pcm_s16le", out)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("web-clips")
    pause = folder / "pause.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.5", "-c:a", "pcm_s16le", pause)
    said = [EASY_SENTENCES[1], EASY_SENTENCES[4], EASY_SENTENCES[2]]
    parts: list[Path] = []
    for i, sentence in enumerate(said):
        parts += [speak(sentence, folder / f"s{i}.wav"), pause]
    twi_named = _concat(parts, folder / FILENAME)
    mic_text = EASY_SENTENCES[5]
    mic = _concat([pause, speak(mic_text, folder / "mic_speech.wav"), pause], folder / "mic.wav")
    dropped = [
        (speak(t, folder / f"drop {n}.wav"), t)
        for n, t in (("ɛ", EASY_SENTENCES[7]), ("ŋ", EASY_SENTENCES[9]))
    ]
    return Clips(twi_named, said, dropped, mic, mic_text, _seconds(mic))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("web-site")
    asr = start_server(data / "asr.log")
    # Files over 0.2 MB go through a presigned URL, smaller ones in a form: the clip takes one path,
    # the recording the other.
    env = backend_env(
        data / "data",
        database_url=postgres.new_database(f"web_{uuid.uuid4().hex[:8]}"),
        extra={"TWI_ASR_WEB_DIRECT_UPLOAD_MB": "0.2"},
    )
    names = {"ama": False, "kofi": False, "root": True}
    keys = {name: create_user(env, name, admin=admin, password=PASSWORD) for name, admin in names.items()}
    dead = f"http://127.0.0.1:{free_port()}"
    backend = start_backend(data / "backend.log", env, [asr.url, dead], "--workers", "2")
    try:
        yield Site(backend, asr, dead, keys)
    finally:
        stop_backend(backend)
        stop_server(asr)


@pytest.fixture(scope="module")
def browser(clips: Clips) -> Iterator[Any]:
    with chromium(fake_microphone(clips.mic)) as launched:
        yield launched


class Person:
    """One browser context (its own cookies) and page, watching for JavaScript errors."""

    def __init__(self, browser: Any, site: Site, **context: Any) -> None:
        self.context = browser.new_context(
            base_url=site.url, accept_downloads=True, permissions=["microphone"], **context
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)
        self.site = site.url
        self.elsewhere: list[str] = []  # the app must work with no network beyond its own origin
        self.page.on("request", self._request)

    def _request(self, request: Any) -> None:
        if not request.url.startswith((self.site, "blob:", "data:")):
            self.elsewhere.append(request.url)

    def check_labels(self) -> None:
        """Every control on the page has a name a screen reader says (a label, aria-label or text)."""
        unnamed = self.page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
                 .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                              && !c.textContent.trim())
                 .map(c => c.outerHTML.slice(0, 120))"""
        )
        assert not unnamed, f"controls without a label: {unnamed}"

    def _console(self, message: Any) -> None:
        # Chromium logs every 4xx it loads ("Failed to load resource"): the tests cause some on purpose
        # and check what the page says instead; anything else logged as an error is a failure.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def sign_in(self, name: str, password: str = PASSWORD, target: str = "/") -> None:
        page = self.page
        page.goto(target)
        assert page.url.split("?")[0].endswith("/login"), page.url  # a page needs a session
        page.fill("#name", name)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_selector("#sign-out")

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"JavaScript errors on the page: {self.errors}"
        assert not self.elsewhere, f"requests off the site: {self.elsewhere}"


@pytest.fixture
def ama(browser: Any, site: Site) -> Iterator[Person]:
    person = Person(browser, site)
    yield person
    person.close()


def _shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def _download(page: Any, selector: str) -> tuple[str, str]:
    with page.expect_download() as info:
        page.click(selector)
    dl = info.value
    return dl.suggested_filename, Path(dl.path()).read_bytes().decode("utf-8")


def _srt_blocks(srt: str) -> list[tuple[str, str]]:
    blocks = srt.strip().split("\n\n")
    out = []
    for i, block in enumerate(blocks, 1):
        lines = block.split("\n")
        assert lines[0] == str(i) and re.fullmatch(SRT_STAMP, lines[1]) and lines[2].strip(), block
        out.append((lines[1], " ".join(lines[2:])))
    return out


def _upload_and_wait(page: Any, path: Path, name: str) -> str:
    """Upload through the page's file input; wait for the job's row to say done; its id."""
    page.set_input_files("#files", str(path))
    return _wait_row_done(page, name)


def _wait_row_done(page: Any, name: str) -> str:
    """Wait for the job list's row of ``name`` to finish; assert it is done; its job id."""
    row = page.locator("#jobs tbody tr", has=page.locator("td.filename", has_text=name)).first
    row.wait_for(timeout=60_000)
    page.wait_for_function(
        """name => [...document.querySelectorAll('#jobs tbody tr')].some(r =>
             r.querySelector('td.filename').textContent === name && r.dataset.status !== 'queued'
             && r.dataset.status !== 'running')""",
        arg=name,
        timeout=WAIT_MS,
    )
    status = row.get_attribute("data-status")
    assert status == "done", f"{name}: {status}: {row.inner_text()}"
    return str(row.get_attribute("data-job-id"))


def _no_sideways_scroll(page: Any) -> None:
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 1, f"the page is {wide}px wider than the phone's screen"


# ------------------------------------------------------------------------------------------ tests
def test_sign_in_upload_read_seek_download_edit_sign_out(ama: Person, site: Site, clips: Clips) -> None:
    page = ama.page
    ama.sign_in("ama")
    assert page.evaluate("document.characterSet") == "UTF-8"
    assert page.locator("#language option[value=tw]").inner_text() == "Twi (checkpoint default)"
    ama.check_labels()
    job_id = _upload_and_wait(page, clips.twi_named, FILENAME)
    sent = page.locator("#uploads li.sent")
    assert sent.locator("progress").get_attribute("value") == "1"
    assert clips.twi_named.stat().st_size > 0.2 * 1024 * 1024
    assert sent.get_attribute("data-via") == "storage"  # presigned PUT, then a job of the upload
    _shot(page, "jobs-desktop")

    page.click(f"#jobs tr[data-job-id='{job_id}'] td.filename a")
    page.wait_for_selector("#segments .segment")
    assert FILENAME in page.title() and page.inner_text("#job-title") == FILENAME
    segments = page.locator("#segments .segment")
    shown = " ".join(segments.locator(".seg-text").all_inner_texts())
    assert wer(" ".join(clips.said), shown) < 0.35, shown
    assert segments.count() >= 2, shown
    assert page.locator("#segments .word").count() > 10  # word timestamps were asked for
    ama.check_labels()

    player = page.locator("#player")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1", timeout=30_000)
    last = segments.nth(segments.count() - 1)
    start = float(str(last.get_attribute("data-start")))
    assert start > 1.0
    before = player.evaluate("a => a.currentTime")
    last.locator(".seg-time").click()
    page.wait_for_function(
        "s => document.getElementById('player').currentTime >= s - 0.05", arg=start, timeout=10_000
    )
    after = player.evaluate("a => a.currentTime")
    assert after >= start - 0.05 and after != before, (before, after, start)
    page.wait_for_selector(f"#segments .segment.playing[data-start='{last.get_attribute('data-start')}']")
    page.wait_for_selector("#segments .segment.playing .word.now", timeout=10_000)  # the word playing
    second = segments.nth(1)  # by keyboard: the segment's time is a button
    second.locator(".seg-time").focus()
    page.keyboard.press("Enter")
    at = float(str(second.get_attribute("data-start")))
    page.wait_for_function("s => Math.abs(document.getElementById('player').currentTime - s) < 1", arg=at)
    _shot(page, "job-desktop")

    name, srt = _download(page, "#dl-srt")
    assert name == "ɔkɔm nsɛm.srt"
    blocks = _srt_blocks(srt)
    assert len(blocks) == segments.count()
    assert wer(" ".join(clips.said), " ".join(t for _, t in blocks)) < 0.35, srt

    first = segments.first
    first.locator(".seg-edit").click()
    ama.check_labels()  # the edit form too
    page.fill("#edit-0", EDIT)
    page.click("#segments .seg-form button[type=submit]")
    page.wait_for_selector("#segments .segment.edited[data-index='0']")
    assert EDIT in page.locator("#segments .segment[data-index='0'] .seg-text").inner_text()
    original_shown = page.locator("#segments .segment[data-index='0'] .original").inner_text()
    assert clips.said[0].split()[1] in original_shown
    _, fresh = _download(page, "#dl-srt")
    fresh_blocks = _srt_blocks(fresh)
    assert fresh_blocks[0] == (blocks[0][0], EDIT) and fresh_blocks[1:] == blocks[1:]
    _, original = _download(page, "#dl-original")
    assert EDIT not in original and wer(" ".join(clips.said), original) < 0.35
    _, as_json = _download(page, "#dl-json")
    assert EDIT in as_json  # UTF-8 letters as they are

    page.reload()  # the edit is stored, not just shown
    page.wait_for_selector("#segments .segment.edited[data-index='0']")
    page.fill("#find", clips.said[2].split()[2])  # a word of the last sentence
    assert page.locator("#segments .segment.match").count() >= 1

    page.click("#sign-out")
    page.wait_for_url("**/login")
    page.goto(f"/jobs/{job_id}")
    assert "/login" in page.url and page.locator("#job-title").count() == 0
    answer = page.request.get(f"/v1/jobs/{job_id}")
    assert answer.status == 401


def test_record_through_the_fake_microphone(ama: Person, clips: Clips) -> None:
    page = ama.page
    ama.sign_in("ama")
    page.click("#record")
    page.wait_for_selector("#record[aria-pressed=true]")
    page.wait_for_function("() => document.getElementById('level').value > 0.01", timeout=10_000)
    page.wait_for_timeout(int(clips.mic_seconds * 1000) + 300)
    assert page.inner_text("#record-timer") != "0:00"
    page.click("#record")
    name = page.locator("#uploads li .name").last.inner_text(timeout=10_000)
    assert re.fullmatch(r"recording-\d{8}-\d{6}\.webm", name), name
    page.wait_for_selector("#uploads li.sent[data-via=form]")  # small: in the multipart form
    row = page.locator("#jobs tbody tr", has=page.locator("td.filename", has_text=name)).first
    row.wait_for(timeout=60_000)
    page.wait_for_function(
        """name => [...document.querySelectorAll('#jobs tbody tr')].some(r =>
             r.querySelector('td.filename').textContent === name && r.dataset.status === 'done')""",
        arg=name,
        timeout=WAIT_MS,
    )
    page.click(f"#jobs td.filename a:text-is('{name}')")
    page.wait_for_selector("#segments .segment")
    heard = " ".join(page.locator("#segments .seg-text").all_inner_texts())
    assert wer(clips.mic_text, heard) < 0.35, heard


DROP = """([files]) => {
    const data = new DataTransfer();
    for (const [name, b64] of files) {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        data.items.add(new File([bytes], name, { type: "audio/wav" }));
    }
    const zone = document.getElementById("drop-zone");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def test_drop_two_files_then_delete_one(ama: Person, clips: Clips) -> None:
    import base64

    page = ama.page
    ama.sign_in("ama")
    files = [[p.name, base64.b64encode(p.read_bytes()).decode()] for p, _ in clips.dropped]
    page.evaluate(DROP, [files])
    ids = [_wait_row_done(page, p.name) for p, _ in clips.dropped]
    assert len(set(ids)) == 2
    for (path, said), job_id in zip(clips.dropped, ids, strict=True):
        page.goto(f"/jobs/{job_id}")
        page.wait_for_selector("#segments .segment")
        assert page.inner_text("#job-title") == path.name
        heard = " ".join(page.locator("#segments .seg-text").all_inner_texts())
        assert wer(said, heard) < 0.35, heard
    page.once("dialog", lambda d: d.accept())
    page.click("#job-delete")
    page.wait_for_url(re.compile(r".*/$"))
    page.wait_for_selector(f"#jobs tbody tr[data-job-id='{ids[0]}']")
    assert page.locator(f"#jobs tbody tr[data-job-id='{ids[1]}']").count() == 0
    assert page.goto(f"/jobs/{ids[1]}").status == 404  # type: ignore[union-attr]


def test_errors_are_said_in_words(ama: Person, tmp_path: Path) -> None:
    page = ama.page
    ama.sign_in("ama")
    notes = tmp_path / "nsɛm.wav"
    notes.write_text("Meeting notes: text, not audio.\n" * 40)
    page.set_input_files("#files", str(notes))
    row = page.locator("#jobs tbody tr", has=page.locator("td.filename", has_text=notes.name)).first
    row.wait_for(timeout=60_000)
    page.wait_for_function(
        "n => [...document.querySelectorAll('#jobs tbody tr')].some(r =>"
        " r.querySelector('td.filename').textContent === n && r.dataset.status === 'failed')",
        arg=notes.name,
        timeout=WAIT_MS,
    )
    said = row.locator("td.links .error").inner_text()
    assert "audio" in said and "{" not in said, said  # a sentence, not a JSON body
    row.locator("td.filename a").click()
    page.wait_for_selector("#job-error:not([hidden])")
    assert page.inner_text("#job-error") == said
    assert "failed" in page.inner_text("#segments-wait")
    page.goto("/")
    page.set_input_files(
        "#files", {"name": "slides.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4"}
    )
    refused = page.locator("#uploads li.failed .state")
    refused.wait_for(timeout=30_000)
    assert refused.inner_text().startswith("not sent: ") and "{" not in refused.inner_text()
    page.wait_for_selector("#toast:not([hidden])")


def test_another_users_job_is_404_and_csrf_is_needed(browser: Any, site: Site, clips: Clips) -> None:
    with clips.twi_named.open("rb") as fh:
        made = httpx.post(f"{site.url}/v1/jobs", headers=auth(site.users["ama"]),
                          files={"file": (FILENAME, fh, "audio/wav")}, timeout=60).json()  # fmt: skip
    kofi = Person(browser, site)
    try:
        kofi.sign_in("kofi")
        page = kofi.page
        answer = page.goto(f"/jobs/{made['id']}")
        assert answer is not None and answer.status == 404
        assert "no job" in page.inner_text("#page-error")
        assert page.request.get(f"/v1/jobs/{made['id']}").status == 404
        assert page.request.get(f"/v1/jobs/{made['id']}/audio").status == 404
        # the session cookie alone changes nothing: forms and API calls need the CSRF token
        refused = page.request.post("/logout", form={"csrf_token": ""})
        assert refused.status == 403 and refused.json()["error"]["code"] == "csrf_failed"
        refused = page.request.post(
            "/v1/jobs", multipart={"file": {"name": "a.wav", "mimeType": "audio/wav", "buffer": b"RIFF"}}
        )
        assert refused.status == 403 and refused.json()["error"]["code"] == "csrf_failed"
        refused = page.request.post("/v1/me/keys", data="{}", headers={"Content-Type": "application/json"})
        assert refused.status == 403
        page.reload()
        assert page.locator("#sign-out").count() == 1  # still signed in: nothing was done
    finally:
        kofi.close()


def test_account_keys_and_password(browser: Any, site: Site) -> None:
    name = f"esi{uuid.uuid4().hex[:4]}"
    create_user(site.backend.env, name, password=PASSWORD)
    esi = Person(browser, site)
    try:
        esi.sign_in(name)
        page = esi.page
        page.click("nav a[href='/account']")
        page.fill("#key-name", "laptop ɔ")
        page.click("#new-key button[type=submit]")
        page.wait_for_selector("#made-key:not([hidden])")
        key = page.input_value("#made-key-value")
        assert httpx.get(f"{site.url}/v1/me", headers=auth(key), timeout=10).json()["name"] == name
        row = page.locator("#keys tbody tr", has_text="laptop ɔ")
        row.wait_for()
        page.on("dialog", lambda d: d.accept())
        row.locator("button").click()
        page.wait_for_selector("#keys tbody tr[data-revoked=yes]")
        assert httpx.get(f"{site.url}/v1/me", headers=auth(key), timeout=10).status_code == 401
        page.reload()
        assert page.locator("#made-key-value").input_value() == ""  # shown once

        page.fill("#current-password", "not my password")
        page.fill("#new-password", "a new long password")
        page.fill("#new-password-2", "a new long password")
        page.click("#password-form button[type=submit]")
        page.wait_for_selector("#password-status.error")
        assert "wrong" in page.inner_text("#password-status")
        page.fill("#current-password", PASSWORD)
        page.click("#password-form button[type=submit]")
        page.wait_for_selector("#password-status.ok")
        esi.check_labels()
        _shot(page, "account-desktop")
        page.click("#sign-out")
        page.wait_for_url("**/login")
        page.fill("#name", name)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        assert "wrong name or password" in page.inner_text("#login-error")
        esi.sign_in(name, "a new long password")
    finally:
        esi.close()


def test_admin_sees_users_usage_and_asr_servers(browser: Any, site: Site) -> None:
    root = Person(browser, site)
    try:
        root.sign_in("root", target="/admin")
        page = root.page
        assert page.url.endswith("/admin")
        server = page.locator("#servers tbody tr", has_text=site.asr.url)
        assert server.locator("td.ok").inner_text() == "ready"
        dead = page.locator("#servers tbody tr", has_text=site.dead_asr)
        assert dead.locator("td.bad").inner_text() == "not ready"
        assert dead.locator("td").nth(2).inner_text().strip()  # and why, in words
        page.wait_for_selector("#users tbody tr[data-user=ama]")
        heads = page.locator("#users thead th").all_inner_texts()
        assert len(heads) == 4 + 7 + 1
        quota = page.locator("#audio_minutes_per_day-kofi")
        quota.fill("12.5")
        quota.dispatch_event("change")
        page.wait_for_selector("#toast:not([hidden])")
        users = httpx.get(f"{site.url}/v1/users", headers=auth(site.users["root"]), timeout=10).json()["data"]
        assert {u["name"]: u for u in users}["kofi"]["audio_minutes_per_day"] == 12.5
        root.check_labels()
        _shot(page, "admin-desktop")
        kofi = Person(browser, site)
        try:
            kofi.sign_in("kofi")
            assert kofi.page.goto("/admin").status == 403  # type: ignore[union-attr]
        finally:
            kofi.close()
    finally:
        root.close()


def test_phone_width_and_many_jobs(browser: Any, site: Site, clips: Clips) -> None:
    """At 390 px nothing scrolls sideways; the list pages through many jobs and finds by name."""
    from sqlalchemy import create_engine, text

    engine = create_engine(
        site.backend.env["TWI_ASR_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as db:
        user_id = db.execute(text("select id from users where name = 'kofi'")).scalar_one()
        for i in range(45):
            db.execute(
                text(
                    "insert into jobs (id, user_id, status, kind, filename, source_uri, options, attempts,"
                    " asr_waits, created_at, available_at, error_code, error_message)"
                    " values (:id, :u, 'failed', 'async', :f, 'none', '{}', 1, 0, now(), now(),"
                    " 'invalid_audio', 'this file is not audio: it could not be decoded')"
                ),
                {"id": f"job_many{i:03d}", "u": user_id, "f": f"nkɔmmɔ {i:03d}.wav"},
            )
    engine.dispose()
    kofi = Person(browser, site, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        kofi.sign_in("kofi")
        page = kofi.page
        page.wait_for_selector("#jobs tbody tr")
        assert page.locator("#jobs tbody tr").count() == 20
        assert "not audio" in page.locator("#jobs tbody tr td.links .error").first.inner_text()
        assert page.inner_text("#jobs-total") == "(45)"
        page.click("#older")
        page.wait_for_selector("#page-no:text('Page 2')")
        page.click("#older")
        page.wait_for_selector("#page-no:text('Page 3')")
        assert page.is_disabled("#older")
        page.click("#newer")
        page.wait_for_selector("#page-no:text('Page 2')")
        page.fill("#search", "NKƆMMƆ 007")  # any case
        page.wait_for_function(ROWS_ARE, arg=1, timeout=10_000)
        assert page.inner_text("#jobs tbody tr td.filename") == "nkɔmmɔ 007.wav"
        page.fill("#search", "")
        page.wait_for_function(ROWS_ARE, arg=20, timeout=10_000)
        _no_sideways_scroll(page)
        page.evaluate("() => window.scrollTo(0, 0)")
        _shot(page, "jobs-phone", full_page=False)  # the first screen: 20 jobs make a long page
        page.locator("#jobs-title").scroll_into_view_if_needed()
        _shot(page, "jobs-list-phone", full_page=False)
    finally:
        kofi.close()
    with clips.twi_named.open("rb") as fh:
        made = httpx.post(f"{site.url}/v1/jobs", headers=auth(site.users["ama"]),
                          files={"file": (FILENAME, fh, "audio/wav")}, timeout=60).json()  # fmt: skip
    assert wait_job(site.url, site.users["ama"], made["id"])["status"] == "done"
    ama = Person(browser, site, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        ama.sign_in("ama", target=f"/jobs/{made['id']}")
        page = ama.page
        page.wait_for_selector("#segments .segment")
        _no_sideways_scroll(page)
        _shot(page, "job-phone")
    finally:
        ama.close()
