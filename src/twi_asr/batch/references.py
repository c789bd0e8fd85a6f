"""Reference transcripts for scoring: read a TSV/CSV file, match its lines to inputs.

The file has one line per input: a key, then the reference text. The key is
the input's path relative to its SRC (``day1/a.wav``), or just its file name
(``a.wav``), or either without the extension (``day1/a``, ``a``: utterance
ids). A header line (``path<TAB>text``, ``file,reference``...) is optional.

TSV (a ``.tsv`` file, or any file whose first line has a tab) is split on
the first tab and read verbatim, so quotes in the text are kept; CSV uses
the usual quoting, so a text with commas must be quoted. Files are UTF-8
(a BOM is fine). Matching is exact on those keys, never fuzzy: a key that
fits two inputs (two ``a.wav`` in different folders) is an error that asks
for the relative path.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UsageError

__all__ = ["ReferenceMatch", "load_references", "match_references", "parse_references"]

_KEY_HEADERS = ("path", "file", "filename", "file_name", "audio", "audio_path", "audio_filepath",
                "id", "utt", "utt_id", "utterance", "name", "key", "input")  # fmt: skip
_TEXT_HEADERS = ("text", "reference", "ref", "transcript", "transcription", "sentence", "normalized_text")


def _norm_key(key: str) -> str:
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def parse_references(text: str, *, name: str = "references") -> dict[str, str]:
    """``{key: reference text}`` from the content of a references file.

    Raises :class:`UsageError` (with the line number) for a line without a
    separator or a key given twice with different texts; blank lines are skipped.
    """
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    tsv = name.lower().endswith(".tsv") or "\t" in first
    rows: Iterable[list[str]]
    if tsv:
        rows = ([part for part in line.split("\t", 1)] if line.strip() else [] for line in lines)
    else:
        rows = csv.reader(io.StringIO(text))
    refs: dict[str, str] = {}
    header_checked = False
    for n, cells in enumerate(rows, 1):
        if not cells or not any(c.strip() for c in cells):
            continue
        if not header_checked:
            header_checked = True
            low = [c.strip().lower() for c in cells]
            if len(low) >= 2 and low[0] in _KEY_HEADERS and low[1] in _TEXT_HEADERS:
                continue
        if len(cells) < 2:
            sep = "a tab" if tsv else "a comma"
            raise UsageError(f"{name}:{n}: expected KEY, {sep}, then the reference text")
        key, ref = _norm_key(cells[0]), (cells[1] if tsv else ",".join(cells[1:])).strip()
        if not key:
            raise UsageError(f"{name}:{n}: empty key")
        if key in refs and refs[key] != ref:
            raise UsageError(f"{name}:{n}: {key!r} is listed twice with different texts")
        refs[key] = ref
    return refs


def load_references(path: str | Path) -> dict[str, str]:
    """Read and parse a references file (local path); a missing file is a usage error."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"references file {path} does not exist")
    try:
        content = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: references must be UTF-8 text") from None
    return parse_references(content, name=str(path))


@dataclass
class ReferenceMatch:
    """References keyed by input (relative name), and the reference keys nothing matched."""

    by_input: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def _candidate_keys(relative: str) -> list[str]:
    """The keys a references file may use for the input named ``relative``, most specific first."""
    p = PurePosixPath(relative)
    keys = [relative, str(p.with_suffix("")), p.name, p.stem]
    return list(dict.fromkeys(keys))


def match_references(relatives: Iterable[str], refs: dict[str, str]) -> ReferenceMatch:
    """Pair inputs (by relative name) with reference keys: full path, path without suffix, name, stem.

    A more specific key wins over a less specific one; a key that would be
    the best match of two inputs is a :class:`UsageError`.
    """
    relatives = list(relatives)
    claims: dict[str, list[str]] = {}
    out = ReferenceMatch()
    for rel in relatives:
        for key in _candidate_keys(rel):
            if key in refs:
                out.by_input[rel] = refs[key]
                claims.setdefault(key, []).append(rel)
                break
    for key, rels in claims.items():
        if len(rels) > 1:
            shown = ", ".join(rels[:3])
            raise UsageError(
                f"reference key {key!r} fits {len(rels)} inputs ({shown}); use their paths relative to SRC"
            )
    out.unmatched = sorted(set(refs) - set(claims))
    return out
