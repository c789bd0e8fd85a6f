"""Hugging Face Whisper checkpoint -> CTranslate2 folder, without torch.

Why: the default CPU install and image (``twi-asr[ct2]``) carry CTranslate2 but
no torch, and the default ``twi`` model is a transformers checkpoint.
CTranslate2's own ``TransformersConverter`` loads the model with torch; this
module feeds the *same* converter code with numpy arrays instead:

- the weights are read from ``*.safetensors`` with ``safetensors.numpy``
  (bfloat16 tensors, which numpy has no type for, are widened to float32
  exactly from their raw bytes), and cast to the ``dtype`` config.json names,
  as ``from_pretrained`` does;
- they are hung on a light attribute tree shaped like
  ``WhisperForConditionalGeneration`` (``model.encoder.layers[0].self_attn.q_proj.weight``...),
  which CTranslate2's ``WhisperLoader`` walks with its own ``set_encoder`` /
  ``set_decoder`` / ``set_attention`` / ``set_config``: the name mapping, the q/k/v
  fusion, ``lang_ids``, ``suppress_ids`` and ``alignment_heads`` are CTranslate2's;
- CTranslate2's ``Converter.convert`` then validates, quantizes (numpy) and saves.

Where reuse is impossible we have our own few lines, on purpose:

- ``set_linear`` is overridden: upstream's calls ``isinstance(module, transformers.Conv1D)``,
  which needs transformers; Whisper has no Conv1D, so it is weight + optional bias.
- the "tokenizer" handed to the loader is a small object over ``tokenizer.json``
  (``tokenizers``, no transformers). Its ``additional_special_tokens`` are the
  ``additional_special_tokens`` of tokenizer_config.json (transformers 4's key; the
  converter uses them for ``lang_ids`` only when generation_config.json has no
  ``lang_to_id``). transformers 5 no longer exposes that attribute, so there the
  official converter writes ``lang_ids: []`` for such a checkpoint; we keep the ids.
- a checkpoint without tokenizer.json gets one built from vocab.json + merges.txt
  (byte-level BPE, as transformers' GPT-2 converter builds it) plus its added tokens.

A checkpoint whose weights are only ``pytorch_model.bin`` (a pickle) cannot be read
without torch: :class:`DependencyMissingError`.
"""

from __future__ import annotations

import json
import logging
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .errors import DependencyMissingError, ModelNotFoundError

log = logging.getLogger(__name__)

#: Quantizations CTranslate2 can write without torch (bfloat16 values need torch.bfloat16).
TORCH_FREE_QUANTIZATIONS = ("int8", "int8_float16", "int8_float32", "int16", "float16", "float32")
_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.float32}  # bf16: widened


