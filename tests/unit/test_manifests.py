"""The deployment files run the server with least privilege, and their own tools accept them.

``docker/k8s/*.yaml`` validate offline against the Kubernetes schemas that kubernetes-validate
ships, in strict mode (an unknown field is an error, so a typo such as ``readOnlyRootFilesytem``
cannot silently drop a setting). ``docker/compose.yaml`` (alone and with the GPU overlay) and
``docker/swarm-stack.yaml`` pass ``docker-compose config``, the stack also ``docker stack config``.
Every container of this repository's images must then be hardened: uid 10001, a read-only root
filesystem with a size-limited tmpfs on /tmp, no privilege escalation, no capabilities, memory and
CPU limits, one writable volume (/models for the server, /data for the backend) and its keys as
secret files. The hardening is checked on the files as written (defaults interpolated) and, where
the tools are installed, on what Compose and the Docker CLI resolve them to.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
K8S_FILES = sorted((DOCKER_DIR / "k8s").glob("*.yaml"))
COMPOSE = DOCKER_DIR / "compose.yaml"
COMPOSE_GPU = DOCKER_DIR / "compose.gpu.yaml"
STACK = DOCKER_DIR / "swarm-stack.yaml"
REQUIRE_DOCKER = os.environ.get("TWI_ASR_REQUIRE_DOCKER") == "1"
# The oldest schemas pyproject's kubernetes-validate>=1.30 ships, and a recent release.
K8S_VERSIONS = ("1.30", "1.34")
UID = 10001
GIB = 1 << 30
# Services of this repository's images: the one writable volume and the limits' defaults.
OURS = {"asr": "/models", "backend": "/data"}
LIMITS = {"asr": (4 * GIB, 2.0), "backend": (2 * GIB, 1.0)}
GPU_ASR_MEMORY = 8 * GIB
SECRET_FILES = {
    "asr": {"TWI_ASR_API_KEY_FILE"},
    "backend": {"TWI_ASR_ASR_API_KEY_FILE", "TWI_ASR_SECRET_KEY_FILE"},
}
# Keys the settings read from files: none may be a plain value in a spec.
PLAIN_SECRETS = {"TWI_ASR_API_KEY", "TWI_ASR_ASR_API_KEY", "TWI_ASR_SECRET_KEY", "HF_TOKEN"}
# The official postgres entrypoint chowns its data as root, then drops to the postgres user.
POSTGRES_CAPS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_UNITS |= {f"{unit}i": size for unit, size in _UNITS.items() if unit in ("k", "m", "g")}


def skip_or_fail(message: str) -> None:
    """Skip where a tool is missing, fail where CI requires Docker (TWI_ASR_REQUIRE_DOCKER=1)."""
    if REQUIRE_DOCKER:
        pytest.fail(message)
    pytest.skip(message)


def to_bytes(value: str | int) -> int:
    """``4g``, ``4G``, ``4Gi``, ``512m``, ``4294967296`` -> bytes (Compose and Kubernetes forms)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", str(value).strip())
    assert match and match.group(2).lower() in _UNITS, f"not a memory size: {value!r}"
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def to_cpus(value: str | float) -> float:
    """``2``, ``"2"``, ``2.0``, ``500m`` -> CPUs."""
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def with_defaults(node: Any) -> Any:
    """Compose interpolation with an empty environment: ``${VAR:-default}`` -> default, ``$$`` -> $."""
    if isinstance(node, dict):
        return {key: with_defaults(value) for key, value in node.items()}
    if isinstance(node, list):
        return [with_defaults(value) for value in node]
    if isinstance(node, str):
        node = re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", node)
        return node.replace("$$", "$")
    return node


def load(path: Path) -> Any:
    return with_defaults(yaml.safe_load(path.read_text(encoding="utf-8")))


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a dict, from either the list or the mapping form."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return dict(env)
    return {k: v for k, _, v in (item.partition("=") for item in env)}


def tool_run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a CLI with only what it needs from the environment (no ASR_* or TWI_ASR_* overrides)."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


