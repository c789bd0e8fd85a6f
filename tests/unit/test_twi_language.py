"""``--language tw|twi|ak|akan`` on real engines: the checkpoint's own default, never English by accident.

Whisper has no Twi token; a Twi fine-tune is trained with some other token
(often ``<|yo|>``) recorded in its generation config. These plumbing tests run
a tiny random-weight *multilingual* Whisper (built in ``tiny_multilingual``:
real 51865-token layout, d_model 64) through both engines and check what
reaches the decoder: the ``language``/``task`` given to ``generate`` /
faster-whisper and the decoder prompt itself. They never look at the text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twi_asr.engines.ctranslate2 import checkpoint_default_language
from twi_asr.errors import ModelNotFoundError, UsageError
from twi_asr.languages import WHISPER_LANGUAGES
from twi_asr.types import TranscribeOptions

from .tiny_multilingual import build_tiny_whisper, edit_generation_config, token_ids

TWI = ["tw", "twi", "ak", "akan"]
FAST = {"beam_size": 1, "temperatures": (0.0,)}
# multilingual (51865-token) layout ids, checked against the built tokenizer in test_layout
SOT, EOT, EN_ID, YO_ID, SW_ID = 50258, 50257, 50259, 50325, 50318
TRANSLATE_ID, TRANSCRIBE_ID, NO_TIMESTAMPS_ID = 50358, 50359, 50363
LANG_TO_ID_YO = {"<|en|>": EN_ID, "<|sw|>": SW_ID, "<|yo|>": YO_ID}


def _audio(seconds: float = 2.0) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1


class Spy:
    """Record the keyword arguments of every call to ``obj.name`` (an instance attribute patch)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, obj: Any, name: str, replace: Callable[..., Any] | None = None
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        original = getattr(obj, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(kwargs)
            return (replace or original)(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapper)

    @property
    def last(self) -> dict[str, Any]:
        assert self.calls, "never called"
        return self.calls[-1]


def _prompts(forward: Spy) -> list[list[int]]:
    """Decoder prompts seen by the model (calls that fed more than one decoder token at once)."""
    out = []
    for kw in forward.calls:
        ids = kw.get("decoder_input_ids")
        if ids is not None and ids.shape[-1] > 1:
            out.extend(row.tolist() for row in ids)
    return out


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """A d_model-64 model gains nothing from threads, and spinning threads crawl on a busy CPU (30x)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random multilingual checkpoint with no default language (about 4 s)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    try:
        return build_tiny_whisper(tmp_path_factory.mktemp("tiny-multilingual"), multilingual=True)
    except ModelNotFoundError as exc:  # the tokenizer comes from the bundled tiny.en package
        pytest.skip(f"no bundled tiny.en tokenizer: {exc}")


def _variant(base: Path, tmp_path_factory: pytest.TempPathFactory, name: str, **gen: Any) -> Path:
    folder = tmp_path_factory.mktemp(name)
    shutil.copytree(base, folder, dirs_exist_ok=True)
    edit_generation_config(folder, **gen)
    return folder


YO_VARIANTS = {
    "language=yo": {"language": "yo"},
    "language=<|yo|>": {"language": "<|yo|>"},
    "language=yoruba": {"language": "yoruba"},
    "forced_decoder_ids": {"forced_decoder_ids": [[1, YO_ID], [2, TRANSCRIBE_ID]]},
}


@pytest.fixture(scope="module")
def yo_checkpoints(hf_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {k: _variant(hf_base, tmp_path_factory, "yo", **gen) for k, gen in YO_VARIANTS.items()}


@pytest.fixture(scope="module")
def hf_english(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random English-only checkpoint (tiny.en layout: no lang_to_id, no task tokens)."""
    pytest.importorskip("torch")
    try:
        return build_tiny_whisper(tmp_path_factory.mktemp("tiny-english"), multilingual=False)
    except ModelNotFoundError as exc:
        pytest.skip(f"no bundled tiny.en tokenizer: {exc}")


def _load(path: Path, engine: str = "transformers") -> Any:
    from twi_asr import load_transcriber

    return load_transcriber(str(path), engine=engine)


@pytest.fixture(scope="module")
def plain(hf_base: Path) -> Any:
    return _load(hf_base)


@pytest.fixture(scope="module")
def yo_engines(yo_checkpoints: dict[str, Path]) -> dict[str, Any]:
    return {k: _load(p) for k, p in yo_checkpoints.items()}


@pytest.fixture(scope="module")
def yo(yo_engines: dict[str, Any]) -> Any:
    return yo_engines["language=yo"]


@pytest.fixture(scope="module")
def english(hf_english: Path) -> Any:
    return _load(hf_english)


# --------------------------------------------------------------------------- the fixture itself
def test_layout(hf_base: Path, plain: Any) -> None:
    """The helper builds the real multilingual layout the engines rely on."""
    ids = token_ids(hf_base)
    assert (ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|en|>"]) == (EOT, SOT, EN_ID)
    assert (ids["<|yo|>"], ids["<|sw|>"]) == (YO_ID, SW_ID)
    assert (ids["<|translate|>"], ids["<|transcribe|>"]) == (TRANSLATE_ID, TRANSCRIBE_ID)
    assert ids["<|notimestamps|>"] == NO_TIMESTAMPS_ID
    assert (ids["<|0.00|>"], ids["<|30.00|>"]) == (NO_TIMESTAMPS_ID + 1, 51864)
    tok = plain.processor.tokenizer
    assert len(tok) == plain.model.config.vocab_size == 51865
    # transformers' Whisper tokenizer puts the first timestamp right after the last special token
    assert max(tok.all_special_ids) + 1 == NO_TIMESTAMPS_ID + 1 == plain._timestamp_begin
    gen = plain.model.generation_config
    assert plain.multilingual and gen.is_multilingual
    assert gen.lang_to_id["<|yo|>"] == YO_ID and len(gen.lang_to_id) == 99
    assert gen.task_to_id == {"transcribe": TRANSCRIBE_ID, "translate": TRANSLATE_ID}
    assert plain._default_language is None


# --------------------------------------------------------------------------- transformers engine
@pytest.mark.parametrize("spelling", TWI)
@pytest.mark.parametrize("variant", list(YO_VARIANTS))
def test_twi_uses_the_checkpoint_language(
    yo_engines: dict[str, Any], variant: str, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tr = yo_engines[variant]
    generate = Spy(monkeypatch, tr.model, "generate")
    forward = Spy(monkeypatch, tr.model, "forward")
    detect = Spy(monkeypatch, tr, "_detect_languages")
    (t,) = tr.transcribe([_audio()], TranscribeOptions(language=spelling, **FAST))
    assert t.language == "yo"
    assert len(generate.calls) == 1
    assert generate.last.get("language") == "yo"
    assert generate.last.get("task") == "transcribe"
    assert not detect.calls, "a Twi spelling with a checkpoint default must not run detection"
    assert [p[:3] for p in _prompts(forward)] == [[SOT, YO_ID, TRANSCRIBE_ID]]


@pytest.mark.parametrize("spelling", TWI)
def test_twi_without_a_checkpoint_default_detects_per_clip(
    plain: Any, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No default in the checkpoint: the model decides per clip (not English, not an error)."""
    generate = Spy(monkeypatch, plain.model, "generate")
    forward = Spy(monkeypatch, plain.model, "forward")
    detect = Spy(monkeypatch, plain, "_detect_languages", replace=lambda features: ["sw"] * len(features))
    (t,) = plain.transcribe([_audio()], TranscribeOptions(language=spelling, **FAST))
    assert len(detect.calls) == 1
    assert generate.last["language"] == ["sw"]
    assert t.language == "sw"
    assert [p[:3] for p in _prompts(forward)] == [[SOT, SW_ID, TRANSCRIBE_ID]]


def test_twi_without_a_checkpoint_default_batch_keeps_each_clip_language(
    plain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plain, "batch_size", 2)  # both clips in one generate call
    generate = Spy(monkeypatch, plain.model, "generate")
    Spy(monkeypatch, plain, "_detect_languages", replace=lambda features: ["sw", "ha"])
    out = plain.transcribe([_audio(), _audio(1.5)], TranscribeOptions(language="tw", **FAST))
    assert generate.last["language"] == ["sw", "ha"]
    assert [t.language for t in out] == ["sw", "ha"]


def test_twi_without_a_checkpoint_default_real_detection(plain: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unmocked detection on the random model: a real Whisper code reaches generate and the result."""
    generate = Spy(monkeypatch, plain.model, "generate")
    detect = Spy(monkeypatch, plain, "_detect_languages")
    (t,) = plain.transcribe([_audio()], TranscribeOptions(language="akan", **FAST))
    assert len(detect.calls) == 1
    (lang,) = generate.last["language"]
    assert lang in WHISPER_LANGUAGES
    assert t.language == lang


def test_explicit_english_forces_english(yo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    generate = Spy(monkeypatch, yo.model, "generate")
    forward = Spy(monkeypatch, yo.model, "forward")
    detect = Spy(monkeypatch, yo, "_detect_languages")
    (t,) = yo.transcribe([_audio()], TranscribeOptions(language="en", **FAST))
    assert generate.last["language"] == "en"
    assert t.language == "en"
    assert not detect.calls
    assert [p[:3] for p in _prompts(forward)] == [[SOT, EN_ID, TRANSCRIBE_ID]]


@pytest.mark.parametrize("requested", ["auto", None])
def test_auto_detects_even_on_a_twi_checkpoint(
    yo: Any, requested: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate = Spy(monkeypatch, yo.model, "generate")
    detect = Spy(monkeypatch, yo, "_detect_languages", replace=lambda features: ["ha"])
    (t,) = yo.transcribe([_audio()], TranscribeOptions(language=requested, **FAST))
    assert len(detect.calls) == 1
    assert generate.last["language"] == ["ha"]
    assert t.language == "ha"


@pytest.mark.parametrize("requested", ["klingon", "xx", "twii"])
def test_unknown_language_is_a_usage_error_before_decoding(
    yo: Any, requested: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate = Spy(monkeypatch, yo.model, "generate")
    detect = Spy(monkeypatch, yo, "_detect_languages")
    with pytest.raises(UsageError, match="unknown language"):
        yo.transcribe([_audio()], TranscribeOptions(language=requested, **FAST))
    assert not generate.calls and not detect.calls


@pytest.mark.parametrize("variant", ["language=yo", "forced_decoder_ids"])
def test_translate_reaches_generate(
    yo_engines: dict[str, Any], variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tr = yo_engines[variant]
    generate = Spy(monkeypatch, tr.model, "generate")
    forward = Spy(monkeypatch, tr.model, "forward")
    (t,) = tr.transcribe([_audio()], TranscribeOptions(language="tw", task="translate", **FAST))
    assert generate.last["task"] == "translate"
    assert generate.last["language"] == "yo"
    assert t.language == "yo"
    assert [p[:3] for p in _prompts(forward)] == [[SOT, YO_ID, TRANSLATE_ID]]


@pytest.mark.parametrize("requested", ["tw", "akan", "en", "auto"])
@pytest.mark.parametrize("task", ["transcribe", "translate"])
def test_english_only_model_gets_no_language_or_task(
    english: Any, requested: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """English-only checkpoints have no language/task tokens: neither kwarg may reach generate."""
    assert not english.multilingual
    generate = Spy(monkeypatch, english.model, "generate")
    detect = Spy(monkeypatch, english, "_detect_languages")
    (t,) = english.transcribe([_audio()], TranscribeOptions(language=requested, task=task, **FAST))
    assert "task" not in generate.last and "language" not in generate.last
    assert not detect.calls
    assert t.language == "en"


def test_silence_reports_the_checkpoint_language_without_decoding(
    yo: Any, plain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    silence = np.zeros(16000, dtype=np.float32)
    spies = [Spy(monkeypatch, tr.model, "generate") for tr in (yo, plain)]
    (t,) = yo.transcribe([silence], TranscribeOptions(language="tw", **FAST))
    assert t.language == "yo" and t.text == ""
    (t,) = plain.transcribe([silence], TranscribeOptions(language="tw", **FAST))
    assert t.language != "en", "Twi on a checkpoint without a default must never become English"
    assert not any(spy.calls for spy in spies)


# --------------------------------------------------------------------------- ctranslate2 side
def _write_gen(folder: Path, content: Any) -> Path:
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / "generation_config.json").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"language": "yo"}, "yo"),
        ({"language": "<|yo|>"}, "yo"),
        ({"language": "yo", "forced_decoder_ids": [[1, SW_ID]], "lang_to_id": LANG_TO_ID_YO}, "yo"),
        ({"forced_decoder_ids": [[1, YO_ID], [2, TRANSCRIBE_ID]], "lang_to_id": LANG_TO_ID_YO}, "yo"),
        ({"language": None, "forced_decoder_ids": [[1, YO_ID]], "lang_to_id": LANG_TO_ID_YO}, "yo"),
        ({"forced_decoder_ids": [[1, YO_ID], [2, TRANSCRIBE_ID]]}, None),  # no lang_to_id: unknown id
        ({"forced_decoder_ids": [[2, TRANSCRIBE_ID]], "lang_to_id": LANG_TO_ID_YO}, None),
        ({"forced_decoder_ids": None, "lang_to_id": LANG_TO_ID_YO}, None),
        ({"language": ""}, None),
        ({"language": "<||>"}, None),
        ({}, None),
        ("{not json", None),
        ("", None),
    ],
    ids=lambda v: json.dumps(v) if not isinstance(v, str) else repr(v),
)
def test_checkpoint_default_language(tmp_path: Path, content: Any, expected: str | None) -> None:
    assert checkpoint_default_language(_write_gen(tmp_path, content)) == expected


def test_checkpoint_default_language_without_the_file(tmp_path: Path) -> None:
    assert checkpoint_default_language(tmp_path) is None


@pytest.mark.parametrize("name", ["yoruba", "Yoruba", "<|YO|>"])
def test_checkpoint_default_language_normalises_names(tmp_path: Path, name: str) -> None:
    assert checkpoint_default_language(_write_gen(tmp_path, {"language": name})) == "yo"


@pytest.mark.parametrize("content", ["[]", '"yo"', "null"])
def test_checkpoint_default_language_non_object_json(tmp_path: Path, content: str) -> None:
    assert checkpoint_default_language(_write_gen(tmp_path, content)) is None


@pytest.fixture(scope="module")
def ct2_yo(yo_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The language=yo checkpoint converted to CTranslate2 (float32, about 4 s)."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("ctranslate2")
    from twi_asr.convert import convert_hf_to_ct2

    return convert_hf_to_ct2(
        yo_checkpoints["language=yo"], tmp_path_factory.mktemp("tiny-yo-ct2"), quantization="float32"
    )


@pytest.fixture(scope="module")
def ct2_engine(ct2_yo: Path) -> Any:
    return _load(ct2_yo, "ctranslate2")


def _ct2_variant(ct2_yo: Path, tmp_path_factory: pytest.TempPathFactory, **gen: Any) -> Path:
    folder = tmp_path_factory.mktemp("ct2-variant")
    shutil.copytree(ct2_yo, folder, dirs_exist_ok=True)
    edit_generation_config(folder, **gen)
    return folder


def test_conversion_keeps_the_default_language(ct2_yo: Path, ct2_engine: Any) -> None:
    assert json.loads((ct2_yo / "generation_config.json").read_text())["language"] == "yo"
    assert checkpoint_default_language(ct2_yo) == "yo"
    assert ct2_engine.multilingual, "CTranslate2 must see the converted model as multilingual"


@pytest.mark.parametrize("spelling", TWI)
def test_ct2_twi_uses_the_checkpoint_language(
    ct2_engine: Any, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fw = Spy(monkeypatch, ct2_engine._model, "transcribe")
    (t,) = ct2_engine.transcribe([_audio()], TranscribeOptions(language=spelling, **FAST))
    assert fw.last["language"] == "yo"
    assert fw.last["task"] == "transcribe"
    assert t.language == "yo"


@pytest.mark.parametrize(("requested", "task"), [("en", "transcribe"), ("tw", "translate")])
def test_ct2_explicit_language_and_task(
    ct2_engine: Any, requested: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fw = Spy(monkeypatch, ct2_engine._model, "transcribe")
    (t,) = ct2_engine.transcribe([_audio()], TranscribeOptions(language=requested, task=task, **FAST))
    expected = "en" if requested == "en" else "yo"
    assert (fw.last["language"], fw.last["task"]) == (expected, task)
    assert t.language == expected


def test_ct2_twi_without_a_default_detects_like_transformers(
    ct2_yo: Path, plain: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same weights, no default: faster-whisper detects (language=None), and agrees with transformers."""
    engine = _load(_ct2_variant(ct2_yo, tmp_path_factory, language=None), "ctranslate2")
    assert engine._default_language is None
    fw = Spy(monkeypatch, engine._model, "transcribe")
    (t,) = engine.transcribe([_audio()], TranscribeOptions(language="tw", **FAST))
    assert fw.last["language"] is None
    assert t.language in WHISPER_LANGUAGES
    (ref,) = plain.transcribe([_audio()], TranscribeOptions(language="tw", **FAST))
    assert t.language == ref.language


def test_ct2_twi_with_a_language_name_in_the_checkpoint(
    ct2_yo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    engine = _load(_ct2_variant(ct2_yo, tmp_path_factory, language="yoruba"), "ctranslate2")
    (t,) = engine.transcribe([_audio()], TranscribeOptions(language="tw", **FAST))
    assert t.language == "yo"
