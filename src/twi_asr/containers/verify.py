"""``twi-asr docker verify IMAGE``: is the image what its labels and its lock say it is?

Three checks, each a row of the report: the labels are complete and non-empty
(:data:`.labels.REQUIRED`), the installed packages are exactly the lock's pins
(a short-lived container of the image, with no network, read-only, as uid 10001,
prints its distributions, its lock and its baked model card), and the lock in
the image hashes to the ``io.twi-asr.lock.sha256`` label (and equals ``--lock
FILE`` when given). ``pip`` is not compared (the venv's installer, not part of
the lock) and neither is ``twi-asr`` itself: its version is checked against the
version label. Any difference is drift: exit 1. No engine or no image: exit 3.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentProblem, UsageError
from . import labels as L
from .errors import _dc, _mapped
from .images import image_labels

if TYPE_CHECKING:
    from docker import DockerClient

OWN = "twi-asr"
IGNORED = frozenset({"pip", OWN})
"""Installed but never in a lock: pip (the venv's installer) and the package itself."""

_PIN = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(\[[^\]]*\])?\s*==\s*([^\s;,]+)$")

_PROBE = r"""
import base64, json, os, platform, sys
from importlib import metadata
def read(path):
    try:
        with open(path, "rb") as fh:
            return base64.b64encode(fh.read()).decode()
    except OSError:
        return None
dists = [[d.metadata["Name"] or "", d.version] for d in metadata.distributions()]
env = {
    "implementation_name": sys.implementation.name,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
print(json.dumps({"dists": dists, "lock": read(sys.argv[1]), "model": read(sys.argv[2]), "env": env}))
"""


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_Bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of a lock (with its environment marker, if any)."""

    name: str
    """Normalised."""
    version: str
    marker: str | None = None


@dataclass(frozen=True)
class Lock:
    """A parsed lock: its pins by normalised name, and lines that are not a pin."""

    pins: dict[str, Pin]
    problems: tuple[str, ...] = ()


def parse_lock(text: str) -> Lock:
    """The pins of a pip requirements lock (``uv pip compile --generate-hashes`` output).

    Backslash continuations are joined, comments, ``--hash``/``--index-url``
    options and blank lines dropped. Anything else that is not ``name==version``
    (a range, a URL, an editable) is a problem: a lock pins every package.
    """
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    if buffer:
        logical.append(buffer)
    for line in logical:
        requirement = re.split(r"\s--?\w", " " + line.strip(), maxsplit=1)[0].strip()
        if not requirement:
            continue
        spec, _, marker = requirement.partition(";")
        match = _PIN.match(spec.strip())
        if match is None:
            problems.append(f"not a name==version pin: {requirement[:120]}")
            continue
        name = normalise(match.group(1))
        if name in pins:
            problems.append(f"pinned twice: {name}")
        pins[name] = Pin(name, match.group(3), marker.strip() or None)
    return Lock(pins, tuple(problems))


def _same_version(a: str, b: str) -> bool:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with pip, setuptools, everything
        return a == b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _applies(marker: str | None, env: Mapping[str, str]) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import InvalidMarker, Marker
    except ImportError:  # pragma: no cover
        return True
    try:
        return bool(Marker(marker).evaluate(dict(env)))
    except InvalidMarker:
        return True


@dataclass(frozen=True)
class Drift:
    """Where installed packages and a lock disagree (names normalised)."""

    missing: list[tuple[str, str]] = field(default_factory=list)
    """(name, locked version): pinned, not installed."""
    extra: list[tuple[str, str]] = field(default_factory=list)
    """(name, installed version): installed, not pinned."""
    different: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, locked, installed)."""
    twice: list[tuple[str, list[str]]] = field(default_factory=list)
    """(name, versions): installed more than once (leftover metadata)."""

    @property
    def clean(self) -> bool:
        """No difference at all."""
        return not (self.missing or self.extra or self.different or self.twice)

    def lines(self) -> list[str]:
        """One line per difference, for the report."""
        return (
            [f"missing: {n}=={v} is in the lock, not installed" for n, v in self.missing]
            + [f"extra: {n}=={v} is installed, not in the lock" for n, v in self.extra]
            + [f"different: {n} is {got}, the lock pins {want}" for n, want, got in self.different]
            + [f"twice: {n} is installed as {', '.join(vs)}" for n, vs in self.twice]
        )


def compare(lock: Lock, installed: Iterable[tuple[str, str]], env: Mapping[str, str] | None = None) -> Drift:
    """Installed distributions against the lock's pins (pip and twi-asr left out)."""
    found: dict[str, list[str]] = {}
    for name, version in installed:
        if name:
            found.setdefault(normalise(name), []).append(version)
    drift = Drift()
    for name, versions in sorted(found.items()):
        if name in IGNORED:
            continue
        if len(versions) > 1:
            drift.twice.append((name, sorted(versions)))
        pin = lock.pins.get(name)
        if pin is None or not _applies(pin.marker, env or {}):
            drift.extra.append((name, versions[0]))
        elif not _same_version(pin.version, versions[0]):
            drift.different.append((name, pin.version, versions[0]))
    for name, pin in sorted(lock.pins.items()):
        if name not in found and name not in IGNORED and _applies(pin.marker, env or {}):
            drift.missing.append((name, pin.version))
    return drift


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    """``docker verify``'s answer: every check, and the package drift in full."""

    image: str
    image_id: str
    labels: dict[str, str]
    checks: list[Check]
    drift: Drift

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "image": self.image,
            "image_id": self.image_id,
            "ok": self.ok,
            "labels": self.labels,
            "checks": [asdict(c) for c in self.checks],
            "drift": asdict(self.drift),
        }