# --- Kubernetes ---------------------------------------------------------------------------------


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in K8S_FILES
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]
    assert docs, "no manifests in docker/k8s"
    return docs


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec in the manifests, bare or in a workload's template."""
    for name, doc in k8s_docs():
        spec = doc.get("spec", {})
        if doc["kind"] == "Pod":
            yield name, spec
        elif doc["kind"] == "CronJob":
            yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
        elif "template" in spec:
            yield name, spec["template"]["spec"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt (a schema fetched from the network) fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_offline(version: str, no_network: None) -> None:
    import kubernetes_validate

    for name, doc in k8s_docs():
        # Raises ValidationError (bad field or type) or SchemaNotFoundError (unknown kind/apiVersion).
        assert kubernetes_validate.validate(doc, version, strict=True), name


def test_strict_validation_catches_a_misspelt_field(no_network: None) -> None:
    import kubernetes_validate

    deployment = next(doc for _, doc in k8s_docs() if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kubernetes_kinds_around_the_server() -> None:
    kinds = {doc["kind"] for _, doc in k8s_docs()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"} <= kinds


def test_every_kubernetes_container_is_hardened() -> None:
    specs = list(pod_specs())
    assert specs, "no pod spec in docker/k8s"
    for name, spec in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("fsGroup") == UID, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{name} container {container['name']}"
            check_k8s_container(container, pod, volumes, where)


def check_k8s_container(
    container: dict[str, Any], pod: dict[str, Any], volumes: dict[str, Any], where: str
) -> None:
    sc = container.get("securityContext", {})

    def effective(key: str) -> Any:
        return sc.get(key, pod.get(key))

    assert effective("runAsNonRoot") is True, where
    assert effective("runAsUser") == UID and effective("runAsGroup") == UID, where
    assert (effective("seccompProfile") or {}).get("type") == "RuntimeDefault", where
    assert sc.get("allowPrivilegeEscalation") is False, where
    assert sc.get("readOnlyRootFilesystem") is True, where
    assert sc.get("privileged", False) is False, where
    caps = sc.get("capabilities", {})
    assert caps.get("drop") == ["ALL"] and not caps.get("add"), where

    limits = container.get("resources", {}).get("limits", {})
    memory, cpus = to_bytes(limits["memory"]), to_cpus(limits["cpu"])
    assert (memory, cpus) == LIMITS["asr"], where

    mounts = container.get("volumeMounts", [])
    writable = {m["mountPath"]: volumes[m["name"]] for m in mounts if not m.get("readOnly")}
    assert set(writable) == {"/models", "/tmp"}, where
    tmp = writable["/tmp"]["emptyDir"]
    assert tmp["medium"] == "Memory" and 0 < to_bytes(tmp["sizeLimit"]) < memory, where

    env = {e["name"]: e for e in container.get("env", [])}
    assert not PLAIN_SECRETS & env.keys(), where
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in env.values()), where
    assert not container.get("envFrom"), where
    key_file = Path(env["TWI_ASR_API_KEY_FILE"]["value"])
    (mount,) = [m for m in mounts if Path(m["mountPath"]) == key_file.parent]
    assert mount["readOnly"] is True and str(key_file).startswith("/run/secrets/"), where
    secret = volumes[mount["name"]]["secret"]
    assert key_file.name in {item["path"] for item in secret["items"]}, where
    assert "optional" not in secret, "a missing Secret must stop the pod, not serve without a key"

    assert container["readinessProbe"]["httpGet"]["path"] == "/ready", where
    assert container["livenessProbe"]["httpGet"]["path"] == "/health", where


# --- Compose and Swarm: the tools accept the files ----------------------------------------------


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_GPU], [STACK]], ids=["cpu", "gpu", "stack"])
def test_docker_compose_accepts_the_files(files: list[Path]) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        skip_or_fail("docker-compose is missing: apt-get install -y docker-compose (scripts/setup.sh)")
    args = [arg for f in files for arg in ("-f", str(f))]
    result = tool_run(str(tool), *args, "config", "-q")
    assert result.returncode == 0, result.stderr


