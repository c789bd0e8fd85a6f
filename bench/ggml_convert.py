"""Convert a Hugging Face Whisper checkpoint into whisper.cpp's GGML file (f16), for the bench.

Why it exists. The benchmark runs whisper.cpp (through ``pywhispercpp``) on the *same weights*
as every other row, and whisper.cpp reads only its own GGML file. The checkpoints here are
transformers folders (``config.json`` + ``model.safetensors`` + ``tokenizer.json``, e.g. the
ones ``twi-asr models to-hf`` writes), so this module writes that file from them with numpy
and ``safetensors.numpy`` alone (no torch).

The format, as ``whisper_model_load`` (whisper.cpp ``src/whisper.cpp``, 1.8.x) reads it, all
little-endian:

1. ``uint32`` magic ``0x67676d6c`` ("ggml");
2. eleven ``int32`` hparams: n_vocab, n_audio_ctx, n_audio_state, n_audio_head,
   n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
   (1 = mostly f16);
3. the mel filter bank: ``int32`` n_mel, ``int32`` n_fft (the 201 rfft bins), then
   n_mel * n_fft ``float32`` row by row (filter j, bin k at ``j * n_fft + k``);
4. the vocabulary: ``int32`` count, then per token ``uint32`` length + raw bytes, in id order.
   Only the byte-level BPE tokens are written (ids below the first added token, i.e. below
   ``<|endoftext|>``); whisper.cpp numbers the special tokens itself from n_vocab;
5. tensors until end of file: ``int32`` n_dims, ``int32`` name length, ``int32`` type
   (0 = f32, 1 = f16), the dims in reverse (ggml's ne[0] is the fastest-varying axis, so a
   row-major numpy array of shape (a, b) is ne = [b, a]), the name, then the data.

The loader checks each tensor's type against the one it allocated: positional embeddings,
1-D tensors (biases, layer norms) and the two conv biases (shape ``(n_state, 1)``, ne =
[1, n_state]) are f32; every other tensor (linear weights, conv kernels, the token embedding)
is f16. Names are whisper.cpp's (the original OpenAI names), mapped from transformers' below.

Run: ``python bench/ggml_convert.py HF_DIR OUT_FILE``. From code: ``ggml_weights(hf_dir,
cache_dir)`` converts once and reuses the file while the checkpoint's bytes stay the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

GGML_MAGIC = 0x67676D6C
FTYPE_MOSTLY_F16 = 1
TYPE_F32, TYPE_F16 = 0, 1
# Bump when the written bytes change for the same input, so cached files are rebuilt.
FORMAT_VERSION = 1
# What a cached file's name depends on (besides the converter's own version).
HASHED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json")

# transformers name (after the leading "model.") -> whisper.cpp name, per layer part.
_LAYER_PARTS = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "final_layer_norm": "mlp_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
}
_TOP_LEVEL = {
    "encoder.conv1": "encoder.conv1",
    "encoder.conv2": "encoder.conv2",
    "encoder.layer_norm": "encoder.ln_post",
    "decoder.layer_norm": "decoder.ln",
    "decoder.embed_tokens": "decoder.token_embedding",
}
_LAYER_RE = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_TOP_RE = re.compile(r"^(.+)\.(weight|bias)$")
# Tensors whisper.cpp keeps in f32 although they have two dimensions.
_F32_2D = {
    "encoder.positional_embedding",
    "decoder.positional_embedding",
    "encoder.conv1.bias",
    "encoder.conv2.bias",
}


def ggml_name(hf_name: str) -> str | None:
    """whisper.cpp's name for a transformers Whisper tensor, or None for one it does not load.

    ``proj_out.weight`` (the output projection, tied to the token embedding) is the one
    transformers tensor whisper.cpp has no slot for; an unknown name raises, so a checkpoint
    of another architecture fails loudly instead of producing a file whisper.cpp rejects.
    """
    name = hf_name.removeprefix("model.")
    if name == "proj_out.weight":
        return None
    if name in ("encoder.embed_positions.weight", "decoder.embed_positions.weight"):
        return name.split(".")[0] + ".positional_embedding"
    m = _LAYER_RE.match(name)
    if m and m.group(3) in _LAYER_PARTS:
        side, index, part, kind = m.groups()
        return f"{side}.blocks.{index}.{_LAYER_PARTS[part]}.{kind}"
    m = _TOP_RE.match(name)
    if m and m.group(1) in _TOP_LEVEL:
        return f"{_TOP_LEVEL[m.group(1)]}.{m.group(2)}"
    raise ValueError(f"unexpected tensor in a Whisper checkpoint: {hf_name!r}")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level BPE alphabet: each byte 0-255 as the printable character BPE uses.

    Printable Latin-1 bytes stand for themselves; the others (control bytes, space, ...) are
    shifted to code points from 256 up, in byte order. The inverse turns a token back into
    its raw bytes, which is what whisper.cpp stores and prints.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def vocab_bytes(tokenizer_json: Path) -> list[bytes]:
    """The byte-level BPE tokens of ``tokenizer.json`` in id order, as raw bytes.

    Stops below the first added (special) token: 50256 tokens for an English-only model,
    50257 for a multilingual one (whose id 50256 is an empty token), as whisper.cpp expects.
    """
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["model"]["vocab"]
    added = [t["id"] for t in data.get("added_tokens", [])]
    end = min(added) if added else max(vocab.values()) + 1
    by_id = {i: tok for tok, i in vocab.items() if i < end}
    if sorted(by_id) != list(range(end)):
        raise ValueError(f"{tokenizer_json}: token ids below {end} are not contiguous")
    decode = {ch: b for b, ch in _bytes_to_unicode().items()}
    return [bytes(decode[ch] for ch in by_id[i]) for i in range(end)]


def mel_filters(hf_dir: Path, n_mels: int) -> np.ndarray:
    """The (n_mels, 201) float32 mel filter bank Whisper's front end uses (Slaney scale and norm).

    Taken from transformers' ``WhisperFeatureExtractor`` (numpy only, no torch) so that it is
    the bank the checkpoint was trained with, not a hand-written copy.
    """
    from transformers import WhisperFeatureExtractor

    if (hf_dir / "preprocessor_config.json").is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(hf_dir))
    else:
        fe = WhisperFeatureExtractor(feature_size=n_mels)
    bank = np.asarray(fe.mel_filters, dtype=np.float32).T  # transformers keeps (201, n_mels)
    if bank.shape[0] != n_mels:
        raise ValueError(f"mel filters have {bank.shape[0]} bins, config says {n_mels}")
    return np.ascontiguousarray(bank)


def hparams(config: dict[str, int]) -> list[int]:
    """The eleven int32 header fields, in whisper.cpp's order, from a transformers config."""
    return [
        config["vocab_size"],
        config["max_source_positions"],
        config["d_model"],
        config["encoder_attention_heads"],
        config["encoder_layers"],
        config["max_target_positions"],
        config["d_model"],
        config["decoder_attention_heads"],
        config["decoder_layers"],
        config["num_mel_bins"],
        FTYPE_MOSTLY_F16,
    ]


