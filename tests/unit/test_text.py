"""Tests for twi_asr.text: the Twi normaliser and the error rates built on it."""

from __future__ import annotations

import unicodedata

import pytest

from twi_asr.errors import UsageError
from twi_asr.text import ErrorRates, cer, compression_ratio, error_rates, normalize_twi, wer

# --- normalize_twi ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ɛte sɛn? Me din de Kwame.", "ɛte sɛn me din de kwame"),
        ("Ɔkɔɔ fie ŋkyɛn.", "ɔkɔɔ fie ŋkyɛn"),
        ("ƐƆŊ", "ɛɔŋ"),
        ("  many\t\tspaces \n and\r\nlines  ", "many spaces and lines"),
        ("", ""),
        ("?!...", ""),
        # punctuation between words separates them rather than gluing them together
        ("wo,me;ɔno", "wo me ɔno"),
        ("«Akwaaba» — “yɛfrɛ no” (Kofi)!", "akwaaba yɛfrɛ no kofi"),
        # symbols go too
        ("50% + $3 = #tag @me ©", "50 3 tag me"),
    ],
)
def test_normalize_basic(raw: str, expected: str) -> None:
    assert normalize_twi(raw) == expected


@pytest.mark.parametrize("apostrophe", ["'", "\u2019", "\u2018", "\u02bc", "`", "\u00b4", "\u2032"])
def test_normalize_unifies_apostrophes_inside_words(apostrophe: str) -> None:
    assert normalize_twi(f"M{apostrophe}ani") == "m'ani"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("'x'", "x"),
        ("\u2018Kwame\u2019", "kwame"),
        ("ɔse: 'me ba' no", "ɔse me ba no"),
        ("n' ani", "n ani"),
        ("a ' b", "a b"),
        ("m'ani y'ɛ", "m'ani y'ɛ"),
    ],
)
def test_normalize_drops_quote_apostrophes(raw: str, expected: str) -> None:
    assert normalize_twi(raw) == expected


def test_normalize_keeps_tones_and_special_letters() -> None:
    # à é (precomposed after NFC) and ɛ̀ ɔ́ (base + combining mark: no precomposed form exists)
    text = "Àbá wɔ́ hɛ̀n Ɔ̀kɔ́"
    out = normalize_twi(text)
    assert out == unicodedata.normalize("NFC", "àbá wɔ́ hɛ̀n ɔ̀kɔ́")
    assert "\u0300" in out and "\u0301" in out
    for letter in "ɛɔ":
        assert letter in out


def test_normalize_nfd_equals_nfc() -> None:
    text = "Àbá wɔ́ hɛ̀n ɔ̀kɔ́ ŋ́ Ɛ́"
    nfc = unicodedata.normalize("NFC", text)
    nfd = unicodedata.normalize("NFD", text)
    assert nfc != nfd
    assert normalize_twi(nfd) == normalize_twi(nfc)
    assert unicodedata.is_normalized("NFC", normalize_twi(nfd))


def test_normalize_does_not_apply_english_rules() -> None:
    # An English normaliser would spell numbers, expand contractions, change spellings.
    assert normalize_twi("I'm 25 colour Mr.") == "i'm 25 colour mr"


def test_normalize_drops_invisible_format_characters() -> None:
    assert normalize_twi("\ufeffme\u200bdin\u00adde") == "medinde"


def test_normalize_is_idempotent() -> None:
    once = normalize_twi("“Ɛte sɛn?” M’ani gye — 3,5 % Àbá")
    assert normalize_twi(once) == once


# --- wer / cer ---------------------------------------------------------------------------------------


def test_wer_identical_after_normalisation_is_zero() -> None:
    assert wer("Ɛte sɛn? Me din de Kwame.", "ɛte sɛn me din de KWAME") == 0.0
    assert cer("Ɛte sɛn? Me din de Kwame.", "ɛte sɛn me din de KWAME") == 0.0


