"""The CTranslate2 engine's batched path on the real tiny.en weights and real espeak-ng speech.

Clips of up to 30 s are decoded together (one encode + one generate per batch); long clips,
word timestamps and clips whose batched result fails Whisper's thresholds go through
faster-whisper clip by clip. Here: the batched path is as accurate as the per-clip one, keeps
every result with its own clip, and the right prompt reaches ``generate``. The last tests run a
random-weight multilingual checkpoint for the language/task tokens of the batched prompt.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from twi_asr import TranscribeOptions, decode_audio
from twi_asr.engines.ctranslate2 import CTranslate2Transcriber
from twi_asr.errors import UsageError
from twi_asr.text import wer

from .conftest import SENTENCES, Clip, speak

pytestmark = pytest.mark.slow

OPTIONS = TranscribeOptions()


class ModelSpy:
    """Stands in for the ctranslate2 ``Whisper`` (a C++ object whose methods cannot be patched):
    records each ``generate`` call, optionally replaces ``detect_language`` or edits the results."""

    def __init__(self, model: Any, detect: Any = None, edit: Any = None) -> None:
        self._model = model
        self._detect = detect
        self._edit = edit
        self.calls: list[dict[str, Any]] = []

    def generate(self, features: Any, prompts: list[list[int]], **kwargs: Any) -> Any:
        self.calls.append({"batch": int(features.shape[0]), "prompts": [list(p) for p in prompts], **kwargs})
        results = self._model.generate(features, prompts, **kwargs)
        return [self._edit(r) for r in results] if self._edit else results

    def detect_language(self, features: Any) -> Any:
        return self._detect(features) if self._detect else self._model.detect_language(features)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def spy_model(
    engine: CTranslate2Transcriber, monkeypatch: pytest.MonkeyPatch, detect: Any = None, edit: Any = None
) -> ModelSpy:
    spy = ModelSpy(engine._model.model, detect, edit)
    monkeypatch.setattr(engine._model, "model", spy)
    return spy


def spy_per_clip(engine: CTranslate2Transcriber, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every call of faster-whisper's own ``WhisperModel.transcribe`` (the per-clip path)."""
    calls: list[dict[str, Any]] = []
    original = engine._model.transcribe

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine._model, "transcribe", wrapper)
    return calls