def read_safetensors(folder: Path) -> dict[str, np.ndarray]:
    """All tensors of the folder's ``*.safetensors`` files (shards included) as writable arrays."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        if (folder / "pytorch_model.bin").is_file():
            raise DependencyMissingError(
                f"{folder} has only pytorch_model.bin, which needs torch to read: "
                "pip install 'twi-asr[transformers]' (then `twi-asr models convert`), or re-save the "
                "checkpoint as safetensors (save_pretrained(..., safe_serialization=True))"
            )
        raise ModelNotFoundError(f"{folder} has no *.safetensors weights")
    from safetensors import safe_open

    state: dict[str, np.ndarray] = {}
    for path in files:
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                try:
                    state[key] = np.array(f.get_tensor(key))  # a writable copy: quantizing is in place
                except TypeError:  # bfloat16: numpy has no such type
                    state[key] = _read_bf16(path, key)
    return state


def _read_bf16(path: Path, key: str) -> np.ndarray:
    """One BF16 tensor from the raw safetensors layout (u64 header size, JSON header, data), as float32."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        entry = json.loads(fh.read(size))[key]
        if entry["dtype"] != "BF16":
            raise ModelNotFoundError(f"{path.name}: tensor {key} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        fh.seek(8 + size + begin)
        raw = np.frombuffer(fh.read(end - begin), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def _tree(state: dict[str, np.ndarray]) -> SimpleNamespace:
    """``{"model.encoder.layers.0.fc1.weight": array}`` -> attribute tree; numbered parts become lists."""
    root: dict[str, Any] = {}
    for key, value in state.items():
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def build(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [build(node[k]) for k in sorted(node, key=int)]
        return SimpleNamespace(**{k: build(v) for k, v in node.items()})

    return build(root)


class _Tokenizer:
    """What ``WhisperLoader`` asks of a transformers tokenizer, over tokenizer.json (no transformers)."""

    def __init__(self, tokenizer_json: Path, tokenizer_config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self.additional_special_tokens: list[str] = list(
            tokenizer_config.get("additional_special_tokens") or []
        )

    def get_vocab(self) -> dict[str, int]:
        return dict(self._tok.get_vocab(with_added_tokens=True))

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tok.token_to_id(token)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _generation_config(src: Path, config: dict[str, Any]) -> SimpleNamespace:
    """What ``model.generation_config`` holds after ``from_pretrained``: the file, else the model config's
    generation fields (transformers builds one from the model config when the file is missing)."""
    gen = _read_json(src / "generation_config.json")
    if not gen:
        gen = {k: config[k] for k in ("suppress_tokens", "begin_suppress_tokens") if k in config}
    gen.setdefault("suppress_tokens", None)  # GenerationConfig's defaults
    gen.setdefault("begin_suppress_tokens", None)
    return SimpleNamespace(**gen)


def _model(src: Path, config: dict[str, Any]) -> SimpleNamespace:
    """A stand-in for ``WhisperForConditionalGeneration.from_pretrained(src)`` made of numpy arrays."""
    state = read_safetensors(src)
    dtype = _DTYPES.get(str(config.get("dtype") or config.get("torch_dtype") or ""))
    for key, value in state.items():
        if dtype is not None and value.dtype != dtype and np.issubdtype(value.dtype, np.floating):
            state[key] = value.astype(dtype)
    prefixed = {k if k.startswith(("model.", "proj_out.")) else f"model.{k}": v for k, v in state.items()}
    model = _tree(prefixed)
    if not hasattr(model, "model") or not hasattr(model.model, "encoder"):
        raise ModelNotFoundError(f"{src}: the safetensors weights are not a Whisper encoder-decoder")
    if not hasattr(model, "proj_out"):  # tied to the token embeddings (tie_word_embeddings)
        model.proj_out = SimpleNamespace(weight=model.model.decoder.embed_tokens.weight)
    defaults = {"scale_embedding": False, "vocab_size": model.model.decoder.embed_tokens.weight.shape[0]}
    model.config = SimpleNamespace(**{**defaults, **config})
    model.name_or_path = str(src)
    model.generation_config = _generation_config(src, config)
    return model


def _loader() -> Any:
    """CTranslate2's WhisperLoader with a torch-free ``set_linear`` (see the module docstring)."""
    from ctranslate2.converters.transformers import WhisperLoader
    from ctranslate2.specs import common_spec

    class TorchFreeWhisperLoader(WhisperLoader):  # type: ignore[misc]
        def set_linear(self, spec: Any, module: Any, quant_type: Any = common_spec.Quantization.CT2) -> None:
            spec.weight = module.weight
            if getattr(module, "bias", None) is not None:
                spec.bias = module.bias

    return TorchFreeWhisperLoader()


def write_tokenizer_json(src: Path, dest: Path) -> Path:
    """Build ``tokenizer.json`` from a slow-tokenizer checkpoint (vocab.json + merges.txt + added tokens).

    Byte-level BPE with no prefix space, as transformers' GPT-2 converter makes it; the added
    tokens (added_tokens.json, tokenizer_config.json's added_tokens_decoder) keep their ids.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab, merges = src / "vocab.json", src / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise ModelNotFoundError(f"{src} has neither tokenizer.json nor vocab.json + merges.txt")
    tok = Tokenizer(BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    added: dict[int, dict[str, Any]] = {}
    for content, token_id in _read_json(src / "added_tokens.json").items():
        added[int(token_id)] = {"content": content, "special": True}
    decoder = _read_json(src / "tokenizer_config.json").get("added_tokens_decoder") or {}
    for token_id, entry in decoder.items():
        added[int(token_id)] = entry
    for token_id in sorted(added):
        entry = added[token_id]
        if tok.token_to_id(entry["content"]) is not None:
            continue
        token = AddedToken(
            entry["content"],
            single_word=bool(entry.get("single_word", False)),
            lstrip=bool(entry.get("lstrip", False)),
            rstrip=bool(entry.get("rstrip", False)),
            normalized=bool(entry.get("normalized", not entry.get("special", False))),
            special=bool(entry.get("special", False)),
        )
        (tok.add_special_tokens if entry.get("special") else tok.add_tokens)([token])
        if tok.token_to_id(entry["content"]) != token_id:
            raise ModelNotFoundError(
                f"{src}: added token {entry['content']!r} should have id {token_id} but got "
                f"{tok.token_to_id(entry['content'])}: the vocabulary has gaps"
            )
    tok.save(str(dest))
    return dest


def convert_torch_free(src: Path, out: Path, *, quantization: str, copy_files: list[str]) -> Path:
    """Convert the transformers Whisper checkpoint ``src`` to a CTranslate2 folder ``out`` (replaced)."""
    if quantization not in TORCH_FREE_QUANTIZATIONS:
        raise DependencyMissingError(
            f"--quantization {quantization} needs torch (numpy has no bfloat16): choose one of "
            f"{', '.join(TORCH_FREE_QUANTIZATIONS)}, or pip install 'twi-asr[transformers]'"
        )
    from ctranslate2.converters.converter import Converter

    config = _read_json(src / "config.json")
    if config.get("model_type") != "whisper":
        raise ModelNotFoundError(f"{src} is not a transformers Whisper checkpoint (config.json model_type)")

    class NumpyWhisperConverter(Converter):  # type: ignore[misc]
        """CTranslate2's Converter (validate, quantize, save) over :func:`_model`'s arrays."""

        def __init__(self, tokenizer_json: Path) -> None:
            self.tokenizer_json = tokenizer_json

        def _load(self) -> Any:
            tokenizer = _Tokenizer(self.tokenizer_json, _read_json(src / "tokenizer_config.json"))
            try:
                spec = _loader()(_model(src, config), tokenizer)
            except AttributeError as exc:  # a weight the Whisper layout needs is not in the files
                raise ModelNotFoundError(f"{src}: incomplete Whisper weights ({exc})") from exc
            for name in copy_files:
                spec.register_file(str(src / name))
            if "tokenizer.json" not in copy_files:
                spec.register_file(str(self.tokenizer_json), "tokenizer.json")
            return spec

    with tempfile.TemporaryDirectory(prefix="twi-asr-tok-") as tmp:
        tokenizer_json = src / "tokenizer.json"
        if not tokenizer_json.is_file():
            tokenizer_json = write_tokenizer_json(src, Path(tmp) / "tokenizer.json")
        NumpyWhisperConverter(tokenizer_json).convert(str(out), quantization=quantization, force=True)
    return out
