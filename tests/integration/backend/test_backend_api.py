"""The backend's HTTP API end to end: real ``twi-asr backend serve`` processes in front of a real 8001.

What is real: one ``twi-asr serve --model tiny.en`` for the module, backends on SQLite and on
PostgreSQL (each its own process and database), espeak-ng speech, the ``openai`` client, the
browser login flow with its cookies read from the raw ``Set-Cookie`` headers. Tests that depend
on the database (submit to done, idempotency, pagination) run on both; the rest on SQLite.
A backend started with ``--workers 0`` never runs a job, so a job submitted to it stays queued.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from ..conftest import speak
from ..services import EASY_SENTENCES, Server, start_server, stop_server
from .harness import Backend, auth, backend_env, create_user, start_backend, stop_backend, submit, wait_job

pytestmark = pytest.mark.slow

TWI_NAME = "ɔkɔm nsɛm.wav"
MEDIA = {
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}
# What 8001 answers for bytes that only claim to be a wav (checked against 8001 itself below).
ASR_NOT_AUDIO_CODE = "invalid_audio"
# Every route of /work/spec/backend.md, as (method, path) in the OpenAPI schema.
SPEC_ROUTES = [
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{job_id}"),
    ("get", "/v1/jobs/{job_id}/transcript"),
    ("delete", "/v1/jobs/{job_id}"),
    ("post", "/v1/uploads"),
    ("put", "/v1/uploads/{upload_id}/content"),
    ("post", "/v1/audio/transcriptions"),
    ("get", "/v1/me"),
    ("get", "/v1/me/keys"),
    ("post", "/v1/me/keys"),
    ("delete", "/v1/me/keys/{key_id}"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("patch", "/v1/users/{name}"),
    ("delete", "/v1/users/{name}"),
    ("get", "/login"),
    ("post", "/login"),
    ("post", "/logout"),
]


# --- the module's processes ------------------------------------------------------------------


@dataclass
class Site:
    """A running backend, its environment and data folder, and its admin's key."""

    backend: Backend
    env: dict[str, str]
    data_dir: Path
    admin: str

    @property
    def url(self) -> str:
        return self.backend.url

    def new_user(self, prefix: str = "u", **fields: Any) -> str:
        """A fresh user made over HTTP by the admin (``POST /v1/users``); returns their key."""
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        r = httpx.post(
            f"{self.url}/v1/users", headers=auth(self.admin), json={"name": name, **fields}, timeout=30
        )
        assert r.status_code == 201, r.text
        return str(r.json()["api_key"])

    def stored_jobs(self) -> set[str]:
        """The job folders in local storage."""
        folder = self.data_dir / "storage" / "jobs"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@dataclass
class Pool:
    """The module's processes: one 8001 and three backends, started side by side."""

    asr: Server
    sites: dict[str, Site]


# name -> (flags, extra environment); "postgres" only where the session has a PostgreSQL server
SITES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "sqlite": (("--workers", "2"), {}),
    "postgres": (("--workers", "2"), {}),
    "idle": (("--workers", "0"), {"TWI_ASR_MAX_UPLOAD_MB": "1"}),  # jobs stay queued; uploads <= 1 MB
    "idle_pg": (("--workers", "0"), {"TWI_ASR_MAX_UPLOAD_MB": "1"}),
}


def _prepare(folder: Path, database_url: str | None, extra: dict[str, str]) -> tuple[dict[str, str], str]:
    """The backend's environment and its admin's key (the CLI migrates the database before serve)."""
    folder.mkdir()
    env = backend_env(folder, database_url=database_url, extra=extra)
    return env, create_user(env, "admin", admin=True)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Pool]:
    """8001 loads while the backends' databases are made; then the backends start at once."""
    folder = tmp_path_factory.mktemp("backends")
    databases: dict[str, str | None] = {"sqlite": None, "idle": None}
    with contextlib.suppress(pytest.skip.Exception):  # no PostgreSQL binaries: the [postgres] tests skip
        pg = request.getfixturevalue("postgres")
        databases["postgres"], databases["idle_pg"] = (
            pg.new_database("api_backend"),
            pg.new_database("api_idle"),
        )
    started: list[Any] = []
    with ThreadPoolExecutor(4) as ex:
        try:
            loading = ex.submit(start_server, folder / "asr.log")
            prepared = {n: ex.submit(_prepare, folder / n, db, SITES[n][1]) for n, db in databases.items()}
            asr = loading.result()
            started.append(asr)
            envs = {n: f.result() for n, f in prepared.items()}

            def launch(name: str) -> Site:
                env, admin = envs[name]
                data = folder / name
                backend = start_backend(data / "backend.log", env, [asr.url], *SITES[name][0])
                started.append(backend)
                return Site(backend, env, data, admin)

            sites = dict(zip(envs, ex.map(launch, envs), strict=True))
            yield Pool(asr, sites)
        finally:
            list(ex.map(lambda p: stop_server(p) if isinstance(p, Server) else stop_backend(p), started))


