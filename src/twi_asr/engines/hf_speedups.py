"""The transformers engine's speed-ups, each a patch on the model that is undone or opt-in.

- :func:`fit_window`: the encoder takes a window cut to the batch's clips, not Whisper's 30 s
  (the positional table is sliced for the ``with`` block and restored after).
- :func:`skip_cross_attention_reorder`: beam search does not copy the cross-attention cache,
  whose rows for one clip's beams are equal anyway (30 % of a batched decode on 2 CPU cores).
- :func:`quantize_linear_int8`: dynamic int8 Linear layers on CPU, an explicit choice.

Why apart from :mod:`.transformers`: they touch transformers' and torch's internals, which
is where a new transformers version can break them; the engine only switches them on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


def window_adaptable(model: Any) -> bool:
    """Whether :func:`fit_window` can cut ``model``'s encoder window (the layout it relies on)."""
    import torch

    encoder = getattr(getattr(model, "model", None), "encoder", None)
    table = getattr(encoder, "embed_positions", None)
    return isinstance(table, torch.nn.Embedding) and (
        getattr(getattr(encoder, "config", None), "max_source_positions", None) == table.num_embeddings
    )


@contextlib.contextmanager
def fit_window(model: Any, frames: int) -> Iterator[bool]:
    """Let ``model``'s encoder take ``frames`` mel frames (at most 3000) for the ``with`` block.

    The encoder adds a fixed table of 1500 positions and refuses any input but 3000 frames
    (``config.max_source_positions`` x the two convolutions' strides); ``generate`` pads every
    short-form input back to that length. Inside the block the table is the first
    ``frames // 2`` rows of the real one (same values, the same embedding the first positions
    always get) and the config says ``frames // 2`` positions, so the check passes and
    ``generate`` pads to ``frames`` only. This touches only what both transformers 4.45+
    and 5.x read (an ``nn.Embedding`` ``embed_positions`` and the config field) and restores
    both on exit. Yields False, changing nothing, when the model does not look like that.
    """
    import torch

    positions = frames // 2
    if not window_adaptable(model) or frames % 2:
        yield False
        return
    encoder = model.model.encoder
    table, config = encoder.embed_positions, encoder.config
    if not 0 < positions <= table.num_embeddings:
        yield False
        return
    if positions == table.num_embeddings:
        yield True
        return
    cut = torch.nn.Embedding.from_pretrained(table.weight[:positions], freeze=True)  # a view, no copy
    configs = {id(c): c for c in (config, getattr(model, "config", None)) if c is not None}
    encoder.embed_positions = cut
    for c in configs.values():
        c.max_source_positions = positions
    try:
        yield True
    finally:
        encoder.embed_positions = table
        for c in configs.values():
            c.max_source_positions = table.num_embeddings


_skip_cross = threading.local()


def _install_cross_reorder_switch() -> bool:
    """Make ``EncoderDecoderCache.reorder_cache`` leave the cross-attention cache alone when asked.

    Installed once per process; it only changes anything in a thread inside
    :func:`skip_cross_attention_reorder`, so other users of transformers are unaffected.
    False when this transformers has no such cache class.
    """
    try:
        from transformers.cache_utils import EncoderDecoderCache
    except ImportError:  # pragma: no cover - very old transformers
        return False
    original = EncoderDecoderCache.reorder_cache
    if getattr(original, "_twi_asr_switch", False):
        return True

    def reorder_cache(self: Any, beam_idx: Any) -> None:
        if getattr(_skip_cross, "on", False) and hasattr(self, "self_attention_cache"):
            self.self_attention_cache.reorder_cache(beam_idx)
        else:
            original(self, beam_idx)

    reorder_cache._twi_asr_switch = True  # type: ignore[attr-defined]
    EncoderDecoderCache.reorder_cache = reorder_cache  # type: ignore[method-assign]
    return True


@contextlib.contextmanager
def skip_cross_attention_reorder(enabled: bool = True) -> Iterator[None]:
    """Inside the block (this thread only), beam search does not copy the cross-attention cache.

    Beam search picks, for each clip, its next beams among that clip's own beams, and every
    beam of a clip attends to the same encoder output: the cross-attention keys and values
    of those rows are equal, so reordering them is a copy that changes nothing.
    """
    if not enabled or not _install_cross_reorder_switch():
        yield
        return
    before = getattr(_skip_cross, "on", False)
    _skip_cross.on = True
    try:
        yield
    finally:
        _skip_cross.on = before


def quantize_linear_int8(model: Any) -> Any:
    """``model`` with every ``nn.Linear`` replaced by a dynamically quantised int8 one (CPU).

    Weights are int8 per tensor; activations are quantised on the fly, with one scale per
    call over the whole batch, so a clip's text can depend (slightly) on the clips it is
    batched with. An explicit option, never the default: measured about twice as fast on
    2 CPU cores, with a WER that moved by a few points either way on 20 espeak clips.
    """
    import warnings

    import torch

    quantize = torch.ao.quantization.quantize_dynamic
    with warnings.catch_warnings():  # torch >= 2.10 points to torchao; the eager API still works
        warnings.simplefilter("ignore")
        return quantize(model, {torch.nn.Linear}, dtype=torch.qint8)
