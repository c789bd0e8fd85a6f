"""The hardened server container and swarm service on a real engine: it serves, cannot write, leaks no key.

The image is this checkout's, built through :func:`docker_helpers.build` (so the current
Dockerfile) with tiny.en baked in, while a fake API key and a fake Hugging Face token sit in the
environment. :func:`twi_asr.containers.run_server` starts it as ``twi-asr docker run`` does: the
read-only root, tmpfs /tmp, no capabilities, no-new-privileges, uid 10001, memory and CPU limits,
a named volume on /models, the key and token as read-only files under /run/secrets. The checks:

- the engine's own view (``docker inspect``'s HostConfig) is what was asked for;
- it serves /ready and transcribes examples/hello.wav into the right words, 401 without the key;
- as its user (and even as root in it), writing to /, /app, /opt/venv, /home/twi, /etc fails with
  "Read-only file system", while /tmp and /models take files (and /models keeps them across a
  restart); root in it, with no capabilities, cannot write into uid 10001's /models either;
- neither the key nor the token is in ``docker inspect`` of the container or the image, in the
  image's history, or in the container's logs;
- ``scale`` runs a one-replica swarm service the same way (the key as a Docker secret, gone with
  the service), and says what the engine's API cannot do (no-new-privileges on a service).

Needs an engine and a base image (``scripts/docker-engine.sh``, ``scripts/base-image.sh``); without
them the module is skipped unless ``TWI_ASR_REQUIRE_DOCKER=1`` (CI). Everything made here has a
name unique to this run and is removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from twi_asr.text import wer

from . import docker_helpers as dh

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello.wav"
HELLO_TEXT = "Hello from Accra, speech recognition in a container is easy to deploy."
MAX_WER = 0.35  # as test_docker_real.py allows tiny.en on espeak-ng speech
PREFIX = f"twi-asr-hard-{os.getpid()}"
API_KEY = f"twk_it_{os.getpid()}_0b1d2c3e4f5a6978"
HF_TOKEN = f"hf_FakeTokenForTheTest{os.getpid()}xyz"
WRONG_KEY = f"twk_wrong_{os.getpid()}_key"
READ_ONLY = ["/", "/app", "/opt/venv", "/home/twi", "/etc", "/opt/model", "/usr/local"]


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = dh.docker_client()
    yield client
    for container in client.containers.list(all=True):
        if container.name.startswith(PREFIX):
            container.remove(force=True, v=True)
    client.close()


@pytest.fixture(scope="module")
def image(engine: Any) -> str:
    """This checkout's image with tiny.en, built while a key and a token are in the environment."""
    base = dh.base_image(engine)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TWI_ASR_API_KEY", API_KEY)
        env.setenv("HF_TOKEN", HF_TOKEN)
        dh.build(engine, dh.ASR_IMAGE, args={"MODEL": "tiny.en", "BASE_IMAGE": base})
    return dh.ASR_IMAGE


@pytest.fixture(scope="module")
def models_volume(engine: Any) -> Iterator[str]:
    name = f"{PREFIX}-models"
    yield name
    import docker.errors

    for _ in range(30):  # a removed swarm task may hold it for a moment
        try:
            engine.volumes.get(name).remove(force=True)
            break
        except docker.errors.NotFound:
            break
        except docker.errors.APIError:
            time.sleep(1)


@pytest.fixture(scope="module")
def server(engine: Any, image: str, models_volume: str) -> Iterator[tuple[Any, str]]:
    """The hardened server container, ready: (container, base URL)."""
    from twi_asr import containers

    name = f"{PREFIX}-run"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_TOKEN", HF_TOKEN)  # in the caller's environment: must not travel by itself
        container = containers.run_server(
            image,
            name=name,
            port=None,
            api_key=API_KEY,
            env={"HF_TOKEN": HF_TOKEN},  # asked for: travels as a file
            models_volume=models_volume,
            docker_client=engine,
        )
    try:
        url = containers.wait_ready(container, None, 180)
        yield container, url
    finally:
        containers.stop(name, docker_client=engine)


def _exec(container: Any, script: str, *, user: str = "") -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", script], user=user, demux=False)
    return int(code), (out or b"").decode("utf-8", "replace")