def label_checks(labels: Mapping[str, str], *, model_card: Mapping[str, Any] | None) -> list[Check]:
    """Every required label present and non-empty; ``created`` RFC 3339; the model labels honest."""
    checks: list[Check] = []
    for key in L.REQUIRED:
        value = str(labels.get(key) or "").strip()
        checks.append(Check(f"label {key}", bool(value), value[:80] if value else "missing or empty"))
    created = str(labels.get(L.CREATED) or "")
    if created:
        try:
            stamp = _dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            good = stamp.tzinfo is not None
        except ValueError:
            good = False
        if not good:
            checks.append(Check("created is RFC 3339", False, f"{created!r} is not an RFC 3339 time"))
    want = str((model_card or {}).get("weights_hash") or L.NO_MODEL)
    have = str(labels.get(L.WEIGHTS_HASH) or "")
    where = L.MODEL_JSON if model_card is not None else "no model baked"
    checks.append(Check("weights hash", have == want, f"label {have or '-'}, {where}: {want}"))
    return checks


def _probe(dc: DockerClient, image: str) -> dict[str, Any]:
    """Run the image's python once, locked down, to print its distributions, lock and model card."""
    with _mapped(f"inspecting the packages of {image}", image=image):
        container = dc.containers.create(
            image,
            command=["-c", _PROBE, L.IMAGE_LOCK, L.MODEL_JSON],
            entrypoint=["python"],
            network_disabled=True,
            user="10001:10001",
            read_only=True,
            tmpfs={"/tmp": "rw,size=16m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="512m",
            labels={"twi-asr.verify": "true"},
        )
        try:
            container.start()
            code = int(container.wait(timeout=120).get("StatusCode", 1))
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        finally:
            container.remove(force=True, v=True)
    if code != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"cannot list the packages of {image}: python exited {code}: {last[:200]}")
    try:
        return dict(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise EnvironmentProblem(f"cannot list the packages of {image}: no JSON from python") from None


def verify_image(
    image: str, *, lock: Path | None = None, docker_client: DockerClient | None = None
) -> Report:
    """Check ``image`` against its labels and its lock (and ``lock``, a file here, when given)."""
    expected = None
    if lock is not None:
        try:
            expected = Path(lock).read_bytes()
        except OSError as exc:
            raise UsageError(f"--lock {lock}: {exc.strerror or exc}") from None
    dc = _dc(docker_client)
    image_id, labels = image_labels(image, docker_client=dc)
    probe = _probe(dc, image_id)
    card = None
    if probe.get("model"):
        try:
            card = dict(json.loads(base64.b64decode(probe["model"])))
        except ValueError:
            card = {}
    checks = label_checks(labels, model_card=card)
    dists = [(str(n), str(v)) for n, v in probe.get("dists") or []]
    own = sorted({v for n, v in dists if normalise(n) == OWN})
    want = str(labels.get(L.VERSION) or "")
    checks.append(Check("twi-asr version", own == [want], f"installed {', '.join(own) or '-'}, label {want}"))
    encoded = probe.get("lock")
    drift = Drift()
    if encoded is None:
        checks.append(Check("lock in the image", False, f"no {L.IMAGE_LOCK}"))
    else:
        data = base64.b64decode(encoded)
        sha = hashlib.sha256(data).hexdigest()
        label_sha = str(labels.get(L.LOCK_SHA256) or "")
        detail = f"{L.IMAGE_LOCK} {sha[:12]}, label {label_sha[:12] or '-'}"
        checks.append(Check("lock sha256 = label", sha == label_sha, detail))
        if expected is not None:
            same = data == expected
            detail = f"{lock} {hashlib.sha256(expected).hexdigest()[:12]}"
            checks.append(Check("lock = --lock", same, detail))
        parsed = parse_lock(data.decode("utf-8", "replace"))
        drift = compare(parsed, dists, probe.get("env") or {})
        for problem in parsed.problems:
            checks.append(Check("lock line", False, problem))
        detail = f"{len(parsed.pins)} pins, {len(dists)} installed"
        if not drift.clean:
            kinds = ("missing", "extra", "different", "twice")
            counts = ", ".join(f"{len(getattr(drift, k))} {k}" for k in kinds)
            detail = f"{counts}: {'; '.join(drift.lines())}"
        checks.append(Check("packages = lock", drift.clean, detail))
    return Report(image=image, image_id=image_id, labels=labels, checks=checks, drift=drift)
