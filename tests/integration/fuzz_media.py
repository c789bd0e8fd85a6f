"""Seed media and mutations for fuzzing :func:`twi_asr.audio.decode_audio` (tests, ``bench/fuzz_audio.py``).

Seeds are real speech (espeak-ng) encoded by ffmpeg into each format the
decoder claims. A mutation is a short list of operations, each a tuple of a
kind and three integers, applied in order by :func:`mutate`. The integers are
taken modulo whatever range the kind needs, so any integers are a valid
operation: hypothesis can draw and shrink them, and ``random`` can make them
for the benchmark, from the same description. An input that broke the
decoder is therefore reproducible from (seed format, operations) alone.

Operations reach past the checksums and magic numbers a random flip would
stop at: ``field`` writes an extreme value into a parsed header field (RIFF
chunk sizes, WAV channels/rate/bits, FLAC STREAMINFO, MP3 frame headers and
Xing counts, Ogg granules and Vorbis/Opus headers, MP4 box sizes and counts),
and ``oggcrc`` recomputes every Ogg page checksum so that a damaged page is
decoded instead of dropped.
"""

from __future__ import annotations

import random
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

TEXT = "Please call Stella and ask her to bring these things."

SEEDS: dict[str, tuple[str, list[str]]] = {
    # format: (file name, ffmpeg output arguments); the espeak clip is 22.05 kHz mono
    "wav": ("seed.wav", ["-c:a", "pcm_s16le", "-af", "pan=stereo|c0=c0|c1=c0", "-ar", "44100"]),
    "flac": ("seed.flac", ["-c:a", "flac"]),
    "mp3": ("seed.mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "ogg": ("seed.ogg", ["-c:a", "libvorbis"]),
    "opus": ("seed.opus", ["-c:a", "libopus", "-b:a", "24k"]),
    "m4a": ("seed.m4a", ["-c:a", "aac", "-b:a", "64k"]),
}
FORMATS = tuple(SEEDS)

KINDS = (
    "flip",  # flip bit c%8 of byte a
    "byte",  # set byte a to c
    "insert",  # insert b%64+1 random bytes at a
    "delete",  # delete b%256+1 bytes at a
    "truncate",  # keep the first a bytes (a weighted towards the start by b)
    "field",  # write an extreme value into parsed header field a
    "splice",  # this input's head + another seed's tail
    "repeat",  # repeat a chunk of the input (a length that disagrees with the headers)
    "oggcrc",  # recompute every Ogg page CRC
    "tiny",  # keep only the first a%16 bytes (0: zero-length)
)

Op = tuple[str, int, int, int]


def make_seeds(folder: Path) -> dict[str, bytes]:
    """Encode the espeak-ng sentence into every seed format under ``folder``; returns their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    ref = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(ref), TEXT], check=True, capture_output=True)
    out: dict[str, bytes] = {}
    for fmt, (file_name, args) in SEEDS.items():
        dst = folder / file_name
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(ref), *args]
        subprocess.run([*cmd, "-map_metadata", "-1", str(dst)], check=True, capture_output=True, timeout=60)
        out[fmt] = dst.read_bytes()
    return out


# --------------------------------------------------------------------------- header fields


@dataclass(frozen=True)
class Field:
    """``bits`` bits at bit offset ``bit`` (big-endian bit order), or a little-endian byte field."""

    bit: int
    bits: int
    little: bool = False
    name: str = ""


def _le(offset: int, size: int, name: str) -> Field:
    return Field(offset * 8, size * 8, True, name)


def _be(offset: int, size: int, name: str) -> Field:
    return Field(offset * 8, size * 8, False, name)


def fields(data: bytes) -> list[Field]:
    """The header fields found in ``data`` (whichever format it starts as; empty when none)."""
    try:
        if data[:4] in (b"RIFF", b"RF64"):
            return _riff_fields(data)
        if data[:4] == b"fLaC":
            return _flac_fields(data)
        if data[:4] == b"OggS":
            return _ogg_fields(data)
        if data[4:8] == b"ftyp":
            return _mp4_fields(data, 0, len(data), 0)
        if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xfa"):
            return _mp3_fields(data)
    except (IndexError, struct.error):
        pass
    return []


def _riff_fields(data: bytes) -> list[Field]:
    out = [_le(4, 4, "riff size")]
    pos = 12
    while pos + 8 <= len(data) and len(out) < 40:
        tag, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        out.append(_le(pos + 4, 4, f"{tag.decode('latin-1')} size"))
        if tag == b"fmt ":
            for off, n, name in ((0, 2, "format"), (2, 2, "channels"), (4, 4, "rate"), (8, 4, "byte rate"),
                                 (12, 2, "block align"), (14, 2, "bits")):  # fmt: skip
                out.append(_le(pos + 8 + off, n, name))
        if tag == b"data":
            break
        pos += 8 + size + (size & 1)
    return out


def _flac_fields(data: bytes) -> list[Field]:
    out: list[Field] = []
    pos = 4
    while pos + 4 <= len(data) and len(out) < 40:
        header = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        out += [Field(pos * 8, 1, name="last block"), Field(pos * 8 + 1, 7, name="block type")]
        out.append(_be(pos + 1, 3, "block length"))
        if header & 0x7F == 0:  # STREAMINFO
            s = (pos + 4) * 8
            for off, n, name in ((0, 16, "min block"), (16, 16, "max block"), (32, 24, "min frame"),
                                 (56, 24, "max frame"), (80, 20, "rate"), (100, 3, "channels"),
                                 (103, 5, "bits"), (108, 36, "total samples")):  # fmt: skip
                out.append(Field(s + off, n, name=name))
        if header & 0x80:
            break
        pos += 4 + size
    return out


def _ogg_fields(data: bytes) -> list[Field]:
    out: list[Field] = []
    pos = 0
    pages = 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS" and pages < 64:
        nseg = data[pos + 26]
        body = pos + 27 + nseg
        if pages < 3 or pos + 27 + nseg + sum(data[pos + 27 : body]) >= len(data):  # first and last pages
            out += [_le(pos + 6, 8, "granule"), _le(pos + 18, 4, "page seq"), _le(pos + 26, 1, "segments")]
            out += [_le(pos + 5, 1, "header type"), _le(pos + 14, 4, "serial")]
            if nseg:
                out.append(_le(pos + 27, 1, "first lacing"))
        if data[body : body + 7] == b"\x01vorbis":
            out += [_le(body + 11, 1, "vorbis channels"), _le(body + 12, 4, "vorbis rate")]
            out += [_le(body + 28, 1, "vorbis blocksizes")]
        if data[body : body + 8] == b"OpusHead":
            out += [_le(body + 9, 1, "opus channels"), _le(body + 10, 2, "pre-skip")]
            out += [_le(body + 12, 4, "opus rate"), _le(body + 16, 2, "gain"), _le(body + 18, 1, "mapping")]
        pos = body + sum(data[pos + 27 : body])
        pages += 1
    return out


_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts", b"dinf", b"moof", b"traf"}
_MP4_LEAVES = {b"mvhd", b"tkhd", b"mdhd", b"stsd", b"stts", b"stsc", b"stsz", b"stco", b"co64", b"elst",
               b"esds", b"mp4a", b"sgpd", b"sbgp", b"hdlr"}  # fmt: skip


def _mp4_fields(data: bytes, start: int, end: int, depth: int) -> list[Field]:
    out: list[Field] = []
    pos = start
    while pos + 8 <= end and len(out) < 200:
        size, tag = struct.unpack_from(">I4s", data, pos)
        out.append(_be(pos, 4, f"{tag.decode('latin-1')} size"))
        if size < 8:
            break
        if tag in _MP4_CONTAINERS and depth < 8:
            out += _mp4_fields(data, pos + 8, min(pos + size, end), depth + 1)
        elif tag == b"stsd" and depth < 8:  # version/flags, count, then sample entries (mp4a -> esds)
            out += [_be(pos + 12, 4, "stsd count")]
            out += _mp4_fields(data, pos + 16, min(pos + size, end), depth + 1)
        elif tag == b"mp4a":  # sample entry: channels at +24, sample size +26, rate (16.16) at +32
            out += [
                _be(pos + 24, 2, "mp4a channels"),
                _be(pos + 26, 2, "mp4a bits"),
                _be(pos + 32, 4, "rate"),
            ]
            out += _mp4_fields(data, pos + 36, min(pos + size, end), depth + 1)
        if tag in _MP4_LEAVES:
            out += [
                _be(pos + 8 + k, 4, f"{tag.decode('latin-1')}+{k}") for k in range(0, min(size - 8, 32), 4)
            ]
        pos += size
    return out


_FRAME_BITS = ((11, 2, "mpeg version"), (13, 2, "layer"), (16, 4, "bitrate"), (20, 2, "rate index"),
               (22, 1, "padding"), (24, 2, "channel mode"))  # fmt: skip


def _mp3_fields(data: bytes) -> list[Field]:
    out: list[Field] = []
    pos = 0
    if data[:3] == b"ID3":
        out.append(_be(6, 4, "id3 size"))
        pos = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    frames = 0
    while pos + 4 <= len(data) and frames < 3:
        if data[pos] == 0xFF and data[pos + 1] & 0xE0 == 0xE0:
            out += [Field(pos * 8 + off, n, name=name) for off, n, name in _FRAME_BITS]
            frames += 1
            pos += 4
        else:
            pos += 1
    for tag in (b"Xing", b"Info"):
        at = data.find(tag, 0, 4096)
        if at >= 0:
            out += [
                _be(at + 4, 4, "xing flags"),
                _be(at + 8, 4, "xing frames"),
                _be(at + 12, 4, "xing bytes"),
            ]
    return out


def set_field(data: bytes, field: Field, value: int) -> bytes:
    """``data`` with ``field`` set to ``value`` (masked to its width); Ogg checksums are recomputed."""
    out = bytearray(data)
    _write_field(out, field, random.Random(0), value)
    if data[:4] == b"OggS":
        fix_ogg_crcs(out)
    return bytes(out)


def with_field(data: bytes, name: str, value: int, nth: int = 0) -> bytes:
    """``data`` with the ``nth`` header field called ``name`` (-1: the last) set to ``value``."""
    return set_field(data, [f for f in fields(data) if f.name == name][nth], value)


def _extreme(rng: random.Random, bits: int, old: int) -> int:
    top = (1 << bits) - 1
    choices = [0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1, old + 1, max(old - 1, 0), old * 2, old * 1000]
    choices.append(rng.getrandbits(bits))
    return min(rng.choice(choices), top)


def _write_field(data: bytearray, field: Field, rng: random.Random, value: int | None = None) -> None:
    """Write ``value`` (default: an extreme value for the field's width) into ``field``."""
    top = (1 << field.bits) - 1
    if field.little:
        start, size = field.bit // 8, field.bits // 8
        if start + size > len(data):
            return
        old = int.from_bytes(data[start : start + size], "little")
        new = _extreme(rng, field.bits, old) if value is None else value & top
        data[start : start + size] = new.to_bytes(size, "little")
        return
    first, last = field.bit // 8, (field.bit + field.bits - 1) // 8
    if last >= len(data):
        return
    width = (last - first + 1) * 8
    word = int.from_bytes(data[first : last + 1], "big")
    shift = width - (field.bit % 8) - field.bits
    mask = ((1 << field.bits) - 1) << shift
    old = (word & mask) >> shift
    value = _extreme(rng, field.bits, old) if value is None else value & top
    data[first : last + 1] = ((word & ~mask) | (value << shift)).to_bytes(width // 8, "big")


# --------------------------------------------------------------------------- Ogg CRC


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def fix_ogg_crcs(data: bytearray) -> None:
    """Recompute the CRC of every Ogg page found in ``data`` (a page cut short is checksummed as is)."""
    pos = data.find(b"OggS")
    while pos >= 0 and pos + 27 <= len(data):
        end = min(len(data), pos + 27 + data[pos + 26] + sum(data[pos + 27 : pos + 27 + data[pos + 26]]))
        data[pos + 22 : pos + 26] = b"\0\0\0\0"
        crc = 0
        for b in data[pos:end]:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ b) & 0xFF]
        data[pos + 22 : pos + 26] = struct.pack("<I", crc)
        pos = data.find(b"OggS", end)


# --------------------------------------------------------------------------- mutations


def mutate(data: bytes, ops: list[Op], seeds: dict[str, bytes]) -> bytes:
    """Apply ``ops`` to ``data`` in order; ``seeds`` are the other formats a splice can borrow from."""
    out = bytearray(data)
    others = [seeds[k] for k in sorted(seeds)]
    for kind, a, b, c in ops:
        n = len(out)
        rng = random.Random(a * 1_000_003 + b * 7919 + c)
        if kind == "flip" and n:
            out[a % n] ^= 1 << (c % 8)
        elif kind == "byte" and n:
            out[a % n] = c % 256
        elif kind == "insert":
            out[a % (n + 1) : a % (n + 1)] = rng.randbytes(b % 64 + 1)
        elif kind == "delete" and n:
            del out[a % n : a % n + b % 256 + 1]
        elif kind == "truncate":
            # half the cuts fall in the first 4 KiB, where the headers are
            keep = a % (min(n, 4096) + 1) if b % 2 else a % (n + 1)
            del out[keep:]
        elif kind == "field":
            found = fields(bytes(out))
            if found:
                _write_field(out, found[a % len(found)], rng)
        elif kind == "splice" and others:
            other = others[c % len(others)]
            cut, at = a % (n + 1), b % (len(other) + 1)
            out = out[:cut] + other[at:]
        elif kind == "repeat" and n:
            start = a % n
            chunk = out[start : start + b % 8192 + 1]
            out[start:start] = chunk * (c % 8 + 1)
        elif kind == "oggcrc":
            fix_ogg_crcs(out)
        elif kind == "tiny":
            del out[a % 16 :]
    return bytes(out)


def random_ops(rng: random.Random, fmt: str) -> list[Op]:
    """One to four operations for the benchmark; Ogg inputs usually get their checksums fixed."""
    weights = {"flip": 4, "byte": 2, "insert": 2, "delete": 2, "truncate": 3, "field": 6, "splice": 2,
               "repeat": 1, "tiny": 1}  # fmt: skip
    kinds = rng.choices(list(weights), weights=list(weights.values()), k=rng.randint(1, 4))
    ops: list[Op] = [(k, rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32)) for k in kinds]
    if fmt in ("ogg", "opus") and rng.random() < 0.7:
        ops.append(("oggcrc", 0, 0, 0))
    return ops


__all__ = [
    "FORMATS",
    "KINDS",
    "SEEDS",
    "Field",
    "Op",
    "fields",
    "fix_ogg_crcs",
    "make_seeds",
    "mutate",
    "random_ops",
    "set_field",
    "with_field",
]
