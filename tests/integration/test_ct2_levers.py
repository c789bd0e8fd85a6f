"""The CTranslate2 engine's speed levers on the real tiny.en weights and real espeak-ng speech.

* lanes: on CPU the batches of one call run side by side, one model replica and one thread
  each (:mod:`twi_asr.engines.ct2_threads`); the words must be those of one batch at a time;
* the temperature ladder runs on the batch's own window (:mod:`twi_asr.engines.ct2_fallback`),
  not through faster-whisper's 30 s path;
* an English-only model's shortest window is ``engines.base.ENGLISH_MIN_FRAMES`` (10 s, as for every
  model: 8 s cost words on a clip).
Timings are in ``bench/engines.py``; these tests check the behaviour.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twi_asr import TranscribeOptions, decode_audio
from twi_asr.engines.base import ENGLISH_MIN_FRAMES, MIN_FRAMES
from twi_asr.engines.ctranslate2 import CTranslate2Transcriber
from twi_asr.text import wer

from .conftest import SENTENCES, Clip, speak

pytestmark = pytest.mark.slow


class Recorder:
    """Wraps the CTranslate2 ``Whisper`` model (a C++ object): records encode/generate calls and
    the thread that made each."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.encoded: list[tuple[int, ...]] = []
        self.generated: list[dict[str, Any]] = []
        self.threads: set[str] = set()

    def encode(self, features: Any, **kwargs: Any) -> Any:
        self.encoded.append(tuple(features.shape))
        return self._model.encode(features, **kwargs)

    def generate(self, features: Any, prompts: list[list[int]], **kwargs: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        self.generated.append({"batch": int(features.shape[0]), **kwargs})
        return self._model.generate(features, prompts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def record(engine: CTranslate2Transcriber, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    spy = Recorder(engine._model.model)
    monkeypatch.setattr(engine._model, "model", spy)
    return spy


@pytest.fixture(scope="module")
def clips(speech_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("lever-speech")
    more = [Clip(speak(t, folder / f"lever{i:02d}.wav"), t) for i, t in enumerate(SENTENCES[6:16])]
    return speech_clips + more


@pytest.fixture(scope="module")
def audios(clips: list[Clip]) -> list[np.ndarray]:
    return [decode_audio(c.path).samples for c in clips]


def test_lanes_give_the_words_of_one_batch_at_a_time(
    tiny_en_ct2: Path, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    lanes = CTranslate2Transcriber(tiny_en_ct2, model_name="tiny.en", device="cpu", batch_size=3)
    serial = CTranslate2Transcriber(
        tiny_en_ct2, model_name="tiny.en", device="cpu", batch_size=3, cpu_threads=1
    )
    assert serial.lanes == 1 and serial._model.model.num_workers == 1
    if lanes.lanes < 2:
        pytest.skip("one CPU core here: no lanes to run side by side")
    assert lanes._model.model.num_workers == lanes.lanes  # one replica per lane
    spy = record(lanes, monkeypatch)
    got = lanes.transcribe(audios, TranscribeOptions())
    want = serial.transcribe(audios, TranscribeOptions())
    assert [t.text for t in got] == [t.text for t in want]  # 1 thread per batch both ways: same numbers
    assert [t.segments for t in got] == [t.segments for t in want]
    assert len(spy.generated) == -(-len(audios) // 3)
    assert len(spy.threads) >= 2, spy.threads  # the batches ran on more than one lane


def test_ladder_samples_failing_clips_on_their_batch_window(
    tiny_en_ct2: Path, clips: list[Clip], audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log-prob threshold few beam results meet: the failing clips of each batch are sampled
    again at 0.2, 0.4... on that batch's window, never by faster-whisper's own transcribe."""
    engine = CTranslate2Transcriber(tiny_en_ct2, model_name="tiny.en", device="cpu", batch_size=4)
    spy = record(engine, monkeypatch)
    per_clip: list[Any] = []
    monkeypatch.setattr(engine._model, "transcribe", lambda *a, **k: per_clip.append(k))
    options = TranscribeOptions(log_prob_threshold=-0.15)
    results = engine.transcribe(audios[:8], options)
    assert not per_clip
    beams = [c for c in spy.generated if c.get("beam_size") == 5]
    samples = [c for c in spy.generated if c.get("sampling_temperature", 0) > 0]
    assert len(beams) == 2 and samples, spy.generated
    assert all(c["beam_size"] == 1 and c["num_hypotheses"] == 5 and c["sampling_topk"] == 0 for c in samples)
    used = sorted({c["sampling_temperature"] for c in samples})
    assert used == list(options.temperatures[1 : 1 + len(used)])  # the ladder in order, from 0.2
    windows = {shape[2] for shape in spy.encoded[:2]}  # the two batches' windows
    assert {shape[2] for shape in spy.encoded[2:]} <= windows  # the ladder re-encodes on the same ones
    retried = [t for t in results if t.segments and t.segments[0].temperature > 0]
    assert retried, [t.segments[0].avg_logprob for t in results if t.segments]
    for t, clip in zip(results, clips[:8], strict=True):  # every clip keeps words of its own
        assert wer(clip.text, t.text) < 0.7, (clip.text, t.text)


def test_english_only_windows_stop_at_their_floor(
    tiny_en_ct2: Path, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = CTranslate2Transcriber(tiny_en_ct2, model_name="tiny.en", device="cpu")
    assert not engine.multilingual and engine.min_frames == ENGLISH_MIN_FRAMES == MIN_FRAMES
    spy = record(engine, monkeypatch)
    short = [a[: 3 * 16000] for a in audios[:2]]
    engine.transcribe(short, TranscribeOptions())
    assert spy.encoded[0][2] == ENGLISH_MIN_FRAMES


def test_multilingual_models_keep_the_10_s_floor(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from twi_asr.convert import convert_hf_to_ct2

    from ..unit.tiny_multilingual import build_tiny_whisper

    hf = build_tiny_whisper(tmp_path_factory.mktemp("floor-hf"), multilingual=True)
    folder = convert_hf_to_ct2(hf, tmp_path_factory.mktemp("floor-ct2"), quantization="float32")
    engine = CTranslate2Transcriber(folder, model_name="tiny-ml", device="cpu")
    assert engine.multilingual and engine.min_frames == MIN_FRAMES
