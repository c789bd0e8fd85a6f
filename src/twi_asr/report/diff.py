"""Word-by-word diff of a reference and a hypothesis, as the marked tokens the HTML report shows.

The marks must agree with the WER the report prints next to them, so both
sides go through :func:`twi_asr.text.normalize_twi` (the normaliser the
scores use) and are aligned by the same jiwer call with the same word
split (:func:`jiwer.process_words` with ``ReduceToListOfListOfWords``). The
counts of the marks are then exactly the edit counts behind the file's WER.

The result is plain data (:class:`WordDiff` of :class:`DiffToken`), not
HTML: the template turns it into ``<del>``/``<ins>``/``<span class="sub">``
with Jinja2's autoescaping, so a transcript can never inject markup.
``jiwer`` is imported inside :func:`diff_words`, keeping the CLI's start cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DiffToken", "TokenKind", "WordDiff", "diff_words"]

TokenKind = Literal["equal", "sub", "del", "ins"]


@dataclass(frozen=True)
class DiffToken:
    """One run of the alignment.

    ``equal``: words both sides share (``ref`` == ``hyp``); ``del``: reference
    words the hypothesis lacks (``hyp`` empty); ``ins``: hypothesis words the
    reference lacks (``ref`` empty); ``sub``: one reference word heard as one
    other word (a substitution run is split into one token per word, so each
    carries its own ``ref → hyp`` tooltip).
    """

    kind: TokenKind
    ref: str
    hyp: str

    @property
    def words(self) -> int:
        """How many edits this token counts for (0 for ``equal``)."""
        if self.kind == "equal":
            return 0
        return len((self.hyp if self.kind == "ins" else self.ref).split())


@dataclass(frozen=True)
class WordDiff:
    """The aligned tokens of one file and the edit counts they add up to."""

    tokens: tuple[DiffToken, ...]
    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def ref_words(self) -> int:
        """Words in the normalised reference."""
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """The same rate as :func:`twi_asr.text.wer` (an empty reference: 0.0 or 1.0)."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.ref_words


def _from_counts(tokens: list[DiffToken]) -> WordDiff:
    def total(kind: str) -> int:
        return sum(t.words for t in tokens if t.kind == kind)

    hits = sum(len(t.ref.split()) for t in tokens if t.kind == "equal")
    return WordDiff(tuple(tokens), hits, total("sub"), total("del"), total("ins"))


def diff_words(reference: str, hypothesis: str) -> WordDiff:
    """Align ``reference`` and ``hypothesis`` (both normalised as for scoring) word by word.

    An empty side is handled here rather than by jiwer (jiwer 3 raises on an
    empty reference): every word of the other side is then an insertion or
    a deletion, which is how :mod:`twi_asr.text` counts it too.
    """
    from ..text import normalize_twi

    ref_words = normalize_twi(reference).split()
    hyp_words = normalize_twi(hypothesis).split()
    if not ref_words or not hyp_words:
        tokens: list[DiffToken] = []
        if ref_words:
            tokens.append(DiffToken("del", " ".join(ref_words), ""))
        if hyp_words:
            tokens.append(DiffToken("ins", "", " ".join(hyp_words)))
        return _from_counts(tokens)

    import jiwer

    transform = jiwer.Compose([jiwer.ReduceToListOfListOfWords()])
    out = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words), transform, transform)
    ref, hyp = out.references[0], out.hypotheses[0]
    tokens = []
    for chunk in out.alignments[0]:
        r = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        h = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "equal":
            tokens.append(DiffToken("equal", " ".join(r), " ".join(h)))
        elif chunk.type == "substitute":
            tokens.extend(DiffToken("sub", a, b) for a, b in zip(r, h, strict=True))
        elif chunk.type == "delete":
            tokens.append(DiffToken("del", " ".join(r), ""))
        elif chunk.type == "insert":
            tokens.append(DiffToken("ins", "", " ".join(h)))
        else:  # a jiwer that learned a new kind of chunk: fail loudly, not silently mis-mark
            raise ValueError(f"unknown jiwer alignment chunk type {chunk.type!r}")
    diff = _from_counts(tokens)
    # The marks must be the edits behind the WER; jiwer's own counts are the check.
    assert (diff.substitutions, diff.deletions, diff.insertions, diff.hits) == (
        out.substitutions,
        out.deletions,
        out.insertions,
        out.hits,
    ), "jiwer's alignment and counts disagree"
    return diff
