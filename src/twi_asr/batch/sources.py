"""What ``twi-asr batch SRC...`` reads: folders, globs, files, ``s3://`` prefixes and manifests.

Everything but manifests goes through :func:`twi_asr.storage.discover`, so
``batch`` and ``transcribe`` agree on what a folder or glob means and how
outputs are named (``SRC/day1/a.wav`` -> ``OUT/day1/a.txt``).

A *manifest* is a ``.csv``, ``.tsv`` or ``.jsonl`` file listing the inputs,
one per row, with a path column and optionally the reference text:

- CSV/TSV: a header naming the columns (``path``/``audio``/``file``... and
  ``text``/``reference``/``transcript``...), or no header: path first, text
  second. TSV is read verbatim (no quoting), CSV with the usual quoting.
- JSONL: one object per line with the same keys (NeMo's ``audio_filepath``
  and ``text`` work as they are).

Relative paths in a manifest are relative to the manifest's folder, and the
outputs mirror them; absolute paths outside that folder and ``s3://`` URIs
keep their file name only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from ..storage import InputItem

__all__ = ["MANIFEST_SUFFIXES", "Sources", "expand_sources", "is_manifest", "parse_manifest"]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
PATH_COLUMNS = ("path", "audio", "audio_path", "audio_filepath", "file", "filename", "file_name",
                "source", "input", "uri", "wav")  # fmt: skip
TEXT_COLUMNS = ("text", "reference", "ref", "transcript", "transcription", "sentence", "normalized_text")


@dataclass
class Sources:
    """Inputs to transcribe, plus what the specs said on the side."""

    items: list[InputItem] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)  # relative name -> text (from manifests)
    skipped: list[str] = field(default_factory=list)  # non-media files inside folders and prefixes
    missing: list[str] = field(default_factory=list)  # specs (or manifest rows) that matched nothing


@dataclass(frozen=True)
class ManifestRow:
    """One row of a manifest: where the audio is and, if given, what it says."""

    source: str
    relative: str
    text: str | None


def is_manifest(spec: str) -> bool:
    """True for a ``.csv``/``.tsv``/``.jsonl`` spec that names a file (local or s3)."""
    if PurePosixPath(spec).suffix.lower() not in MANIFEST_SUFFIXES:
        return False
    return spec.startswith("s3://") or Path(spec).expanduser().is_file()


def _pick(columns: list[str], wanted: tuple[str, ...]) -> int | None:
    lowered = [c.strip().lower() for c in columns]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    return None


def _relative_for(path: str, base: Path | None) -> tuple[str, str]:
    """``(source, relative output name)`` of a manifest path, resolved against the manifest's folder."""
    if path.startswith("s3://"):
        return path, PurePosixPath(path).name
    p = Path(path).expanduser()
    if p.is_absolute():
        if base is not None:
            try:
                return str(p), p.resolve().relative_to(base.resolve()).as_posix()
            except ValueError:
                pass
        return str(p), p.name
    full = (base / p) if base is not None else p
    parts = PurePosixPath(p.as_posix()).parts
    rel = p.as_posix() if ".." not in parts else p.name  # ../x must not climb out of OUT
    return str(full), rel


def parse_manifest(text: str, *, name: str, base: Path | None) -> list[ManifestRow]:
    """Rows of a manifest's ``text`` (``name`` picks the format by suffix and names errors).

    Raises :class:`UsageError` with the line number for a row without a path,
    a JSONL line that is not an object, or a header without a path column.
    """
    suffix = PurePosixPath(name).suffix.lower()
    rows: list[ManifestRow] = []
    if suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{name}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{name}:{n}: expected a JSON object per line")
            lowered = {str(k).lower(): v for k, v in obj.items()}
            path = next((lowered[k] for k in PATH_COLUMNS if isinstance(lowered.get(k), str)), None)
            if not path:
                raise UsageError(f"{name}:{n}: no path ({', '.join(PATH_COLUMNS[:4])}...) in this line")
            ref = next((lowered[k] for k in TEXT_COLUMNS if isinstance(lowered.get(k), str)), None)
            rows.append(ManifestRow(*_relative_for(path, base), ref))
        return rows
    if suffix == ".tsv":
        reader: Iterable[list[str]] = (line.split("\t") for line in text.splitlines())
    else:
        reader = csv.reader(io.StringIO(text))
    path_col, text_col, first = 0, 1, True
    for n, cells in enumerate(reader, 1):
        if not any(c.strip() for c in cells):
            continue
        if first:
            first = False
            found = _pick(cells, PATH_COLUMNS)
            if found is not None or _pick(cells, TEXT_COLUMNS) is not None:  # a header line
                if found is None:
                    cols = ", ".join(PATH_COLUMNS[:4])
                    raise UsageError(f"{name}: the header has no path column ({cols}...)")
                text_at = _pick(cells, TEXT_COLUMNS)
                path_col, text_col = found, (-1 if text_at is None else text_at)
                continue
        path = cells[path_col].strip() if path_col < len(cells) else ""
        if not path:
            raise UsageError(f"{name}:{n}: no path in this row")
        ref = cells[text_col] if 0 <= text_col < len(cells) else None
        rows.append(ManifestRow(*_relative_for(path, base), ref.strip() if ref is not None else None))
    return rows


def _read_manifest(spec: str) -> list[ManifestRow]:
    from ..storage import read_bytes

    raw = read_bytes(spec)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{spec}: a manifest must be UTF-8 text") from None
    base = None if spec.startswith("s3://") else Path(spec).expanduser().parent
    return parse_manifest(text, name=spec, base=base)


def _unique(relative: str, taken: set[str]) -> str:
    """``a.wav`` -> ``a-2.wav`` when another input already writes ``a.*``."""
    p = PurePosixPath(relative)
    candidate, n = relative, 1
    while str(PurePosixPath(candidate).with_suffix("")) in taken:
        n += 1
        candidate = str(p.with_name(f"{p.stem}-{n}{p.suffix}"))
    taken.add(str(PurePosixPath(candidate).with_suffix("")))
    return candidate


def expand_sources(specs: Iterable[str]) -> Sources:
    """Every input named by ``specs``; manifests contribute their rows and reference texts.

    Output names stay unique across all specs (``a.wav`` and ``a.mp3`` give
    ``a`` and ``a-2``), and one file named twice is transcribed once.
    """
    from ..storage import discover

    specs = list(specs)
    manifests = [s for s in specs if is_manifest(s)]
    found = discover([s for s in specs if s not in manifests])
    out = Sources(skipped=list(found.skipped), missing=list(found.missing))
    taken = {str(PurePosixPath(i.relative).with_suffix("")) for i in found.items}
    seen = {i.source if i.is_s3 else str(Path(i.source).resolve()) for i in found.items}
    out.items.extend(found.items)
    for spec in manifests:
        for row in _read_manifest(spec):
            key = row.source if row.source.startswith("s3://") else str(Path(row.source).resolve())
            if key in seen:
                continue
            if not row.source.startswith("s3://") and not Path(row.source).is_file():
                out.missing.append(row.source)
                continue
            seen.add(key)
            relative = _unique(row.relative, taken)
            out.items.append(InputItem(source=row.source, relative=relative, explicit=True))
            if row.text is not None:
                out.references[relative] = row.text
    return out
