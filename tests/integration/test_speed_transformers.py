"""The transformers engine's speed-ups on the real tiny.en weights and real espeak-ng speech.

Short-form batches run on an encoder window cut to their longest clip (+2 s, at least 10 s)
instead of Whisper's 30 s, beam search skips the no-op reorder of the cross-attention cache,
and ``int8`` quantises the Linear layers on request. Each must keep the accuracy: the cut
window is judged against the full window on a mix of short, medium (10-25 s) and long
(> 30 s, long-form) clips; the reorder switch must give the same tokens. No timings here:
speed is measured in ``bench/engines.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twi_asr import TranscribeOptions, decode_audio
from twi_asr.engines.base import MAX_FRAMES, window_frames
from twi_asr.engines.transformers import (
    TransformersTranscriber,
    fit_window,
    skip_cross_attention_reorder,
    window_adaptable,
)
from twi_asr.errors import UsageError
from twi_asr.text import wer

from .conftest import SENTENCES, Clip, speak

pytestmark = pytest.mark.slow

OPTIONS = TranscribeOptions()


def _concat(parts: list[Path], out: Path, gap_s: float = 0.5) -> Path:
    """Join WAV files with ``gap_s`` of silence between them (16 kHz mono)."""
    silence = out.with_name(out.stem + "-gap.wav")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
         "-t", str(gap_s), "-c:a", "pcm_s16le", str(silence)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\nfile '{silence}'\n" for p in parts))
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-c:a", "pcm_s16le", str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def mixed_clips(
    speech_clips: list[Clip], long_clip: Clip, tmp_path_factory: pytest.TempPathFactory
) -> list[Clip]:
    """12 short clips (2-5 s), 3 medium ones (10-25 s: 3, 4 and 6 sentences) and one of ~70 s."""
    folder = tmp_path_factory.mktemp("mixed-speech")
    more = [Clip(speak(t, folder / f"s{i:02d}.wav"), t) for i, t in enumerate(SENTENCES[6:12])]
    short = speech_clips + more
    medium = []
    for n, sentences in enumerate((SENTENCES[12:15], SENTENCES[14:18], SENTENCES[:6])):
        parts = [speak(t, folder / f"m{n}-{k}.wav") for k, t in enumerate(sentences)]
        medium.append(Clip(_concat(parts, folder / f"medium{n}.wav"), " ".join(sentences)))
    return short + medium + [long_clip]


@pytest.fixture(scope="module")
def mixed_audio(mixed_clips: list[Clip]) -> list[np.ndarray]:
    audio = [decode_audio(c.path).samples for c in mixed_clips]
    seconds = sorted(len(a) / 16000 for a in audio)
    assert seconds[0] > 1.5 and seconds[11] < 6.0  # short
    assert seconds[12] > 10.0 and seconds[14] < 29.0  # medium: cut windows of 12-30 s
    assert seconds[15] > 60.0  # long-form
    return audio


@pytest.fixture(scope="module")
def full_window_engine(tiny_en_hf: Path) -> TransformersTranscriber:
    """Whisper's 30 s window; long clips by the sequential loop (so they share one path)."""
    return TransformersTranscriber(
        tiny_en_hf, model_name="tiny.en", fit_windows=False, long_form="sequential"
    )


@pytest.fixture(scope="module")
def cut_engine(tiny_en_hf: Path) -> TransformersTranscriber:
    """The default cut windows; long clips by the sequential loop, not cut on silence."""
    return TransformersTranscriber(tiny_en_hf, model_name="tiny.en", long_form="sequential")


def _encoder_frames(engine: TransformersTranscriber) -> tuple[list[int], Any]:
    """Record the mel frames of every encoder call (a forward pre-hook)."""
    seen: list[int] = []

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        features = args[0] if args else kwargs["input_features"]
        seen.append(int(features.shape[-1]))

    handle = engine.model.model.encoder.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, handle


def test_cut_window_is_as_accurate_as_the_full_one(
    cut_engine: TransformersTranscriber,
    full_window_engine: TransformersTranscriber,
    mixed_clips: list[Clip],
    mixed_audio: list[np.ndarray],
) -> None:
    assert cut_engine.fit_windows and not full_window_engine.fit_windows
    refs = [c.text for c in mixed_clips]
    cut = cut_engine.transcribe(mixed_audio, OPTIONS)
    full = full_window_engine.transcribe(mixed_audio, OPTIONS)
    a, b = wer(refs, [r.text for r in full]), wer(refs, [r.text for r in cut])
    short_a = wer(refs[:12], [r.text for r in full[:12]])
    short_b = wer(refs[:12], [r.text for r in cut[:12]])
    print(
        f"WER on {len(refs)} clips: 30 s window {a:.3f}, cut window {b:.3f}; "
        f"short clips only: {short_a:.3f}, {short_b:.3f}"
    )
    pairs = [(r, x.text, y.text) for r, x, y in zip(refs, full, cut, strict=True)]
    assert b <= a + 0.02, pairs
    assert short_b <= short_a + 0.02, pairs
    assert wer([r.text for r in full], [r.text for r in cut]) < 0.15, pairs  # mostly the same words
    assert cut[-1].text == full[-1].text  # the long clip takes the long-form path either way
    for r, audio in zip(cut, mixed_audio, strict=True):
        assert r.duration == pytest.approx(len(audio) / 16000)
        assert r.segments and all(0.0 <= s.start <= s.end <= r.duration + 1e-6 for s in r.segments)


