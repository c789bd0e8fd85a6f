"""What the web app calls, over HTTP, against REAL backends (SQLite + local folder; SQLite + S3 on a
moto server) in front of a REAL ``twi-asr serve --model tiny.en``: segments and their corrections
(kept beside the original; downloads use them), the audio for the player (Range on local storage, a
presigned GET on S3), job search and counts, the password change, and the admin's usage and ASR views.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("fastapi")

from twi_asr.text import wer  # noqa: E402

from ..conftest import _ffmpeg, speak  # noqa: E402
from ..services import CREDS, EASY_SENTENCES, Server, start_server, stop_server  # noqa: E402
from .harness import (  # noqa: E402
    Backend,
    auth,
    backend_env,
    create_user,
    start_backend,
    stop_backend,
    submit,
    wait_job,
)

pytestmark = pytest.mark.slow

TWI_NAME = "ɔkɔm nsɛm.wav"
BUCKET = "twi-web"
PASSWORD = "correct horse battery"
EDIT = "Ɔkɔm de me, ma me ŋkwan."


@dataclass(frozen=True)
class Site:
    backend: Backend
    admin: str
    ama: str

    @property
    def url(self) -> str:
        return self.backend.url


@dataclass(frozen=True)
class Stack:
    asr: Server
    local: Site
    s3: Site
    clip: Path
    said: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Stack]:
    import boto3

    folder = tmp_path_factory.mktemp("transcripts")
    pause = folder / "pause.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.5", "-c:a", "pcm_s16le", pause)
    said = [EASY_SENTENCES[3], EASY_SENTENCES[6]]
    parts = [speak(said[0], folder / "a.wav"), pause, speak(said[1], folder / "b.wav")]
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    clip = folder / TWI_NAME
    _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:a", "pcm_s16le", clip)
    boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)  # fmt: skip
    plan = {"local": ({}, None), "s3": (CREDS | {"AWS_ENDPOINT_URL": moto}, f"s3://{BUCKET}/web")}

    def prepare(name: str) -> tuple[dict[str, str], str, str]:
        extra, storage = plan[name]
        env = backend_env(folder / name, storage=storage, extra=extra)
        return env, create_user(env, "root", admin=True), create_user(env, "ama", password=PASSWORD)

    started: list[Any] = []
    with ThreadPoolExecutor(3) as ex:
        try:
            loading = ex.submit(start_server, folder / "asr.log")
            prepared = {name: ex.submit(prepare, name) for name in plan}
            asr = loading.result()
            started.append(asr)

            def launch(name: str) -> Site:
                env, admin, ama = prepared[name].result()
                backend = start_backend(folder / f"{name}.log", env, [asr.url], "--workers", "2")
                started.append(backend)
                return Site(backend, admin, ama)

            local, on_s3 = ex.map(launch, plan)
            yield Stack(asr, local, on_s3, clip, " ".join(said))
        finally:
            list(ex.map(lambda p: stop_server(p) if isinstance(p, Server) else stop_backend(p), started))


@pytest.fixture(scope="module")
def done(stack: Stack) -> dict[str, dict[str, Any]]:
    """One finished job (word timestamps on) per backend."""
    jobs = {name: submit(site.url, site.ama, stack.clip, word_timestamps="true")
            for name, site in (("local", stack.local), ("s3", stack.s3))}  # fmt: skip
    return {name: wait_job(site.url, site.ama, jobs[name]["id"])
            for name, site in (("local", stack.local), ("s3", stack.s3))}  # fmt: skip


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def test_segments_and_corrections(stack: Stack, done: dict[str, dict[str, Any]]) -> None:
    site, job = stack.local, done["local"]
    assert job["status"] == "done", job
    base, key = f"{site.url}/v1/jobs/{job['id']}", auth(site.ama)
    seg = httpx.get(f"{base}/segments", headers=key, timeout=10).json()
    assert seg["edited"] == 0 and len(seg["data"]) >= 2
    assert wer(stack.said, " ".join(s["text"] for s in seg["data"])) < 0.35
    assert all(s["words"] and s["original_text"] == s["text"] for s in seg["data"])
    before = {f: httpx.get(f"{base}/transcript", params={"format": f}, headers=key, timeout=10).text
              for f in ("txt", "srt", "vtt", "tsv", "json")}  # fmt: skip

    r = httpx.patch(f"{base}/segments/1", headers=key, json={"text": f"  {EDIT} \n"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {**r.json(), "index": 1, "text": EDIT, "edited": True, "words": []}
    assert r.json()["original_text"] == seg["data"][1]["text"]
    for fmt in ("txt", "srt", "vtt", "tsv"):
        now = httpx.get(f"{base}/transcript", params={"format": fmt}, headers=key, timeout=10)
        assert EDIT in now.text and now.text != before[fmt], fmt
        assert now.headers["content-type"].endswith("charset=utf-8")
        original = httpx.get(f"{base}/transcript", params={"format": fmt, "original": "true"}, headers=key)
        assert original.text == before[fmt], fmt  # the model's words are kept as they were
    body = httpx.get(f"{base}/transcript", params={"format": "json"}, headers=key, timeout=10).json()
    assert body["segments"][1]["text"] == EDIT and "words" not in body["segments"][1]
    assert body["segments"][0] == json.loads(before["json"])["segments"][0]
    assert EDIT in body["text"]
    view = httpx.get(base, headers=key, timeout=10).json()
    assert view["edited_segments"] == 1 and view["edited_at"]

    _error(httpx.patch(f"{base}/segments/99", headers=key, json={"text": "x"}), 404, "segment_not_found")
    _error(httpx.patch(f"{base}/segments/0", headers=key, json={"text": 7}), 400, "invalid_request")
    _error(httpx.patch(f"{base}/segments/0", headers=key, json={"txt": "x"}), 400, "unknown_field")
    _error(httpx.patch(f"{base}/segments/0", headers=key, json={"text": "x" * 5001}), 400, "invalid_request")
    _error(httpx.patch(f"{base}/segments/0", headers=key, content=b"{not json"), 400, "invalid_json")
    other = auth(site.admin)  # an admin too: a job is its owner's
    _error(httpx.patch(f"{base}/segments/0", headers=other, json={"text": "x"}), 404, "job_not_found")
    _error(httpx.get(f"{base}/segments", headers=other), 404, "job_not_found")

    undo = httpx.patch(f"{base}/segments/1", headers=key, json={"text": None}, timeout=10).json()
    assert undo["edited"] is False and undo["text"] == seg["data"][1]["text"]
    assert httpx.get(f"{base}/transcript", params={"format": "srt"}, headers=key).text == before["srt"]


def test_corrections_need_a_finished_job(stack: Stack) -> None:
    site, key = stack.local, auth(stack.local.ama)
    notes = {"file": ("notes.wav", b"RIFF but not audio " * 50, "audio/wav")}
    junk = httpx.post(f"{site.url}/v1/jobs", headers=key, files=notes, timeout=30).json()
    assert wait_job(site.url, site.ama, junk["id"])["status"] == "failed"
    base = f"{site.url}/v1/jobs/{junk['id']}"
    _error(httpx.get(f"{base}/segments", headers=key, timeout=10), 409, "job_not_done")
    _error(
        httpx.patch(f"{base}/segments/0", headers=key, json={"text": "x"}, timeout=10), 409, "job_not_done"
    )


def test_audio_for_the_player_local_range(stack: Stack, done: dict[str, dict[str, Any]]) -> None:
    site, job = stack.local, done["local"]
    url, key = f"{site.url}/v1/jobs/{job['id']}/audio", auth(site.ama)
    whole = httpx.get(url, headers=key, timeout=10)
    assert whole.status_code == 200 and whole.content == stack.clip.read_bytes()
    assert whole.headers["content-type"].startswith("audio/")
    assert whole.headers["accept-ranges"] == "bytes"
    assert (
        "inline" in whole.headers["content-disposition"]
        and "%C9%94k%C9%94m" in whole.headers["content-disposition"]
    )
    part = httpx.get(url, headers=key | {"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == stack.clip.read_bytes()[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{stack.clip.stat().st_size}"
    _error(httpx.get(url, headers=auth(site.admin), timeout=10), 404, "job_not_found")
    assert httpx.get(url, timeout=10).status_code == 401


def test_audio_for_the_player_s3_presigned(stack: Stack, done: dict[str, dict[str, Any]]) -> None:
    site, job = stack.s3, done["s3"]
    assert job["status"] == "done", job
    r = httpx.get(f"{site.url}/v1/jobs/{job['id']}/audio", headers=auth(site.ama), timeout=10)
    assert r.status_code == 307, r.text
    direct = r.headers["location"]
    assert "Signature=" in direct and not direct.startswith(site.url)  # signed by the S3 client
    got = httpx.get(direct, timeout=10)
    assert got.status_code == 200 and got.content == stack.clip.read_bytes()
    part = httpx.get(direct, headers={"Range": "bytes=0-43"}, timeout=10)  # the WAV header
    assert part.status_code == 206 and part.content == stack.clip.read_bytes()[:44]


def test_search_and_count(stack: Stack, done: dict[str, dict[str, Any]]) -> None:
    site, key = stack.local, auth(stack.local.ama)
    everything = httpx.get(f"{site.url}/v1/jobs", params={"total": "true"}, headers=key).json()
    assert everything["total"] >= 1
    for q in ("ɔkɔm", "NSƐM", "nsɛm.wav", stack.said.split()[1]):  # the name in any case, a spoken word
        found = httpx.get(f"{site.url}/v1/jobs", params={"q": q, "total": "true"}, headers=key).json()
        assert done["local"]["id"] in [j["id"] for j in found["data"]], q
    for q in ("%", "_", "zzz-nothing"):  # LIKE's wildcards are plain letters here
        found = httpx.get(f"{site.url}/v1/jobs", params={"q": q, "total": "true"}, headers=key).json()
        assert found["total"] == 0 and found["data"] == [], q
    _error(httpx.get(f"{site.url}/v1/jobs", params={"q": "x" * 201}, headers=key), 400, "invalid_request")


def test_password_change_ends_other_sessions(stack: Stack) -> None:
    site = stack.local
    name = "kwame"
    create_user(site.backend.env, name, password=PASSWORD)

    def sign_in(password: str) -> httpx.Client:
        client = httpx.Client(base_url=site.url, timeout=10)
        page = client.get("/login")
        import re

        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        r = client.post("/login", data={"csrf_token": token[1], "name": name, "password": password},
                        headers={"Accept": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return client

    phone, laptop = sign_in(PASSWORD), sign_in(PASSWORD)
    wrong = laptop.post("/v1/me/password", json={"current_password": "nope", "new_password": "long enough"})
    _error(wrong, 403, "wrong_password")
    _error(laptop.post("/v1/me/password", json={"current_password": PASSWORD, "new_password": "short"}),
           400, "weak_password")  # fmt: skip
    _error(laptop.post("/v1/me/password", json={"current_password": PASSWORD}), 400, "weak_password")
    del laptop.headers["X-CSRF-Token"]
    _error(laptop.post("/v1/me/password", json={"current_password": PASSWORD, "new_password": "x" * 9}),
           403, "csrf_failed")  # fmt: skip
    laptop.headers["X-CSRF-Token"] = laptop.get("/v1/session").json()["csrf_token"]
    ok = laptop.post(
        "/v1/me/password", json={"current_password": PASSWORD, "new_password": "a new passphrase"}
    )
    assert ok.status_code == 200 and ok.json() == {"changed": True, "other_sessions_ended": 1}, ok.text
    assert laptop.get("/v1/me").status_code == 200  # this session stays
    _error(phone.get("/v1/me"), 401, "session_expired")  # the other one ended
    sign_in("a new passphrase")
    html = httpx.post(f"{site.url}/login", data={"name": name, "password": PASSWORD, "csrf_token": "x"})
    assert html.status_code == 403  # the login form's own CSRF check comes first


def test_admin_usage_and_asr_servers(stack: Stack, done: dict[str, dict[str, Any]]) -> None:
    site = stack.local
    usage = httpx.get(f"{site.url}/v1/admin/usage", headers=auth(site.admin), timeout=10).json()
    assert len(usage["days"]) == 7 and usage["days"] == sorted(usage["days"])
    ama = {row["name"]: row for row in usage["data"]}["ama"]
    today = usage["days"][-1]
    assert ama["minutes"][today] >= done["local"]["duration"] / 60 - 1e-3
    assert ama["usage"]["audio_minutes_today"] == pytest.approx(ama["minutes"][today], abs=1e-2)
    servers = httpx.get(f"{site.url}/v1/admin/asr", headers=auth(site.admin), timeout=10).json()["data"]
    assert servers == [{"url": stack.asr.url, "ready": True, "detail": "ready", "last_error": None}]
    for path in ("/v1/admin/usage", "/v1/admin/asr"):
        _error(httpx.get(site.url + path, headers=auth(site.ama), timeout=10), 403, "admin_required")
    _error(httpx.get(f"{site.url}/v1/admin/usage", params={"days": 0}, headers=auth(site.admin)), 400,
           "invalid_request")  # fmt: skip


def test_pages_need_a_session_and_redirect_safely(stack: Stack) -> None:
    site = stack.local
    for path in ("/", "/account", "/admin", "/jobs/job_x"):
        r = httpx.get(site.url + path, timeout=10)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    page = httpx.get(f"{site.url}/login", params={"next": "//evil.example/x"}, timeout=10)
    assert 'name="next" value="/"' in page.text
    page = httpx.get(f"{site.url}/login", params={"next": "/jobs/job_1?x=1"}, timeout=10)
    assert 'name="next" value="/jobs/job_1?x=1"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    css = httpx.get(f"{site.url}/static/app.css", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert httpx.get(f"{site.url}/static/../settings.py", timeout=10).status_code == 404