def resolved_compose(*files: Path) -> dict[str, Any]:
    """``docker-compose config`` of the files: merges, overlays and interpolation done by Compose."""
    tool = shutil.which("docker-compose")
    if tool is None:
        skip_or_fail("docker-compose is missing: apt-get install -y docker-compose (scripts/setup.sh)")
    result = tool_run(str(tool), *[arg for f in files for arg in ("-f", str(f))], "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def resolved_stack() -> dict[str, Any]:
    """``docker stack config -c`` of the stack, as ``docker stack deploy`` would read it.

    Older docker CLIs have no ``stack config`` (it is a newer subcommand than ``stack deploy``):
    there this skips, and docker-compose's validation of the same file is what remains.
    """
    docker = shutil.which("docker")
    if docker is None:
        skip_or_fail("the docker CLI is missing: bash scripts/docker-engine.sh")
    if tool_run(str(docker), "stack", "config", "--help").returncode != 0:
        pytest.skip("this docker CLI has no `docker stack config`; docker-compose validates the stack")
    result = tool_run(str(docker), "stack", "config", "-c", str(STACK))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_stack_config_accepts_the_stack() -> None:
    check_stack(resolved_stack())


# --- Compose and Swarm: hardening ---------------------------------------------------------------


def check_compose_service(name: str, service: dict[str, Any], secrets: dict[str, Any], memory: int) -> None:
    where = f"compose service {name}"
    assert str(service.get("user")) == f"{UID}:{UID}", where
    assert service.get("read_only") is True, where
    tmpfs = service.get("tmpfs") or []
    tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
    (tmp,) = [t for t in tmpfs if t.split(":")[0] == "/tmp"]
    size = re.search(r"(?:^|,)size=(\w+)", tmp.partition(":")[2])
    assert size and 0 < to_bytes(size.group(1)) < memory, f"{where}: /tmp needs size= ({tmp})"
    check_privileges(service, where)
    assert service.get("ipc") == "none", f"{where}: ipc none (no writable /dev/shm)"
    assert to_bytes(service["mem_limit"]) == memory, where
    assert to_cpus(service["cpus"]) == LIMITS[name][1], where
    volumes = [v.split(":") if isinstance(v, str) else [v["source"], v["target"]] for v in service["volumes"]]
    assert [v[1] for v in volumes if "ro" not in v[2:]] == [OURS[name]], where
    assert all(not v[0].startswith(("/", ".", "~")) for v in volumes), f"{where}: a named volume only"
    check_secret_env(name, service, secrets, where)


def check_privileges(service: dict[str, Any], where: str) -> None:
    assert "no-new-privileges:true" in service.get("security_opt", []), where
    assert service.get("cap_drop") == ["ALL"] and not service.get("cap_add"), where
    assert not service.get("privileged"), where


def check_secret_env(name: str, service: dict[str, Any], secrets: dict[str, Any], where: str) -> None:
    """Keys arrive as secret files named by TWI_ASR_*_FILE, never as values."""
    env = environment(service)
    assert not PLAIN_SECRETS & env.keys(), f"{where}: a key as a plain variable"
    targets = set()
    for entry in service.get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        assert source in secrets and "file" in secrets[source], f"{where}: secret {source}"
        targets.add(f"/run/secrets/{target}")
    for variable in SECRET_FILES[name]:
        assert env.get(variable) in targets, f"{where}: {variable} must name a mounted secret"


def check_third_party(services: dict[str, Any]) -> None:
    """PostgreSQL and MinIO keep their images' conventions but lose what they do not need."""
    for name in ("db", "s3", "s3-init"):
        service = services[name]
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("cap_drop") == ["ALL"], name
        assert set(service.get("cap_add", [])) <= (POSTGRES_CAPS if name == "db" else set()), name
        assert to_bytes(service["mem_limit"]) > 0 and to_cpus(service["cpus"]) > 0, name


def check_stack(stack: dict[str, Any]) -> None:
    for name, writable in OURS.items():
        service, where = stack["services"][name], f"stack service {name}"
        assert str(service.get("user")) == f"{UID}:{UID}", where
        assert service.get("read_only") is True, where
        # Written for the day Swarm honours it; `docker stack deploy` ignores it today.
        check_privileges(service, where)
        limits = service["deploy"]["resources"]["limits"]
        memory, cpus = LIMITS[name]
        assert to_bytes(limits["memory"]) == memory and to_cpus(limits["cpus"]) == cpus, where
        volumes = [v if isinstance(v, dict) else {"target": v.split(":")[1]} for v in service["volumes"]]
        (tmp,) = [v for v in volumes if v.get("type") == "tmpfs"]
        assert tmp["target"] == "/tmp" and 0 < int(tmp["tmpfs"]["size"]) < memory, where
        assert [v["target"] for v in volumes if v.get("type") != "tmpfs" and not v.get("read_only")] == [
            writable
        ], where
        for entry in service["secrets"]:
            assert (entry["uid"], entry["gid"], int(entry["mode"])) == (str(UID), str(UID), 0o400), where
        check_secret_env(name, service, stack["secrets"], where)


def test_compose_file_as_written_is_hardened() -> None:
    compose = load(COMPOSE)
    for name in OURS:
        check_compose_service(name, compose["services"][name], compose["secrets"], LIMITS[name][0])
    check_third_party(compose["services"])


def test_gpu_overlay_keeps_the_hardening() -> None:
    base, overlay = load(COMPOSE), load(COMPOSE_GPU)["services"]["asr"]
    assert not {"user", "read_only", "cap_add", "privileged", "security_opt", "tmpfs"} & overlay.keys()
    merged = {**base["services"]["asr"], **{k: v for k, v in overlay.items() if k != "environment"}}
    merged["environment"] = base["services"]["asr"]["environment"] + overlay["environment"]
    check_compose_service("asr", merged, base["secrets"], GPU_ASR_MEMORY)


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_compose_as_resolved_is_hardened(gpu: bool) -> None:
    compose = resolved_compose(COMPOSE, *([COMPOSE_GPU] if gpu else []))
    for name in OURS:
        memory = GPU_ASR_MEMORY if gpu and name == "asr" else LIMITS[name][0]
        check_compose_service(name, compose["services"][name], compose["secrets"], memory)
    check_third_party(compose["services"])


def test_swarm_stack_is_hardened() -> None:
    check_stack(load(STACK))


def test_swarm_stack_as_resolved_by_compose_is_hardened() -> None:
    check_stack(resolved_compose(STACK))