def _transcribe(url: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with HELLO.open("rb") as audio:
        return httpx.post(
            f"{url}/v1/audio/transcriptions",
            files={"file": ("hello.wav", audio, "audio/wav")},
            data={"language": "en"},
            headers=headers,
            timeout=120,
        )


# ------------------------------------------------------------------ what the engine runs
def test_the_engine_runs_it_hardened(engine: Any, server: tuple[Any, str], models_volume: str) -> None:
    container, _ = server
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["Memory"] == 4 * 1024**3
    assert host["NanoCpus"] == int(min(2, engine.info()["NCPU"]) * 1e9)
    assert host["Tmpfs"]["/tmp"].startswith("rw,nosuid,nodev,size=512m")
    assert container.attrs["Config"]["User"] == "10001:10001"
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/models"]["Type"] == "volume" and mounts["/models"]["Name"] == models_volume
    assert mounts["/models"]["RW"] is True
    for name in ("twi_asr_api_key", "hf_token"):
        secret = mounts[f"/run/secrets/{name}"]
        assert secret["Type"] == "bind" and secret["RW"] is False
        folder = Path(secret["Source"]).parent
        assert folder.stat().st_mode & 0o777 == 0o700  # the host's other users cannot read it
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["TWI_ASR_API_KEY_FILE"] == "/run/secrets/twi_asr_api_key"
    assert env["HF_TOKEN_PATH"] == "/run/secrets/hf_token"
    assert "TWI_ASR_API_KEY" not in env and "HF_TOKEN" not in env
    assert env["TWI_ASR_IMAGE_ID"] == engine.images.get(dh.ASR_IMAGE).id
    # Inside: the uid, no capability at all, no-new-privileges set on the process.
    code, out = _exec(container, "id -u; id -g; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status")
    assert code == 0, out
    lines = out.split()
    assert lines[:2] == ["10001", "10001"]
    assert "0000000000000000" in lines[lines.index("CapEff:") + 1]
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"


# ------------------------------------------------------------------ it serves
def test_it_serves_ready_and_the_right_words_with_the_key_only(engine: Any, server: tuple[Any, str]) -> None:
    _, url = server
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["build"]["image_id"] == engine.images.get(dh.ASR_IMAGE).id
    assert _transcribe(url, None).status_code == 401
    assert _transcribe(url, WRONG_KEY).status_code == 401
    answer = _transcribe(url, API_KEY)
    assert answer.status_code == 200, answer.text
    text = answer.json()["text"]
    assert wer(HELLO_TEXT, text) <= MAX_WER, text
    assert {"hello", "accra", "recognition", "container", "deploy"} <= set(
        re.findall(r"[a-z]+", text.lower())
    )


# ------------------------------------------------------------------ it cannot write
@pytest.mark.parametrize("user", ["", "0:0"], ids=["its-user", "root"])
def test_it_cannot_write_outside_tmp_and_models(server: tuple[Any, str], user: str) -> None:
    container, _ = server
    for folder in READ_ONLY:
        code, out = _exec(container, f"mkdir -p {folder} && echo x > {folder}/twi-asr-probe", user=user)
        assert code != 0 and "Read-only file system" in out, (folder, user, code, out)
    writable = ["/tmp", "/models"] if not user else ["/tmp"]
    for folder in writable:
        probe = f"{folder}/probe-{user.replace(':', '-') or 'twi'}"
        code, out = _exec(container, f"echo written > {probe} && cat {probe}", user=user)
        assert code == 0 and out.strip() == "written", (folder, user, code, out)
    if user:  # root without capabilities cannot write into uid 10001's /models (no CAP_DAC_OVERRIDE)
        code, out = _exec(container, "echo x > /models/probe-root", user=user)
        assert code != 0 and "Permission denied" in out, out
    code, out = _exec(container, "echo x > /run/secrets/twi_asr_api_key", user=user)
    assert code != 0, out  # the secret's mount is read-only too


# ------------------------------------------------------------------ no secret anywhere
def test_no_key_or_token_in_inspect_history_or_logs(engine: Any, server: tuple[Any, str]) -> None:
    container, url = server
    assert _transcribe(url, WRONG_KEY).status_code == 401  # a refused request, logged
    assert _transcribe(url, API_KEY).status_code == 200
    image = engine.images.get(dh.ASR_IMAGE)
    places = {
        "docker inspect (container)": json.dumps(engine.api.inspect_container(container.id)),
        "docker inspect (image)": json.dumps(engine.api.inspect_image(image.id)),
        "docker history": json.dumps(image.history()),
        "docker logs": container.logs(stdout=True, stderr=True).decode("utf-8", "replace"),
    }
    assert "/v1/audio/transcriptions" in places["docker logs"]  # the logs are the server's, with requests
    for where, text in places.items():
        for secret in (API_KEY, HF_TOKEN, WRONG_KEY):
            assert secret not in text, f"{secret} found in {where}"
    # The key is there for the server all the same, in its file; so is the token, for huggingface_hub.
    code, out = _exec(container, "cat /run/secrets/twi_asr_api_key; echo; cat /run/secrets/hf_token")
    assert code == 0 and out.split() == [API_KEY, HF_TOKEN]


def test_models_survive_a_restart_on_the_read_only_root(engine: Any, server: tuple[Any, str]) -> None:
    from twi_asr import containers

    container, url = server
    assert _exec(container, "echo kept > /models/restart-probe")[0] == 0
    container.restart(timeout=10)
    url = containers.wait_ready(container, None, 180)  # a port picked by the engine may change
    assert _exec(container, "cat /models/restart-probe") == (0, "kept\n")
    assert _transcribe(url, API_KEY).status_code == 200


def test_stopping_removes_the_secret_files(engine: Any, image: str, models_volume: str) -> None:
    from twi_asr import containers

    name = f"{PREFIX}-short"
    container = containers.run_server(
        image, name=name, port=None, api_key=API_KEY, models_volume=models_volume, docker_client=engine
    )
    container.reload()
    source = Path(next(m["Source"] for m in container.attrs["Mounts"] if m["Destination"].startswith("/run")))
    assert source.read_text() == API_KEY
    containers.stop(name, docker_client=engine)
    assert not source.exists() and not source.parent.exists()


# ------------------------------------------------------------------ a swarm service
@pytest.fixture(scope="module")
def swarm(engine: Any) -> Iterator[None]:
    """A one-node swarm for the test, left again afterwards if this module made it."""
    before = (engine.info().get("Swarm") or {}).get("LocalNodeState")
    if before != "active":
        engine.swarm.init(advertise_addr="127.0.0.1")
    yield
    for service in engine.services.list():
        if service.name.startswith(PREFIX):
            service.remove()
    if before != "active":
        time.sleep(2)
        engine.swarm.leave(force=True)


def test_a_swarm_service_runs_hardened_with_the_key_as_a_docker_secret(
    engine: Any, image: str, models_volume: str, swarm: None
) -> None:
    from twi_asr import containers

    name = f"{PREFIX}-svc"
    try:
        containers.scale(
            1,
            image=image,
            name=name,
            publish_mode="host",
            api_key=API_KEY,
            env={"HF_TOKEN": HF_TOKEN},
            models_volume=models_volume,
            docker_client=engine,
        )
        containers.wait_replicas(name, 180, docker_client=engine)
        info = containers.wait_service_ready(name, 180, docker_client=engine)
        (url,) = info.urls
        assert _transcribe(url, None).status_code == 401
        answer = _transcribe(url, API_KEY)
        assert answer.status_code == 200 and wer(HELLO_TEXT, answer.json()["text"]) <= MAX_WER
        service = engine.services.get(name)
        spec = service.attrs["Spec"]["TaskTemplate"]
        container_spec = spec["ContainerSpec"]
        assert container_spec["ReadOnly"] is True and container_spec["CapabilityDrop"] == ["ALL"]
        assert container_spec["User"] == "10001:10001"
        assert spec["Resources"]["Limits"]["MemoryBytes"] == 4 * 1024**3
        tmp = [m for m in container_spec["Mounts"] if m["Target"] == "/tmp"]
        assert tmp and tmp[0]["Type"] == "tmpfs"
        assert sorted(s["File"]["Name"] for s in container_spec["Secrets"]) == ["hf_token", "twi_asr_api_key"]
        task = next(t for t in service.tasks() if t["Status"]["State"] == "running")
        replica = engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        host = replica.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        # no-new-privileges: asked for; an engine whose API has no such field for services drops it.
        kept = bool((container_spec.get("Privileges") or {}).get("NoNewPrivileges"))
        assert ("no-new-privileges:true" in (host.get("SecurityOpt") or [])) == kept
        if not kept:
            print(f"engine API {engine.version()['ApiVersion']}: no NoNewPrivileges for services")
        code, out = _exec(replica, "echo x > /etc/probe")
        assert code != 0 and "Read-only file system" in out
        places = {
            "service inspect": json.dumps(engine.api.inspect_service(service.id)),
            "replica inspect": json.dumps(engine.api.inspect_container(replica.id)),
            "replica logs": replica.logs().decode("utf-8", "replace"),
        }
        for where, text in places.items():
            assert API_KEY not in text and HF_TOKEN not in text, where
        ours = engine.secrets.list(filters={"label": f"twi-asr.service={name}"})
        assert len(ours) == 2
    finally:
        containers.stop(name, docker_client=engine)
    assert engine.secrets.list(filters={"label": f"twi-asr.service={name}"}) == []