def test_wer_hand_computed() -> None:
    # ref: ɛte sɛn me din de kwame (6 words)
    # hyp: ɛte sen me din kwame yaw -> 1 substitution (sɛn/sen), 1 deletion (de), 1 insertion (yaw)
    assert wer("Ɛte sɛn me din de Kwame", "ɛte sen me din Kwame yaw") == pytest.approx(3 / 6)


def test_wer_special_letters_are_not_their_lookalikes() -> None:
    # ɔ is not o, ɛ is not e: these are real errors in Twi.
    assert wer("ɔkɔɔ fie", "okoo fie") == pytest.approx(1 / 2)
    assert cer("ɔkɔɔ", "okoo") == pytest.approx(3 / 4)


def test_cer_hand_computed() -> None:
    # "ɔkɔɔ fie" has 8 characters (space included); hyp drops one ɔ -> 1 deletion
    assert cer("ɔkɔɔ fie", "ɔkɔ fie") == pytest.approx(1 / 8)
    # a wrong tone mark is one inserted combining character, not a whole word
    assert cer("hɛn", "hɛ̀n") == pytest.approx(1 / 3)


def test_corpus_level_is_total_over_total() -> None:
    refs = ["a b c d", "e f"]
    hyps = ["a b c d", "x f"]
    # 1 error over 6 reference words, not the mean of 0/4 and 1/2
    assert wer(refs, hyps) == pytest.approx(1 / 6)


@pytest.mark.parametrize(("func"), [wer, cer])
def test_empty_references(func) -> None:
    assert func("", "") == 0.0
    assert func("", "ɛte") == 1.0
    assert func("?!", "  ") == 0.0  # empty after normalisation
    assert func(["", ""], ["", ""]) == 0.0
    assert func([], []) == 0.0


def test_empty_reference_in_a_corpus_counts_insertions() -> None:
    # 2 reference words, all right; the empty reference's hypothesis adds 2 insertions
    assert wer(["me din", ""], ["me din", "kwame yaw"]) == pytest.approx(2 / 2)
    assert wer(["me din", ""], ["me din", ""]) == 0.0


def test_empty_hypothesis_is_all_deletions() -> None:
    assert wer("me din de kwame", "") == 1.0
    assert cer("ab", "") == 1.0


def test_mismatched_lengths_raise_usage_error() -> None:
    with pytest.raises(UsageError, match="pair up"):
        wer(["a", "b"], ["a"])


def test_error_rates_counts() -> None:
    refs = ["Ɛte sɛn me din de Kwame", "Ɔkɔɔ fie"]
    # first pair: sɛn -> sen (substitution), "de" missing (deletion); second: ŋkyɛn inserted
    hyps = ["ɛte sen me din Kwame", "ɔkɔɔ fie ŋkyɛn"]
    er = error_rates(refs, hyps)
    assert isinstance(er, ErrorRates)
    assert er.ref_words == 8
    assert (er.substitutions, er.deletions, er.insertions, er.hits) == (1, 1, 1, 6)
    assert er.wer == pytest.approx(3 / 8)
    assert er.wer == pytest.approx(wer(refs, hyps))
    assert er.cer == pytest.approx(cer(refs, hyps))


def test_error_rates_all_empty() -> None:
    er = error_rates([""], ["yaw"])
    assert er == ErrorRates(wer=1.0, cer=1.0, substitutions=0, deletions=0, insertions=1, hits=0, ref_words=0)


def test_error_rates_is_frozen() -> None:
    er = error_rates("a", "a")
    with pytest.raises(AttributeError):
        er.wer = 0.5  # type: ignore[misc]


# --- compression_ratio -------------------------------------------------------------------------------


def test_compression_ratio_flags_repetition() -> None:
    normal = "Ɛte sɛn? Me din de Kwame. Ɔkɔɔ fie ŋkyɛn."
    looping = "ɛyɛ " * 60
    assert compression_ratio("") == 0.0
    assert compression_ratio(normal) < 2.4
    assert compression_ratio(looping) > 2.4
