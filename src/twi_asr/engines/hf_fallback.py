"""One plain batched decode, then the temperature fallback for the clips that need it only.

Why not transformers' own fallback: ``generate(temperature=(0.0, 0.2, ...), logprob_threshold=...)``
needs each clip's average log-probability, so it turns ``output_scores`` on, and beam search
then keeps a copy of every step's scores, ``(clips x beams) x vocabulary`` floats per step
(4 clips x 5 beams x 51,865 x 4 bytes = 4 MB a step, 0.4-0.9 GB for a batch of 28 s pieces).
That was most of the transformers engine's peak RSS on long files (about twice the
pipeline's), and the per-step copies cost time too.

Here the first pass is one ``generate`` at the ladder's first temperature with no threshold
(no scores kept). :class:`ScoreRecorder`, the last logits processor, keeps per step only each
row's best ``2 x beams`` processed log-probabilities (beam search picks each next token among
them) and the rows' prefixes, from which :meth:`ScoreRecorder.average` follows each clip's
chosen sequence back: the same average transformers' fallback compares with
``logprob_threshold`` (beam: the summed processed log-probabilities over the generated
tokens, end-of-text included, divided by their number; greedy: the log-softmax of the
processed logits). With the compression ratio of the generated token ids (transformers'
rule, :func:`token_compression_ratio`) it decides which clips failed
(:func:`needs_fallback`); only those are decoded again, by transformers' own fallback with
the whole ladder, so a failing clip gets exactly the decode it got before.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def token_compression_ratio(tokens: Sequence[int], vocab_size: int) -> float:
    """Raw over zlib-compressed length of the token ids as bytes: transformers' fallback rule
    (``WhisperGenerationMixin._retrieve_compression_ratio``); a looping decode compresses well."""
    length = int(math.log2(vocab_size) / 8) + 1
    raw = b"".join(int(t).to_bytes(length, "little") for t in tokens)
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


class ScoreRecorder:
    """A logits processor that records just enough of the first ``generate`` call to score it.

    Per step: a copy of the rows' token prefixes and each row's best ``keep`` log-probabilities
    (after the other processors: suppressed tokens, timestamp rules). ``logits=True`` for
    greedy search, whose scores are processed logits (transformers takes their log-softmax);
    beam search hands log-probabilities already. A later call of the same ``generate`` (the
    short-form seek going on after a cut) is not recorded: its first step is no longer than
    the last recorded one. Memory: rows x (prefix + ``keep``) numbers per step.
    """

    def __init__(self, keep: int, *, logits: bool) -> None:
        """``keep``: candidates kept per row (2 x beams covers every token beam search can pick)."""
        self.keep = keep
        self.logits = logits
        self.steps: list[tuple[Any, Any, Any]] = []  # (prefixes, values, token ids) per step
        self.closed = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Record this step (scores are returned untouched)."""
        if self.closed:
            return scores
        if self.steps and input_ids.shape[1] <= self.steps[-1][0].shape[1]:
            self.closed = True  # a second generate call inside the same Whisper generate
            return scores
        lp = scores.float()
        if self.logits:
            lp = lp.log_softmax(-1)
        values, ids = lp.topk(min(self.keep, lp.shape[-1]), dim=-1)
        self.steps.append((input_ids.detach().clone(), values.cpu(), ids.cpu()))
        return scores

    @property
    def prompt_length(self) -> int:
        """Decoder prompt length of the recorded call (0 if nothing was recorded)."""
        return int(self.steps[0][0].shape[1]) if self.steps else 0

    def average(self, rows: range, sequence: Sequence[int], eos: int) -> float | None:
        """Mean log-probability of ``sequence`` (prompt + generated tokens) as decoded on ``rows``.

        Follows the sequence step by step: at each step the row whose prefix it continues,
        and that row's recorded log-probability of its next token, until end-of-text. None
        when the sequence cannot be followed (not from the recorded call).
        """
        if not self.steps:
            return None
        total, count = 0.0, 0
        seq = [int(t) for t in sequence]
        for prefixes, values, ids in self.steps:
            at = int(prefixes.shape[1])
            if at >= len(seq):
                break
            want = seq[at]
            head = prefixes.new_tensor(seq[:at])
            block = prefixes[rows.start : rows.stop]
            matches = (block == head).all(-1).nonzero()
            if len(matches) == 0:
                return None
            r = rows.start + int(matches[0])
            hit = (ids[r] == want).nonzero()
            if len(hit) == 0:
                return None
            total += float(values[r, int(hit[0])])
            count += 1
            if want == eos:
                break
        return total / count if count else None