def test_encoder_sees_the_cut_window(
    cut_engine: TransformersTranscriber,
    full_window_engine: TransformersTranscriber,
    mixed_audio: list[np.ndarray],
) -> None:
    """Three short clips: one 10 s window; a 10-25 s clip: its length + 2 s; long-form: 30 s."""
    short, medium, long = mixed_audio[:3], mixed_audio[12], mixed_audio[15]
    seen, handle = _encoder_frames(cut_engine)
    try:
        cut_engine.transcribe(short, OPTIONS)
        assert set(seen) == {1000}, seen
        seen.clear()
        cut_engine.transcribe([medium], OPTIONS)
        expected = window_frames(len(medium) // 160 + 1)
        assert 1000 < expected < MAX_FRAMES and set(seen) == {expected}, seen
        seen.clear()
        cut_engine.transcribe([long], OPTIONS)
        assert seen and set(seen) == {MAX_FRAMES}, seen
    finally:
        handle.remove()
    seen, handle = _encoder_frames(full_window_engine)
    try:
        full_window_engine.transcribe(short, OPTIONS)
        assert set(seen) == {MAX_FRAMES}, seen
    finally:
        handle.remove()


def test_fit_window_restores_the_model(hf_engine: TransformersTranscriber) -> None:
    model = hf_engine.model
    table = model.model.encoder.embed_positions
    assert window_adaptable(model)
    with pytest.raises(RuntimeError, match="inside"), fit_window(model, 1200) as fitted:
        assert fitted
        assert model.model.encoder.embed_positions.num_embeddings == 600
        assert model.config.max_source_positions == 600
        assert model.model.encoder.embed_positions.weight.data_ptr() == table.weight.data_ptr()
        raise RuntimeError("inside")
    assert model.model.encoder.embed_positions is table
    assert model.config.max_source_positions == table.num_embeddings == 1500
    with fit_window(model, 1201) as fitted:  # odd: the convolutions halve it
        assert not fitted and model.model.encoder.embed_positions is table


def test_skipping_the_cross_attention_reorder_changes_no_token(
    tiny_en_hf: Path, hf_engine: TransformersTranscriber, mixed_audio: list[np.ndarray]
) -> None:
    """Same tokens, and half the per-cache reorders: only the self-attention cache is copied."""
    from transformers.cache_utils import Cache

    plain = TransformersTranscriber(tiny_en_hf, model_name="tiny.en", skip_cross_reorder=False)
    assert hf_engine.skip_cross_reorder
    clips = mixed_audio[:8] + [mixed_audio[13]]
    calls = {"fast": 0, "plain": 0}
    original = Cache.reorder_cache  # what the self- and the cross-attention DynamicCache run
    current = ["fast"]

    def counting(self: Any, beam_idx: Any) -> None:
        calls[current[0]] += 1
        original(self, beam_idx)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Cache, "reorder_cache", counting)
        fast = hf_engine.transcribe(clips, OPTIONS)
        current[0] = "plain"
        slow = plain.transcribe(clips, OPTIONS)
    assert [r.text for r in fast] == [r.text for r in slow]
    assert [r.segments for r in fast] == [r.segments for r in slow]
    assert calls["fast"] > 0 and calls["plain"] == 2 * calls["fast"], calls
    with skip_cross_attention_reorder(enabled=False):  # the switch off: nothing changes
        pass


def test_int8_is_an_explicit_cpu_option(
    tiny_en_hf: Path,
    hf_engine: TransformersTranscriber,
    mixed_clips: list[Clip],
    mixed_audio: list[np.ndarray],
) -> None:
    from twi_asr import load_transcriber

    q = load_transcriber(str(tiny_en_hf), engine="transformers", compute_type="int8")
    assert isinstance(q, TransformersTranscriber) and q.dtype == "int8" and hf_engine.dtype == "float32"
    kinds = {type(m).__module__ for m in q.model.modules() if "Linear" in type(m).__name__}
    assert kinds and all("quantized" in k for k in kinds), kinds
    assert q.fit_windows
    refs = [c.text for c in mixed_clips[:12]]
    fp32 = wer(refs, [r.text for r in hf_engine.transcribe(mixed_audio[:12], OPTIONS)])
    int8 = wer(refs, [r.text for r in q.transcribe(mixed_audio[:12], OPTIONS)])
    print(f"WER on 12 short clips: float32 {fp32:.3f}, int8 {int8:.3f}")
    assert int8 < 0.35 and int8 <= fp32 + 0.1
    with pytest.raises(UsageError, match="cpu only"):
        TransformersTranscriber(tiny_en_hf, model_name="tiny.en", device="cuda", dtype="int8")
    with pytest.raises(UsageError, match="int4"):
        load_transcriber(str(tiny_en_hf), engine="transformers", compute_type="int4")
