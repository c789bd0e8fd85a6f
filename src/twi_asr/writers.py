"""Turn a :class:`~twi_asr.types.Transcript` into files: txt, json, srt, vtt, tsv.

Rendering is pure (:func:`render` returns a string, which the HTTP server
can send as it is); writing (:func:`write_transcript`) adds the two things
that matter on disk: output paths that can never leave the output folder,
whatever name an input had, and atomic replacement, so that a reader (or a
crash) never sees half a file.

Conventions: UTF-8 without BOM, ``\\n`` line ends, times rounded half-up to
the millisecond from the decimal value of the float (so 2.9999999 s is
``00:00:03,000``, not ``00:00:02,999``), hours with at least two digits.
Segments whose text is blank are left out of txt/srt/vtt/tsv (they show
nothing, and an empty cue payload confuses subtitle parsers); json keeps
everything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path, PurePath, PurePosixPath

from .errors import UsageError
from .types import Transcript

__all__ = ["FORMATS", "output_path", "parse_formats", "render", "write_transcript"]

FORMATS: tuple[str, ...] = ("txt", "json", "srt", "vtt", "tsv")

_MS = Decimal("0.001")


def _to_ms(seconds: float) -> int:
    """Seconds to whole milliseconds, rounding half up on the decimal value.

    ``Decimal(repr(x))`` is the shortest decimal that round-trips the float,
    i.e. the number a person wrote or sees, so 3723.4565 gives 3723457 where
    ``round(x * 1000)`` could land on the wrong side of the half. Negative,
    NaN and infinite times (which a broken engine could produce) become 0.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return int(Decimal(repr(float(seconds))).quantize(_MS, rounding=ROUND_HALF_UP) * 1000)


def _clock(ms: int, sep: str) -> str:
    """``HH:MM:SS<sep>mmm``; hours grow past two digits if they must."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _cue_text(text: str) -> str:
    """Cue payload that cannot break srt/vtt: no ``-->``, no blank lines, no edge spaces.

    A blank line ends a cue and ``-->`` marks a timing line in both formats,
    so ``-->`` becomes ``->`` (as openai-whisper does) and empty lines are
    dropped; intentional single line breaks are kept.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(line for line in lines if line)
    while "-->" in text:
        text = text.replace("-->", "->")
    return text


