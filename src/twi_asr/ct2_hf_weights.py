"""CTranslate2 Whisper variable names -> a transformers ``WhisperForConditionalGeneration`` state dict.

The inverse of ``ctranslate2/converters/transformers.py`` (``WhisperLoader`` / ``BartLoader``):
the fused self-attention ``[q; k; v]`` and cross-attention ``[k; v]`` matrices are split
back, and the zero-filled k biases CTranslate2 adds are dropped (transformers' ``k_proj``
has none). Pure numpy, so the mapping can be read and tested without torch.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def _n_layers(w: dict[str, np.ndarray], prefix: str) -> int:
    """How many layers ``prefix`` (``encoder`` or ``decoder``) has: counted from their ffn weights."""
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in w:
        n += 1
    return n


def build_state_dict(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The transformers state dict (``model.encoder.layers.0.fc1.weight``...) of the float
    CTranslate2 variables ``w`` (as :func:`.ct2_model_bin.dequantize` returns them)."""
    sd: dict[str, np.ndarray] = {}

    def ln(hf: str, ct: str) -> None:
        sd[hf + ".weight"] = w[ct + "/gamma"]
        sd[hf + ".bias"] = w[ct + "/beta"]

    def lin(hf: str, ct: str, bias: bool = True) -> None:
        sd[hf + ".weight"] = w[ct + "/weight"]
        if bias:
            sd[hf + ".bias"] = w[ct + "/bias"]

    def split3(arr: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return arr[:d], arr[d : 2 * d], arr[2 * d :]

    d = w["encoder/layer_norm/gamma"].shape[0]

    # encoder
    for i in (1, 2):
        lin(f"model.encoder.conv{i}", f"encoder/conv{i}")
    sd["model.encoder.embed_positions.weight"] = w["encoder/position_encodings/encodings"]
    ln("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(_n_layers(w, "encoder")):
        c, h = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        # self-attention: linear_0 = fused [q; k; v] (k bias is zero-filled), linear_1 = out_proj
        qw, kw, vw = split3(w[f"{c}/self_attention/linear_0/weight"], d)
        qb, kb, vb = split3(w[f"{c}/self_attention/linear_0/bias"], d)
        _check_zero(kb, f"{c}/self_attention k bias")
        sd.update(
            {
                f"{h}.self_attn.q_proj.weight": qw,
                f"{h}.self_attn.q_proj.bias": qb,
                f"{h}.self_attn.k_proj.weight": kw,
                f"{h}.self_attn.v_proj.weight": vw,
                f"{h}.self_attn.v_proj.bias": vb,
            }
        )
        lin(f"{h}.self_attn.out_proj", f"{c}/self_attention/linear_1")
        ln(f"{h}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        lin(f"{h}.fc1", f"{c}/ffn/linear_0")
        lin(f"{h}.fc2", f"{c}/ffn/linear_1")
        ln(f"{h}.final_layer_norm", f"{c}/ffn/layer_norm")

    # decoder
    sd["model.decoder.embed_tokens.weight"] = w["decoder/embeddings/weight"]
    sd["model.decoder.embed_positions.weight"] = w["decoder/position_encodings/encodings"]
    ln("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(_n_layers(w, "decoder")):
        c, h = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        qw, kw, vw = split3(w[f"{c}/self_attention/linear_0/weight"], d)
        qb, kb, vb = split3(w[f"{c}/self_attention/linear_0/bias"], d)
        _check_zero(kb, f"{c}/self_attention k bias")
        sd.update(
            {
                f"{h}.self_attn.q_proj.weight": qw,
                f"{h}.self_attn.q_proj.bias": qb,
                f"{h}.self_attn.k_proj.weight": kw,
                f"{h}.self_attn.v_proj.weight": vw,
                f"{h}.self_attn.v_proj.bias": vb,
            }
        )
        lin(f"{h}.self_attn.out_proj", f"{c}/self_attention/linear_1")
        ln(f"{h}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        # cross-attention: linear_0 = q, linear_1 = fused [k; v] (k bias zero), linear_2 = out_proj
        lin(f"{h}.encoder_attn.q_proj", f"{c}/attention/linear_0")
        kvw = w[f"{c}/attention/linear_1/weight"]
        kvb = w[f"{c}/attention/linear_1/bias"]
        _check_zero(kvb[:d], f"{c}/attention k bias")
        sd.update(
            {
                f"{h}.encoder_attn.k_proj.weight": kvw[:d],
                f"{h}.encoder_attn.v_proj.weight": kvw[d:],
                f"{h}.encoder_attn.v_proj.bias": kvb[d:],
            }
        )
        lin(f"{h}.encoder_attn.out_proj", f"{c}/attention/linear_2")
        ln(f"{h}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
        lin(f"{h}.fc1", f"{c}/ffn/linear_0")
        lin(f"{h}.fc2", f"{c}/ffn/linear_1")
        ln(f"{h}.final_layer_norm", f"{c}/ffn/layer_norm")

    proj = w.get("decoder/projection/weight", w["decoder/embeddings/weight"])
    sd["proj_out.weight"] = proj
    if "decoder/projection/bias" in w and np.any(w["decoder/projection/bias"]):
        raise NotImplementedError("non-zero output projection bias has no HF Whisper equivalent")
    return sd


def _check_zero(arr: np.ndarray, what: str) -> None:
    """Warn when a k bias that transformers cannot hold is not zero (it is dropped all the same)."""
    if np.any(arr):
        log.warning(
            "%s is not zero (max |x|=%.3g); HF Whisper k_proj has no bias, dropping it",
            what,
            np.abs(arr).max(),
        )
