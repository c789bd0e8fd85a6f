"""Tests for :mod:`twi_asr.containers` against a fake docker-py client (no Docker engine is touched).

The fakes speak docker-py's shapes (``attrs`` from an inspect, ``api.build``
chunks, task dicts) and raise docker-py's own exception classes, so the error
mapping is tested on the exceptions the real SDK raises.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker import errors as derr
from docker.types import DeviceRequest

from twi_asr import containers
from twi_asr.errors import EnvironmentProblem, InputError, UsageError

MANAGED = {containers.MANAGED_LABEL: "true"}


# ------------------------------------------------------------------ fakes
def api_error(status: int, explanation: str, cls: type[derr.APIError] = derr.APIError) -> derr.APIError:
    """A docker-py APIError as the SDK builds it from an HTTP error response."""
    response = requests.Response()
    response.status_code = status
    response.url = "http+docker://localhost/v1.41/containers/x/start"
    response.reason = "Server Error" if status >= 500 else "Client Error"
    return cls("engine error", response=response, explanation=explanation)


class FakeContainer:
    def __init__(
        self,
        name: str,
        *,
        status: str = "running",
        labels: dict[str, str] | None = None,
        image: str = "twi-asr:cpu",
        port: int | None = 8001,
        host_ip: str = "127.0.0.1",
        health: str | None = None,
        log_text: str = "",
        statuses: list[str] | None = None,
        exit_code: int = 1,
        start_error: Exception | None = None,
    ) -> None:
        self.name = name
        self.id = f"{name}-0123456789abcdef"
        self.attrs: dict[str, Any] = {
            "Config": {"Labels": dict(MANAGED if labels is None else labels), "Image": image},
            "State": {"Status": status, "ExitCode": exit_code},
            "NetworkSettings": {
                "Ports": {"8001/tcp": [{"HostIp": host_ip, "HostPort": str(port)}]} if port else {}
            },
            "HostConfig": {},
        }
        if health:
            self.attrs["State"]["Health"] = {"Status": health}
        self.log_text = log_text
        self.statuses = list(statuses or [])
        self.start_error = start_error
        self.calls: list[str] = []

    @property
    def status(self) -> str:
        return str(self.attrs["State"]["Status"])

    def reload(self) -> None:
        self.calls.append("reload")
        if self.statuses:
            self.attrs["State"]["Status"] = self.statuses.pop(0)

    def start(self) -> None:
        self.calls.append("start")
        if self.start_error is not None:
            raise self.start_error
        self.attrs["State"]["Status"] = "running"

    def stop(self, timeout: int = 10) -> None:
        self.calls.append("stop")
        self.attrs["State"]["Status"] = "exited"

    def remove(self, force: bool = False) -> None:
        self.calls.append("remove")

    def logs(self, stream: bool = False, tail: int | str = "all", **_: Any) -> Any:
        lines = self.log_text.splitlines(keepends=True)
        if isinstance(tail, int):
            lines = lines[-tail:] if tail else []
        data = "".join(lines).encode()
        if stream:  # chunks that cut lines in two, as the engine's stream does
            return iter([data[i : i + 7] for i in range(0, len(data), 7)])
        return data


class FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.items: dict[str, FakeContainer] = {}
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.create_error: Exception | None = None
        self.start_error: Exception | None = None
        self.list_filters: list[Any] = []

    def add(self, container: FakeContainer) -> FakeContainer:
        self.items[container.name] = container
        return container

    def create(self, image: str, **kwargs: Any) -> FakeContainer:
        self.created.append((image, kwargs))
        if self.create_error is not None:
            raise self.create_error
        host = kwargs["ports"]["8001/tcp"]
        port = host[1] or 49153  # the engine picks a free port for None
        c = FakeContainer(
            kwargs["name"],
            status="created",
            labels=kwargs["labels"],
            image=image,
            port=port,
            host_ip=host[0],
            start_error=self.start_error,
        )
        c.statuses = list(self.client.next_statuses)
        c.log_text = self.client.next_logs
        return self.add(c)

    def get(self, name: str) -> FakeContainer:
        if name not in self.items:
            raise api_error(404, f"No such container: {name}", derr.NotFound)
        return self.items[name]

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:
        self.list_filters.append(filters)
        out = list(self.items.values())
        if not all:
            out = [c for c in out if c.status == "running"]
        label = (filters or {}).get("label")
        if label:
            key, _, value = label.partition("=")
            out = [c for c in out if c.attrs["Config"]["Labels"].get(key) == value]
        return out


class FakeService:
    def __init__(
        self,
        name: str,
        image: str,
        replicas: int,
        port: int | None,
        labels: dict[str, str],
        endpoint_spec: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.id = f"svc-{name}-0123456789"
        self.attrs: dict[str, Any] = {
            "Spec": {
                "Name": name,
                "Labels": dict(labels),
                "Mode": {"Replicated": {"Replicas": replicas}},
                "TaskTemplate": {"ContainerSpec": {"Image": f"{image}@sha256:abc"}},
                "EndpointSpec": dict(endpoint_spec or {}),
            },
            "Endpoint": {"Ports": [{"TargetPort": 8001, "PublishedPort": port}] if port else []},
        }
        self.running: int | None = None  # None: every wanted replica runs
        self.updates: list[dict[str, Any]] = []
        self.kwargs: dict[str, Any] = {}
        self.removed = False
        self.failed_task: str | None = None

    def reload(self) -> None:
        pass

    def tasks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        wanted = self.attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
        running = wanted if self.running is None else self.running
        ports = self.attrs["Spec"]["EndpointSpec"].get("Ports", [])
        host = any(p.get("PublishMode") == "host" for p in ports)
        tasks: list[dict[str, Any]] = []
        for i in range(wanted):
            status: dict[str, Any] = {"State": "running" if i < running else "starting"}
            if host and i < running:  # the engine picks a host port per task
                status["PortStatus"] = {
                    "Ports": [{"TargetPort": 8001, "PublishedPort": 30000 + i, "PublishMode": "host"}]
                }
            tasks.append({"DesiredState": "running", "Status": status})
        if self.failed_task:
            tasks.append({"DesiredState": "shutdown", "Status": {"State": "failed", "Err": self.failed_task}})
        return tasks

    def apply(self, kwargs: dict[str, Any]) -> None:
        """The task template fields of create/update kwargs, as the engine would store them."""
        container = self.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
        fields = {"env": "Env", "secrets": "Secrets", "read_only": "ReadOnly", "cap_drop": "CapabilityDrop"}
        fields.update({"user": "User", "mounts": "Mounts", "privileges": "Privileges"})
        for key, field in fields.items():
            if key in kwargs:
                container[field] = kwargs[key]
        if "resources" in kwargs:
            self.attrs["Spec"]["TaskTemplate"]["Resources"] = dict(kwargs["resources"])
        self.kwargs.update(kwargs)

    def update(self, **kwargs: Any) -> None:
        self.updates.append(kwargs)
        self.apply(kwargs)
        if "mode" in kwargs:
            self.attrs["Spec"]["Mode"] = {"Replicated": {"Replicas": kwargs["mode"].replicas}}
        if "image" in kwargs:
            self.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = kwargs["image"]
        if "endpoint_spec" in kwargs:
            self.attrs["Spec"]["EndpointSpec"] = dict(kwargs["endpoint_spec"])
            published = kwargs["endpoint_spec"]["Ports"][0].get("PublishedPort")
            ports = [{"TargetPort": 8001, "PublishedPort": published}] if published else []
            self.attrs["Endpoint"]["Ports"] = ports

    def remove(self) -> None:
        self.removed = True

    def logs(self, **_: Any) -> Iterator[bytes]:
        return iter([b"svc line 1\nsvc line 2\n"])


class FakeServices:
    def __init__(self) -> None:
        self.items: dict[str, FakeService] = {}
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create(self, image: str, **kwargs: Any) -> FakeService:
        self.created.append((image, kwargs))
        replicas = kwargs["mode"].replicas  # docker-py's ServiceMode; the engine answers "Replicated"
        spec = kwargs["endpoint_spec"]
        port = spec["Ports"][0].get("PublishedPort")
        s = FakeService(kwargs["name"], image, replicas, port, kwargs.get("labels") or {}, spec)
        s.apply(kwargs)
        self.items[s.name] = s
        return s

    def list(self, filters: dict[str, Any] | None = None) -> list[FakeService]:
        out = list(self.items.values())
        filters = filters or {}
        if "name" in filters:
            out = [s for s in out if s.name.startswith(filters["name"])]
        if "label" in filters:
            key, _, value = filters["label"].partition("=")
            out = [s for s in out if s.attrs["Spec"]["Labels"].get(key) == value]
        return out


class FakeSecret:
    def __init__(
        self, store: FakeSecrets, number: int, name: str, data: bytes, labels: dict[str, str]
    ) -> None:
        self.store = store
        self.id = f"secret{number:04d}"
        self.name = name
        self.data = data
        self.attrs: dict[str, Any] = {"ID": self.id, "Spec": {"Name": name, "Labels": dict(labels)}}

    def reload(self) -> None:
        pass

    def remove(self) -> None:
        self.store.items.pop(self.id)
        self.store.removed.append(self.id)


class FakeSecrets:
    def __init__(self) -> None:
        self.items: dict[str, FakeSecret] = {}
        self.removed: list[str] = []

    def create(self, name: str, data: bytes, labels: dict[str, str] | None = None) -> FakeSecret:
        secret = FakeSecret(self, len(self.items) + len(self.removed) + 1, name, data, labels or {})
        self.items[secret.id] = secret
        return secret

    def get(self, secret_id: str) -> FakeSecret:
        if secret_id not in self.items:
            raise api_error(404, f"secret {secret_id} not found", derr.NotFound)
        return self.items[secret_id]

    def list(self, filters: dict[str, Any] | None = None) -> list[FakeSecret]:
        key, _, value = str((filters or {}).get("label") or "").partition("=")
        return [s for s in self.items.values() if not key or s.attrs["Spec"]["Labels"].get(key) == value]


class FakeAPI:
    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.build_kwargs: dict[str, Any] = {}

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.build_kwargs = kwargs
        return iter(self.chunks)


class FakeImages:
    def __init__(self) -> None:
        self.known = {"twi-asr:cpu": "sha256:cpu", "twi-asr:cuda": "sha256:cuda", "twi-asr:v2": "sha256:v2"}

    def get(self, name: str) -> Any:
        if name not in self.known:
            raise api_error(404, f"No such image: {name}", derr.ImageNotFound)
        return type("Image", (), {"id": self.known[name], "tags": [name]})()


class FakeSwarm:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.init_calls: list[dict[str, Any]] = []

    def init(self, **kwargs: Any) -> str:
        self.init_calls.append(kwargs)
        self.client.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
        return "node-id"


class FakeClient:
    def __init__(self) -> None:
        self.containers = FakeContainers(self)
        self.services = FakeServices()
        self.secrets = FakeSecrets()
        self.api = FakeAPI()
        self.images = FakeImages()
        self.swarm = FakeSwarm(self)
        self.swarm_state: dict[str, Any] = {"LocalNodeState": "inactive", "ControlAvailable": False}
        self.next_statuses: list[str] = []
        self.next_logs = ""
        self.ncpu = 8

    def ping(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        return {"Swarm": dict(self.swarm_state), "NCPU": self.ncpu}


def install_fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None) -> FakeClient:
    """A fake engine that every ``containers`` function gets from ``containers.client()``.

    Container secret files go under ``tmp_path/run`` (``$XDG_RUNTIME_DIR``; a new temporary folder
    without ``tmp_path``), never into the user's own folder.
    """
    run_dir = (tmp_path / "run") if tmp_path is not None else Path(tempfile.mkdtemp(prefix="twi-asr-fake-"))
    run_dir.mkdir(exist_ok=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
    client = FakeClient()
    monkeypatch.setattr(containers.errors, "client", lambda **_: client)  # where _dc() looks it up
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    monkeypatch.setattr(containers.swarm, "_ipvs_present", lambda: True)  # a kernel with a working mesh
    return client


def install_http(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Answers of the fake server: path suffix -> (status, body) or None (nothing answers)."""
    answers: dict[str, Any] = {"/health": (200, {"status": "ok"}), "/ready": (200, {"status": "ready"})}
    seen: list[str] = []

    def get(url: str, *, timeout: float = 5.0) -> tuple[int, dict[str, Any]] | None:
        seen.append(url)
        for suffix, answer in answers.items():
            if url.endswith(suffix):
                return answer
        return None

    for part in (containers.run, containers.swarm, containers.manage):  # each imports _http_get
        monkeypatch.setattr(part, "_http_get", get)
    answers["seen"] = seen
    return answers


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeClient:
    return install_fake(monkeypatch, tmp_path)


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return install_http(monkeypatch)


