"""``twi-asr docker build | status | verify`` without an engine: labels, locks, contexts, drift.

The engine is a small fake speaking docker-py's shapes (``api.build`` chunks,
``get_archive`` tar streams, ``logs`` bytes, image ``attrs``); the real-engine
side is tests/integration/test_docker_provenance.py. Git, tar and the lock
parser run for real.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker import errors as derr

from twi_asr import __version__, containers
from twi_asr.cli import main
from twi_asr.containers import ImageBuildError, builds, context, stamping, verify
from twi_asr.containers import labels as L
from twi_asr.errors import UsageError

from .test_containers import api_error

LOCK = """\
# locks/cpu.txt: made by scripts/lock.sh. Do not edit by hand.
annotated-types==0.8.0 \\
    --hash=sha256:13b2 \\
    --hash=sha256:f072
    # via
    #   pydantic
Jiwer==4.0.0 \\
    --hash=sha256:aa
pydantic_core==2.50.5 --hash=sha256:bb
setuptools==84.2.1 \\
    --hash=sha256:cc
pywin32==311 ; sys_platform == 'win32' \\
    --hash=sha256:dd
"""
INSTALLED = [
    ("annotated_types", "0.8.0"),
    ("jiwer", "4.0.0"),
    ("pydantic-core", "2.50.5"),
    ("setuptools", "84.2.1"),
    ("pip", "24.0"),
    ("twi-asr", __version__),
]
LINUX = {"sys_platform": "linux", "python_version": "3.11"}


def _git(folder: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout shaped like this one: Dockerfiles, locks, src, an allowlist .dockerignore, a commit."""
    root = tmp_path / "repo"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "src" / "pkg" / "__pycache__").mkdir()
    (root / "src" / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("secret test data\n")
    (root / "locks").mkdir()
    for name in ("cpu", "cpu-all", "cuda", "backend"):
        (root / "locks" / f"{name}.txt").write_text(f"# {name}\n" + LOCK)
    (root / "docker" / "model-context").mkdir(parents=True)
    (root / "docker" / "model-context" / "README.md").write_text("placeholder\n")
    (root / "docker" / "backend").mkdir()
    (root / "docker" / "backend" / "Dockerfile").write_text("FROM b\nCOPY locks/backend.txt /x\n")
    (root / "Dockerfile").write_text("FROM b\nCOPY locks/cpu.txt locks/cpu-all.txt /opt/twi-asr/\n")
    (root / "Dockerfile.cuda").write_text("FROM b\nCOPY locks/cuda.txt /opt/twi-asr/requirements.lock\n")
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "README.md").write_text("readme\n")
    (root / ".dockerignore").write_text(
        "# allowlist\n*\n!pyproject.toml\n!README.md\n!src/\n!locks/*.txt\n!docker/model-context/\n"
        "**/__pycache__\n"
    )
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return root


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as a terminal shows them, not folded into pytest's 80 columns."""
    import twi_asr.console

    monkeypatch.setattr(twi_asr.console.stdout, "width", 200)


# ------------------------------------------------------------------ labels
def test_stamp_has_the_commit_lock_hash_and_matching_build_args(repo: Path) -> None:
    stamp = L.make_stamp(repo, "Dockerfile", {}, source="https://user:tok@git.example.org/twi/asr.git")
    head = _git(repo, "rev-parse", "HEAD")
    assert stamp.commit == head and not stamp.dirty
    assert stamp.lock == "locks/cpu.txt"
    assert stamp.lock_sha256 == hashlib.sha256((repo / "locks/cpu.txt").read_bytes()).hexdigest()
    assert stamp.source == "https://git.example.org/twi/asr.git"  # never the token
    labels = stamp.labels()
    assert labels[L.REVISION] == head and labels[L.VERSION] == __version__
    assert labels[L.LOCK_SHA256] == stamp.lock_sha256 and labels[L.TITLE] and labels[L.DESCRIPTION]
    assert labels[L.CREATED].endswith("Z") and labels[L.CREATED][4] == "-"
    args = stamp.build_args()
    assert args == {"GIT_COMMIT": head, "BUILD_CREATED": labels[L.CREATED], "SOURCE_URL": stamp.source}
    assert set(L.REQUIRED) - set(labels) == {L.MODEL_SOURCE, L.WEIGHTS_HASH}  # they come after the build