@pytest.fixture(scope="module")
def clips(speech_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """16 clips of 2-5 s: the six shared ones and ten more sentences."""
    folder = tmp_path_factory.mktemp("more-speech")
    more = [Clip(speak(t, folder / f"more{i:02d}.wav"), t) for i, t in enumerate(SENTENCES[6:16])]
    return speech_clips + more


@pytest.fixture(scope="module")
def audios(clips: list[Clip]) -> list[np.ndarray]:
    return [decode_audio(c.path).samples for c in clips]


@pytest.fixture(scope="module")
def per_clip(ct2_engine: CTranslate2Transcriber, audios: list[np.ndarray]) -> list[Any]:
    return [ct2_engine._one(a, OPTIONS, "en") for a in audios]


@pytest.fixture(scope="module")
def batched(ct2_engine: CTranslate2Transcriber, audios: list[np.ndarray]) -> list[Any]:
    return ct2_engine.transcribe(audios, OPTIONS)


def test_batched_is_as_accurate_as_per_clip(
    clips: list[Clip], per_clip: list[Any], batched: list[Any]
) -> None:
    refs = [c.text for c in clips]
    a, b = wer(refs, [r.text for r in per_clip]), wer(refs, [r.text for r in batched])
    print(f"WER on {len(clips)} espeak clips: per clip {a:.3f}, batched {b:.3f}")
    assert b <= a + 0.02, [(r, x.text, y.text) for r, x, y in zip(refs, per_clip, batched, strict=True)]
    assert wer([r.text for r in per_clip], [r.text for r in batched]) < 0.25  # mostly the same words


def test_results_stay_with_their_own_clip(
    ct2_engine: CTranslate2Transcriber, clips: list[Clip], audios: list[np.ndarray]
) -> None:
    """Clips are sorted by length inside a call; results must come back in input order."""
    order = [*range(1, len(clips), 2), *range(0, len(clips), 2)][::-1]  # not sorted by length either
    results = ct2_engine.transcribe([audios[i] for i in order], OPTIONS)
    assert len(results) == len(order)
    for r, i in zip(results, order, strict=True):
        own = wer(clips[i].text, r.text)
        others = min(wer(c.text, r.text) for j, c in enumerate(clips) if j != i)
        # measured: own <= 0.5, others >= 0.78
        assert own < 0.7 and own + 0.2 < others, (clips[i].text, r.text, own, others)
        assert r.duration == pytest.approx(len(audios[i]) / 16000)


def test_segments_are_ordered_inside_each_clip(batched: list[Any], audios: list[np.ndarray]) -> None:
    for r, audio in zip(batched, audios, strict=True):
        assert r.duration == pytest.approx(len(audio) / 16000)
        assert r.language == "en" and r.engine == "ctranslate2" and r.model
        assert r.segments and r.text
        assert [s.id for s in r.segments] == list(range(len(r.segments)))
        for s in r.segments:
            assert 0.0 <= s.start <= s.end <= r.duration + 1e-6, s
            assert s.words is None
        for prev, nxt in zip(r.segments, r.segments[1:], strict=False):
            assert nxt.start >= prev.end - 1e-6, (prev, nxt)
        assert r.segments[-1].end > 0.5 * r.duration


def test_short_clips_are_decoded_in_batches(
    ct2_engine: CTranslate2Transcriber, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ct2_engine.batch_size == 8  # the CPU default
    monkeypatch.setattr(ct2_engine, "batch_size", 3)
    spy = spy_model(ct2_engine, monkeypatch)
    fw = spy_per_clip(ct2_engine, monkeypatch)
    results = ct2_engine.transcribe(audios[:7], OPTIONS)
    assert [c["batch"] for c in spy.calls] == [3, 3, 1]
    assert [len(c["prompts"]) for c in spy.calls] == [3, 3, 1]
    assert all(c["beam_size"] == 5 and c["return_no_speech_prob"] for c in spy.calls)
    assert not fw, "clean speech must not fall back to the per-clip path"
    assert len(results) == 7 and all(r.text for r in results)


def test_short_silent_and_long_clips_in_one_call(
    ct2_engine: CTranslate2Transcriber, clips: list[Clip], audios: list[np.ndarray], long_clip: Clip
) -> None:
    long_audio = decode_audio(long_clip.path).samples
    assert len(long_audio) > 65 * 16000
    silence = np.zeros(3 * 16000, dtype=np.float32)
    short, quiet, long = ct2_engine.transcribe([audios[0], silence, long_audio], OPTIONS)
    assert wer(clips[0].text, short.text) < 0.35, short.text
    assert short.duration == pytest.approx(len(audios[0]) / 16000)
    assert (quiet.text, quiet.segments, quiet.duration) == ("", (), pytest.approx(3.0))
    assert long.duration == pytest.approx(len(long_audio) / 16000)
    assert len(long.segments) >= 8
    assert all(0.0 <= s.start <= s.end <= long.duration + 1e-6 for s in long.segments)
    assert long.segments[-1].end > long.duration - 6.0
    assert wer(long_clip.text, long.text) < 0.35


def test_initial_prompt_reaches_the_prompt(
    ct2_engine: CTranslate2Transcriber, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from faster_whisper.tokenizer import Tokenizer

    tok = Tokenizer(ct2_engine._model.hf_tokenizer, False)
    monkeypatch.setattr(ct2_engine, "lanes", 1)  # one batch of two (lanes would make two of one)
    spy = spy_model(ct2_engine, monkeypatch)
    ct2_engine.transcribe(audios[:2], OPTIONS)
    assert spy.calls[0]["prompts"] == [[tok.sot]] * 2  # tiny.en: no language or task token

    spy.calls.clear()
    prompt = "  Stella, Accra and Kumasi. "
    results = ct2_engine.transcribe(audios[:2], TranscribeOptions(initial_prompt=prompt))
    expected = [tok.sot_prev, *tok.encode(" Stella, Accra and Kumasi."), tok.sot]
    assert spy.calls[0]["prompts"] == [expected] * 2
    assert all(r.text for r in results)


def test_word_timestamps_and_sampling_keep_the_per_clip_path(
    ct2_engine: CTranslate2Transcriber, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    fw = spy_per_clip(ct2_engine, monkeypatch)
    [r] = ct2_engine.transcribe(audios[:1], TranscribeOptions(word_timestamps=True))
    assert len(fw) == 1 and fw[0]["word_timestamps"] is True
    assert r.words
    ct2_engine.transcribe(audios[:1], TranscribeOptions(temperatures=(0.4,)))
    assert len(fw) == 2 and fw[1]["temperature"] == [0.4]


def test_failed_thresholds_fall_back_to_the_per_clip_path(
    ct2_engine: CTranslate2Transcriber, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log-prob threshold nothing meets: every clip is decoded again by faster-whisper."""
    options = TranscribeOptions(log_prob_threshold=0.0, no_speech_threshold=None, temperatures=(0.0,))
    fw = spy_per_clip(ct2_engine, monkeypatch)
    results = ct2_engine.transcribe(audios[:3], options)
    assert len(fw) == 3
    assert [r.text for r in results] == [ct2_engine._one(a, options, "en").text for a in audios[:3]]


@pytest.mark.parametrize(("score", "empty"), [(-2.0, True), (-0.2, False)])
def test_no_speech_rule_on_the_batched_path(
    ct2_engine: CTranslate2Transcriber,
    audios: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    score: float,
    empty: bool,
) -> None:
    """No-speech probability over the threshold: an empty transcript unless the text is confident."""

    def edit(r: Any) -> SimpleNamespace:
        return SimpleNamespace(sequences_ids=r.sequences_ids, scores=[score], no_speech_prob=0.95)

    spy = spy_model(ct2_engine, monkeypatch, edit=edit)
    fw = spy_per_clip(ct2_engine, monkeypatch)
    [r] = ct2_engine.transcribe(audios[:1], OPTIONS)
    assert len(spy.calls) == 1 and not fw
    assert (r.text == "") is empty and (r.segments == ()) is empty
    assert r.duration == pytest.approx(len(audios[0]) / 16000)


def test_batch_size_argument(tiny_en_ct2: Path) -> None:
    engine = CTranslate2Transcriber(tiny_en_ct2, model_name="tiny.en", batch_size=3)
    assert engine.batch_size == 3
    assert CTranslate2Transcriber(tiny_en_ct2, model_name="tiny.en").batch_size == 8  # 0 = auto: 8 on CPU
    with pytest.raises(UsageError, match="batch size"):
        CTranslate2Transcriber(tiny_en_ct2, model_name="tiny.en", batch_size=-1)


# --------------------------------------------------------------------------- multilingual prompt
NO_CHECKS = {"beam_size": 1, "compression_ratio_threshold": None, "log_prob_threshold": None}
NO_CHECKS_ALL = {**NO_CHECKS, "no_speech_threshold": None}  # random weights: keep every batched result


def _noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1


@pytest.fixture(scope="module")
def multilingual_ct2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random-weight multilingual checkpoint in CTranslate2 layout, with and without a Yoruba default."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from twi_asr.convert import convert_hf_to_ct2

    from ..unit.tiny_multilingual import build_tiny_whisper, edit_generation_config

    hf = build_tiny_whisper(tmp_path_factory.mktemp("ml-hf"), multilingual=True)
    plain = convert_hf_to_ct2(hf, tmp_path_factory.mktemp("ml-ct2"), quantization="float32")
    edit_generation_config(hf, language="yo")
    yo = convert_hf_to_ct2(hf, tmp_path_factory.mktemp("ml-ct2-yo"), quantization="float32")
    return {"plain": plain, "yo": yo}


def _ids(folder: Path) -> dict[str, int]:
    from ..unit.tiny_multilingual import token_ids

    return token_ids(folder)


@pytest.mark.parametrize(
    ("spelling", "task"), [("tw", "transcribe"), ("akan", "translate"), ("en", "transcribe")]
)
def test_batched_prompt_has_the_language_and_task(
    multilingual_ct2: dict[str, Path], spelling: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = multilingual_ct2["yo"]
    ids = _ids(folder)
    engine = CTranslate2Transcriber(folder, model_name="tiny-yo")
    assert engine.multilingual
    monkeypatch.setattr(engine, "lanes", 1)  # one batch of two (lanes would make two of one)
    spy = spy_model(engine, monkeypatch)
    fw = spy_per_clip(engine, monkeypatch)
    out = engine.transcribe(
        [_noise(2.0), _noise(1.0)], TranscribeOptions(language=spelling, task=task, **NO_CHECKS)
    )
    lang = "en" if spelling == "en" else "yo"
    expected = [ids["<|startoftranscript|>"], ids[f"<|{lang}|>"], ids[f"<|{task}|>"]]
    assert spy.calls[0]["prompts"] == [expected] * 2
    assert not fw
    assert [t.language for t in out] == [lang, lang]


def test_batched_detection_gives_each_clip_its_own_language(
    multilingual_ct2: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No language known: detected per clip on the batch's encoder output, kept with its clip."""
    folder = multilingual_ct2["plain"]
    ids = _ids(folder)
    engine = CTranslate2Transcriber(folder, model_name="tiny-plain")
    monkeypatch.setattr(engine, "lanes", 1)  # one batch of two (lanes would make two of one)
    detected: list[int] = []

    def detect(features: Any) -> list[list[tuple[str, float]]]:
        detected.append(int(features.shape[0]))
        return [[("<|sw|>", 0.9), ("<|ha|>", 0.1)], [("<|ha|>", 0.8), ("<|sw|>", 0.2)]]

    spy = spy_model(engine, monkeypatch, detect)
    # the 1.5 s clip is decoded first (shortest first), so it gets "sw"
    out = engine.transcribe([_noise(2.0), _noise(1.5)], TranscribeOptions(language="tw", **NO_CHECKS_ALL))
    assert detected == [2]
    sot, transcribe = ids["<|startoftranscript|>"], ids["<|transcribe|>"]
    assert spy.calls[0]["prompts"] == [[sot, ids["<|sw|>"], transcribe], [sot, ids["<|ha|>"], transcribe]]
    assert [t.language for t in out] == ["ha", "sw"]


def test_batched_detection_unmocked(
    multilingual_ct2: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from twi_asr.languages import WHISPER_LANGUAGES

    folder = multilingual_ct2["plain"]
    ids = _ids(folder)
    engine = CTranslate2Transcriber(folder, model_name="tiny-plain")
    spy = spy_model(engine, monkeypatch)
    (t,) = engine.transcribe([_noise(2.0)], TranscribeOptions(language=None, **NO_CHECKS_ALL))
    assert t.language in WHISPER_LANGUAGES
    assert spy.calls[0]["prompts"][0][1] == ids[f"<|{t.language}|>"]