def no_engine_error(reason: str = "FileNotFoundError(2, 'No such file or directory')") -> Exception:
    """What ``docker.from_env()`` raises when nothing listens on the socket."""
    cause = requests.exceptions.ConnectionError(f"('Connection aborted.', {reason})")
    exc = derr.DockerException(f"Error while fetching server API version: ('Connection aborted.', {reason})")
    exc.__cause__ = cause
    return exc


# ------------------------------------------------------------------ errors
def test_no_engine_maps_to_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_env(**_: Any) -> Any:
        raise no_engine_error()

    monkeypatch.setattr(docker, "from_env", from_env)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere/docker.sock")
    with pytest.raises(EnvironmentProblem) as info:
        containers.client()
    assert info.value.exit_code == 3
    assert "cannot reach the Docker engine (is dockerd running? DOCKER_HOST=unix:///nowhere/docker.sock)" in (
        info.value.message
    )
    assert "No such file or directory" in info.value.message
    assert "\n" not in info.value.message


def test_connection_refused_and_lost_connection_map_to_no_engine() -> None:
    refused = derr.DockerException(
        "Error while fetching server API version: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries "
        'exceeded (Caused by NewConnectionError("Failed to establish a new connection: [Errno 111] '
        'Connection refused"))'
    )
    mapped = containers.map_docker_error(refused)
    assert isinstance(mapped, EnvironmentProblem)
    assert "cannot reach the Docker engine" in mapped.message and "Connection refused" in mapped.message
    lost = requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())")
    mapped = containers.map_docker_error(lost, action="stopping")
    assert isinstance(mapped, EnvironmentProblem) and "cannot reach the Docker engine" in mapped.message


