"""The hash-pinned locks (locks/*.txt) agree with pyproject.toml, and every install uses them.

What CI tests must be what the images ship: each install flavour (CPU ct2 image, CPU all-engines
image, CUDA image, backend image, the dev/CI venv) has one lock made by scripts/lock.sh. These
checks fail when pyproject.toml gains or tightens a requirement the lock does not satisfy, when a
pin lacks a hash, when torch slips into a torch-free flavour, when two locks pin one package at
different versions, and when a Dockerfile or scripts/setup.sh installs anything but its lock.
Offline: the locks and pyproject.toml are read as text (packaging parses the requirements).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .test_dockerfiles import BACKEND_DOCKERFILE, DOCKERFILES, env_of, parse_dockerfile

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "locks"
LOCK_IN_IMAGE = "/opt/twi-asr/requirements.lock"
# The platform the locks are made for (scripts/lock.sh): markers are judged there.
MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip


@dataclass(frozen=True)
class Flavour:
    """One install flavour: the extras it installs, its extra inputs, what must never be in it."""

    extras: tuple[str, ...]
    inputs: tuple[str, ...]
    forbidden: tuple[str, ...] = ()


IMAGE_EXTRAS = ("server", "ct2", "models", "s3")
FLAVOURS = {
    "cpu.txt": Flavour(IMAGE_EXTRAS, ("build.in",), forbidden=("torch", "transformers", "bentoml")),
    "cpu-all.txt": Flavour((*IMAGE_EXTRAS, "transformers"), ("build.in", "torch-cpu.in")),
    "cuda.txt": Flavour((*IMAGE_EXTRAS, "transformers"), ("build.in", "cuda.in")),
    "backend.txt": Flavour(
        ("backend",), ("build.in",), forbidden=("torch", "transformers", "ctranslate2", "faster-whisper")
    ),
    "dev.txt": Flavour(("all", "bentoml", "dev"), ("build.in", "torch-cpu.in")),
}


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: tuple[str, ...]


def parse_lock(path: Path) -> dict[str, Pin]:
    """name -> Pin for a `uv pip compile --generate-hashes` file; anything but `name==v --hash...` fails."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, Pin] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"{path.name}: not a hash-pinned requirement: {line[:120]!r}"
        name = canonicalize_name(match.group(1))
        hashes = tuple(re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
        assert hashes, f"{path.name}: {name} has no --hash"
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(Version(match.group(2)), hashes)
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(lines: list[str]) -> list[Requirement]:
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(MARKER_ENV)]


def _in_file(name: str) -> list[Requirement]:
    lines = (LOCKS / name).read_text(encoding="utf-8").splitlines()
    return _requirements([line.strip() for line in lines if line.strip() and not line.startswith("#")])


def expand_extras(extras: tuple[str, ...]) -> set[str]:
    """The extras named, plus those they pull in through `twi-asr[...]` (as `all` does)."""
    optional = _pyproject()["project"]["optional-dependencies"]
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        assert extra in optional, f"pyproject.toml has no extra {extra!r}"
        if extra in seen:
            continue
        seen.add(extra)
        for req in _requirements(optional[extra]):
            if canonicalize_name(req.name) == "twi-asr":
                todo.extend(req.extras)
    return seen


def flavour_requirements(flavour: Flavour) -> list[Requirement]:
    """Everything a flavour must satisfy: the core dependencies, its extras, its inputs in locks/."""
    project = _pyproject()["project"]
    reqs = _requirements(project["dependencies"])
    for extra in sorted(expand_extras(flavour.extras)):
        reqs += _requirements(project["optional-dependencies"][extra])
    for name in flavour.inputs:
        reqs += _in_file(name)
    return [r for r in reqs if canonicalize_name(r.name) != "twi-asr"]


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, Pin]]:
    return {name: parse_lock(LOCKS / name) for name in FLAVOURS}


@pytest.mark.parametrize("name", sorted(FLAVOURS))
def test_every_requirement_is_pinned_inside_its_range(name: str, locks: dict[str, dict[str, Pin]]) -> None:
    pins = locks[name]
    for req in flavour_requirements(FLAVOURS[name]):
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"locks/{name} lacks {req}: run bash scripts/lock.sh"
        assert req.specifier.contains(pin.version, prereleases=True), (
            f"locks/{name} pins {req.name}=={pin.version}, outside pyproject's {req}: "
            "run bash scripts/lock.sh"
        )


@pytest.mark.parametrize("name", sorted(FLAVOURS))
def test_nothing_forbidden_in_a_lock(name: str, locks: dict[str, dict[str, Pin]]) -> None:
    for package in FLAVOURS[name].forbidden:
        assert package not in locks[name], f"locks/{name} must not contain {package}"


def test_the_dev_lock_covers_every_extra() -> None:
    extras = set(_pyproject()["project"]["optional-dependencies"])
    assert expand_extras(FLAVOURS["dev.txt"].extras) == extras, "the CI venv must install every extra"


