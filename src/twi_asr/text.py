"""Text normalisation and error rates for Twi/Akan.

Scores are only comparable when reference and hypothesis are normalised the
same way, and the normaliser must suit the language: English normalisers
(Whisper's ``EnglishTextNormalizer``, jiwer's ``wer_standardize``) spell out
numbers, expand contractions and, worse, some strip diacritics, which would
turn the Twi letters ``ɛ ɔ ŋ`` and tone marks into errors or hide real ones.
:func:`normalize_twi` therefore only does what is safe for Twi: Unicode NFC,
lower case, one apostrophe, no punctuation, single spaces.

``jiwer`` is imported inside the functions that need it so that importing
this module (the CLI does, at start-up) stays cheap.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError

__all__ = ["ErrorRates", "cer", "compression_ratio", "error_rates", "normalize_twi", "wer"]

# Characters people (and keyboards, and OCR) use for the apostrophe of an
# elision such as "m'ani"; all of them are folded to ASCII "'".
_APOSTROPHES = {
    "\u2019": "'",  # ’ right single quotation mark
    "\u2018": "'",  # ‘ left single quotation mark
    "\u02bc": "'",  # ʼ modifier letter apostrophe
    "`": "'",  # grave accent
    "\u00b4": "'",  # ´ acute accent (spacing)
    "\u2032": "'",  # ′ prime
}
_APOSTROPHE_TABLE = str.maketrans(_APOSTROPHES)


def _is_word_char(ch: str) -> bool:
    """Letters, combining marks (tones) and digits: what a word is made of."""
    return unicodedata.category(ch)[0] in "LMN"


def normalize_twi(text: str) -> str:
    """Normalise Twi text for scoring: what counts is the words, not the typography.

    Steps, in order:

    1. Unicode NFC, so that ``ɛ`` + combining grave and a precomposed ``à``
       compare equal however they were typed.
    2. Lower case (``Ɛ Ɔ Ŋ`` become ``ɛ ɔ ŋ``), then NFC again because
       lower-casing can decompose a character.
    3. Every apostrophe look-alike (’ ‘ ʼ ` ´ ′) becomes ``'``.
    4. Punctuation (Unicode categories ``P*``) and symbols (``S*``) become
       spaces, except an apostrophe between two word characters, which is
       part of the word (``m'ani``); a quote around a word (``'x'``) goes.
       Invisible format characters (``Cf``: zero-width spaces, BOM, soft
       hyphen) and other control characters are removed.
    5. Whitespace runs collapse to one space; ends are stripped.

    Letters and combining marks are never removed, so tone-marked vowels
    (``à``, ``é``, ``ɛ̀``) survive. No English rules (number spelling,
    contractions, British/American spelling) are applied.
    """
    text = unicodedata.normalize("NFC", text)
    text = unicodedata.normalize("NFC", text.lower())
    text = text.translate(_APOSTROPHE_TABLE)

    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch.isspace():
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if ch == "'":
            inside_word = 0 < i < n - 1 and _is_word_char(text[i - 1]) and _is_word_char(text[i + 1])
            out.append("'" if inside_word else " ")
        elif cat[0] in "PS":
            out.append(" ")
        elif cat[0] == "C":
            # Cf (zero-width space, BOM...), Cc (controls that are not whitespace), Co, Cn.
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def _as_list(value: str | Sequence[str], name: str) -> list[str]:
    """One string or a sequence of strings, as a list (a lone string is one utterance)."""
    if isinstance(value, str):
        return [value]
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise UsageError(f"{name} must be strings, got {type(item).__name__}")
    return items


def _normalised_pairs(
    references: str | Sequence[str], hypotheses: str | Sequence[str]
) -> tuple[list[str], list[str]]:
    """Normalise both sides and check they pair up one to one."""
    refs = _as_list(references, "references")
    hyps = _as_list(hypotheses, "hypotheses")
    if len(refs) != len(hyps):
        raise UsageError(
            f"got {len(refs)} reference(s) but {len(hyps)} hypothesis(es); they must pair up one to one"
        )
    return [normalize_twi(r) for r in refs], [normalize_twi(h) for h in hyps]


@dataclass(frozen=True)
class _Counts:
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """Errors over reference length; with an empty reference, 0.0 if nothing was inserted else 1.0."""
        errors = self.substitutions + self.deletions + self.insertions
        if self.ref_len == 0:
            return 0.0 if errors == 0 else 1.0
        return errors / self.ref_len


def _count(refs: list[str], hyps: list[str], unit: str) -> _Counts:
    """Corpus-level edit counts over already-normalised pairs, in one jiwer call.

    jiwer 3 raises on an empty reference (jiwer 4 does not), so pairs whose
    reference is empty are kept out of jiwer: every hypothesis unit there is
    an insertion, which is what jiwer 4 reports too.
    """
    import jiwer

    def units(s: str) -> int:
        return len(s.split()) if unit == "word" else len(s)

    extra_insertions = sum(units(h) for r, h in zip(refs, hyps, strict=True) if not r)
    kept = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not kept:
        return _Counts(insertions=extra_insertions)
    kept_refs = [r for r, _ in kept]
    kept_hyps = [h for _, h in kept]
    if unit == "word":
        transform = jiwer.Compose([jiwer.ReduceToListOfListOfWords()])
        out = jiwer.process_words(kept_refs, kept_hyps, transform, transform)
    else:
        transform = jiwer.Compose([jiwer.ReduceToListOfListOfChars()])
        out = jiwer.process_characters(kept_refs, kept_hyps, transform, transform)
    return _Counts(
        hits=out.hits,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions + extra_insertions,
    )


def wer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Word error rate over a corpus, after :func:`normalize_twi` on both sides.

    ``references`` and ``hypotheses`` are one string each or equally long
    sequences (one item per utterance); the rate is corpus-level: total
    substitutions + deletions + insertions over total reference words.
    An empty reference scores 0.0 against an empty hypothesis and 1.0
    against anything else (instead of jiwer's error or a division by zero).
    """
    refs, hyps = _normalised_pairs(references, hypotheses)
    return _count(refs, hyps, "word").rate


def cer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Character error rate (spaces count as characters, as in jiwer), normalised like :func:`wer`.

    CER is the fairer number for Twi, where word segmentation in references
    is inconsistent (``ɛyɛ`` / ``ɛ yɛ``) and one wrong tone mark should not
    cost a whole word. Tone marks are combining characters after NFC and
    count as characters of their own.
    """
    refs, hyps = _normalised_pairs(references, hypotheses)
    return _count(refs, hyps, "char").rate


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level scores of a test set; the edit counts are word-level."""

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int


def error_rates(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> ErrorRates:
    """WER, CER and the word edit counts of a whole corpus, normalising once.

    The words go through one corpus-level jiwer call and the characters
    through another (rather than one call per utterance), so the rates are
    totals over totals, not an average of per-utterance rates.
    """
    refs, hyps = _normalised_pairs(references, hypotheses)
    words = _count(refs, hyps, "word")
    chars = _count(refs, hyps, "char")
    return ErrorRates(
        wer=words.rate,
        cer=chars.rate,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        hits=words.hits,
        ref_words=words.ref_len,
    )


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length, as Whisper computes it.

    Whisper treats a ratio above about 2.4 as a sign of a hallucinated
    repetition loop ("ɛyɛ ɛyɛ ɛyɛ ...") and retries at a higher temperature.
    Empty text gives 0.0.
    """
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))