def test_permission_denied_names_the_docker_group() -> None:
    mapped = containers.map_docker_error(no_engine_error("PermissionError(13, 'Permission denied')"))
    assert isinstance(mapped, EnvironmentProblem) and mapped.exit_code == 3
    assert "docker group" in mapped.message and "usermod -aG docker" in mapped.message


@pytest.mark.parametrize(
    ("exc", "context", "expected"),
    [
        (
            api_error(404, "No such image: twi-asr:cpu", derr.ImageNotFound),
            {"image": "twi-asr:cpu"},
            "twi-asr docker build --tag twi-asr:cpu",
        ),
        (
            api_error(
                500,
                "driver failed programming external connectivity on endpoint twi-asr: Bind for "
                "127.0.0.1:8001 failed: port is already allocated",
            ),
            {"port": 8001},
            "port 8001 is already in use",
        ),
        (
            api_error(500, "listen tcp4 127.0.0.1:9000: bind: address already in use"),
            {"port": 9000},
            "port 9000 is already in use",
        ),
        (
            api_error(500, 'could not select device driver "" with capabilities: [[gpu]]'),
            {"gpu": True},
            "no NVIDIA runtime",
        ),
        (
            api_error(409, 'Conflict. The container name "/twi-asr" is already in use by container "ab"'),
            {"name": "twi-asr"},
            "a container named twi-asr already exists",
        ),
        (
            api_error(503, 'This node is not a swarm manager. Use "docker swarm init"'),
            {},
            "--init-swarm",
        ),
        (api_error(500, "something odd happened"), {}, "Docker engine error while testing: something odd"),
        (requests.exceptions.ReadTimeout("Read timed out."), {}, "did not answer in time"),
    ],
)
def test_engine_errors_map_to_one_line_environment_problems(
    exc: Exception, context: dict[str, Any], expected: str
) -> None:
    mapped = containers.map_docker_error(exc, action="testing", **context)
    assert isinstance(mapped, EnvironmentProblem)
    assert mapped.exit_code == 3
    assert expected in mapped.message
    assert "\n" not in mapped.message and "Traceback" not in mapped.message


def test_a_bug_is_not_disguised_as_an_engine_problem() -> None:
    assert containers.map_docker_error(ValueError("bug")) is None