def test_a_dirty_tree_says_so(repo: Path) -> None:
    (repo / "README.md").write_text("changed\n")
    stamp = L.make_stamp(repo, "Dockerfile", {})
    assert stamp.dirty and stamp.commit == _git(repo, "rev-parse", "HEAD") + "-dirty"


@pytest.mark.parametrize(
    ("dockerfile", "args", "lock"),
    [
        ("Dockerfile", {}, "locks/cpu.txt"),
        ("Dockerfile", {"ENGINES": "ct2"}, "locks/cpu.txt"),
        ("Dockerfile", {"ENGINES": "all"}, "locks/cpu-all.txt"),
        ("Dockerfile.cuda", {}, "locks/cuda.txt"),
        ("docker/backend/Dockerfile", {}, "locks/backend.txt"),
        ("Dockerfile", {"ENGINES": "nope"}, None),
        ("missing/Dockerfile", {}, None),
    ],
)
def test_which_lock_each_dockerfile_installs(
    repo: Path, dockerfile: str, args: dict[str, str], lock: str | None
) -> None:
    assert L.lock_for(repo, dockerfile, args) == lock


def test_the_real_dockerfiles_name_the_locks_they_install() -> None:
    root = Path(__file__).resolve().parents[2]
    assert L.lock_for(root, "Dockerfile.cuda", {}) == "locks/cuda.txt"
    assert L.lock_for(root, "docker/backend/Dockerfile", {}) == "locks/backend.txt"


def test_default_source_without_a_remote_and_with_one(repo: Path) -> None:
    assert L.default_source(repo) == L.DEFAULT_SOURCE_URL
    _git(repo, "remote", "add", "origin", "https://bot:ghp_secret@github.com/org/twi-asr.git")
    assert L.default_source(repo) == "https://github.com/org/twi-asr.git"
    _git(repo, "remote", "set-url", "origin", "git@github.com:org/twi-asr.git")
    assert L.default_source(repo) == "github.com:org/twi-asr.git"


@pytest.mark.parametrize("key", ["HF_TOKEN", "TWI_ASR_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"])
def test_a_secret_is_never_a_build_arg(key: str) -> None:
    with pytest.raises(UsageError, match="stay in the image history"):
        L.check_build_args({key: "x"})
    L.check_build_args({"MODEL": "twi", "BASE_IMAGE": "b", "ENGINES": "ct2"})


def test_model_labels_and_short_ids() -> None:
    assert L.model_labels(None, None) == {L.MODEL_SOURCE: "none", L.WEIGHTS_HASH: "none"}
    assert L.model_labels("tiny.en", "ab12") == {L.MODEL_SOURCE: "tiny.en", L.WEIGHTS_HASH: "ab12"}
    assert L.short("sha256:" + "a" * 64) == "a" * 12
    assert L.short("b" * 40 + "-dirty", 7) == "bbbbbbb-dirty"
    assert L.short(None) == "-" and L.short("0.1.0") == "0.1.0"


# ------------------------------------------------------------------ locks
def test_parse_lock_reads_pins_through_hashes_comments_and_markers() -> None:
    lock = verify.parse_lock(LOCK)
    assert lock.problems == ()
    assert {n: p.version for n, p in lock.pins.items()} == {
        "annotated-types": "0.8.0",
        "jiwer": "4.0.0",
        "pydantic-core": "2.50.5",
        "setuptools": "84.2.1",
        "pywin32": "311",
    }
    assert lock.pins["pywin32"].marker == "sys_platform == 'win32'"


def test_parse_lock_reports_what_is_not_a_pin() -> None:
    lock = verify.parse_lock("numpy>=2\nrich==1.0\nrich==1.1\n-e ./src\nfoo @ https://x/foo.whl\n")
    assert list(lock.pins) == ["rich"] and lock.pins["rich"].version == "1.1"
    assert lock.problems == (
        "not a name==version pin: numpy>=2",
        "pinned twice: rich",
        "not a name==version pin: foo @ https://x/foo.whl",
    )