@pytest.fixture(scope="module")
def asr(pool: Pool) -> Server:
    return pool.asr


@pytest.fixture(scope="module")
def site(pool: Pool) -> Site:
    """SQLite, two workers."""
    return pool.sites["sqlite"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_site(request: pytest.FixtureRequest, pool: Pool) -> Site:
    """The same backend on SQLite, then on PostgreSQL (a fresh database of the session's server)."""
    if request.param not in pool.sites:
        pytest.skip("no PostgreSQL server in this session")
    return pool.sites[request.param]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_idle(request: pytest.FixtureRequest, pool: Pool) -> Site:
    """``--workers 0`` on SQLite, then on PostgreSQL."""
    name = "idle" if request.param == "sqlite" else "idle_pg"
    if name not in pool.sites:
        pytest.skip("no PostgreSQL server in this session")
    return pool.sites[name]


@pytest.fixture(scope="module")
def idle(pool: Pool) -> Site:
    """SQLite, ``--workers 0`` (jobs stay queued), uploads limited to 1 MB."""
    return pool.sites["idle"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Speech: ``short`` (about 2 s), ``twi`` (named ɔkɔm nsɛm.wav), ``five`` (padded to 5.0 s),
    ``s0``..``s3`` (four other sentences), and ``junk`` (random bytes named x.wav)."""
    folder = tmp_path_factory.mktemp("clips")
    out = {
        "short": speak(EASY_SENTENCES[1], folder / "short.wav"),
        "twi": speak(EASY_SENTENCES[0], folder / TWI_NAME),
    }
    for i, sentence in enumerate(EASY_SENTENCES[2:6]):
        out[f"s{i}"] = speak(sentence, folder / f"s{i}.wav")
    five = folder / "five.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(out["short"]),
            "-af",
            "apad=whole_dur=5",
            "-c:a",
            "pcm_s16le",
            str(five),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    out["five"] = five
    junk = folder / "x.wav"
    # 32 kB of seeded noise: fixed, because some random bytes happen to probe as a stream PyAV decodes
    junk.write_bytes(random.Random(7).randbytes(32768))
    out["junk"] = junk
    return out


# --- helpers ---------------------------------------------------------------------------------


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def expect_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text}"
    body = r.json()["error"]
    assert body["code"] == code, body
    assert body["message"] and body["request_id"] == r.headers["x-request-id"]
    return dict(body)


def post_file(
    url: str,
    key: str | None,
    path: Path,
    content_type: str = "audio/wav",
    *,
    name: str | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    with path.open("rb") as fh:
        return httpx.post(
            f"{url}/v1/jobs",
            headers=(auth(key) if key else {}) | (headers or {}),
            files={"file": (name or path.name, fh, content_type)},
            data=data or {},
            timeout=120,
        )


def list_all(url: str, key: str, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v1/jobs", headers=auth(key), params={"limit": 100, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def set_cookies(r: httpx.Response) -> dict[str, str]:
    """The raw ``Set-Cookie`` headers by cookie name (attributes kept, to check them)."""
    return {h.split("=", 1)[0]: h for h in r.headers.get_list("set-cookie")}


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


# --- auth ------------------------------------------------------------------------------------


def test_missing_wrong_and_revoked_keys_are_401(site: Site) -> None:
    r = httpx.get(f"{site.url}/v1/jobs", timeout=10)
    expect_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    expect_error(
        httpx.get(f"{site.url}/v1/jobs", headers=auth("twk_" + "x" * 40), timeout=10), 401, "invalid_api_key"
    )
    expect_error(
        httpx.get(f"{site.url}/v1/me", headers={"Authorization": "Basic abc"}, timeout=10),
        401,
        "invalid_api_key",
    )

    key = site.new_user()
    r = httpx.post(f"{site.url}/v1/me/keys", headers=auth(key), json={"name": "laptop"}, timeout=10)
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["api_key"].startswith(second["prefix"]) and second["name"] == "laptop"
    me = httpx.get(f"{site.url}/v1/me", headers=auth(key), timeout=10).json()
    assert (
        httpx.get(f"{site.url}/v1/me", headers=auth(second["api_key"]), timeout=10).json()["id"] == me["id"]
    )
    listed = httpx.get(f"{site.url}/v1/me/keys", headers=auth(key), timeout=10).json()["data"]
    assert {k["id"] for k in listed} >= {second["id"]} and all("api_key" not in k for k in listed)

    r = httpx.delete(f"{site.url}/v1/me/keys/{second['id']}", headers=auth(key), timeout=10)
    assert r.status_code == 204, r.text
    expect_error(
        httpx.get(f"{site.url}/v1/me", headers=auth(second["api_key"]), timeout=10), 401, "invalid_api_key"
    )
    assert (
        httpx.get(f"{site.url}/v1/me", headers=auth(key), timeout=10).status_code == 200
    )  # the first still works
    listed = httpx.get(f"{site.url}/v1/me/keys", headers=auth(key), timeout=10).json()["data"]
    assert next(k for k in listed if k["id"] == second["id"])["revoked_at"] is not None
    # someone else's key id is not yours to revoke
    other = site.new_user()
    expect_error(
        httpx.delete(f"{site.url}/v1/me/keys/{listed[-1]['id']}", headers=auth(other), timeout=10),
        404,
        "key_not_found",
    )


def test_another_users_job_is_not_found(idle: Site, clips: dict[str, Path]) -> None:
    owner, stranger = idle.new_user(), idle.new_user()
    job = submit(idle.url, owner, clips["short"])
    for r in (
        httpx.get(f"{idle.url}/v1/jobs/{job['id']}", headers=auth(stranger), timeout=10),
        httpx.get(f"{idle.url}/v1/jobs/{job['id']}/transcript", headers=auth(stranger), timeout=10),
        httpx.delete(f"{idle.url}/v1/jobs/{job['id']}", headers=auth(stranger), timeout=10),
    ):
        expect_error(r, 404, "job_not_found")
    assert list_all(idle.url, stranger) == []
    r = httpx.get(f"{idle.url}/v1/jobs/{job['id']}", headers=auth(owner), timeout=10)
    assert r.json()["status"] == "queued"  # the stranger's DELETE did not cancel it
    expect_error(
        httpx.get(f"{idle.url}/v1/jobs/job_nope", headers=auth(owner), timeout=10), 404, "job_not_found"
    )


def test_admin_routes(site: Site) -> None:
    plain = site.new_user()
    for r in (
        httpx.get(f"{site.url}/v1/users", headers=auth(plain), timeout=10),
        httpx.post(f"{site.url}/v1/users", headers=auth(plain), json={"name": "mallory"}, timeout=10),
        httpx.patch(f"{site.url}/v1/users/admin", headers=auth(plain), json={"admin": False}, timeout=10),
        httpx.delete(f"{site.url}/v1/users/admin", headers=auth(plain), timeout=10),
    ):
        expect_error(r, 403, "admin_required")

    name = f"carol{uuid.uuid4().hex[:6]}"
    r = httpx.post(
        f"{site.url}/v1/users",
        headers=auth(site.admin),
        json={"name": name, "max_concurrent_jobs": 3},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["name"] == name and made["is_admin"] is False and made["max_concurrent_jobs"] == 3
    me = httpx.get(f"{site.url}/v1/me", headers=auth(made["api_key"]), timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == name and me.json()["quotas"]["max_concurrent_jobs"] == 3
    assert me.json()["webhook_secret"]
    users = httpx.get(f"{site.url}/v1/users", headers=auth(site.admin), timeout=10).json()["data"]
    assert name in {u["name"] for u in users}
    expect_error(
        httpx.post(f"{site.url}/v1/users", headers=auth(site.admin), json={"name": name}, timeout=10),
        409,
        "user_exists",
    )
    # an admin revokes one leaked key of the user; the user's other key keeps working
    r = httpx.post(
        f"{site.url}/v1/me/keys", headers=auth(made["api_key"]), json={"name": "leaked"}, timeout=10
    )
    leaked = r.json()
    keys = httpx.get(f"{site.url}/v1/users/{name}/keys", headers=auth(site.admin), timeout=10).json()["data"]
    assert {k["name"] for k in keys} == {"default", "leaked"} and all("api_key" not in k for k in keys)
    expect_error(httpx.get(f"{site.url}/v1/users/{name}/keys", headers=auth(plain), timeout=10), 403,
                 "admin_required")  # fmt: skip
    r = httpx.delete(f"{site.url}/v1/users/{name}/keys/{leaked['id']}", headers=auth(site.admin), timeout=10)
    assert r.status_code == 204, r.text
    expect_error(httpx.get(f"{site.url}/v1/me", headers=auth(leaked["api_key"]), timeout=10), 401,
                 "invalid_api_key")  # fmt: skip
    assert httpx.get(f"{site.url}/v1/me", headers=auth(made["api_key"]), timeout=10).status_code == 200
    # disabling a user shuts their key out
    r = httpx.delete(f"{site.url}/v1/users/{name}", headers=auth(site.admin), timeout=10)
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    assert httpx.get(f"{site.url}/v1/me", headers=auth(made["api_key"]), timeout=10).status_code == 401


# --- jobs ------------------------------------------------------------------------------------


def test_submit_to_done_and_every_format(db_site: Site, clips: dict[str, Path]) -> None:
    key = db_site.new_user()
    r = post_file(db_site.url, key, clips["twi"], data={"language": "en"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["status"] in ("queued", "running") and job["filename"] == TWI_NAME
    assert job["formats"] == [] and job["object"] == "transcription.job"
    assert (
        httpx.get(db_site.url + r.headers["location"], headers=auth(key), timeout=10).json()["id"]
        == job["id"]
    )

    done = wait_job(db_site.url, key, job["id"], timeout_s=120)
    assert done["status"] == "done", done
    assert {"please", "call", "stella", "store"} <= words(done["text"]), done["text"]
    assert done["formats"] == ["txt", "json", "srt", "vtt", "tsv"] and done["error"] is None
    assert done["attempts"] == 1 and done["model"] and done["engine"]
    assert 2.0 < done["duration"] < 8.0 and done["finished_at"] >= done["started_at"] >= done["created_at"]

    bodies = {}
    for fmt, media in MEDIA.items():
        r = httpx.get(
            f"{db_site.url}/v1/jobs/{job['id']}/transcript",
            params={"format": fmt},
            headers=auth(key),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == media
        cd = r.headers["content-disposition"]
        assert cd.startswith('attachment; filename="') and ".wav" not in cd
        assert f"filename*=UTF-8''{quote('ɔkɔm nsɛm.' + fmt, safe='')}" in cd, cd
        assert cd.encode("ascii")  # the header itself stays ASCII
        bodies[fmt] = r.content.decode("utf-8")
    default = httpx.get(f"{db_site.url}/v1/jobs/{job['id']}/transcript", headers=auth(key), timeout=10)
    assert default.text == bodies["txt"] and "stella" in bodies["txt"].lower()
    assert json.loads(bodies["json"])["text"].strip() == done["text"].strip()
    assert " --> " in bodies["srt"] and bodies["srt"].lstrip().startswith("1")
    assert bodies["vtt"].startswith("WEBVTT") and " --> " in bodies["vtt"]
    assert bodies["tsv"].startswith("start\tend\ttext")
    expect_error(
        httpx.get(
            f"{db_site.url}/v1/jobs/{job['id']}/transcript",
            params={"format": "docx"},
            headers=auth(key),
            timeout=10,
        ),
        400,
        "invalid_format",
    )


def test_not_audio_fails_with_the_asr_code(site: Site, asr: Server, clips: dict[str, Path]) -> None:
    with clips["junk"].open("rb") as fh:  # what 8001 itself says of these bytes
        direct = httpx.post(
            f"{asr.url}/v1/audio/transcriptions", files={"file": ("x.wav", fh, "audio/wav")}, timeout=60
        )
    assert direct.status_code >= 400 and direct.json()["error"]["code"] == ASR_NOT_AUDIO_CODE, direct.text
    key = site.new_user()
    job = submit(site.url, key, clips["junk"])
    end = wait_job(site.url, key, job["id"], timeout_s=60)
    assert end["status"] == "failed", end
    assert end["error"]["code"] == ASR_NOT_AUDIO_CODE and end["error"]["message"], end
    assert end["attempts"] == 1 and end["formats"] == [] and end["text"] is None
    expect_error(
        httpx.get(f"{site.url}/v1/jobs/{job['id']}/transcript", headers=auth(key), timeout=10),
        409,
        "job_not_done",
    )
    # the OpenAI entry answers as 8001 did, and records the call as a failed job
    with clips["junk"].open("rb") as fh:
        r = httpx.post(
            f"{site.url}/v1/audio/transcriptions",
            headers=auth(key),
            files={"file": ("x.wav", fh, "audio/wav")},
            data={"model": "whisper-1"},
            timeout=60,
        )
    assert (r.status_code, r.json()["error"]["code"]) == (direct.status_code, ASR_NOT_AUDIO_CODE), r.text
    sync = [j for j in list_all(site.url, key) if j["id"] != job["id"]]
    assert len(sync) == 1 and sync[0]["status"] == "failed", sync
    assert sync[0]["error"]["code"] == ASR_NOT_AUDIO_CODE


def test_pagination_and_status_filter(db_site: Site, clips: dict[str, Path]) -> None:
    key = db_site.new_user()
    ids = [submit(db_site.url, key, clips[f"s{i}"])["id"] for i in range(4)]
    ids.append(submit(db_site.url, key, clips["junk"])["id"])
    ends = {job_id: wait_job(db_site.url, key, job_id, timeout_s=120) for job_id in ids}
    assert [ends[i]["status"] for i in ids] == ["done"] * 4 + ["failed"], [
        (j["status"], j["error"], j["attempts"]) for j in ends.values()
    ]

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = httpx.get(f"{db_site.url}/v1/jobs", headers=auth(key), params=params, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list"
        pages.append([j["id"] for j in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == ids[::-1]  # newest first, each once

    failed = list_all(db_site.url, key, status="failed")
    assert [j["id"] for j in failed] == [ids[4]] and failed[0]["error"]["code"] == ASR_NOT_AUDIO_CODE
    done = list_all(db_site.url, key, status="done")
    assert [j["id"] for j in done] == ids[3::-1]
    assert list_all(db_site.url, key, status="queued") == []
    r = httpx.get(
        f"{db_site.url}/v1/jobs", headers=auth(key), params={"status": "done", "limit": 3}, timeout=10
    )
    second = httpx.get(
        f"{db_site.url}/v1/jobs",
        headers=auth(key),
        params={"status": "done", "limit": 3, "cursor": r.json()["next_cursor"]},
        timeout=10,
    )
    assert [j["id"] for j in r.json()["data"] + second.json()["data"]] == ids[3::-1]
    assert second.json()["next_cursor"] is None
    expect_error(
        httpx.get(f"{db_site.url}/v1/jobs", headers=auth(key), params={"status": "lost"}, timeout=10),
        400,
        "invalid_status",
    )
    expect_error(
        httpx.get(f"{db_site.url}/v1/jobs", headers=auth(key), params={"cursor": "%%%"}, timeout=10),
        400,
        "invalid_cursor",
    )
    expect_error(
        httpx.get(f"{db_site.url}/v1/jobs", headers=auth(key), params={"limit": 0}, timeout=10),
        400,
        "invalid_request",
    )


def test_idempotency_key(db_site: Site, clips: dict[str, Path]) -> None:
    key, other = db_site.new_user(), db_site.new_user()
    idem = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = post_file(db_site.url, key, clips["short"], headers=idem)
    again = post_file(db_site.url, key, clips["short"], headers=idem)
    assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
    assert first.json()["id"] == again.json()["id"] and again.headers["location"] == first.headers["location"]
    theirs = post_file(db_site.url, other, clips["short"], headers=idem)  # a key is per user
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]

    racing = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}
    before = db_site.stored_jobs()
    with ThreadPoolExecutor(5) as pool:
        answers = list(
            pool.map(lambda _: post_file(db_site.url, key, clips["short"], headers=racing), range(5))
        )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 202], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    mine = list_all(db_site.url, key)
    assert sorted(j["id"] for j in mine) == sorted({first.json()["id"], answers[0].json()["id"]})
    for j in mine:
        assert wait_job(db_site.url, key, j["id"], timeout_s=120)["status"] == "done"
    assert db_site.stored_jobs() - before == {answers[0].json()["id"]}  # the losers' files were removed


def test_cancel_queued_never_runs_and_delete_done_removes_files(
    tmp_path: Path, asr: Server, clips: dict[str, Path]
) -> None:
    env = backend_env(tmp_path)
    key = create_user(env, "canceller")
    backend = start_backend(tmp_path / "backend.log", env, [asr.url], "--workers", "0")
    try:
        kept = submit(backend.url, key, clips["short"])
        dropped = submit(backend.url, key, clips["s0"])
        expect_error(
            httpx.get(f"{backend.url}/v1/jobs/{kept['id']}/transcript", headers=auth(key), timeout=10),
            409,
            "job_not_done",
        )
        r = httpx.delete(f"{backend.url}/v1/jobs/{dropped['id']}", headers=auth(key), timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
    finally:
        stop_backend(backend)
    # the same database and storage, now with a worker: it runs the queued job, never the cancelled one
    backend = start_backend(tmp_path / "backend.log", env, [asr.url], "--workers", "1")
    try:
        assert wait_job(backend.url, key, kept["id"], timeout_s=120)["status"] == "done"
        gone = httpx.get(f"{backend.url}/v1/jobs/{dropped['id']}", headers=auth(key), timeout=10).json()
        assert gone["status"] == "cancelled" and gone["attempts"] == 0 and gone["started_at"] is None, gone
        assert [j["id"] for j in list_all(backend.url, key, status="cancelled")] == [dropped["id"]]

        folder = tmp_path / "storage" / "jobs" / kept["id"]
        assert (folder / "input" / "short.wav").is_file() and any((folder / "output").iterdir())
        r = httpx.delete(f"{backend.url}/v1/jobs/{kept['id']}", headers=auth(key), timeout=10)
        assert r.status_code == 204 and r.content == b"", r.text
        assert not folder.exists()
        expect_error(
            httpx.get(f"{backend.url}/v1/jobs/{kept['id']}", headers=auth(key), timeout=10),
            404,
            "job_not_found",
        )
        # a cancelled job is finished: a second DELETE removes it (204) with its stored audio
        assert (tmp_path / "storage" / "jobs" / dropped["id"]).is_dir()
        r = httpx.delete(f"{backend.url}/v1/jobs/{dropped['id']}", headers=auth(key), timeout=10)
        assert r.status_code == 204, r.text
        assert not (tmp_path / "storage" / "jobs" / dropped["id"]).exists()
        assert list_all(backend.url, key) == []
    finally:
        stop_backend(backend)


# --- quotas ----------------------------------------------------------------------------------


def _user_name(site: Site, key: str) -> str:
    return str(httpx.get(f"{site.url}/v1/me", headers=auth(key), timeout=10).json()["name"])


def test_concurrent_jobs_quota(idle: Site, clips: dict[str, Path]) -> None:
    key = idle.new_user("q")
    r = httpx.patch(
        f"{idle.url}/v1/users/{_user_name(idle, key)}",
        headers=auth(idle.admin),
        json={"max_concurrent_jobs": 1},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["max_concurrent_jobs"] == 1, r.text
    first = post_file(idle.url, key, clips["short"])
    assert first.status_code == 202, first.text
    before = idle.stored_jobs()
    r = post_file(idle.url, key, clips["short"])
    expect_error(r, 429, "concurrent_jobs_quota")
    assert int(r.headers["retry-after"]) > 0
    assert idle.stored_jobs() == before  # nothing stored for the refused one
    me = httpx.get(f"{idle.url}/v1/me", headers=auth(key), timeout=10).json()
    assert me["usage"]["active_jobs"] == 1 and me["quotas"]["max_concurrent_jobs"] == 1
    # the slot frees when the queued job is cancelled
    assert (
        httpx.delete(f"{idle.url}/v1/jobs/{first.json()['id']}", headers=auth(key), timeout=10).status_code
        == 200
    )
    assert post_file(idle.url, key, clips["short"]).status_code == 202


def test_concurrent_jobs_quota_holds_under_racing_submits(db_idle: Site, clips: dict[str, Path]) -> None:
    key = db_idle.new_user("race", max_concurrent_jobs=1)
    before = db_idle.stored_jobs()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_file(db_idle.url, key, clips["short"]), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] + [429] * 5, [a.text for a in answers]
    assert len(list_all(db_idle.url, key)) == 1
    made = next(a.json()["id"] for a in answers if a.status_code == 202)
    assert db_idle.stored_jobs() - before == {made}  # the refused uploads were removed


def test_invalid_quotas_are_400(site: Site) -> None:
    for bad in (
        {"max_concurrent_jobs": "many"},
        {"max_concurrent_jobs": 0},
        {"audio_minutes_per_day": -1},
        {"max_concurrent_jobs": True},
    ):
        name = f"bad{uuid.uuid4().hex[:6]}"
        r = httpx.post(
            f"{site.url}/v1/users", headers=auth(site.admin), json={"name": name, **bad}, timeout=10
        )
        expect_error(r, 400, "invalid_request")
        assert name not in {
            u["name"]
            for u in httpx.get(f"{site.url}/v1/users", headers=auth(site.admin), timeout=10).json()["data"]
        }
        r = httpx.patch(f"{site.url}/v1/users/admin", headers=auth(site.admin), json=bad, timeout=10)
        expect_error(r, 400, "invalid_request")


def test_audio_minutes_per_day_quota(idle: Site, clips: dict[str, Path]) -> None:
    # 0.1 min = 6 s: one 5 s clip fits, a second would make 10 s (the check counts the new clip too,
    # so with 0.05 min = 3 s not even the first 5 s clip would pass)
    key = idle.new_user("a")
    r = httpx.patch(
        f"{idle.url}/v1/users/{_user_name(idle, key)}",
        headers=auth(idle.admin),
        json={"audio_minutes_per_day": 0.1},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    first = post_file(idle.url, key, clips["five"])
    assert first.status_code == 202, first.text
    assert abs(first.json()["audio_seconds"] - 5.0) < 0.05
    r = post_file(idle.url, key, clips["five"])
    now = datetime.now(timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    expect_error(r, 429, "audio_quota")
    assert abs(int(r.headers["retry-after"]) - (midnight - now).total_seconds()) < 10, r.headers
    me = httpx.get(f"{idle.url}/v1/me", headers=auth(key), timeout=10).json()
    assert abs(me["usage"]["audio_minutes_today"] - 5.0 / 60) < 0.002, me


# --- malformed requests ----------------------------------------------------------------------


def test_malformed_requests_are_refused_and_leave_nothing(idle: Site, clips: dict[str, Path]) -> None:
    key = idle.new_user()
    before = idle.stored_jobs()
    jobs = f"{idle.url}/v1/jobs"
    json_hdr = auth(key) | {"Content-Type": "application/json"}
    expect_error(
        httpx.post(jobs, headers=json_hdr, content=b'{"upload_id": ', timeout=10), 400, "invalid_json"
    )
    expect_error(httpx.post(jobs, headers=json_hdr, content=b"[1, 2]", timeout=10), 400, "invalid_json")
    expect_error(
        httpx.post(jobs, headers=auth(key), json={"language": "en"}, timeout=10), 400, "missing_source"
    )
    body = expect_error(
        httpx.post(jobs, headers=auth(key), json={"upload_id": "upl_x", "colour": "red"}, timeout=10),
        400,
        "unknown_field",
    )
    assert body["param"] == "colour"
    body = expect_error(
        post_file(idle.url, key, clips["short"], data={"colour": "red"}), 400, "unknown_field"
    )
    assert body["param"] == "colour"
    expect_error(post_file(idle.url, key, clips["short"], data={"task": "summarise"}), 400, "invalid_request")
    expect_error(post_file(idle.url, key, clips["short"], "text/plain"), 415, "unsupported_media_type")
    r = httpx.post(
        jobs,
        headers=auth(key),
        data={"language": "en"},
        files={"other": ("a", b"1", "audio/wav")},
        timeout=10,
    )
    expect_error(r, 400, "missing_file")
    assert list_all(idle.url, key) == []
    assert idle.stored_jobs() == before


def test_upload_over_the_limit_is_413_and_leaves_nothing(idle: Site, tmp_path: Path) -> None:
    key = idle.new_user()
    before = idle.stored_jobs()
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + b"\0" * (3 * 2**20))
    # Content-Length says 3 MB: refused before the body is read
    expect_error(post_file(idle.url, key, big), 413, "upload_too_large")

    # chunked (no Content-Length): cut off while it streams
    def chunks() -> Iterator[bytes]:
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        yield b"Content-Type: audio/wav\r\n\r\n"
        for _ in range(48):
            yield b"\0" * 65536
        yield b"\r\n" + boundary + b"--\r\n"

    r = httpx.post(
        f"{idle.url}/v1/jobs",
        content=chunks(),
        timeout=30,
        headers=auth(key) | {"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    expect_error(r, 413, "upload_too_large")
    # 1.5 MB: inside the envelope's slack, but the file itself is over 1 MB
    mid = tmp_path / "mid.wav"
    mid.write_bytes(b"RIFF" + b"\0" * (3 * 2**19))
    expect_error(post_file(idle.url, key, mid), 413, "upload_too_large")
    assert list_all(idle.url, key) == []
    assert idle.stored_jobs() == before
    assert not list((idle.data_dir / "storage").rglob("*.part"))
    assert httpx.get(f"{idle.url}/health", timeout=10).status_code == 200


# --- the OpenAI-compatible entry -------------------------------------------------------------


def test_openai_client_against_the_backend(site: Site, clips: dict[str, Path]) -> None:
    import openai

    key = site.new_user("oa")
    client = openai.OpenAI(base_url=site.url + "/v1", api_key=key, max_retries=0, timeout=120)
    with clips["twi"].open("rb") as fh:
        plain = client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert {"please", "call", "stella"} <= words(plain.text), plain.text

    with clips["short"].open("rb") as fh:
        r = httpx.post(
            f"{site.url}/v1/audio/transcriptions",
            headers=auth(key),
            files={"file": ("short.wav", fh, "audio/wav")},
            data={"model": "whisper-1"},
            timeout=120,
        )
    assert r.status_code == 200, r.text
    job_id = r.headers["x-twi-asr-job-id"]
    listed = {j["id"]: j for j in list_all(site.url, key)}
    assert len(listed) == 2 and listed[job_id]["status"] == "done"
    assert listed[job_id]["text"].strip() == r.json()["text"].strip() and "sun" in words(r.json()["text"])
    assert listed[job_id]["formats"] == ["txt", "json", "srt", "vtt", "tsv"]
    tr = httpx.get(
        f"{site.url}/v1/jobs/{job_id}/transcript", params={"format": "srt"}, headers=auth(key), timeout=10
    )
    assert tr.status_code == 200 and " --> " in tr.text

    outputs = {}
    for fmt in ("srt", "vtt", "text", "verbose_json"):
        with clips["short"].open("rb") as fh:
            outputs[fmt] = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format=fmt)
    assert isinstance(outputs["srt"], str) and " --> " in outputs["srt"] and "sun" in outputs["srt"].lower()
    assert isinstance(outputs["vtt"], str) and outputs["vtt"].startswith("WEBVTT")
    assert isinstance(outputs["text"], str) and "sun" in words(outputs["text"])
    verbose = outputs["verbose_json"]
    assert verbose.segments and 1.0 < verbose.duration < 6.0 and "sun" in words(verbose.text)
    assert len(list_all(site.url, key, status="done")) == 6

    wrong = openai.OpenAI(base_url=site.url + "/v1", api_key="twk_wrong", max_retries=0)
    with clips["short"].open("rb") as fh, pytest.raises(openai.AuthenticationError):
        wrong.audio.transcriptions.create(model="whisper-1", file=fh)


# --- browser login ---------------------------------------------------------------------------


def test_password_login_session_and_csrf(site: Site, clips: dict[str, Path]) -> None:
    name, password = f"dora{uuid.uuid4().hex[:6]}", "correct horse battery"
    create_user(site.env, name, password=password)
    page = httpx.get(f"{site.url}/login", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    pre = set_cookies(page)["twi_asr_prelogin"]
    assert "HttpOnly" in pre
    pre_cookie = {"Cookie": f"twi_asr_prelogin={cookie_value(pre)}"}
    login = f"{site.url}/login"
    form = {"name": name, "password": password}

    expect_error(httpx.post(login, data=form, headers=pre_cookie, timeout=10), 403, "csrf_failed")
    expect_error(
        httpx.post(login, data=form | {"csrf_token": "forged"}, headers=pre_cookie, timeout=10),
        403,
        "csrf_failed",
    )
    expect_error(httpx.post(login, data=form | {"csrf_token": token[1]}, timeout=10), 403, "csrf_failed")
    expect_error(
        httpx.post(
            login,
            data=form | {"password": "wrong password", "csrf_token": token[1]},
            headers=pre_cookie,
            timeout=10,
        ),
        401,
        "invalid_login",
    )

    r = httpx.post(login, data=form | {"csrf_token": token[1]}, headers=pre_cookie, timeout=10)
    assert r.status_code == 303, r.text
    session = set_cookies(r)["twi_asr_session"]
    attrs = [a.strip().lower() for a in session.split(";")[1:]]
    assert "httponly" in attrs and "samesite=lax" in attrs and "secure" not in attrs, session
    behind_tls = httpx.post(
        login,
        data=form | {"csrf_token": token[1]},
        headers=pre_cookie | {"X-Forwarded-Proto": "https"},
        timeout=10,
    )
    assert behind_tls.status_code == 303
    assert "secure" in [a.strip().lower() for a in set_cookies(behind_tls)["twi_asr_session"].split(";")]

    cookie = {"Cookie": f"twi_asr_session={cookie_value(session)}"}
    me = httpx.get(f"{site.url}/v1/me", headers=cookie, timeout=10)
    assert me.status_code == 200 and me.json()["name"] == name, me.text
    info = httpx.get(f"{site.url}/v1/session", headers=cookie, timeout=10).json()
    assert info["via"] == "session" and info["name"] == name and info["csrf_token"]

    expect_error(post_file(site.url, None, clips["short"], headers=cookie), 403, "csrf_failed")
    expect_error(
        post_file(site.url, None, clips["short"], headers=cookie | {"X-CSRF-Token": "nope"}),
        403,
        "csrf_failed",
    )
    r = post_file(site.url, None, clips["short"], headers=cookie | {"X-CSRF-Token": info["csrf_token"]})
    assert r.status_code == 202, r.text
    assert (
        httpx.get(f"{site.url}/v1/jobs", headers=cookie, timeout=10).json()["data"][0]["id"] == r.json()["id"]
    )

    expect_error(httpx.post(f"{site.url}/logout", headers=cookie, timeout=10), 403, "csrf_failed")
    out = httpx.post(f"{site.url}/logout", headers=cookie | {"X-CSRF-Token": info["csrf_token"]}, timeout=10)
    assert out.status_code == 204, out.text
    assert httpx.get(f"{site.url}/v1/me", headers=cookie, timeout=10).status_code == 401


# --- request ids, operations, schema ---------------------------------------------------------


def test_request_id_reaches_the_asr_server(site: Site, asr: Server, clips: dict[str, Path]) -> None:
    rid = f"test-rid-123-{uuid.uuid4().hex[:8]}"
    key = site.new_user()
    r = post_file(site.url, key, clips["short"], headers={"X-Request-ID": rid})
    assert r.status_code == 202 and r.headers["x-request-id"] == rid
    assert wait_job(site.url, key, r.json()["id"], timeout_s=120)["status"] == "done"
    lines = [line for line in asr.log.read_text(errors="replace").splitlines() if f"[{rid}]" in line]
    assert any("POST /v1/audio/transcriptions 200" in line for line in lines), asr.log_tail()
    assert rid in site.backend.log.read_text(errors="replace")


def test_health_ready_and_metrics(site: Site, clips: dict[str, Path]) -> None:
    key = site.new_user()
    job = submit(site.url, key, clips["short"])
    assert wait_job(site.url, key, job["id"], timeout_s=120)["status"] == "done"
    assert httpx.get(f"{site.url}/health", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{site.url}/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert ready.json()["status"] == "ready" and checks["database"] == "ok" and checks["storage"] == "ok"
    assert checks["asr"].startswith("ok"), checks

    text = httpx.get(f"{site.url}/metrics", timeout=10).text

    def sample(pattern: str) -> float:
        m = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.M)
        assert m, f"{pattern} missing from /metrics"
        return float(m.group(1))

    assert sample(re.escape('twi_asr_backend_jobs{status="done"}')) >= 1
    assert sample(re.escape('twi_asr_backend_jobs{status="queued"}')) >= 0
    assert sample("twi_asr_backend_queue_age_seconds") >= 0
    assert sample("twi_asr_backend_job_latency_seconds_count") >= 1
    assert sample(r'twi_asr_backend_requests_total\{route="/v1/jobs",status="202"\}') >= 1


def test_openapi_documents_every_route(site: Site) -> None:
    schema = httpx.get(f"{site.url}/openapi.json", timeout=10).json()
    have = {(method, path) for path, ops in schema["paths"].items() for method in ops}
    missing = [route for route in SPEC_ROUTES if route not in have]
    assert not missing, missing
    assert "multipart/form-data" in schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert "application/json" in schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
