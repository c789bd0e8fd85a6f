"""Read a CTranslate2 ``model.bin`` into numpy arrays, and undo its int8/int16 quantization.

Why on its own: the layout (version, spec name, revision, then name/rank/shape/dtype/bytes
per variable, then aliases) is CTranslate2's, mirrored from
``ctranslate2/specs/model_spec.py::_serialize``; reading it needs numpy only, no
ctranslate2, torch or transformers. :mod:`.ct2_to_hf` rebuilds a transformers checkpoint
from what this returns, and the tests compare two converted folders with it.
"""

from __future__ import annotations

import logging
import os
import struct
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Order must match DataType in ctranslate2/types.h (_dtype_to_type_id in model_spec.py)
_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


def read_ct2_model(
    path: str | os.PathLike[str],
) -> tuple[int, str | None, int, dict[str, np.ndarray], dict[str, str]]:
    """Return (binary_version, spec_name, spec_revision, {name: ndarray}, {alias: target})."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def unpack(fmt: str) -> Any:
        nonlocal pos
        (val,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return val

    def string() -> str:
        nonlocal pos
        n = unpack("H")  # length includes the trailing NUL
        s = buf[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    version = unpack("I")
    if version > 6:
        log.warning("model.bin binary version %s is newer than this reader (6)", version)
    spec_name, revision = None, 1
    if version >= 2:
        spec_name = string()
        revision = unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        rank = unpack("B")
        shape = [unpack("I") for _ in range(rank)]
        if version >= 4:
            dtype = _CT2_DTYPES[unpack("B")]
            nbytes = unpack("I")
        else:  # old format: item size + element count
            item_size = unpack("B")
            dtype = {4: "float32", 2: "int16", 1: "int8"}[item_size]
            nbytes = unpack("I") * item_size
        raw = buf[pos : pos + nbytes]
        pos += nbytes
        if dtype == "bfloat16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype)
        variables[name] = arr.reshape(shape)
    aliases: dict[str, str] = {}
    if version >= 3:
        for _ in range(unpack("I")):
            alias = string()
            aliases[alias] = string()
    return version, spec_name, revision, variables, aliases


def check_layout(path: str | os.PathLike[str]) -> tuple[str | None, int]:
    """Walk ``model.bin``'s headers (seeking past the data) and return (spec name, variable count).

    A cheap completeness check of a file made by joining parts (:mod:`.model_parts`): it reads a
    few kilobytes of headers, not the weights, and fails with :class:`ValueError` unless the walk
    ends exactly at the end of the file (a truncated, padded or misordered join does not).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:

        def unpack(fmt: str) -> Any:
            data = fh.read(struct.calcsize("<" + fmt))
            if len(data) < struct.calcsize("<" + fmt):
                raise ValueError(f"{path}: ends inside a header at byte {fh.tell()} of {size}")
            return struct.unpack("<" + fmt, data)[0]

        def string() -> str:
            raw = fh.read(unpack("H"))
            if not raw or raw[-1:] != b"\0":
                raise ValueError(f"{path}: a name at byte {fh.tell()} is not NUL-terminated")
            return raw[:-1].decode("utf-8")

        try:
            version = unpack("I")
            if not 4 <= version <= 6:  # the binary versions with per-variable dtypes and aliases
                raise ValueError(f"{path}: binary version {version} is not one this check knows (4-6)")
            spec_name = string()
            unpack("I")  # revision
            count = unpack("I")
            for _ in range(count):
                string()
                for _ in range(unpack("B")):
                    unpack("I")  # the shape
                if unpack("B") not in _CT2_DTYPES:
                    raise ValueError(f"{path}: unknown dtype id at byte {fh.tell() - 1}")
                nbytes = unpack("I")
                if fh.tell() + nbytes > size:
                    raise ValueError(f"{path}: a variable runs past the end of the file ({size} bytes)")
                fh.seek(nbytes, os.SEEK_CUR)
            for _ in range(unpack("I")):  # aliases: name -> target
                string()
                string()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: a variable name is not UTF-8 ({exc})") from exc
        if fh.tell() != size:
            raise ValueError(f"{path}: {size - fh.tell()} bytes left after the last header")
    return spec_name, count


def dequantize(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, np.ndarray]:
    """float32 copies of all tensor variables; '<x>_scale' tensors are folded into '<x>'."""
    out: dict[str, np.ndarray] = {}
    for name, val in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        if name.endswith("_zero") and name[: -len("_zero")] in variables:
            raise NotImplementedError(f"{name}: AWQ/zero-point quantized models are not supported")
        scale = variables.get(name + "_scale")
        if scale is not None and val.dtype in (np.int8, np.int16):
            s = scale.astype(np.float32)
            if s.ndim == 1:  # per output channel (row); conv weights are [out, in, k]
                s = s.reshape((-1,) + (1,) * (val.ndim - 1))
            out[name] = val.astype(np.float32) / s
        elif val.ndim == 0:
            out[name] = val  # scalar attributes (num_heads, activation, ...)
        else:
            out[name] = val.astype(np.float32)
    for alias, target in aliases.items():  # e.g. decoder/projection/weight -> decoder/embeddings/weight
        while target in aliases:
            target = aliases[target]
        out[alias] = out[target]
    return out