# ------------------------------------------------------------------ build
def _context(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_text("FROM scratch\n")
    return tmp_path


def test_build_streams_lines_as_they_come_and_returns_the_image_id(fake: FakeClient, tmp_path: Path) -> None:
    fake.api.chunks = [
        {"stream": "Step 1/2 : FROM base\n"},
        {"stream": " ---> abc\n"},
        {"status": "Pulling fs layer", "id": "l1"},
        {"status": "Downloading", "progress": "[==>  ]", "id": "l1"},
        {"stream": "Step 2/2 : RUN pip ins"},
        {"stream": "tall .\nCollecting numpy\n"},
        {"aux": {"ID": "sha256:feed"}},
        {"stream": "Successfully built feed\nSuccessfully tagged twi-asr:cpu\n"},
    ]
    lines: list[str] = []
    image_id = containers.build_image(
        _context(tmp_path, "Dockerfile"),
        tag="twi-asr:cpu",
        build_args={"BASE_IMAGE": "local:base", "MODEL": "tiny.en"},
        on_line=lines.append,
    )
    assert image_id == "sha256:feed"
    assert lines == [
        "Step 1/2 : FROM base",
        " ---> abc",
        "l1: Pulling fs layer",
        "Step 2/2 : RUN pip install .",
        "Collecting numpy",
        "Successfully built feed",
        "Successfully tagged twi-asr:cpu",
    ]
    kwargs = fake.api.build_kwargs
    assert kwargs["path"] == str(tmp_path) and kwargs["dockerfile"] == "Dockerfile"
    assert kwargs["tag"] == "twi-asr:cpu" and kwargs["decode"] is True and kwargs["rm"] is True
    assert kwargs["buildargs"] == {"BASE_IMAGE": "local:base", "MODEL": "tiny.en"}


def test_build_without_aux_reads_the_successfully_built_line(fake: FakeClient, tmp_path: Path) -> None:
    fake.api.chunks = [{"stream": "Step 1/1 : FROM base\n"}, {"stream": "Successfully built 0a1b2c\n"}]
    assert containers.build_image(_context(tmp_path, "Dockerfile"), tag="t:1") == "0a1b2c"


def test_build_failure_names_the_step_and_keeps_its_last_20_lines(fake: FakeClient, tmp_path: Path) -> None:
    fake.api.chunks = [
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": "first step output\n"},
        {"stream": "Step 2/3 : RUN pip install torch\n"},
        *({"stream": f"pip line {i}\n"} for i in range(30)),
        {
            "errorDetail": {"code": 1, "message": "The command '/bin/sh -c pip install torch' returned 1"},
            "error": "The command '/bin/sh -c pip install torch' returned a non-zero code: 1",
        },
        {"stream": "never read\n"},
    ]
    lines: list[str] = []
    with pytest.raises(containers.ImageBuildError) as info:
        containers.build_image(
            _context(tmp_path, "Dockerfile.cuda"),
            tag="twi-asr:cuda",
            dockerfile="Dockerfile.cuda",
            on_line=lines.append,
        )
    err = info.value
    assert err.exit_code == 3 and isinstance(err, EnvironmentProblem)
    assert err.step == "Step 2/3 : RUN pip install torch"
    assert err.summary.startswith("docker build of twi-asr:cuda failed at Step 2/3 : RUN pip install torch: ")
    assert "returned a non-zero code: 1" in err.summary
    assert len(err.log_tail) == 20 and err.log_tail[-1] == "pip line 29"
    assert "first step output" not in err.message and "pip line 29" in err.message
    assert "never read" not in lines


def test_build_failure_on_a_base_image_pull_suggests_base_image(fake: FakeClient, tmp_path: Path) -> None:
    fake.api.chunks = [
        {"stream": "Step 1/5 : FROM python:3.11-slim\n"},
        {"error": "pull access denied for python, repository does not exist or may require 'docker login'"},
    ]
    with pytest.raises(containers.ImageBuildError, match="--base-image"):
        containers.build_image(_context(tmp_path, "Dockerfile"), tag="twi-asr:cpu")


def test_build_without_a_dockerfile_is_a_usage_error(fake: FakeClient, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"Dockerfile\.cuda: no such Dockerfile"):
        containers.build_image(tmp_path, tag="t", dockerfile="Dockerfile.cuda")
    assert fake.api.build_kwargs == {}


# ------------------------------------------------------------------ run
HARDENED = {
    "user": "10001:10001",
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m,mode=1777"},
    "security_opt": ["no-new-privileges:true"],
    "cap_drop": ["ALL"],
    "mem_limit": 4 * 1024**3,
    "nano_cpus": 2_000_000_000,
}


def test_run_server_labels_publishes_and_configures(fake: FakeClient, tmp_path: Path) -> None:
    container = containers.run_server(
        "twi-asr:cpu", name="asr", port=8010, model="tiny.en", env={"TWI_ASR_LOG_JSON": "1"}, api_key="k3y"
    )
    image, kwargs = fake.containers.created[0]
    assert image == "twi-asr:cpu"
    assert kwargs["name"] == "asr" and kwargs["detach"] is True
    assert kwargs["labels"] == {"twi-asr.managed": "true"}
    assert kwargs["ports"] == {"8001/tcp": ("127.0.0.1", 8010)}
    assert kwargs["restart_policy"] == {"Name": "no"}
    assert kwargs["environment"] == {
        "TWI_ASR_LOG_JSON": "1",
        "TWI_ASR_API_KEY_FILE": "/run/secrets/twi_asr_api_key",  # the key as a file, never as a variable
        "TWI_ASR_PORT": "8001",
        "TWI_ASR_MODEL": "tiny.en",
        "TWI_ASR_IMAGE_ID": "sha256:cpu",
    }
    assert {k: kwargs[k] for k in HARDENED} == HARDENED
    key_file = tmp_path / "run" / "twi-asr" / "secrets" / "asr" / "twi_asr_api_key"
    assert kwargs["volumes"] == {
        str(key_file): {"bind": "/run/secrets/twi_asr_api_key", "mode": "ro"},
        "twi-asr-models": {"bind": "/models", "mode": "rw"},  # the named volume: models survive restarts
    }
    assert key_file.read_text() == "k3y"
    assert key_file.stat().st_mode & 0o777 == 0o644  # uid 10001 reads it through the mount ...
    assert key_file.parent.stat().st_mode & 0o777 == 0o700  # ... while the host's other users cannot
    assert "k3y" not in repr(kwargs)
    assert "device_requests" not in kwargs
    assert container.calls[:1] == ["start"]
    assert containers.container_url(container) == "http://127.0.0.1:8010"
    containers.stop("asr")
    assert not key_file.parent.exists()  # the secret goes with the container


def test_run_server_gpu_public_any_port_and_volumes(fake: FakeClient, tmp_path: Path) -> None:
    container = containers.run_server(
        "twi-asr:cuda", gpu=True, port=None, bind="0.0.0.0", volumes={str(tmp_path): "/models:ro"}
    )
    _, kwargs = fake.containers.created[0]
    assert kwargs["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert kwargs["ports"] == {"8001/tcp": ("0.0.0.0", None)}
    # The user's own /models: no named volume over it, and no secret to mount.
    assert kwargs["volumes"] == {str(tmp_path.resolve()): {"bind": "/models", "mode": "ro"}}
    assert {k: kwargs[k] for k in HARDENED} == HARDENED  # a GPU container is hardened the same way
    assert (
        "TWI_ASR_MODEL" not in kwargs["environment"] and "TWI_ASR_API_KEY_FILE" not in kwargs["environment"]
    )
    assert containers.container_url(container) == "http://127.0.0.1:49153"


def test_run_server_limits_volume_and_secrets_from_the_env(fake: FakeClient, tmp_path: Path) -> None:
    env = {"TWI_ASR_API_KEY": "from-env", "HF_TOKEN": "hf_fake123", "TWI_ASR_LOG_JSON": "1"}
    containers.run_server(
        "twi-asr:cpu",
        env=env,
        memory="512m",
        cpus="0.5",
        models_volume="mine",
        volumes={str(tmp_path): "/data"},
    )
    _, kwargs = fake.containers.created[0]
    assert (kwargs["mem_limit"], kwargs["nano_cpus"]) == (512 * 1024**2, 500_000_000)
    assert kwargs["environment"]["TWI_ASR_API_KEY_FILE"] == "/run/secrets/twi_asr_api_key"
    assert kwargs["environment"]["HF_TOKEN_PATH"] == "/run/secrets/hf_token"  # read by huggingface_hub
    assert not {"TWI_ASR_API_KEY", "HF_TOKEN"} & set(kwargs["environment"])
    assert "from-env" not in repr(kwargs) and "hf_fake123" not in repr(kwargs)
    secrets_dir = tmp_path / "run" / "twi-asr" / "secrets" / "twi-asr"
    assert (secrets_dir / "hf_token").read_text() == "hf_fake123"
    binds = {v["bind"]: k for k, v in kwargs["volumes"].items()}
    assert binds["/models"] == "mine" and binds["/data"] == str(tmp_path.resolve())
    assert binds["/run/secrets/twi_asr_api_key"] == str(secrets_dir / "twi_asr_api_key")
    # --api-key wins over the variable; models_volume None mounts nothing on /models.
    containers.remove("twi-asr")
    assert not secrets_dir.exists()
    containers.run_server("twi-asr:cpu", name="asr2", env=env, api_key="flag", models_volume=None)
    _, kwargs = fake.containers.created[1]
    assert (secrets_dir.with_name("asr2") / "twi_asr_api_key").read_text() == "flag"
    assert "/models" not in {v["bind"] for v in kwargs["volumes"].values()}


def test_run_server_cpus_default_fits_the_engine_and_bad_limits_are_usage_errors(fake: FakeClient) -> None:
    fake.ncpu = 1
    containers.run_server("twi-asr:cpu")
    assert fake.containers.created[0][1]["nano_cpus"] == 1_000_000_000  # the default 2, capped at 1
    containers.remove("twi-asr")
    with pytest.raises(UsageError, match=r"--cpus 2: this Docker engine has 1 CPUs") as info:
        containers.run_server("twi-asr:cpu", cpus="2")
    assert info.value.exit_code == 2
    for memory, message in [("lots", "expected a size"), ("1k", "at least 6m"), ("0", "at least 6m")]:
        with pytest.raises(UsageError, match=message):
            containers.run_server("twi-asr:cpu", memory=memory)
    for cpus in ("many", "0", "-1", "nan", "inf"):
        with pytest.raises(UsageError, match="--cpus"):
            containers.run_server("twi-asr:cpu", cpus=cpus)
    assert len(fake.containers.created) == 1  # no container made for a bad value


@pytest.mark.parametrize(
    ("text", "size"),
    [("4g", 4 * 1024**3), ("512m", 512 * 1024**2), ("1.5G", 1536 * 1024**2), ("2GiB", 2 * 1024**3)]
    + [("64mb", 64 * 1024**2), ("1073741824", 1024**3), (" 8 g ", 8 * 1024**3), ("1t", 1024**4)],
)
def test_parse_memory_reads_docker_sizes(text: str, size: int) -> None:
    from twi_asr.containers.hardening import parse_memory

    assert parse_memory(text) == size


def test_run_server_start_failure_removes_the_secret_files(fake: FakeClient, tmp_path: Path) -> None:
    fake.containers.start_error = api_error(500, "Bind for 127.0.0.1:8001 failed: port is already allocated")
    with pytest.raises(EnvironmentProblem, match="port 8001 is already in use"):
        containers.run_server("twi-asr:cpu", api_key="k")
    assert not (tmp_path / "run" / "twi-asr" / "secrets" / "twi-asr").exists()


def test_run_server_missing_image_suggests_build(fake: FakeClient) -> None:
    fake.containers.create_error = api_error(404, "No such image: twi-asr:cpu", derr.ImageNotFound)
    with pytest.raises(EnvironmentProblem, match=r"twi-asr docker build --tag twi-asr:cpu") as info:
        containers.run_server("twi-asr:cpu")
    assert info.value.exit_code == 3


def test_run_server_port_taken_names_the_port_and_removes_the_created_container(fake: FakeClient) -> None:
    fake.containers.start_error = api_error(500, "Bind for 127.0.0.1:8001 failed: port is already allocated")
    with pytest.raises(EnvironmentProblem, match="port 8001 is already in use"):
        containers.run_server("twi-asr:cpu", port=8001)
    assert fake.containers.items["twi-asr"].calls == ["start", "remove"]


def test_run_server_gpu_without_nvidia_runtime(fake: FakeClient) -> None:
    fake.containers.start_error = api_error(
        500, 'could not select device driver "" with capabilities: [[gpu]]'
    )
    with pytest.raises(EnvironmentProblem, match="--gpu: this Docker engine has no NVIDIA runtime"):
        containers.run_server("twi-asr:cuda", gpu=True)


def test_run_server_replaces_our_stopped_container_but_not_a_running_one(fake: FakeClient) -> None:
    old = fake.containers.add(FakeContainer("twi-asr", status="exited"))
    containers.run_server("twi-asr:cpu")
    assert old.calls == ["remove"] and len(fake.containers.created) == 1
    with pytest.raises(EnvironmentProblem, match="already running .*twi-asr docker stop twi-asr"):
        containers.run_server("twi-asr:cpu")


def test_run_server_refuses_a_name_that_is_not_ours(fake: FakeClient) -> None:
    theirs = fake.containers.add(FakeContainer("twi-asr", status="exited", labels={}))
    with pytest.raises(EnvironmentProblem, match="not started by twi-asr"):
        containers.run_server("twi-asr:cpu")
    assert theirs.calls == [] and fake.containers.created == []


# ------------------------------------------------------------------ wait
def test_wait_ready_returns_the_url_once_ready(fake: FakeClient, http: dict[str, Any]) -> None:
    container = fake.containers.add(FakeContainer("asr", port=8123))
    assert containers.wait_ready(container, None, timeout_s=5) == "http://127.0.0.1:8123"
    assert http["seen"] == ["http://127.0.0.1:8123/ready"]
    assert container.calls == ["reload"]


def test_wait_ready_when_the_container_dies_shows_its_last_30_lines(
    fake: FakeClient, http: dict[str, Any]
) -> None:
    http["/ready"] = (503, {"status": "loading", "detail": "loading model twi"})
    logs = "".join(f"log line {i}\n" for i in range(40)) + "ModelNotFoundError: no model 'nope'\n"
    container = fake.containers.add(
        FakeContainer("asr", statuses=["running", "running", "exited"], log_text=logs, exit_code=3)
    )
    waits: list[str] = []
    with pytest.raises(containers.ContainerFailed) as info:
        containers.wait_ready(container, "http://127.0.0.1:8001", timeout_s=60, on_wait=waits.append)
    err = info.value
    assert err.exit_code == 3
    assert err.summary == "container asr exited (code 3) before it was ready"
    assert len(err.log_tail) == 30 and err.log_tail[-1] == "ModelNotFoundError: no model 'nope'"
    assert "log line 11" in err.message and "log line 10\n" not in err.message
    assert waits and "loading model twi" in waits[0]


def test_wait_ready_says_when_the_memory_limit_killed_it(fake: FakeClient, http: dict[str, Any]) -> None:
    container = fake.containers.add(FakeContainer("asr", statuses=["exited"], exit_code=137))
    container.attrs["State"]["OOMKilled"] = True
    with pytest.raises(containers.ContainerFailed, match=r"asr was killed for using more memory .*--memory"):
        containers.wait_ready(container, None, timeout_s=5)


def test_wait_ready_times_out_with_the_last_lines(fake: FakeClient, http: dict[str, Any]) -> None:
    http["/ready"] = None  # nothing answers yet
    container = fake.containers.add(FakeContainer("asr", log_text="still downloading\n"))
    with pytest.raises(
        containers.ContainerFailed, match=r"not ready at http://127.0.0.1:8001 after 0 s"
    ) as info:
        containers.wait_ready(container, None, timeout_s=0)
    assert info.value.log_tail == ["still downloading"]


def test_wait_ready_stops_at_once_when_the_model_failed_to_load(
    fake: FakeClient, http: dict[str, Any]
) -> None:
    http["/ready"] = (503, {"status": "error", "detail": "model twi not found"})
    container = fake.containers.add(FakeContainer("asr", log_text="boom\n"))
    with pytest.raises(containers.ContainerFailed, match="failed to start .error: model twi not found"):
        containers.wait_ready(container, None, timeout_s=600)


# ------------------------------------------------------------------ inspect / stop / logs / health
def test_list_managed_shows_only_ours(fake: FakeClient) -> None:
    fake.containers.add(FakeContainer("b-asr", health="healthy", port=8002))
    fake.containers.add(FakeContainer("a-asr", status="exited", port=None))
    fake.containers.add(FakeContainer("postgres", labels={"other": "x"}))
    found = containers.list_managed()
    assert [i.name for i in found] == ["a-asr", "b-asr"]
    b = found[1]
    assert (b.status, b.health, b.image, b.url) == (
        "running",
        "healthy",
        "twi-asr:cpu",
        "http://127.0.0.1:8002",
    )
    assert b.ports == {"8001/tcp": "127.0.0.1:8002"} and b.id == "b-asr-012345"
    assert found[0].health == "none" and found[0].url is None
    assert fake.containers.list_filters[-1] == {"label": "twi-asr.managed=true"}


def test_stop_all_touches_only_labelled_containers(fake: FakeClient) -> None:
    ours = [fake.containers.add(FakeContainer(n)) for n in ("asr-1", "asr-2")]
    dead = fake.containers.add(FakeContainer("asr-3", status="exited"))
    theirs = fake.containers.add(FakeContainer("web", labels={"app": "web"}))
    fake.containers.list = lambda all=False, filters=None: list(fake.containers.items.values())  # type: ignore[method-assign]
    done = containers.stop(all_managed=True)  # even if the engine ignored the label filter
    assert done == ["container asr-1", "container asr-2", "container asr-3"]
    assert all(c.calls == ["stop", "remove"] for c in ours)
    assert dead.calls == ["remove"]
    assert theirs.calls == []


def test_stop_one_keeps_or_removes_and_refuses_unknown_or_foreign(fake: FakeClient) -> None:
    c = fake.containers.add(FakeContainer("twi-asr"))
    assert containers.stop("twi-asr", keep=True) == ["container twi-asr"]
    assert c.calls == ["stop"]
    with pytest.raises(EnvironmentProblem, match="no twi-asr container or service named nope"):
        containers.stop("nope")
    fake.containers.add(FakeContainer("db", labels={}))
    with pytest.raises(EnvironmentProblem, match="not started by twi-asr"):
        containers.stop("db")
    with pytest.raises(UsageError):
        containers.stop()


def test_stop_all_removes_our_services_too(fake: FakeClient) -> None:
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    ours = fake.services.create("twi-asr:cpu", **_service_kwargs("twi-asr", labels=MANAGED))
    theirs = fake.services.create("nginx", **_service_kwargs("web", labels={}))
    assert containers.stop(all_managed=True) == ["service twi-asr"]
    assert ours.removed and not theirs.removed


def test_logs_yields_whole_lines(fake: FakeClient) -> None:
    fake.containers.add(FakeContainer("twi-asr", log_text="".join(f"line {i}\n" for i in range(10))))
    assert list(containers.logs("twi-asr", tail=3)) == ["line 7", "line 8", "line 9"]
    with pytest.raises(EnvironmentProblem, match="no twi-asr container or service named x"):
        list(containers.logs("x"))


def test_health_of_a_url_and_of_a_container(fake: FakeClient, http: dict[str, Any]) -> None:
    assert containers.health("http://localhost:8001/") == {
        "url": "http://localhost:8001",
        "alive": True,
        "ready": True,
        "ready_status": "ready",
        "detail": None,
    }
    fake.containers.add(FakeContainer("twi-asr", health="healthy", port=8005))
    report = containers.health("twi-asr")
    assert report["status"] == "running" and report["health"] == "healthy"
    assert report["url"] == "http://127.0.0.1:8005" and report["ready"] is True
    http["/health"] = None
    assert containers.health("http://localhost:1")["ready"] is False
    with pytest.raises(EnvironmentProblem, match="and not a URL"):
        containers.health("nope")


# ------------------------------------------------------------------ swarm
def _service_kwargs(
    name: str, *, labels: dict[str, str], replicas: int = 1, port: int = 8001, hardened: bool = True
) -> dict[str, Any]:
    """What a service made by ``scale`` was created with (``hardened`` False: one made before it was)."""
    from docker.types import EndpointSpec, ServiceMode

    from twi_asr.containers.hardening import Limits, service_kwargs

    limits = Limits(memory_bytes=4 * 1024**3, nano_cpus=2_000_000_000)
    return {
        "name": name,
        "labels": labels,
        "mode": ServiceMode("replicated", replicas=replicas),
        "endpoint_spec": EndpointSpec(ports={port: 8001}),
        "env": ["TWI_ASR_PORT=8001", "TWI_ASR_IMAGE_ID=sha256:cpu"],
        **(service_kwargs(limits, models_volume="twi-asr-models") if hardened else {}),
    }


def test_scale_without_a_swarm_refuses_unless_asked(fake: FakeClient) -> None:
    with pytest.raises(EnvironmentProblem, match="pass --init-swarm") as info:
        containers.scale(3)
    assert info.value.exit_code == 3
    assert fake.swarm.init_calls == [] and fake.services.created == []


def test_scale_init_swarm_creates_a_labelled_service(fake: FakeClient) -> None:
    info = containers.scale(3, init_swarm=True, port=8100, model="tiny.en")
    assert fake.swarm.init_calls == [{"advertise_addr": "127.0.0.1"}]
    image, kwargs = fake.services.created[0]
    assert image == "twi-asr:cpu" and kwargs["name"] == "twi-asr"
    assert kwargs["labels"] == {"twi-asr.managed": "true"}
    assert kwargs["container_labels"] == {"twi-asr.service": "twi-asr"}  # swarm's containers: not "managed"
    assert kwargs["mode"].mode == "replicated" and kwargs["mode"].replicas == 3
    assert kwargs["endpoint_spec"]["Ports"][0]["PublishedPort"] == 8100
    assert kwargs["endpoint_spec"]["Ports"][0]["TargetPort"] == 8001
    assert "TWI_ASR_MODEL=tiny.en" in kwargs["env"] and "TWI_ASR_IMAGE_ID=sha256:cpu" in kwargs["env"]
    assert kwargs["update_config"]["Order"] == "start-first"
    assert (info.name, info.replicas, info.running, info.port) == ("twi-asr", 3, 3, 8100)
    assert info.image == "twi-asr:cpu" and info.url == "http://127.0.0.1:8100"
    # Every replica hardened as `docker run`'s container is, but for no-new-privileges (asked; this
    # engine's API drops it).
    assert (kwargs["user"], kwargs["read_only"], kwargs["cap_drop"]) == ("10001:10001", True, ["ALL"])
    assert kwargs["privileges"] == {"NoNewPrivileges": True}
    assert kwargs["resources"] == {"Limits": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 4 * 1024**3}}
    tmp, models = kwargs["mounts"]
    assert (tmp["Type"], tmp["Target"], tmp["TmpfsOptions"]) == (
        "tmpfs",
        "/tmp",
        {"SizeBytes": 512 * 1024**2, "Mode": 0o1777},
    )
    assert (models["Type"], models["Source"], models["Target"]) == ("volume", "twi-asr-models", "/models")
    assert kwargs["secrets"] == [] and fake.secrets.items == {}


def test_scale_an_existing_service_and_roll_it_to_a_new_image(fake: FakeClient) -> None:
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    service = fake.services.create("twi-asr:cpu", **_service_kwargs("twi-asr", labels=MANAGED, replicas=2))
    containers.scale(2)
    assert service.updates == []  # nothing to change
    containers.scale(5)
    assert list(service.updates[-1]) == ["mode"] and service.updates[-1]["mode"].replicas == 5
    info = containers.scale(5, update_image="twi-asr:v2")
    update = service.updates[-1]
    assert update["image"] == "twi-asr:v2" and "mode" not in update
    assert update["update_config"]["Order"] == "start-first"
    assert update["update_config"]["FailureAction"] == "rollback"
    assert update["update_config"]["Parallelism"] == 1
    assert "TWI_ASR_IMAGE_ID=sha256:v2" in update["env"]  # /health reports the new image
    assert not {"read_only", "mounts", "secrets"} & set(update)  # already hardened, no key asked
    assert info.image == "twi-asr:v2"
    assert len(fake.services.created) == 1


def test_scale_passes_the_key_as_a_docker_secret_rotates_it_and_removes_it(fake: FakeClient) -> None:
    containers.scale(2, init_swarm=True, api_key="k3y-one", env={"HF_TOKEN": "hf_fake"})
    _, kwargs = fake.services.created[0]
    assert "k3y-one" not in repr(kwargs) and "hf_fake" not in repr(kwargs)
    assert "TWI_ASR_API_KEY_FILE=/run/secrets/twi_asr_api_key" in kwargs["env"]
    assert "HF_TOKEN_PATH=/run/secrets/hf_token" in kwargs["env"]
    refs = {r["File"]["Name"]: r for r in kwargs["secrets"]}
    assert set(refs) == {"twi_asr_api_key", "hf_token"}
    assert refs["twi_asr_api_key"]["File"] == {
        "Name": "twi_asr_api_key",
        "UID": "10001",
        "GID": "10001",
        "Mode": 0o400,
    }
    key = fake.secrets.items[refs["twi_asr_api_key"]["SecretID"]]
    assert key.data == b"k3y-one" and key.name.startswith("twi-asr-twi-asr-api-key-")
    labels = key.attrs["Spec"]["Labels"]
    assert labels["twi-asr.managed"] == "true" and labels["twi-asr.service"] == "twi-asr"
    assert "k3y-one" not in repr(labels)  # a salted digest tells a changed key, not the key
    service = fake.services.items["twi-asr"]
    # The same key again: nothing changes, no new secret.
    containers.scale(2, api_key="k3y-one")
    assert service.updates == [] and len(fake.secrets.items) == 2
    # A new key: a new secret, the replicas roll onto it, the old one is removed.
    containers.scale(2, api_key="k3y-two")
    update = service.updates[-1]
    assert set(update) == {"secrets", "update_config"}  # env already points at the file
    new_key = [
        fake.secrets.items[r["SecretID"]] for r in update["secrets"] if r["File"]["Name"] == "twi_asr_api_key"
    ]
    assert [s.data for s in new_key] == [b"k3y-two"]
    assert key.id in fake.secrets.removed and refs["hf_token"]["SecretID"] in fake.secrets.items
    # Removing the service removes its secrets.
    containers.stop("twi-asr")
    assert fake.secrets.items == {}


def test_scale_hardens_a_service_made_before_and_changes_its_limits_when_asked(fake: FakeClient) -> None:
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    old = _service_kwargs("twi-asr", labels=MANAGED, replicas=2, hardened=False)
    service = fake.services.create("twi-asr:cpu", **old)
    containers.scale(2)
    update = service.updates[-1]
    assert update["read_only"] is True and update["cap_drop"] == ["ALL"] and update["user"] == "10001:10001"
    assert update["resources"]["Limits"] == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 4 * 1024**3}
    assert update["update_config"]["Order"] == "start-first"  # rolled one replica at a time
    containers.scale(2)
    assert len(service.updates) == 1  # hardened now: nothing more to do
    containers.scale(2, memory="8g")
    assert service.updates[-1]["resources"]["Limits"] == {
        "NanoCPUs": 2_000_000_000,
        "MemoryBytes": 8 * 1024**3,
    }
    containers.scale(3)  # no --memory: the service keeps its 8g
    assert set(service.updates[-1]) == {"mode"}
    with pytest.raises(UsageError, match="--cpus 16: this Docker engine has 8 CPUs"):
        containers.scale(3, cpus=16)
    with pytest.raises(UsageError, match="--memory 'huge'"):
        containers.scale(3, memory="huge")


