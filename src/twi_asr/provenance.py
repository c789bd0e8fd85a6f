"""Where the running code came from: package version, git commit, build time, lock hash, image.

A container must say which image, lock and commit it runs, not only which
weights. The image's Dockerfile turns build arguments into ``TWI_ASR_BUILD_*``
variables and points ``TWI_ASR_LOCK_FILE`` at the lock it installed from;
``twi-asr docker run`` passes ``TWI_ASR_IMAGE_ID``. Outside an image (a pip or
editable install) the commit is read from the checkout when there is one.
Standard library only: the server, the CLI and the container tools all use it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__

__all__ = ["BuildInfo", "build_info", "file_sha256", "git_commit"]


@dataclass(frozen=True)
class BuildInfo:
    """What a running twi-asr is: every field but ``version`` may be unknown (None)."""

    version: str
    commit: str | None
    created: str | None
    source: str | None
    lock_sha256: str | None
    image_id: str | None

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready copy."""
        return asdict(self)


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit(folder: Path) -> str | None:
    """The commit checked out at ``folder`` (with ``-dirty`` when the tree has changes), or None.

    None for an installed copy (under site-packages): a venv inside some checkout must not
    report that checkout's commit as its own.
    """
    if "site-packages" in folder.parts or not any((p / ".git").exists() for p in (folder, *folder.parents)):
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return f"{commit}-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else commit


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@functools.lru_cache(maxsize=1)
def build_info() -> BuildInfo:
    """This process's provenance (read once: none of it changes while a process runs)."""
    lock_file = _env("TWI_ASR_LOCK_FILE")
    lock_sha = None
    if lock_file:
        try:
            lock_sha = file_sha256(Path(lock_file))
        except OSError:
            lock_sha = None
    commit = _env("TWI_ASR_BUILD_COMMIT") or git_commit(Path(__file__).resolve().parent)
    return BuildInfo(
        version=__version__,
        commit=commit,
        created=_env("TWI_ASR_BUILD_CREATED"),
        source=_env("TWI_ASR_BUILD_SOURCE"),
        lock_sha256=lock_sha,
        image_id=_env("TWI_ASR_IMAGE_ID"),
    )
