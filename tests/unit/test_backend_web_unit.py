"""Unit tests of the web app's pure parts: corrections applied to a transcript, the page's segment
view, where a sign-in may send you next, and the language menu (Twi listed as the checkpoint's)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from twi_asr.backend.api.routes_pages import languages  # noqa: E402
from twi_asr.backend.api.routes_web import safe_next  # noqa: E402
from twi_asr.backend.services.edits import apply_edits, segment_views  # noqa: E402
from twi_asr.types import Segment, Transcript, Word  # noqa: E402
from twi_asr.writers import render  # noqa: E402


def _transcript() -> Transcript:
    words = (Word(0.0, 0.4, " Mepɛ"), Word(0.4, 0.8, " sɛ"), Word(0.8, 1.2, " meda."))
    return Transcript(
        text="Mepɛ sɛ meda. Ɔkɔm de me.",
        language="tw",
        duration=3.0,
        segments=(Segment(0, 0.0, 1.2, " Mepɛ sɛ meda.", words), Segment(1, 1.5, 3.0, " Ɔkɔm de me.", ())),
    )


def test_no_edits_is_the_same_transcript() -> None:
    t = _transcript()
    assert apply_edits(t, None) is t and apply_edits(t, {}) is t


def test_an_edit_replaces_text_drops_words_and_rebuilds_the_whole_text() -> None:
    t = apply_edits(_transcript(), {"0": "Mepɛ sɛ meda ŋkwan."})
    assert t.segments[0].text == "Mepɛ sɛ meda ŋkwan." and t.segments[0].words is None
    assert t.segments[1] == _transcript().segments[1]
    assert t.text == "Mepɛ sɛ meda ŋkwan. Ɔkɔm de me."
    srt = render(t, "srt")
    assert "Mepɛ sɛ meda ŋkwan." in srt and "00:00:01,500 --> 00:00:03,000" in srt
    assert render(t, "txt").startswith("Mepɛ sɛ meda ŋkwan.")


def test_segment_views_show_both_texts() -> None:
    views = segment_views(_transcript(), {"1": "Ɔkɔm de me paa."})
    assert views[0] == {
        "index": 0, "start": 0.0, "end": 1.2, "text": "Mepɛ sɛ meda.", "original_text": "Mepɛ sɛ meda.",
        "edited": False, "words": [{"start": 0.0, "end": 0.4, "word": " Mepɛ"},
                                   {"start": 0.4, "end": 0.8, "word": " sɛ"},
                                   {"start": 0.8, "end": 1.2, "word": " meda."}],
    }  # fmt: skip
    assert views[1]["text"] == "Ɔkɔm de me paa." and views[1]["original_text"] == "Ɔkɔm de me."
    assert views[1]["edited"] is True and views[1]["words"] == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("/jobs/job_1?x=1", "/jobs/job_1?x=1"),
        ("/admin", "/admin"),
        ("", "/"),
        (None, "/"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/jobs\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_sign_in_only_sends_you_to_this_site(target: object, expected: str) -> None:
    assert safe_next(target) == expected


def test_language_menu_lists_twi_as_the_checkpoint_default() -> None:
    menu = languages()
    assert menu[0] == ("", "Detect automatically")
    assert menu[1] == ("tw", "Twi (checkpoint default)")
    codes = [c for c, _ in menu]
    assert "en" in codes and "yo" in codes and len(codes) == len(set(codes))
