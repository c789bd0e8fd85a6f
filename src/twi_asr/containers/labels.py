"""The labels ``twi-asr docker build`` stamps on an image, and the build arguments that match them.

An image must say where it came from without being run: the OCI labels
(``org.opencontainers.image.*``: revision, version, created, source, title,
description) plus ours: the sha256 of the lock the Dockerfile installs
(``io.twi-asr.lock.sha256``) and the baked model's source and weights hash
(``io.twi-asr.model.*``, ``none`` when no model is baked). The same commit,
time and source go in as the build arguments ``GIT_COMMIT``, ``BUILD_CREATED``
and ``SOURCE_URL``, which the Dockerfiles turn into ``TWI_ASR_BUILD_*`` so a
running server reports them too (``/health``'s ``build``).
Standard library only; no Docker here.
"""

from __future__ import annotations

import datetime as _dt
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .. import __version__
from ..errors import UsageError
from ..provenance import file_sha256, git_commit

OCI = "org.opencontainers.image"
REVISION = f"{OCI}.revision"
VERSION = f"{OCI}.version"
CREATED = f"{OCI}.created"
SOURCE = f"{OCI}.source"
TITLE = f"{OCI}.title"
DESCRIPTION = f"{OCI}.description"
LOCK_SHA256 = "io.twi-asr.lock.sha256"
MODEL_SOURCE = "io.twi-asr.model.source"
WEIGHTS_HASH = "io.twi-asr.model.weights-hash"
NO_MODEL = "none"
"""The model labels' value on an image with no baked model (it loads one at run time)."""

REQUIRED = (REVISION, VERSION, CREATED, SOURCE, TITLE, DESCRIPTION, LOCK_SHA256, MODEL_SOURCE, WEIGHTS_HASH)
"""Every label ``docker verify`` wants present and non-empty."""

DEFAULT_SOURCE_URL = "https://pypi.org/project/twi-asr/"
"""The source label when neither ``--source``, ``TWI_ASR_SOURCE_URL`` nor a git remote names one."""

MODEL_JSON = "/opt/model/twi-asr-model.json"
"""What ``twi-asr models bake`` writes next to the baked weights (source, format, weights_hash)."""
IMAGE_LOCK = "/opt/twi-asr/requirements.lock"
"""The lock an image installed from (the Dockerfiles keep it there; ``TWI_ASR_LOCK_FILE``)."""

_TITLES = {
    "locks/cpu.txt": ("twi-asr (CPU)", "twi-asr speech-to-text server, CTranslate2 on CPU (no torch)"),
    "locks/cpu-all.txt": ("twi-asr (CPU, all engines)", "twi-asr speech-to-text server, CPU, with torch"),
    "locks/cuda.txt": ("twi-asr (CUDA)", "twi-asr speech-to-text server on NVIDIA GPUs"),
    "locks/backend.txt": ("twi-asr backend", "twi-asr job backend: users, uploads, queued transcription"),
}
_SECRET_ARG = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|CREDENTIAL", re.IGNORECASE)
_LOCK_REF = re.compile(r"\blocks/[\w.\-]+\.txt\b")


@dataclass(frozen=True)
class Stamp:
    """What one build says about itself: its labels and the provenance build arguments."""

    commit: str
    version: str
    created: str
    source: str
    lock: str | None
    """The lock file the Dockerfile installs, relative to the context (None: not known)."""
    lock_sha256: str | None

    @property
    def dirty(self) -> bool:
        """The checkout had uncommitted changes: the revision is the commit they sit on."""
        return self.commit.endswith("-dirty")

    def build_args(self) -> dict[str, str]:
        """``GIT_COMMIT``, ``BUILD_CREATED``, ``SOURCE_URL``: the same values as the labels."""
        return {"GIT_COMMIT": self.commit, "BUILD_CREATED": self.created, "SOURCE_URL": self.source}

    def labels(self) -> dict[str, str]:
        """The labels of the main build (the model's come after it, from the baked folder)."""
        title, description = _TITLES.get(self.lock or "", ("twi-asr", "twi-asr speech-to-text"))
        out = {
            REVISION: self.commit,
            VERSION: self.version,
            CREATED: self.created,
            SOURCE: self.source,
            TITLE: title,
            DESCRIPTION: description,
        }
        if self.lock_sha256:
            out[LOCK_SHA256] = self.lock_sha256
        return out