def test_the_real_locks_parse_cleanly() -> None:
    root = Path(__file__).resolve().parents[2]
    for name in ("cpu", "cpu-all", "cuda", "backend", "dev"):
        lock = verify.parse_lock((root / "locks" / f"{name}.txt").read_text(encoding="utf-8"))
        assert lock.problems == () and len(lock.pins) > 20, name


def test_installed_packages_that_match_the_lock_are_clean() -> None:
    drift = verify.compare(verify.parse_lock(LOCK), INSTALLED, LINUX)
    assert drift.clean and drift.lines() == []  # pip and twi-asr ignored, pywin32 not for linux


def test_every_kind_of_drift_is_named() -> None:
    installed = [
        ("annotated-types", "0.8.0"),
        ("jiwer", "3.9.0"),  # different
        ("setuptools", "84.2.1"),
        ("setuptools", "80.0.0"),  # twice
        ("leftpad", "1.0"),  # extra
        ("pip", "24.0"),
    ]  # pydantic-core missing
    drift = verify.compare(verify.parse_lock(LOCK), installed, LINUX)
    assert drift.missing == [("pydantic-core", "2.50.5")]
    assert drift.extra == [("leftpad", "1.0")]
    assert drift.different == [("jiwer", "4.0.0", "3.9.0")]
    assert drift.twice == [("setuptools", ["80.0.0", "84.2.1"])]
    assert "different: jiwer is 3.9.0, the lock pins 4.0.0" in drift.lines()
    on_windows = verify.compare(verify.parse_lock(LOCK), INSTALLED, {"sys_platform": "win32"})
    assert on_windows.missing == [("pywin32", "311")]


def test_versions_compare_as_versions() -> None:
    drift = verify.compare(
        verify.parse_lock("torch==2.13.0+cpu\nx==1.0\n"), [("torch", "2.13.0+cpu"), ("x", "1")]
    )
    assert drift.clean


def test_label_checks_want_every_label_and_an_honest_weights_hash() -> None:
    labels = {**L.make_stamp(Path("/nonexistent"), "Dockerfile", {}).labels(), L.LOCK_SHA256: "ab"}
    labels.update(L.model_labels("tiny.en", "w1"))
    assert all(c.ok for c in verify.label_checks(labels, model_card={"weights_hash": "w1"}))
    bad = verify.label_checks(
        {**labels, L.SOURCE: " ", L.CREATED: "yesterday"}, model_card={"weights_hash": "w2"}
    )
    failed = {c.name: c.detail for c in bad if not c.ok}
    assert failed[f"label {L.SOURCE}"] == "missing or empty"
    assert "not an RFC 3339 time" in failed["created is RFC 3339"]
    assert failed["weights hash"] == f"label w1, {L.MODEL_JSON}: w2"
    none = {**labels, **L.model_labels(None, None)}
    assert all(c.ok for c in verify.label_checks(none, model_card=None))


# ------------------------------------------------------------------ context tar
def _names(fh: Any) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=fh) as tar:
        out: dict[str, bytes | None] = {}
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f else None
        return out


def test_the_context_is_docker_pys_own_without_a_model(repo: Path) -> None:
    from docker.utils.build import tar as docker_tar

    with context.write_context(repo, "Dockerfile") as fh:
        ours = _names(fh)
    theirs = _names(
        docker_tar(str(repo), exclude=context.dockerignore_patterns(repo), dockerfile=("Dockerfile", None))
    )
    assert ours == theirs
    assert "src/pkg/__init__.py" in ours and "docker/model-context/README.md" in ours
    assert not [n for n in ours if n.startswith("tests") or "__pycache__" in n or n.startswith(".git/")]