def test_the_build_backend_is_locked() -> None:
    """The images install the package with --no-build-isolation: its build backend comes from the lock."""
    wanted = {str(Requirement(r)) for r in _pyproject()["build-system"]["requires"]}
    assert {str(r) for r in _in_file("build.in")} == wanted


def test_torch_is_the_cpu_build_wherever_ci_and_the_cpu_image_run(locks: dict[str, dict[str, Pin]]) -> None:
    assert locks["dev.txt"]["torch"].version.local == "cpu"
    assert locks["cpu-all.txt"]["torch"].version == locks["dev.txt"]["torch"].version
    assert locks["cuda.txt"]["torch"].version.public == locks["dev.txt"]["torch"].version.public
    assert "nvidia-cublas-cu12" in locks["cuda.txt"], "CTranslate2 dlopens libcublas.so.12"


def test_what_ci_tests_is_what_the_images_ship(locks: dict[str, dict[str, Pin]]) -> None:
    """A package in the dev lock and an image lock has one version in both (torch: one public version)."""
    dev = locks["dev.txt"]
    for name, pins in locks.items():
        for package, pin in pins.items():
            if package in dev:
                assert pin.version.public == dev[package].version.public, (
                    f"locks/{name} pins {package}=={pin.version}, locks/dev.txt {dev[package].version}"
                )
        if name != "cuda.txt":  # cuda.txt adds the CUDA wheels; the others are subsets of the dev set
            assert set(pins) <= set(dev), (
                f"locks/{name} has packages CI never installs: {set(pins) - set(dev)}"
            )


def test_each_lock_says_how_it_was_made() -> None:
    uv_version = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "scripts/lock.sh").read_text(), re.M)
    assert uv_version
    for name in FLAVOURS:
        head = (LOCKS / name).read_text(encoding="utf-8")[:1000]
        assert head.startswith(f"# locks/{name}: ")
        assert f"Made by scripts/lock.sh with uv {uv_version.group(1)}" in head
        assert "--generate-hashes" in head and "bash scripts/lock.sh" in head


def test_parse_lock_refuses_a_pin_without_a_hash(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text("numpy==2.0.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\nrich==13.0\n")
    with pytest.raises(AssertionError, match="rich has no --hash"):
        parse_lock(lock)
    lock.write_text("numpy>=2\n")
    with pytest.raises(AssertionError, match="not a hash-pinned requirement"):
        parse_lock(lock)


# --- the installs use the locks ---------------------------------------------------------------

# Which lock each Dockerfile installs, as the contract names them.
IMAGE_LOCKS = {
    DOCKERFILES["cpu"]: {"ct2": "cpu.txt", "all": "cpu-all.txt"},
    DOCKERFILES["cuda"]: {"all": "cuda.txt"},
    BACKEND_DOCKERFILE: {"backend": "backend.txt"},
}


@pytest.mark.parametrize("path", sorted(IMAGE_LOCKS), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_dockerfile_installs_its_lock_with_hashes(path: Path) -> None:
    df = parse_dockerfile(path)
    wanted = IMAGE_LOCKS[path]
    copies = [args.split() for kw, args in df if kw == "COPY" and args.startswith("locks/")]
    (copy,) = copies
    assert sorted(copy[:-1]) == sorted(f"locks/{lock}" for lock in wanted.values())
    assert copy[-1] in (LOCK_IN_IMAGE, "/opt/twi-asr/")
    if len(wanted) > 1:  # ENGINES picks the lock
        body = next(args for kw, args in df if kw == "RUN" and "ENGINES" in args)
        for engines, lock in wanted.items():
            assert re.search(rf"{engines}\) lock={re.escape(lock)};", body), (engines, lock)
        assert f'mv "/opt/twi-asr/$lock" {LOCK_IN_IMAGE}' in body
    assert env_of(df)["TWI_ASR_LOCK_FILE"] == LOCK_IN_IMAGE
    installs = [args for kw, args in df if kw == "RUN" and "pip install" in args]
    from_lock = [a for a in installs if f"-r {LOCK_IN_IMAGE}" in a]
    assert len(from_lock) == 1 and "--require-hashes" in from_lock[0] and "--no-deps" in from_lock[0]
    for args in installs:
        for command in re.findall(r"pip install [^;&|]*", args):
            # the lock, or this checkout offline: nothing else is resolved or downloaded
            assert f"-r {LOCK_IN_IMAGE}" in command or re.fullmatch(
                r"pip install --no-deps --no-build-isolation \.\s*", command
            ), f"{path.name}: {command}"


def test_the_ci_venv_installs_the_dev_lock_with_hashes() -> None:
    script = (ROOT / "scripts/setup.sh").read_text(encoding="utf-8")
    commands = re.findall(r"pip install[^\n]*", script)
    assert any("--require-hashes" in c and "--no-deps" in c and "-r locks/dev.txt" in c for c in commands)
    assert any(re.search(r"--no-deps\b.*-e \.", c) for c in commands), "the package itself, editable"
    assert not any("[all,dev]" in c or "TORCH_SPEC" in c for c in commands), "no resolution at setup"
