"""Static checks of the container files: Dockerfile, Dockerfile.cuda, .dockerignore, docker/.

No Docker engine is needed: the Dockerfiles are parsed (continuations, comments, JSON forms), the
compose/stack/Kubernetes files are read as YAML. The real image builds and runs are in the
integration tests.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cpu": ROOT / "Dockerfile", "cuda": ROOT / "Dockerfile.cuda"}
DOCKER_DIR = ROOT / "docker"
BACKEND_DOCKERFILE = DOCKER_DIR / "backend" / "Dockerfile"


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and blanks dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines, as Docker allows
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path.name} ends inside a continuation"
    return instructions


def only(instructions: list[tuple[str, str]], keyword: str) -> str:
    found = [args for kw, args in instructions if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def index_of(instructions: list[tuple[str, str]], keyword: str, pattern: str) -> int:
    for i, (kw, args) in enumerate(instructions):
        if kw == keyword and re.search(pattern, args):
            return i
    raise AssertionError(f"no {keyword} matching {pattern!r}")


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in instructions:
        if kw == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def stages(instructions: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each stage by name (`FROM x AS name`); the last, unnamed one is "final"."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for kw, args in instructions:
        if kw == "FROM":
            _, _, name = args.partition(" AS ")
            current = out.setdefault(name.strip() or "final", [])
        if current is not None:
            current.append((kw, args))
    return out


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILES[request.param])


def test_base_image_is_an_argument_with_a_public_default(dockerfile: list[tuple[str, str]]) -> None:
    assert dockerfile[0][0] == "ARG" and dockerfile[0][1].startswith("BASE_IMAGE=")
    assert dockerfile[0][1].split("=", 1)[1], "BASE_IMAGE needs a public default"
    froms = [args for kw, args in dockerfile if kw == "FROM"]
    # runtime from the base; convert and the final image from runtime, so both share its layers
    assert froms == ["${BASE_IMAGE} AS runtime", "runtime AS convert", "runtime"]


def test_runtime_contract(dockerfile: list[tuple[str, str]]) -> None:
    assert json.loads(only(dockerfile, "ENTRYPOINT")) == ["twi-asr"]
    assert json.loads(only(dockerfile, "CMD")) == ["serve"]
    assert only(dockerfile, "EXPOSE") == "8001"
    env = env_of(dockerfile)
    assert env["TWI_ASR_HOST"] == "0.0.0.0"
    assert env["TWI_ASR_PORT"] == "8001"
    assert env["TWI_ASR_CACHE_DIR"] == "/models"
    assert env["HF_HOME"] == "/models/hf"
    assert env["PIP_NO_CACHE_DIR"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["TWI_ASR_LOCK_FILE"] == "/opt/twi-asr/requirements.lock"


def test_nothing_writes_outside_tmp_and_models_at_run_time(dockerfile: list[tuple[str, str]]) -> None:
    """Read-only root fs: bytecode off, home and caches in /tmp (a tmpfs), downloads in /models."""
    env = env_of(dockerfile)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["HF_HOME"].startswith("/models/") and env["TWI_ASR_CACHE_DIR"] == "/models"
    useradd = next(args for kw, args in dockerfile if kw == "RUN" and "useradd" in args)
    assert "--home-dir /tmp" in useradd and "--create-home" not in useradd


def test_healthcheck_polls_ready_with_the_standard_library(dockerfile: list[tuple[str, str]]) -> None:
    check = only(dockerfile, "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert "--start-period=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python3", "-c"]
    assert "/ready" in argv[2] and "urllib" in argv[2] and "curl" not in check
    compile(argv[2], "HEALTHCHECK", "exec")  # the inline program is valid Python


def test_non_root_numeric_user_before_the_entrypoint(dockerfile: list[tuple[str, str]]) -> None:
    user = only(dockerfile, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0
    assert index_of(dockerfile, "USER", ".") < index_of(dockerfile, "ENTRYPOINT", ".")
    assert f"--uid {uid}" in only([(kw, a) for kw, a in dockerfile if kw == "RUN" and "useradd" in a], "RUN")
    # the user is set in the final image (the build stages run as root), and nothing runs after it
    final = stages(dockerfile)["final"]
    assert ("USER", user) in final
    assert not [kw for kw, _ in final[final.index(("USER", user)) :] if kw in ("RUN", "COPY", "ADD")]


def test_dependencies_are_a_layer_before_the_source(dockerfile: list[tuple[str, str]]) -> None:
    runtime = stages(dockerfile)["runtime"]
    copy_lock = index_of(runtime, "COPY", r"^locks/")
    deps = index_of(
        runtime, "RUN", r"pip install --no-deps --require-hashes .*-r /opt/twi-asr/requirements\.lock"
    )
    copy_project = index_of(runtime, "COPY", r"^pyproject\.toml ")
    copy_src = index_of(runtime, "COPY", r"^src ")
    source_install = index_of(runtime, "RUN", r"pip install --no-deps --no-build-isolation \.")
    assert copy_lock < deps < copy_project < copy_src < source_install
    # Nothing from the source tree reaches the image before the dependency layer.
    assert all(kw != "COPY" or i == copy_lock for i, (kw, _) in enumerate(runtime[:deps]))
    assert "pip check" in runtime[source_install][1] and "twi-asr --version" in runtime[source_install][1]


def test_model_is_baked_in_the_convert_stage_only_when_asked(dockerfile: list[tuple[str, str]]) -> None:
    parts = stages(dockerfile)
    convert, final = parts["convert"], parts["final"]
    assert ("COPY", "docker/model-context/ /build/model-context/") in convert
    assert ("ARG", "MODEL=") in convert
    bake = convert[index_of(convert, "RUN", r'twi-asr models bake "\$MODEL" /opt/model')][1]
    assert 'if [ -n "$MODEL" ]' in bake and "mkdir -p /opt/model" in bake
    assert index_of(convert, "COPY", "model-context") < index_of(convert, "ARG", "^MODEL=")
    assert not any("models bake" in args for kw, args in parts["runtime"] + final)
    # The final image takes the baked folder and nothing else from the convert stage.
    assert [args for kw, args in final if kw in ("COPY", "ADD", "RUN")] == [
        "--from=convert /opt/model /opt/model"
    ]
    assert ("ARG", "MODEL=") in final and ("ARG", "MODEL_DIR=${MODEL:+/opt/model}") in final
    assert env_of(final)["TWI_ASR_MODEL"] == "${MODEL_DIR:-twi}"


def test_provenance_args_come_last(dockerfile: list[tuple[str, str]]) -> None:
    """GIT_COMMIT, BUILD_CREATED and SOURCE_URL are declared after every layer: they invalidate none."""
    final = stages(dockerfile)["final"]
    env = env_of(final)
    for arg, var in (
        ("GIT_COMMIT", "TWI_ASR_BUILD_COMMIT"),
        ("BUILD_CREATED", "TWI_ASR_BUILD_CREATED"),
        ("SOURCE_URL", "TWI_ASR_BUILD_SOURCE"),
    ):
        declared = final.index(("ARG", f"{arg}="))
        assert env[var] == "${" + arg + "}"
        assert not [kw for kw, _ in final[declared:] if kw in ("RUN", "COPY", "ADD")], arg
        assert not any(a.startswith(f"{arg}=") for kw, a in dockerfile[: len(dockerfile) - len(final)])


def test_both_images_install_the_same_package() -> None:
    cpu, cuda = (parse_dockerfile(DOCKERFILES[k]) for k in ("cpu", "cuda"))
    assert only(cpu, "USER") == only(cuda, "USER")
    for key in ("ENTRYPOINT", "CMD", "EXPOSE", "USER"):
        assert only(cpu, key) == only(cuda, key)
    assert only(cpu, "HEALTHCHECK").partition("CMD ")[2] == only(cuda, "HEALTHCHECK").partition("CMD ")[2]
    assert ("ARG", "ENGINES=ct2") in cpu, "the CPU image is torch-free by default"
    # the same convert stage and final stage (only the GPU image's start period is longer)
    assert stages(cpu)["convert"] == stages(cuda)["convert"]
    final_cpu, final_cuda = ([i for i in stages(df)["final"] if i[0] != "HEALTHCHECK"] for df in (cpu, cuda))
    assert final_cpu == final_cuda
    # which lock each image installs and that the lock holds the extras: tests/unit/test_locks.py


def test_no_system_build_tools_are_installed() -> None:
    for path in DOCKERFILES.values():
        for kw, args in parse_dockerfile(path):
            if kw == "RUN":
                assert not re.search(r"apt-get|apk add|build-essential|\bgcc\b|-dev\b", args), path.name


# --- .dockerignore ---------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent covers children."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = _pattern_regex(pattern.strip("/"))
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for needed in (
        "pyproject.toml",
        "README.md",
        "src/twi_asr/__init__.py",
        "src/twi_asr/py.typed",
        "locks/cpu.txt",
        "locks/backend.txt",
        "docker/model-context/README.md",
        "docker/model-context/model.safetensors",
    ):
        assert not dockerignored(needed, patterns), needed
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        "venv/bin/python",
        "bench/.cache/x.wav",
        "tests/unit/test_cli.py",
        "src/twi_asr/__pycache__/cli.cpython-311.pyc",
        "src/twi_asr.egg-info/PKG-INFO",
        "examples/hello.wav",
        ".ci/run",
        "docker/compose.yaml",
        "docker/k8s/deployment.yaml",
        "locks/build.in",
    ):
        assert dockerignored(dropped, patterns), dropped
    # Whatever the Dockerfiles COPY from the context must survive the ignore file.
    for path in [*DOCKERFILES.values(), BACKEND_DOCKERFILE]:
        for kw, args in parse_dockerfile(path):
            if kw == "COPY" and "--from" not in args:
                for source in args.split()[:-1]:
                    assert not dockerignored(source.rstrip("/"), patterns), f"{path.name}: COPY {source}"


# --- compose, swarm, Kubernetes ----------------------------------------------------------------


@pytest.fixture(scope="module")
def yaml() -> ModuleType:
    return pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with huggingface_hub)")


def _load(yaml: ModuleType, name: str) -> Any:
    return yaml.safe_load((DOCKER_DIR / name).read_text(encoding="utf-8"))


def test_compose_runs_the_backend_in_front_of_the_asr(yaml: ModuleType) -> None:
    compose = _load(yaml, "compose.yaml")
    services = compose["services"]
    assert set(services) == {"asr", "backend", "db", "s3", "s3-init"}
    asr, backend = services["asr"], services["backend"]
    assert asr["build"]["dockerfile"] == "Dockerfile" and asr["build"]["context"] == ".."
    assert "BASE_IMAGE" in asr["build"]["args"]
    assert any(p.endswith(":8001") for p in asr["ports"])
    assert any(v.split(":")[1] == "/models" for v in asr["volumes"])
    # The backend image is built from the repo root (it installs this checkout's [backend] extra).
    assert backend["build"]["context"] == ".."
    assert (DOCKER_DIR / backend["build"]["context"] / backend["build"]["dockerfile"]).is_file()
    env = backend["environment"]
    assert env["TWI_ASR_ASR_URL"] == "http://asr:8001"
    assert (
        env["TWI_ASR_DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in env["TWI_ASR_DATABASE_URL"]
    )
    assert env["TWI_ASR_STORAGE"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://s3:9000"
    assert any(p.startswith("127.0.0.1:") and p.endswith(":8000") for p in backend["ports"])
    conditions = {name: dep["condition"] for name, dep in backend["depends_on"].items()}
    assert conditions == {
        "db": "service_healthy",
        "s3": "service_healthy",
        "asr": "service_healthy",
        "s3-init": "service_completed_successfully",
    }
    for name in ("db", "s3"):
        assert services[name]["healthcheck"]["test"], name
    assert "ports" not in services["db"], "the database stays inside the compose network"
    # MinIO is published on loopback only, where the presigned upload URLs point
    assert services["s3"]["ports"] == ["127.0.0.1:9000:9000"]
    assert env["TWI_ASR_S3_PUBLIC_ENDPOINT_URL"].endswith("localhost:9000}")
    assert "twi-asr" in " ".join(services["s3-init"]["command"])
    assert {"models", "pgdata", "s3data"} <= set(compose["volumes"])


def test_gpu_override_builds_the_cuda_image_with_a_gpu(yaml: ModuleType) -> None:
    asr = _load(yaml, "compose.gpu.yaml")["services"]["asr"]
    assert asr["build"]["dockerfile"] == "Dockerfile.cuda"
    (device,) = asr["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_swarm_stack_replicates_the_asr(yaml: ModuleType) -> None:
    stack = _load(yaml, "swarm-stack.yaml")
    asr = stack["services"]["asr"]
    assert "build" not in asr, "docker stack deploy ignores build: images are built beforehand"
    assert asr["deploy"]["replicas"] >= 2
    assert asr["ports"][0]["target"] == 8001
    assert "/ready" in " ".join(asr["healthcheck"]["test"])
    assert stack["services"]["backend"]["environment"]["TWI_ASR_ASR_URL"] == "http://asr:8001"


def test_kubernetes_probes_service_and_autoscaler(yaml: ModuleType) -> None:
    docs = [
        d for d in yaml.safe_load_all((DOCKER_DIR / "k8s/deployment.yaml").read_text(encoding="utf-8")) if d
    ]
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) >= {"Deployment", "Service", "HorizontalPodAutoscaler"}
    deployment = by_kind["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == 8001
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    uid = only(parse_dockerfile(DOCKERFILES["cpu"]), "USER").split(":")[0]
    assert pod_security["runAsNonRoot"] is True and str(pod_security["runAsUser"]) == uid
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert by_kind["Service"]["spec"]["selector"].items() <= labels.items()
    hpa = by_kind["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_base_image_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts/base-image.sh")], check=True)


# --- the backend image (port 8000) ------------------------------------------------------------


@pytest.fixture(scope="module")
def backend_dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile(BACKEND_DOCKERFILE)


def test_backend_image_contract(backend_dockerfile: list[tuple[str, str]]) -> None:
    df = backend_dockerfile
    assert df[0] == ("ARG", "BASE_IMAGE=python:3.11-slim") and only(df, "FROM") == "${BASE_IMAGE}"
    assert json.loads(only(df, "ENTRYPOINT")) == ["twi-asr", "backend"]
    assert json.loads(only(df, "CMD")) == ["serve"]
    assert only(df, "EXPOSE") == "8000"
    env = env_of(df)
    assert env["TWI_ASR_BACKEND_HOST"] == "0.0.0.0" and env["TWI_ASR_DATA_DIR"] == "/data"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert json.loads(only(df, "VOLUME")) == ["/data"]
    assert only(df, "USER") == only(parse_dockerfile(DOCKERFILES["cpu"]), "USER")
    assert index_of(df, "USER", ".") < index_of(df, "ENTRYPOINT", ".")
    assert "org.opencontainers.image.title" in only(df, "LABEL")
    check = only(df, "HEALTHCHECK")
    argv = json.loads(check.partition("CMD ")[2])
    assert argv[:2] == ["python3", "-c"] and "/health" in argv[2] and "urllib" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def test_backend_image_installs_the_backend_extra_without_torch(
    backend_dockerfile: list[tuple[str, str]],
) -> None:
    df = backend_dockerfile
    copy_lock = index_of(df, "COPY", r"^locks/backend\.txt /opt/twi-asr/requirements\.lock$")
    deps = index_of(df, "RUN", r"pip install --no-deps --require-hashes -r /opt/twi-asr/requirements\.lock")
    copy_project = index_of(df, "COPY", r"^pyproject\.toml ")
    copy_src = index_of(df, "COPY", r"^src ")
    source_install = index_of(df, "RUN", r"pip install --no-deps --no-build-isolation \.")
    assert copy_lock < deps < copy_project < copy_src < source_install
    assert all(kw != "COPY" or i == copy_lock for i, (kw, _) in enumerate(df[:deps]))
    assert env_of(df)["TWI_ASR_LOCK_FILE"] == "/opt/twi-asr/requirements.lock"
    assert env_of(df)["HOME"] == "/tmp"
    assert "import torch" in df[source_install][1] and "import ctranslate2" in df[source_install][1]
    for kw, args in df:
        if kw == "RUN":
            assert not re.search(r"apt-get|apk add|torch>=|ct2|transformers", args), args
