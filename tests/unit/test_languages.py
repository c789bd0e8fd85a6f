"""Tests for twi_asr.languages: what ``--language`` values mean, Twi/Akan above all."""

from __future__ import annotations

import pytest

from twi_asr.errors import UsageError
from twi_asr.languages import TWI_CODES, WHISPER_LANGUAGES, is_twi, resolve_language


@pytest.mark.parametrize("requested", [None, "", "   ", "auto", "AUTO", " Auto "])
@pytest.mark.parametrize("default", [None, "yo"])
def test_detect_means_none_whatever_the_checkpoint(requested: str | None, default: str | None) -> None:
    assert resolve_language(requested, checkpoint_default=default) is None


@pytest.mark.parametrize("requested", ["tw", "TWI", "twi", "ak", "Ak", "aka", "akan", "AKAN", " akan "])
def test_twi_spellings_mean_the_checkpoint_default(requested: str) -> None:
    assert resolve_language(requested, checkpoint_default="yo") == "yo"
    assert resolve_language(requested, checkpoint_default="en") == "en"


@pytest.mark.parametrize("requested", ["tw", "TWI", "ak", "akan"])
def test_twi_without_checkpoint_default_lets_the_model_decide(requested: str) -> None:
    """Never an error and never silently English: None (the model decides)."""
    assert resolve_language(requested, checkpoint_default=None) is None


def test_twi_is_never_a_whisper_code() -> None:
    assert not TWI_CODES & set(WHISPER_LANGUAGES)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("en", "en"), ("EN", "en"), (" yo ", "yo"), ("haw", "haw"), ("yue", "yue"), ("sw", "sw"), ("ha", "ha")],
)
def test_whisper_codes(requested: str, expected: str) -> None:
    assert resolve_language(requested, checkpoint_default="yo") == expected
    assert resolve_language(requested, checkpoint_default=None) == expected


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("English", "en"),
        ("english", "en"),
        ("YORUBA", "yo"),
        ("Hausa", "ha"),
        ("swahili", "sw"),
        ("Haitian Creole", "ht"),
        ("cantonese", "yue"),
    ],
)
def test_language_names(requested: str, expected: str) -> None:
    assert resolve_language(requested, checkpoint_default=None) == expected


def test_every_whisper_code_and_name_round_trips() -> None:
    for code, name in WHISPER_LANGUAGES.items():
        assert resolve_language(code, checkpoint_default=None) == code
        assert resolve_language(name, checkpoint_default=None) == code


@pytest.mark.parametrize("requested", ["klingon", "xx", "english!", "e n", "twi-gh"])
def test_unknown_language_is_a_usage_error_with_a_helpful_message(requested: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_language(requested, checkpoint_default="yo")
    message = info.value.message
    assert repr(requested) in message
    assert "'en'" in message
    assert "'tw'" in message
    assert "auto" in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value", ["tw", "TWI", " ak ", "akan", "fante", "asante"])
def test_is_twi_true(value: str) -> None:
    assert is_twi(value)


@pytest.mark.parametrize("value", [None, "", "en", "auto", "yo", "twix"])
def test_is_twi_false(value: str | None) -> None:
    assert not is_twi(value)