def test_a_model_folder_replaces_the_placeholder_and_symlinks_are_followed(
    repo: Path, tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "weights").write_bytes(b"W" * 1000)
    model = tmp_path / "snapshot"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "whisper"}')
    (model / "model.safetensors").symlink_to(blobs / "weights")  # as in a hub cache
    (model / "sub" / "extra.json").write_text("{}")
    (model / ".gitattributes").write_text("*")
    with context.write_context(repo, "Dockerfile", model_dir=model) as fh:
        names = _names(fh)
    assert names["docker/model-context/model.safetensors"] == b"W" * 1000
    assert names["docker/model-context/config.json"] == b'{"model_type": "whisper"}'
    assert names["docker/model-context/sub/extra.json"] == b"{}"
    assert (
        "docker/model-context/README.md" not in names and "docker/model-context/.gitattributes" not in names
    )
    assert "src/pkg/__init__.py" in names and "Dockerfile" in names


def test_a_context_that_keeps_the_model_folder_out_is_refused(repo: Path, tmp_path: Path) -> None:
    (repo / ".dockerignore").write_text("*\n!src/\n")
    with pytest.raises(UsageError, match="add a `!docker/model-context/` line"):
        context.write_context(repo, "Dockerfile", model_dir=tmp_path)


# ------------------------------------------------------------------ model plans
def test_model_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    local = stamping.plan_model(str(tmp_path))
    assert local == stamping.ModelPlan("/build/model-context", tmp_path.resolve(), f"local:{tmp_path.name}")
    assert stamping.plan_model("tiny.en") == stamping.ModelPlan("tiny.en", None, "tiny.en")
    assert stamping.plan_model("org/public") == stamping.ModelPlan("org/public", None, "org/public")
    assert stamping.plan_model("twi").build_arg == "twi"

    resolved: list[str] = []

    def resolve(spec: str) -> Any:
        resolved.append(spec)
        return type("R", (), {"path": tmp_path, "source": f"hf://{spec}"})()

    monkeypatch.setattr("twi_asr.models.resolve_model", resolve)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    private = stamping.plan_model("org/private")
    assert private == stamping.ModelPlan("/build/model-context", tmp_path, "org/private")
    assert stamping.plan_model("tiny.en").folder is None  # bundled: nothing to download
    assert stamping.plan_model("s3://bucket/model/").folder == tmp_path
    assert resolved == ["org/private", "s3://bucket/model/"]


