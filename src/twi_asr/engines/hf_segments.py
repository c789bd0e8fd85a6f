"""The transformers engine's results -> segments: times, words, token log-probabilities, quality.

``generate(return_timestamps=True, return_dict_in_generate=True)`` returns, per clip, raw
segments (tokens, start, end, the window's ``result``, token timestamps with
``return_token_timestamps``). :class:`TransformersSegments` turns them into
:class:`~twi_asr.types.Segment` objects: text, clamped times, words grouped from sub-word
tokens on the alignment path, each window's ``avg_logprob`` and ``compression_ratio``, and
the chosen tokens' log-probabilities from the per-step scores.
"""

from __future__ import annotations

from typing import Any

from ..text import compression_ratio
from ..types import Segment, TokenLogprob, TranscribeOptions, Word
from .base import clamp_words, clean_text, token_logprobs


class TransformersSegments:
    """Reading ``generate``'s segments; the engine class inherits it.

    It reads the attributes the engine sets when it loads: ``processor`` (its tokenizer),
    ``_torch`` (the torch module) and ``_eos`` (the end-of-text id; every id from it up is a
    special or timestamp token).
    """

    processor: Any
    _torch: Any
    _eos: int

    def _segments(
        self, raw: list[dict[str, Any]], duration: float, options: TranscribeOptions
    ) -> tuple[list[Segment], tuple[TokenLogprob, ...] | None]:
        tok = self.processor.tokenizer
        out: list[Segment] = []
        windows: dict[int, tuple[Any, float | None, float]] = {}  # id(result) -> steps, avg_logprob, ratio
        temperature = options.temperatures[0] if len(options.temperatures) == 1 else None
        pieces: list[str] = []
        values: list[float] = []
        complete = True  # every kept segment had scores
        for seg in raw:
            tokens = [int(t) for t in seg["tokens"]]
            text = clean_text(tok.decode(tokens, skip_special_tokens=True))
            start = round(float(seg["start"]), 3)
            end = round(min(float(seg["end"]), duration), 3)
            if end < start:
                end = start
            seg_words = None
            if options.word_timestamps and seg.get("token_timestamps") is not None:
                seg_words = clamp_words(self._words(tokens, seg["token_timestamps"], start, end), start, end)
            result = seg.get("result")
            temp = 0.0 if isinstance(result, dict) and "sequences_scores" in result else temperature
            key = id(result)
            if key not in windows:  # the segments of one window share its result
                step = self._step_logprobs(result, temp)
                windows[key] = (step, *self._window_quality(result, step))
            step, avg, ratio = windows[key]
            if text and options.token_logprobs:
                if step is None:
                    complete = False
                else:
                    lo = int(seg["idxs"][0])
                    for k, t in enumerate(tokens):
                        if t < self._eos and 0 <= lo + k - step[0] < len(step[1]):
                            pieces.append(tok.convert_ids_to_tokens(t))
                            values.append(step[1][lo + k - step[0]])
            out.append(
                Segment(
                    id=len(out),
                    start=start,
                    end=end,
                    text=text,
                    words=seg_words,
                    avg_logprob=avg,
                    compression_ratio=ratio,
                    temperature=temp,
                )  # fmt: skip
            )
        logprobs = token_logprobs(pieces, values) if options.token_logprobs and complete else None
        return out, logprobs

    def _step_logprobs(self, result: Any, temperature: float | None) -> tuple[int, list[float]] | None:
        """For one generate result: (position of its first generated token in ``sequences``, the
        log-probability of the token chosen at each step, up to end-of-text), or None without
        scores or when the temperature is unknown (a sampled fallback step is scaled by it)."""
        if temperature is None or not isinstance(result, dict) or not result.get("scores"):
            return None
        torch = self._torch
        scores, sequence = result["scores"], result["sequences"]
        first = len(sequence) - len(scores)
        chosen = sequence[first:].to(torch.long)
        steps = torch.stack(list(scores)).float() * (temperature if temperature > 0 else 1.0)
        logp = torch.log_softmax(steps, dim=-1).gather(-1, chosen.view(-1, 1).cpu()).view(-1)
        ends = (chosen == self._eos).nonzero()
        n = int(ends[0]) + 1 if len(ends) else len(chosen)
        return first, [max(float(v), -1e4) for v in logp[:n]]

    def _window_quality(
        self, result: Any, step: tuple[int, list[float]] | None
    ) -> tuple[float | None, float]:
        """A window's avg_logprob (mean over its tokens, end-of-text included) and compression ratio."""
        tok = self.processor.tokenizer
        ratio = 0.0
        if isinstance(result, dict) and "sequences" in result:
            ratio = compression_ratio(tok.decode(result["sequences"], skip_special_tokens=True).strip())
        avg = round(sum(step[1]) / len(step[1]), 4) if step and step[1] else None
        return avg, round(ratio, 4)

    def _words(self, tokens: list[int], times: Any, seg_start: float, seg_end: float) -> list[Word]:
        """Group sub-word tokens into words; a leading space starts a new word.

        ``times[k]`` is where token ``k`` ends on the alignment path (the
        leading timestamp token ends at the segment start), so token ``k``
        spans ``times[k-1]..times[k]``.
        """
        tok = self.processor.tokenizer
        ts = [float(t) for t in times]
        if not ts:
            return []
        # make window-relative times absolute (long-form windows start past 0)
        offset = seg_start - ts[0] if abs(ts[0] - seg_start) > 0.5 else 0.0
        words: list[Word] = []
        cur: list[int] = []
        cur_start = cur_end = seg_start
        for k, t in enumerate(tokens):
            if t >= self._eos:  # special and timestamp tokens carry no text
                continue
            t_start = (ts[k - 1] if 0 < k <= len(ts) else seg_start) + (offset if k > 0 else 0.0)
            t_end = ts[k] + offset if k < len(ts) else seg_end
            if tok.decode([t]).startswith(" ") and cur:
                words.append(Word(start=cur_start, end=cur_end, word=tok.decode(cur).strip()))
                cur = []
            if not cur:
                cur_start = t_start
            cur.append(t)
            cur_end = t_end
        if cur:
            words.append(Word(start=cur_start, end=cur_end, word=tok.decode(cur).strip()))
        return [w for w in words if w.word]