def rfc3339_now() -> str:
    """Now, in UTC, to the second: ``2026-01-31T12:00:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_for(context: Path, dockerfile: str, build_args: Mapping[str, str]) -> str | None:
    """The lock (relative to ``context``) that ``dockerfile`` installs with these build arguments.

    ``Dockerfile`` installs ``locks/cpu.txt`` (``ENGINES=ct2``, the default) or
    ``locks/cpu-all.txt`` (``ENGINES=all``); a Dockerfile that names one lock
    (``Dockerfile.cuda``, ``docker/backend/Dockerfile``) installs that one.
    None when it names none, or several and no rule picks one.
    """
    name = Path(dockerfile).as_posix()
    if name == "Dockerfile":
        engines = build_args.get("ENGINES", "ct2")
        return {"ct2": "locks/cpu.txt", "all": "locks/cpu-all.txt"}.get(engines)
    try:
        text = (context / dockerfile).read_text(encoding="utf-8")
    except OSError:
        return None
    found = sorted(set(_LOCK_REF.findall(text)))
    return found[0] if len(found) == 1 else None


def check_build_args(build_args: Mapping[str, str]) -> None:
    """Refuse a build argument that looks like a secret: it would stay in the image's history."""
    for key in build_args:
        if _SECRET_ARG.search(key):
            raise UsageError(
                f"--build-arg {key}: build arguments stay in the image history (`docker history`); "
                "pass secrets at run time as files (TWI_ASR_API_KEY_FILE, Docker secrets), and for a "
                "private model pass --model with HF_TOKEN set: it is downloaded here, not in the build"
            )


def _clean_url(url: str) -> str:
    """A remote URL without user or password (``https://user:token@host/x`` -> ``https://host/x``)."""
    if "://" not in url:  # scp-like git@host:org/repo
        return re.sub(r"^[^@/]+@", "", url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def default_source(context: Path) -> str:
    """The checkout's ``origin`` remote (without credentials), else :data:`DEFAULT_SOURCE_URL`."""
    try:
        done = subprocess.run(
            ["git", "-C", str(context), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_SOURCE_URL
    url = done.stdout.strip() if done.returncode == 0 else ""
    return _clean_url(url) if url else DEFAULT_SOURCE_URL


def make_stamp(
    context: Path,
    dockerfile: str,
    build_args: Mapping[str, str],
    *,
    source: str | None = None,
    created: str | None = None,
) -> Stamp:
    """The labels and provenance arguments of a build of ``context`` (its commit, lock and now)."""
    lock = lock_for(context, dockerfile, build_args)
    lock_sha = None
    if lock and (context / lock).is_file():
        lock_sha = file_sha256(context / lock)
    return Stamp(
        commit=git_commit(context.resolve()) or "unknown",
        version=__version__,
        created=created or rfc3339_now(),
        source=_clean_url(source) if source else default_source(context),
        lock=lock,
        lock_sha256=lock_sha,
    )


def model_labels(source: str | None, weights_hash: str | None) -> dict[str, str]:
    """The model labels: what was baked and its weights hash, or ``none`` for both."""
    if not weights_hash:
        return {MODEL_SOURCE: NO_MODEL, WEIGHTS_HASH: NO_MODEL}
    return {MODEL_SOURCE: source or "unknown", WEIGHTS_HASH: weights_hash}


def short(value: str | None, n: int = 12) -> str:
    """A hash or id cut to ``n`` characters (``sha256:`` dropped, ``-dirty`` kept); ``-`` for none."""
    if not value:
        return "-"
    value = value.removeprefix("sha256:")
    dirty = value.endswith("-dirty")
    core = value.removesuffix("-dirty")
    if re.fullmatch(r"[0-9a-f]{16,}", core):
        core = core[:n]
    return core + ("-dirty" if dirty else "")