def _tensors(weights: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(whisper.cpp name, array in the layout and dtype it expects) per tensor, one at a time."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="np") as f:
        for hf_name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            name = ggml_name(hf_name)
            if name is None:
                continue
            data = f.get_tensor(hf_name)
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                data = data.reshape(-1, 1)  # whisper.cpp broadcasts it as ne = [1, n_state]
            f32 = data.ndim < 2 or name in _F32_2D
            yield name, np.ascontiguousarray(data, dtype=np.float32 if f32 else np.float16)


def _write_tensor(out: BinaryIO, name: str, data: np.ndarray) -> None:
    """One tensor record: n_dims, name length, type, reversed dims, name, little-endian data."""
    raw_name = name.encode("ascii")
    ttype = TYPE_F16 if data.dtype == np.float16 else TYPE_F32
    out.write(struct.pack("<iii", data.ndim, len(raw_name), ttype))
    out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
    out.write(raw_name)
    out.write(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())


def convert(hf_dir: Path, out_file: Path) -> Path:
    """Write ``out_file``, whisper.cpp's f16 GGML file, from the transformers folder ``hf_dir``.

    The file is written beside its final name and renamed into place, so a reader never sees
    half a model.
    """
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    header = hparams(config)
    tokens = vocab_bytes(hf_dir / "tokenizer.json")
    bank = mel_filters(hf_dir, config["num_mel_bins"])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.{os.getpid()}.partial")
    seen: set[str] = set()
    try:
        with partial.open("wb") as out:
            out.write(struct.pack("<I", GGML_MAGIC))
            out.write(struct.pack("<11i", *header))
            out.write(struct.pack("<ii", *bank.shape))
            out.write(bank.astype("<f4").tobytes())
            out.write(struct.pack("<i", len(tokens)))
            for tok in tokens:
                out.write(struct.pack("<I", len(tok)))
                out.write(tok)
            for name, data in _tensors(hf_dir / "model.safetensors"):
                _write_tensor(out, name, data)
                seen.add(name)
        expected = 11 + 15 * config["encoder_layers"] + 24 * config["decoder_layers"]
        if len(seen) != expected:  # whisper.cpp refuses a file that misses one
            raise ValueError(f"{hf_dir}: wrote {len(seen)} tensors, whisper.cpp loads {expected}")
        partial.replace(out_file)
    finally:
        partial.unlink(missing_ok=True)
    return out_file


def content_hash(hf_dir: Path) -> str:
    """A sha256 over the files the GGML bytes come from (and the converter's version)."""
    digest = hashlib.sha256(f"ggml-f16-v{FORMAT_VERSION}".encode())
    for name in HASHED_FILES:
        path = hf_dir / name
        if not path.is_file():
            continue
        digest.update(name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def ggml_weights(hf_dir: Path, cache_dir: Path) -> Path:
    """The GGML f16 file for ``hf_dir`` under ``cache_dir``, converting only the first time.

    Cached by content (``ggml-<hash>-f16.bin``), so a rebuilt checkpoint with other weights
    gets a new file and the same weights are never converted twice.
    """
    target = Path(cache_dir) / f"ggml-{content_hash(Path(hf_dir))[:16]}-f16.bin"
    if target.is_file():
        return target
    return convert(Path(hf_dir), target)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python bench/ggml_convert.py HF_DIR OUT_FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hf_dir", type=Path, help="transformers Whisper folder")
    parser.add_argument("out_file", type=Path, help="GGML file to write")
    args = parser.parse_args(argv)
    out = convert(args.hf_dir, args.out_file)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