@dataclass(frozen=True)
class FirstPass:
    """What the first pass says about one clip."""

    avg_logprob: float | None
    compression_ratio: float
    windows: int
    """How many generate calls its segments came from (1 unless the seek went on)."""


def generated_tokens(result: Any, prompt_length: int, pad: int, eos: int) -> list[int]:
    """The generated part of a result row (tensor or generate dict), padding cut, one end-of-text kept."""
    row = result["sequences"] if isinstance(result, dict) else result
    tokens = [int(t) for t in row[prompt_length:]]
    while len(tokens) > 1 and tokens[-1] == pad and tokens[-2] == pad:
        tokens.pop()
    if pad != eos and tokens and tokens[-1] == pad:
        tokens.pop()
    return tokens


def judge(
    segments: Sequence[Sequence[dict[str, Any]]],
    recorder: ScoreRecorder,
    *,
    beams: int,
    pad: int,
    eos: int,
    vocab_size: int,
) -> list[FirstPass]:
    """Per clip of the first pass: its average log-probability, compression ratio and windows."""
    out = []
    prompt = recorder.prompt_length
    for b, segs in enumerate(segments):
        results = {id(s["result"]): s["result"] for s in segs if "result" in s}
        if len(results) != 1:
            out.append(FirstPass(None, 0.0, len(results)))
            continue
        result = next(iter(results.values()))
        tokens = generated_tokens(result, prompt, pad, eos)
        row = result["sequences"] if isinstance(result, dict) else result
        full = [int(t) for t in row[:prompt]] + tokens
        avg = recorder.average(range(b * beams, (b + 1) * beams), full, eos)
        out.append(FirstPass(avg, token_compression_ratio(tokens, vocab_size), 1))
    return out


def needs_fallback(
    first: FirstPass, *, compression_ratio_threshold: float | None, log_prob_threshold: float | None
) -> bool:
    """Whether a clip is decoded again with the ladder: transformers' rule (too repetitive, or too
    unlikely), and also when its first pass cannot be judged (no score, or the seek went on)."""
    if first.windows != 1:
        return True
    if compression_ratio_threshold is not None and first.compression_ratio > compression_ratio_threshold:
        return True
    if log_prob_threshold is not None:
        return first.avg_logprob is None or first.avg_logprob < log_prob_threshold
    return False


def decode_with_fallback(
    model: Any,
    features: Any,
    mask: Any,
    kwargs: dict[str, Any],
    *,
    temperatures: Sequence[float],
    compression_ratio_threshold: float | None,
    log_prob_threshold: float | None,
) -> tuple[list[list[dict[str, Any]]], list[FirstPass | None]]:
    """Short-form ``generate`` of a batch: one plain pass, then the ladder for the failing clips.

    ``kwargs``: the ladder call (``temperature`` a tuple, the thresholds set), as it would go
    to ``generate`` for the whole batch. Returns per clip its segments and, for a clip kept
    from the first pass, its :class:`FirstPass` (None for a clip decoded again).
    """
    import torch

    gen = model.generation_config
    beams = int(kwargs.get("num_beams") or 1)
    pad = int(gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id)
    eos = int(gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0])
    recorder = ScoreRecorder(2 * beams, logits=beams == 1)
    first = {k: v for k, v in kwargs.items() if k not in _LADDER_ONLY}
    first.update(temperature=temperatures[0], return_segments=True, logits_processor=[recorder])
    first["return_dict_in_generate"] = bool(kwargs.get("return_token_timestamps"))
    out = model.generate(features, attention_mask=mask, **first)
    segments: list[list[dict[str, Any]]] = list(out["segments"])
    passes: list[FirstPass | None] = list(
        judge(segments, recorder, beams=beams, pad=pad, eos=eos, vocab_size=int(model.config.vocab_size))
    )
    del out, recorder
    again = [
        b
        for b, p in enumerate(passes)
        if p is not None
        and needs_fallback(
            p, compression_ratio_threshold=compression_ratio_threshold, log_prob_threshold=log_prob_threshold
        )
    ]
    if not again:
        return segments, passes
    ladder = dict(kwargs)
    if isinstance(ladder.get("language"), list):
        ladder["language"] = [ladder["language"][b] for b in again]
    index = torch.tensor(again, device=features.device)
    torch.manual_seed(0)  # the fallback samples: same audio, same text
    redone = model.generate(features[index], attention_mask=mask[index], **ladder)
    for b, segs in zip(again, redone["segments"], strict=True):
        segments[b] = segs
        passes[b] = None
    return segments, passes


_LADDER_ONLY = ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold", "output_scores")