def test_scale_auto_uses_host_ports_where_the_kernel_has_no_ipvs(
    fake: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(containers.swarm, "_ipvs_present", lambda: False)
    info = containers.scale(2, init_swarm=True)
    _, kwargs = fake.services.created[0]
    spec = kwargs["endpoint_spec"]
    assert spec["Mode"] == "dnsrr"  # a VIP needs IPVS too
    assert spec["Ports"] == [{"Protocol": "tcp", "TargetPort": 8001, "PublishMode": "host"}]  # engine picks
    assert info.publish_mode == "host" and info.url is None and info.port is None
    assert info.replica_urls == ("http://127.0.0.1:30000", "http://127.0.0.1:30001")
    assert info.urls == info.replica_urls
    assert info.to_dict()["urls"] == ["http://127.0.0.1:30000", "http://127.0.0.1:30001"]
    with pytest.raises(UsageError, match="--port needs the routing mesh"):
        containers.scale(2, port=8100)
    # A remote engine (not this kernel) is assumed to have the mesh.
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    assert containers.routing_mesh_available()
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert not containers.routing_mesh_available()


def test_scale_switches_an_existing_service_between_publish_modes(fake: FakeClient) -> None:
    containers.scale(2, init_swarm=True, publish_mode="ingress")
    service = fake.services.items["twi-asr"]
    assert containers.scale(2, publish_mode="ingress").url == "http://127.0.0.1:8001"
    assert service.updates == []
    info = containers.scale(2, publish_mode="host")
    assert service.updates[-1]["endpoint_spec"]["Mode"] == "dnsrr"
    assert info.publish_mode == "host" and len(info.replica_urls) == 2
    with pytest.raises(UsageError, match="publish mode 'mesh'"):
        containers.scale(2, publish_mode="mesh")


def test_wait_service_ready_probes_every_replica_and_blames_a_dead_mesh(
    fake: FakeClient, http: dict[str, Any]
) -> None:
    containers.scale(2, init_swarm=True, publish_mode="host")
    info = containers.wait_service_ready("twi-asr", timeout_s=0)
    assert [u for u in http["seen"] if u.endswith("/ready")] == [
        "http://127.0.0.1:30000/ready",
        "http://127.0.0.1:30001/ready",
    ]
    assert info.replicas == 2
    report = containers.health("twi-asr")
    assert report["ready"] and report["replicas_ready"] == 2 and report["url"] is None
    containers.stop("twi-asr")
    containers.scale(2, publish_mode="ingress")
    http["/ready"] = None  # the mesh port never answers (no IPVS)
    with pytest.raises(EnvironmentProblem, match="--publish-mode host"):
        containers.wait_service_ready("twi-asr", timeout_s=0)


def test_scale_refuses_a_missing_image_and_a_foreign_service(fake: FakeClient) -> None:
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    with pytest.raises(EnvironmentProblem, match="twi-asr docker build --tag nope:1"):
        containers.scale(2, image="nope:1")
    fake.services.create("nginx", **_service_kwargs("twi-asr", labels={}))
    with pytest.raises(EnvironmentProblem, match="exists but is not ours"):
        containers.scale(2)


def test_wait_replicas_counts_running_tasks(fake: FakeClient) -> None:
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    service = fake.services.create("twi-asr:cpu", **_service_kwargs("twi-asr", labels=MANAGED, replicas=3))
    service.running = 1
    service.failed_task = "No such image: twi-asr:v3"
    seen: list[int] = []
    with pytest.raises(containers.ContainerFailed, match="1/3 replicas running") as info:
        containers.wait_replicas("twi-asr", timeout_s=0, on_wait=lambda i: seen.append(i.running))
    assert info.value.log_tail == ["No such image: twi-asr:v3"]
    service.running = 3
    assert containers.wait_replicas("twi-asr", timeout_s=0).running == 3


def test_list_services_is_empty_without_a_swarm(fake: FakeClient) -> None:
    assert containers.list_services() == []


# ------------------------------------------------------------------ serving_container
def test_serving_container_starts_yields_the_url_and_stops(fake: FakeClient, http: dict[str, Any]) -> None:
    said: list[str] = []
    with containers.serving_container(model="tiny.en", on_status=said.append) as url:
        assert url == "http://127.0.0.1:49153"
        assert "stop" not in fake.containers.items["twi-asr"].calls
    _, create = fake.containers.created[0]
    assert create["ports"] == {"8001/tcp": ("127.0.0.1", None)}  # any free port
    assert create["environment"]["TWI_ASR_MODEL"] == "tiny.en"
    assert fake.containers.items["twi-asr"].calls[-2:] == ["stop", "remove"]
    assert said[-1] == "stopped container twi-asr"


@pytest.mark.parametrize("failure", [InputError("bad clip"), KeyboardInterrupt()])
def test_serving_container_stops_what_it_started_even_on_failure(
    fake: FakeClient, http: dict[str, Any], failure: BaseException
) -> None:
    with pytest.raises(type(failure)), containers.serving_container():
        raise failure
    assert fake.containers.items["twi-asr"].calls[-2:] == ["stop", "remove"]


def test_serving_container_removes_a_container_that_never_gets_ready(
    fake: FakeClient, http: dict[str, Any]
) -> None:
    fake.next_statuses = ["running", "exited"]
    fake.next_logs = "CUDA error\n"
    http["/ready"] = None
    with pytest.raises(containers.ContainerFailed, match="CUDA error"), containers.serving_container():
        pytest.fail("never ready: the body must not run")
    assert fake.containers.items["twi-asr"].calls[-1] == "remove"


def test_serving_container_reuses_a_running_one_and_leaves_it_running(
    fake: FakeClient, http: dict[str, Any]
) -> None:
    running = fake.containers.add(FakeContainer("twi-asr", port=8001))
    with containers.serving_container(api_key="k") as url:
        assert url == "http://127.0.0.1:8001"
    assert fake.containers.created == [] and "stop" not in running.calls
