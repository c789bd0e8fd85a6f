"""Where inputs come from and outputs go: local paths, globs and ``s3://``.

Discovery turns what a user typed (files, folders, globs, S3 prefixes) into
a list of :class:`InputItem`, each with a *relative name* that outputs mirror,
so ``recordings/day1/a.wav`` lands at ``OUT/day1/a.srt``. S3 goes through
boto3 with the standard credential chain; ``AWS_ENDPOINT_URL`` points it at
any S3-compatible endpoint.

This module is discovery; the S3 client and its error messages live in
:mod:`.storage_s3`, listing, reads, downloads and folder sync in
:mod:`.storage_transfer`. Their names are re-exported here, where callers
have always imported them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .audio import AUDIO_EXTENSIONS
from .storage_s3 import (  # noqa: F401  (re-exported: the S3 names have always been importable here)
    _s3_error,
    check_bucket,
    resolve_endpoint_url,
    s3_client,
    s3_error,
    s3_exists,
    set_endpoint_url,
    split_s3,
)
from .storage_transfer import (  # noqa: F401  (re-exported, as above)
    _CHUNK,
    download,
    list_s3,
    open_s3,
    read_bytes,
    sync_prefix_to_folder,
)

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """One input to transcribe: where to read it and the name its outputs get."""

    source: str
    relative: str
    explicit: bool = False

    @property
    def is_s3(self) -> bool:
        """True for ``s3://`` sources."""
        return self.source.startswith("s3://")


@dataclass
class Discovery:
    """What a set of input specs expanded to."""

    items: list[InputItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # non-media files inside folders/prefixes
    missing: list[str] = field(default_factory=list)  # specs that matched nothing at all


def is_media(name: str) -> bool:
    """True when the file name has an audio or video extension we decode."""
    return PurePosixPath(name).suffix.lower() in AUDIO_EXTENSIONS


def _unique(relative: str, taken: set[str]) -> str:
    """``a.wav`` -> ``a-2.wav`` when two inputs would write the same outputs."""
    p = PurePosixPath(relative)
    stem_key = str(p.with_suffix(""))
    candidate, n = relative, 1
    while stem_key in taken:
        n += 1
        candidate = str(p.with_name(f"{p.stem}-{n}{p.suffix}"))
        stem_key = str(PurePosixPath(candidate).with_suffix(""))
    taken.add(stem_key)
    return candidate


def _walk_folder(root: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            yield full, full.relative_to(root).as_posix()


def _glob_base(pattern: str) -> Path:
    """The folder before the first wildcard: glob matches are named relative to it."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def discover(specs: Iterable[str]) -> Discovery:
    """Expand files, folders (recursive, media files only), globs and S3 prefixes.

    A file named explicitly is always tried, whatever its extension; inside
    folders and prefixes, non-media files are skipped and counted.
    """
    found = Discovery()
    taken: set[str] = set()
    seen: set[str] = set()

    def add(source: str, relative: str, explicit: bool) -> None:
        key = source if source.startswith("s3://") else str(Path(source).resolve())
        if key in seen:
            return
        seen.add(key)
        found.items.append(InputItem(source=source, relative=_unique(relative, taken), explicit=explicit))

    for spec in specs:
        if spec.startswith("s3://"):
            n_before = len(found.items) + len(found.skipped)
            for key_uri, rel in list_s3(spec):
                if is_media(rel) or key_uri.rstrip("/") == spec.rstrip("/"):
                    add(key_uri, rel, explicit=key_uri == spec)
                else:
                    found.skipped.append(key_uri)
            if len(found.items) + len(found.skipped) == n_before:
                found.missing.append(spec)
            continue
        path = Path(spec).expanduser()
        if path.is_dir():
            for full, rel in _walk_folder(path):
                if is_media(full.name):
                    add(str(full), rel, explicit=False)
                else:
                    found.skipped.append(str(full))
        elif path.exists():
            add(str(path), path.name, explicit=True)
        elif _GLOB_CHARS & set(spec):
            pattern = os.path.expanduser(spec)
            base = _glob_base(pattern)
            files = [Path(m) for m in sorted(glob.glob(pattern, recursive=True)) if Path(m).is_file()]
            if not files:
                found.missing.append(spec)
            for f in files:  # like a folder: a glob selects the media among its matches
                if not is_media(f.name):
                    found.skipped.append(str(f))
                    continue
                try:
                    rel = f.relative_to(base).as_posix()
                except ValueError:
                    rel = f.name
                add(str(f), rel, explicit=False)
        else:
            found.missing.append(spec)
    return found
