"""Tests for ``twi-asr docker ...`` through :func:`twi_asr.cli.main` with a fake docker-py client.

Every Docker problem must end as exit code 3 and one ``error:`` line on
stderr, never a docker-py traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from twi_asr import containers
from twi_asr.cli import main
from twi_asr.errors import InputError

from .test_containers import FakeClient, FakeContainer, api_error, install_fake, install_http, no_engine_error


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeClient:
    return install_fake(monkeypatch, tmp_path)


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return install_http(monkeypatch)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _one_error_line(err: str) -> str:
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and "docker.errors" not in err
    return lines[0]


# ------------------------------------------------------------------ engine errors
def test_no_engine_is_exit_3_and_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def from_env(**_: Any) -> Any:
        raise no_engine_error()

    monkeypatch.setattr(docker, "from_env", from_env)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert main(["docker", "status"]) == 3
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert "cannot reach the Docker engine (is dockerd running? DOCKER_HOST=unset" in line
    assert captured.err.strip() == line and captured.out == ""


def test_permission_denied_is_exit_3_naming_the_docker_group(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def from_env(**_: Any) -> Any:
        raise no_engine_error("PermissionError(13, 'Permission denied')")

    monkeypatch.setattr(docker, "from_env", from_env)
    assert main(["docker", "logs", "twi-asr"]) == 3
    assert "docker group" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("args", "where", "error", "expected"),
    [
        (
            ["docker", "run"],
            "create_error",
            api_error(404, "No such image: twi-asr:cpu", docker.errors.ImageNotFound),
            "twi-asr docker build --tag twi-asr:cpu",
        ),
        (
            ["docker", "run", "--port", "8001"],
            "start_error",
            api_error(500, "Bind for 127.0.0.1:8001 failed: port is already allocated"),
            "port 8001 is already in use",
        ),
        (
            ["docker", "run", "--gpu"],
            "start_error",
            api_error(500, 'could not select device driver "" with capabilities: [[gpu]]'),
            "no NVIDIA runtime",
        ),
    ],
)
def test_run_failures_are_exit_3_and_one_line(
    fake: FakeClient,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    where: str,
    error: Exception,
    expected: str,
) -> None:
    setattr(fake.containers, where, error)
    assert main(args) == 3
    captured = capsys.readouterr()
    assert expected in _one_error_line(captured.err)
    assert captured.out == ""


# ------------------------------------------------------------------ build
def test_build_streams_output_and_prints_the_id(
    fake: FakeClient, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile.cuda").write_text("FROM x\n")
    fake.api.chunks = [
        {"stream": "Step 1/1 : FROM x\n"},
        {"stream": "Successfully built 0abc\n"},
        {"aux": {"ID": "sha256:0abc"}},
    ]
    calls: list[dict[str, Any]] = []
    build_once = fake.api.build
    monkeypatch.setattr(fake.api, "build", lambda **kw: (calls.append(kw), build_once(**kw))[1])
    # The image has no lock or model card to read back (tests/unit/test_docker_images.py reads them).
    monkeypatch.setattr("twi_asr.containers.stamping.read_files", lambda *_a, **_k: {})
    args = ["docker", "build", "--gpu", "--model", "tiny.en", "--base-image", "local:base"]
    assert main([*args, "--context", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "sha256:0abc"
    assert "Step 1/1 : FROM x" in captured.err and "Successfully built 0abc" in captured.err
    first, labelled = calls  # the build, then the metadata-only build that adds the model labels
    assert first["dockerfile"] == "Dockerfile.cuda" and first["tag"] == "twi-asr:cuda"
    build_args = first["buildargs"]
    assert {"MODEL": "tiny.en", "BASE_IMAGE": "local:base"}.items() <= build_args.items()
    assert set(build_args) == {"MODEL", "BASE_IMAGE", "GIT_COMMIT", "BUILD_CREATED", "SOURCE_URL"}
    assert labelled["tag"] == "twi-asr:cuda" and labelled["custom_context"] is True


def test_build_failure_is_exit_3_with_one_error_line(
    fake: FakeClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    fake.api.chunks = [
        {"stream": "Step 1/2 : FROM x\n"},
        {"stream": "Step 2/2 : RUN false\n"},
        {"stream": "oops\n"},
        {"error": "The command '/bin/sh -c false' returned a non-zero code: 1"},
    ]
    assert main(["docker", "build", "--context", str(tmp_path)]) == 3
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert "failed at Step 2/2 : RUN false" in line
    assert captured.err.count("oops") == 1  # streamed once, not repeated in the error
    assert captured.out == ""


def test_build_without_the_dockerfile_is_a_usage_error(
    fake: FakeClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["docker", "build", "--gpu", "--context", str(tmp_path)]) == 2
    assert "Dockerfile.cuda: no such Dockerfile" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ run
def test_run_waits_and_prints_the_url(
    fake: FakeClient, http: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["docker", "run", "--port", "8040", "--model", "tiny.en", "--env", "TWI_ASR_LOG_JSON=1"]
    assert main([*args, "--api-key", "s3cret", "--name", "asr"]) == 0
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:8040"
    image, kwargs = fake.containers.created[0]
    assert image == "twi-asr:cpu" and kwargs["name"] == "asr"
    assert kwargs["environment"]["TWI_ASR_MODEL"] == "tiny.en"
    assert kwargs["environment"]["TWI_ASR_API_KEY_FILE"] == "/run/secrets/twi_asr_api_key"
    assert "s3cret" not in repr(kwargs)  # the key is a mounted file, not a variable
    assert kwargs["environment"]["TWI_ASR_LOG_JSON"] == "1"
    assert kwargs["labels"] == {"twi-asr.managed": "true"}
    assert kwargs["read_only"] is True and kwargs["cap_drop"] == ["ALL"] and kwargs["user"] == "10001:10001"
    assert (kwargs["mem_limit"], kwargs["nano_cpus"]) == (4 * 1024**3, 2_000_000_000)


def test_run_memory_and_cpus_and_the_key_from_the_environment(
    fake: FakeClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWI_ASR_API_KEY", "from-env")
    assert main(["docker", "run", "--no-wait", "--memory", "1.5g", "--cpus", "0.5"]) == 0
    _, kwargs = fake.containers.created[0]
    assert (kwargs["mem_limit"], kwargs["nano_cpus"]) == (1536 * 1024**2, 500_000_000)
    assert "from-env" not in repr(kwargs)
    assert kwargs["environment"]["TWI_ASR_API_KEY_FILE"] == "/run/secrets/twi_asr_api_key"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots"], "--memory 'lots': expected a size such as 512m, 4g or 1.5g"),
        (["--memory", "1k"], "--memory '1k': at least 6m"),
        (["--cpus", "two"], "--cpus 'two': expected a number of CPUs"),
        (["--cpus", "0"], "--cpus '0': expected at least 0.01"),
        (["--cpus", "64"], "--cpus 64: this Docker engine has 8 CPUs"),
    ],
)
def test_run_and_scale_bad_limits_are_one_line_usage_errors(
    fake: FakeClient, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["docker", "run", *args]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert main(["docker", "scale", "2", "--init-swarm", *args]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert fake.containers.created == [] and fake.services.created == [] and fake.swarm.init_calls == []


def test_run_gpu_picks_the_cuda_image(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docker", "run", "--gpu", "--no-wait"]) == 0
    image, kwargs = fake.containers.created[0]
    assert image == "twi-asr:cuda" and kwargs["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:8001"


def test_run_when_the_container_dies_shows_its_last_lines_then_one_error(
    fake: FakeClient, http: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    http["/ready"] = None
    fake.next_statuses = ["running", "exited"]
    fake.next_logs = "starting\nModelNotFoundError: model 'nope' not found\n"
    assert main(["docker", "run", "--model", "nope"]) == 3
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert "container twi-asr exited (code 1) before it was ready" in line
    assert "ModelNotFoundError: model 'nope' not found" in captured.err
    assert captured.err.strip().splitlines()[-1] == line  # the error comes last
    assert captured.out == ""


def test_run_bad_env_is_a_usage_error(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docker", "run", "--env", "NOEQUALS"]) == 2
    assert "expected KEY=VALUE" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ status / stop / logs / health
def test_status_json_and_table(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    fake.containers.add(FakeContainer("twi-asr", health="healthy", port=8001))
    fake.containers.add(FakeContainer("other", labels={}))
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    assert main(["docker", "scale", "2", "--port", "8200", "--no-wait"]) == 0
    capsys.readouterr()

    assert main(["docker", "status", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in body["containers"]] == ["twi-asr"]
    assert body["containers"][0]["health"] == "healthy"
    assert body["containers"][0]["url"] == "http://127.0.0.1:8001"
    assert body["services"][0]["replicas"] == 2 and body["services"][0]["port"] == 8200

    assert main(["docker", "status"]) == 0
    out = capsys.readouterr().out
    assert "twi-asr containers" in out and "healthy" in out and "other" not in out
    assert "swarm services" in out and "2/2" in out


def test_status_with_nothing_running(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docker", "status"]) == 0
    assert "no twi-asr containers or services" in capsys.readouterr().err


def test_stop_all_only_touches_labelled_containers(
    fake: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = fake.containers.add(FakeContainer("twi-asr"))
    theirs = fake.containers.add(FakeContainer("redis", labels={"app": "redis"}))
    assert main(["docker", "stop", "--all"]) == 0
    assert ours.calls == ["stop", "remove"] and theirs.calls == []
    assert "stopped container twi-asr" in capsys.readouterr().err


def test_stop_default_name_and_name_with_all(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    ours = fake.containers.add(FakeContainer("twi-asr"))
    assert main(["docker", "stop", "--keep"]) == 0
    assert ours.calls == ["stop"]
    assert main(["docker", "stop", "x", "--all"]) == 2
    assert main(["docker", "stop", "nope"]) == 3
    assert "no twi-asr container or service named nope" in _error_lines(capsys.readouterr().err)[-1]


def test_logs_prints_lines(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    fake.containers.add(FakeContainer("twi-asr", log_text="a\nb\nc\n"))
    assert main(["docker", "logs", "--tail", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["b", "c"]


def test_health_ready_is_0_and_not_ready_is_3(
    fake: FakeClient, http: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["docker", "health", "http://localhost:8001", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ready"] is True
    http["/ready"] = (503, {"status": "loading", "detail": "loading model twi"})
    assert main(["docker", "health", "http://localhost:8001"]) == 3
    captured = capsys.readouterr()
    assert "ready: False" in captured.out
    assert "http://localhost:8001 is not ready (loading model twi)" in _one_error_line(captured.err)


# ------------------------------------------------------------------ scale
def test_scale_without_swarm_says_init_swarm(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docker", "scale", "3"]) == 3
    assert "--init-swarm" in _one_error_line(capsys.readouterr().err)
    assert fake.swarm.init_calls == []


def test_scale_init_then_update(
    fake: FakeClient, http: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["docker", "scale", "3", "--init-swarm", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["replicas"] == 3 and body["running"] == 3 and body["url"] == "http://127.0.0.1:8001"
    assert fake.swarm.init_calls == [{"advertise_addr": "127.0.0.1"}]
    _, kwargs = fake.services.created[0]
    assert kwargs["read_only"] is True and kwargs["resources"]["Limits"]["MemoryBytes"] == 4 * 1024**3
    assert main(["docker", "scale", "4", "--update-image", "twi-asr:v2", "--timeout", "0"]) == 0
    service = fake.services.items["twi-asr"]
    assert service.updates[-1]["image"] == "twi-asr:v2" and service.updates[-1]["mode"].replicas == 4
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:8001"


def test_scale_timeout_shows_task_errors(
    fake: FakeClient, http: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.swarm_state = {"LocalNodeState": "active", "ControlAvailable": True}
    assert main(["docker", "scale", "2", "--no-wait"]) == 0
    service = fake.services.items["twi-asr"]
    service.running = 0
    service.failed_task = "task: non-zero exit (3)"
    assert main(["docker", "scale", "2", "--timeout", "0"]) == 3
    err = capsys.readouterr().err
    assert "task: non-zero exit (3)" in err
    assert "0/2 replicas running" in _one_error_line(err)


def test_scale_host_mode_prints_every_replica_url(
    fake: FakeClient, http: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["docker", "scale", "2", "--init-swarm", "--publish-mode", "host"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == ["http://127.0.0.1:30000", "http://127.0.0.1:30001"]
    assert "host mode" in captured.err
    assert main(["docker", "status"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:30001" in out and "host" in out
    assert main(["docker", "scale", "2", "--publish-mode", "mesh"]) == 2
    assert "publish mode 'mesh'" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ batch
def test_batch_runs_the_batch_runner_through_the_container_and_stops_it(
    fake: FakeClient,
    http: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import soundfile as sf

    from twi_asr import client
    from twi_asr.types import Transcript

    seen: list[tuple[str, Any]] = []

    class Client:
        def __init__(self, url: str, **_: Any) -> None:
            self.url = self.base_url = url

        def transcribe(self, data: bytes, options: Any = None, *, filename: str) -> Transcript:
            seen.append((self.url, options))
            if filename == "bad.wav":
                raise InputError("bad.wav: not audio")
            return Transcript(text=f"heard {filename}", language="en", duration=1.0)

        def health(self) -> bool:
            return True

        def models(self) -> list[dict[str, Any]]:
            return []

        def close(self) -> None:
            pass

    monkeypatch.setattr(client, "TwiAsrClient", Client)
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", [0.0] * 1600, 16000)
    sf.write(src / "bad.wav", [0.0] * 1600, 16000)
    out = tmp_path / "out"
    args = ["docker", "batch", str(src), "-o", str(out), "-f", "srt,txt", "--language", "tw", "--name", "b1"]
    assert main(args) == 1  # one input failed
    assert (out / "a.txt").read_text() == "heard a.wav\n" and (out / "a.srt").exists()
    assert {url for url, _ in seen} == {"http://127.0.0.1:49153"}
    assert seen[0][1].language == "tw"
    assert fake.containers.items["b1"].calls[-2:] == ["stop", "remove"]
    err = capsys.readouterr().err
    assert "stopped container b1" in err and "bad.wav: not audio" in err
    # A rerun resumes: only the failed input is sent again.
    seen.clear()
    assert main(args) == 1
    assert len(seen) == 1


def test_batch_bad_language_fails_before_any_container(fake: FakeClient, tmp_path: Path) -> None:
    assert main(["docker", "batch", "a.wav", "-o", str(tmp_path), "--language", "klingon"]) == 2
    assert fake.containers.created == []


def test_docker_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docker", "--help"]) == 0
    out = capsys.readouterr().out
    for command in ("build", "run", "status", "logs", "stop", "health", "scale", "batch"):
        assert command in out
    assert containers.DEFAULT_NAME == "twi-asr"