def _vtt_escape(text: str) -> str:
    """WebVTT cue text is markup: ``<`` opens a tag and ``&`` an entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cues(transcript: Transcript) -> Iterator[tuple[int, int, str]]:
    """(start ms, end ms, raw text) per non-blank segment, or one cue for a segment-less text."""
    if transcript.segments:
        for seg in transcript.segments:
            if not seg.text.strip():
                continue
            start = _to_ms(seg.start)
            yield start, max(start, _to_ms(seg.end)), seg.text
    elif transcript.text.strip():
        yield 0, _to_ms(transcript.duration), transcript.text


def _render_txt(transcript: Transcript) -> str:
    if transcript.segments:
        lines = [" ".join(seg.text.split()) for seg in transcript.segments]
    else:
        lines = [transcript.text.strip()]
    lines = [line for line in lines if line]
    return "".join(line + "\n" for line in lines)


def _render_json(transcript: Transcript) -> str:
    return json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _render_srt(transcript: Transcript) -> str:
    blocks = []
    for start, end, text in _cues(transcript):
        payload = _cue_text(text)
        if payload:
            number = len(blocks) + 1
            blocks.append(f"{number}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{payload}\n")
    return "\n".join(blocks)


def _render_vtt(transcript: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, text in _cues(transcript):
        payload = _vtt_escape(_cue_text(text))
        if payload:
            blocks.append(f"{_clock(start, '.')} --> {_clock(end, '.')}\n{payload}\n")
    return "\n".join(blocks)


def _render_tsv(transcript: Transcript) -> str:
    rows = ["start\tend\ttext\n"]
    for start, end, text in _cues(transcript):
        flat = " ".join(text.split())  # tabs and newlines would break rows and columns
        if flat:
            rows.append(f"{start}\t{end}\t{flat}\n")
    return "".join(rows)


_RENDERERS = {
    "txt": _render_txt,
    "json": _render_json,
    "srt": _render_srt,
    "vtt": _render_vtt,
    "tsv": _render_tsv,
}


def _check_format(fmt: str) -> str:
    if fmt not in _RENDERERS:
        raise UsageError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)} or 'all'")
    return fmt


def render(transcript: Transcript, fmt: str) -> str:
    """The file content of ``transcript`` in format ``fmt`` (one of :data:`FORMATS`).

    - ``txt``: one line per segment (the whole text when there are no
      segments), each ending in a newline; empty for an empty transcript.
    - ``json``: :meth:`Transcript.to_dict` with non-ASCII kept as it is
      (``ɛ``, not ``\\u025b``), indented, newline-terminated.
    - ``srt``: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``; empty
      string when there is nothing to show.
    - ``vtt``: a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> ...`` cues.
    - ``tsv``: ``start\\tend\\ttext`` with integer milliseconds, as
      openai-whisper writes it.

    A transcript with text but no segments becomes one cue from 0 to its
    duration in srt/vtt/tsv.
    """
    return _RENDERERS[_check_format(fmt)](transcript)


def parse_formats(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a format list: ``"srt,vtt"``, ``["srt", "json,txt"]`` or ``"all"``.

    Items are comma-separated, case-insensitive, de-duplicated in order;
    ``all`` anywhere means every format in :data:`FORMATS` order. Raises
    :class:`UsageError` naming the valid formats for an unknown or empty spec.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [part.strip().lower() for item in items for part in str(item).split(",")]
    names = [name for name in names if name]
    if not names:
        raise UsageError(f"no output format given; choose from {', '.join(FORMATS)} or 'all'")
    if "all" in names:
        return FORMATS
    return tuple(dict.fromkeys(_check_format(name) for name in names))


_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_relative(relative_name: str | PurePath) -> PurePosixPath:
    """A relative path that cannot climb: separators unified, roots and drives dropped, ``..`` clamped.

    Both ``/`` and ``\\`` count as separators (a name from a Windows client
    or an upload must not escape on any OS). ``..`` cancels the part before
    it and is dropped at the top, as in URL dot-segment removal, so
    ``a/../../b.wav`` is ``b.wav`` and ``/etc/passwd`` is ``etc/passwd``.
    """
    name = os.fspath(relative_name)
    if "\x00" in name:
        raise UsageError(f"output name {name!r} contains a NUL character")
    name = _DRIVE.sub("", name.replace("\\", "/"))
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise UsageError(f"output name {os.fspath(relative_name)!r} has no file name in it")
    return PurePosixPath(*parts)


def output_path(out_dir: Path, relative_name: str | PurePath, fmt: str) -> Path:
    """Where format ``fmt`` of the input named ``relative_name`` goes: inside ``out_dir``, always.

    The input's relative path keeps its folders and gets ``.fmt`` for its
    suffix (``sub/a.wav`` -> ``out_dir/sub/a.srt``). Absolute paths, drive
    letters and ``..`` are neutralised (see :func:`_safe_relative`), and the
    resolved result must still be inside the resolved ``out_dir`` (a symlink
    inside it could point elsewhere); otherwise :class:`UsageError`.
    """
    _check_format(fmt)
    rel = _safe_relative(relative_name)
    rel = rel.with_suffix(f".{fmt}")
    out_dir = Path(out_dir)
    path = out_dir.joinpath(*rel.parts)
    root = out_dir.resolve()
    if not path.resolve().is_relative_to(root):
        raise UsageError(f"output for {os.fspath(relative_name)!r} would be written outside {out_dir}")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    The temp file is created with mode 0o666 filtered by the umask (like a
    plain ``open``), not mkstemp's 0o600, so outputs stay readable by the
    usual people; it is removed if anything fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_transcript(
    transcript: Transcript,
    out_dir: Path,
    relative_name: str | PurePath,
    formats: str | Sequence[str],
) -> list[Path]:
    """Write ``transcript`` in each of ``formats`` under ``out_dir``; return the paths written.

    ``formats`` is anything :func:`parse_formats` accepts. All paths are
    checked and all contents rendered before the first file is written, so
    a bad format or name writes nothing. Each file is UTF-8 and replaced
    atomically; parent folders are created.
    """
    fmts = parse_formats(formats)
    planned = [(output_path(out_dir, relative_name, fmt), render(transcript, fmt)) for fmt in fmts]
    for path, content in planned:
        _atomic_write(path, content.encode("utf-8"))
    return [path for path, _ in planned]