# ------------------------------------------------------------------ fake engine
def _tar_of(name: str, data: bytes) -> list[bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return [raw[:100], raw[100:]]  # chunks, as the engine streams them


class FakeContainer:
    def __init__(self, engine: FakeEngine, image: str, kwargs: dict[str, Any]) -> None:
        self.engine, self.image, self.kwargs = engine, image, kwargs
        self.name = kwargs.get("name") or "probe"
        self.id = f"{self.name}-0123456789ab"
        self.status = "created"
        self.removed = False
        self.attrs: dict[str, Any] = {"Image": image, "Config": {"Labels": {}}, "NetworkSettings": {}}

    def get_archive(self, path: str) -> tuple[list[bytes], dict[str, Any]]:
        files = self.engine.files.get(self.image, {})
        if path not in files:
            raise api_error(404, f"Could not find the file {path} in container", derr.NotFound)
        return _tar_of(Path(path).name, files[path]), {}

    def start(self) -> None:
        self.status = "running"

    def wait(self, timeout: int = 0) -> dict[str, int]:
        return {"StatusCode": self.engine.probe_code}

    def logs(self, stdout: bool = True, stderr: bool = True, **_: Any) -> bytes:
        return self.engine.probe_out.encode() if stdout else b"Traceback\nImportError: boom\n"

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.removed = True

    def exec_run(self, cmd: list[str]) -> tuple[int, bytes]:
        return 0, json.dumps(self.engine.health).encode()


class FakeImage:
    def __init__(self, image_id: str, labels: dict[str, str]) -> None:
        self.id = image_id
        self.attrs = {"Config": {"Labels": labels}}


class FakeEngine:
    """Enough of docker-py for build, relabel, read_files, verify and status."""

    def __init__(self) -> None:
        self.builds: list[dict[str, Any]] = []
        self.images: dict[str, FakeImage] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.created: list[FakeContainer] = []
        self.probe_code = 0
        self.probe_out = ""
        self.health: dict[str, Any] = {}
        self.running: list[FakeContainer] = []
        engine = self

        class API:
            def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                labels: dict[str, str] = {}
                if "fileobj" in kwargs:
                    sent = _names(kwargs["fileobj"])
                    kwargs["context_names"] = list(sent)
                    parent = engine.images.get((sent.get("Dockerfile") or b"").decode()[5:].strip())
                    if parent is not None:  # FROM <id>: its labels are inherited
                        labels.update(parent.attrs["Config"]["Labels"])
                engine.builds.append(kwargs)
                image_id = f"sha256:{len(engine.builds):064x}"
                labels.update(kwargs.get("labels") or {})
                engine.images[image_id] = FakeImage(image_id, labels)
                kwargs["id"] = image_id
                return iter([{"stream": "Step 1/1 : FROM x\n"}, {"aux": {"ID": image_id}}])

        class Images:
            def get(self, name: str) -> FakeImage:
                if name not in engine.images:
                    raise api_error(404, f"No such image: {name}", derr.ImageNotFound)
                return engine.images[name]

        class Containers:
            def create(self, image: str, **kwargs: Any) -> FakeContainer:
                c = FakeContainer(engine, image, kwargs)
                engine.created.append(c)
                return c

            def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:
                return list(engine.running)

        self.api = API()
        self.images_api = Images()
        self.containers = Containers()

    def ping(self) -> bool:
        return True


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    members = {"api": fake.api, "images": fake.images_api, "containers": fake.containers}
    client = type("Client", (), members)()
    client.info = lambda: {"Swarm": {"LocalNodeState": "inactive"}}
    monkeypatch.setattr(containers.errors, "client", lambda **_: client)
    return fake


def _card(weights: str = "w123") -> bytes:
    return json.dumps(
        {"source": "/build/model-context", "format": "ctranslate2", "weights_hash": weights}
    ).encode()


# ------------------------------------------------------------------ build
def test_build_stamps_labels_then_the_weights_hash_from_the_baked_card(
    repo: Path, engine: FakeEngine
) -> None:
    lock = (repo / "locks/cpu.txt").read_bytes()
    first_id = f"sha256:{1:064x}"
    engine.files[first_id] = {L.IMAGE_LOCK: lock, L.MODEL_JSON: _card()}
    result = stamping.build_server_image(repo, tag="t:1", model="tiny.en", build_args={"BASE_IMAGE": "b"})
    first, second = engine.builds
    assert first["path"] == str(repo) and first["buildargs"]["MODEL"] == "tiny.en"
    assert first["buildargs"]["GIT_COMMIT"] == _git(repo, "rev-parse", "HEAD")
    assert first["buildargs"]["BUILD_CREATED"] == first["labels"][L.CREATED]
    assert first["labels"][L.LOCK_SHA256] == hashlib.sha256(lock).hexdigest()
    assert second["custom_context"] is True and second["context_names"] == ["Dockerfile"]
    assert second["labels"] == {L.MODEL_SOURCE: "tiny.en", L.WEIGHTS_HASH: "w123"}
    assert result.image_id == second["id"] and result.labels[L.WEIGHTS_HASH] == "w123"
    assert all(c.removed for c in engine.created)  # the reading container never ran and is gone
    assert engine.created[0].kwargs["network_disabled"] is True


def test_a_local_model_goes_in_the_context_as_a_temp_tar(
    repo: Path, engine: FakeEngine, tmp_path: Path
) -> None:
    model = tmp_path / "hf-tiny"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w")
    engine.files[f"sha256:{1:064x}"] = {L.MODEL_JSON: _card("w9")}
    result = stamping.build_server_image(repo, tag="t:2", model=str(model))
    first = engine.builds[0]
    assert first["custom_context"] is True and first["buildargs"]["MODEL"] == "/build/model-context"
    assert "docker/model-context/model.safetensors" in first["context_names"]
    assert result.labels[L.MODEL_SOURCE] == "local:hf-tiny" and result.labels[L.WEIGHTS_HASH] == "w9"
    assert any("no /opt/twi-asr/requirements.lock" in n for n in result.notes)


def test_no_model_means_none_labels(repo: Path, engine: FakeEngine) -> None:
    result = stamping.build_server_image(repo, tag="t:3")
    assert result.labels[L.MODEL_SOURCE] == result.labels[L.WEIGHTS_HASH] == "none"
    assert "MODEL" not in engine.builds[0]["buildargs"]


def test_an_image_with_another_lock_than_its_label_fails_the_build(repo: Path, engine: FakeEngine) -> None:
    engine.files[f"sha256:{1:064x}"] = {L.IMAGE_LOCK: b"other==1.0\n"}
    with pytest.raises(ImageBuildError, match=r"is not locks/cpu.txt"):
        stamping.build_server_image(repo, tag="t:4")


def test_build_refuses_secret_args_before_building(repo: Path, engine: FakeEngine) -> None:
    assert main(["docker", "build", "--context", str(repo), "--build-arg", "HF_TOKEN=hf_x"]) == 2
    assert engine.builds == []


def test_build_cli_prints_the_id_and_the_labels(
    repo: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.files[f"sha256:{1:064x}"] = {L.IMAGE_LOCK: (repo / "locks/cpu.txt").read_bytes()}
    args = ["docker", "build", "-q", "--context", str(repo), "--source", "https://example.org/x"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"sha256:{2:064x}"
    assert (
        f"revision {_git(repo, 'rev-parse', 'HEAD')[:12]}" in captured.err and "weights none" in captured.err
    )
    assert engine.builds[0]["buildargs"]["SOURCE_URL"] == "https://example.org/x"


# ------------------------------------------------------------------ verify
def _probe_out(installed: list[tuple[str, str]], lock: bytes | None, card: bytes | None) -> str:
    def enc(b: bytes | None) -> str | None:
        return base64.b64encode(b).decode() if b is not None else None

    return json.dumps({"dists": installed, "lock": enc(lock), "model": enc(card), "env": LINUX}) + "\n"


def _good_image(engine: FakeEngine) -> str:
    lock = LOCK.encode()
    labels = {**L.make_stamp(Path("/nonexistent"), "Dockerfile", {}).labels()}
    labels.update({L.LOCK_SHA256: hashlib.sha256(lock).hexdigest(), **L.model_labels("tiny.en", "w1")})
    engine.images["sha256:good"] = FakeImage("sha256:good", labels)
    engine.images["img:good"] = engine.images["sha256:good"]
    engine.probe_out = _probe_out(INSTALLED, lock, _card("w1"))
    return "img:good"


def test_verify_a_faithful_image(
    engine: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _good_image(engine)
    (tmp_path / "cpu.txt").write_text(LOCK)
    report = containers.verify_image(image, lock=tmp_path / "cpu.txt")
    assert report.ok, [c for c in report.checks if not c.ok]
    probe = engine.created[-1].kwargs
    assert probe["entrypoint"] == ["python"] and probe["network_disabled"] and probe["read_only"]
    assert probe["user"] == "10001:10001" and probe["cap_drop"] == ["ALL"] and engine.created[-1].removed
    assert main(["docker", "verify", image, "--lock", str(tmp_path / "cpu.txt")]) == 0
    assert "packages = lock" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "failed", "named"),
    [
        ("uninstalled", "packages = lock", "missing: jiwer==4.0.0"),
        ("extra", "packages = lock", "extra: leftpad==1.0"),
        ("blank label", f"label {L.SOURCE}", "missing or empty"),
        ("lock edited", "lock sha256 = label", L.IMAGE_LOCK),
        ("other --lock", "lock = --lock", "other.txt"),
        ("version", "twi-asr version", "installed 9.9.9"),
    ],
)
def test_verify_names_the_drift_and_exits_1(
    engine: FakeEngine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: str,
    failed: str,
    named: str,
) -> None:
    image = _good_image(engine)
    installed = list(INSTALLED)
    lock = LOCK.encode()
    args = ["docker", "verify", image]
    if change == "uninstalled":
        installed = [d for d in installed if d[0] != "jiwer"]
    elif change == "extra":
        installed.append(("leftpad", "1.0"))
    elif change == "blank label":
        engine.images[image].attrs["Config"]["Labels"][L.SOURCE] = ""
    elif change == "lock edited":
        lock = lock + b"# edited\n"
    elif change == "other --lock":
        (tmp_path / "other.txt").write_text("x==1\n")
        args += ["--lock", str(tmp_path / "other.txt")]
    elif change == "version":
        installed = [d for d in installed if d[0] != "twi-asr"] + [("twi_asr", "9.9.9")]
    engine.probe_out = _probe_out(installed, lock, _card("w1"))
    assert main(args) == 1
    captured = capsys.readouterr()
    assert named in captured.out
    assert f"drifts from its labels or lock: {failed}" in captured.err


def test_verify_without_the_image_or_python_is_exit_3(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["docker", "verify", "nope:1"]) == 3
    assert "Docker image nope:1 not found" in capsys.readouterr().err
    image = _good_image(engine)
    engine.probe_code = 1
    assert main(["docker", "verify", image]) == 3
    assert "python exited 1: ImportError: boom" in capsys.readouterr().err


def test_verify_json(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    image = _good_image(engine)
    assert main(["docker", "verify", image, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is True and body["image_id"] == "sha256:good" and body["drift"]["missing"] == []


# ------------------------------------------------------------------ status
def test_builds_compare_labels_with_the_live_health(engine: FakeEngine) -> None:
    _good_image(engine)
    c = FakeContainer(engine, "sha256:good", {"name": "twi-asr"})
    c.status = "running"
    engine.running = [c]
    labels = engine.images["sha256:good"].attrs["Config"]["Labels"]
    build = {"version": __version__, "commit": labels[L.REVISION], "created": labels[L.CREATED]}
    build.update(source=labels[L.SOURCE], lock_sha256=labels[L.LOCK_SHA256], image_id="sha256:good")
    engine.health = {"status": "ok", "build": build, "weights_hash": "w1"}
    (p,) = builds.container_builds().values()
    assert p.live is not None and p.mismatches == () and p.labels["weights_hash"] == "w1"
    engine.health = {**engine.health, "weights_hash": "other", "build": {**build, "image_id": "sha256:old"}}
    (p,) = builds.container_builds().values()
    assert p.mismatches == ("image_id", "weights_hash")
    (r,) = builds.replica_builds("svc")
    assert r.service == "svc" and r.mismatches == ("image_id", "weights_hash")


def test_from_health_and_labels_of_an_unknown_build() -> None:
    live = builds.from_health({"status": "ok", "version": "0.1.0", "build": {"version": "0.1.0"}})
    assert live["version"] == "0.1.0" and live["commit"] is None and live["weights_hash"] is None
    labels = builds.from_labels(L.model_labels(None, None), "sha256:x")
    assert labels["weights_hash"] is None and labels["image_id"] == "sha256:x"
    assert builds.mismatches(labels, live) == ()


def test_status_shows_each_containers_build_and_flags_a_mismatch(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    _good_image(engine)
    c = FakeContainer(engine, "sha256:good", {"name": "twi-asr"})
    c.status = "running"
    c.attrs.update(State={"Status": "running"}, Config={"Labels": {containers.MANAGED_LABEL: "true"}})
    engine.running = [c]
    labels = engine.images["sha256:good"].attrs["Config"]["Labels"]
    engine.health = {
        "status": "ok",
        "build": {"version": __version__, "commit": "f" * 40},
        "weights_hash": "w1",
    }
    assert main(["docker", "status", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["containers"]
    assert row["build"]["labels"]["commit"] == labels[L.REVISION]
    assert row["build"]["live"]["commit"] == "f" * 40 and row["build"]["mismatches"] == ["commit"]
    assert main(["docker", "status"]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH: commit ffffffffffff" in out and labels[L.REVISION][:12] in out and "w1" in out
