"""Tests for twi_asr.pipeline.run_pipeline with a fake engine over real (tiny) WAV files.

The fake's transcript text is the clip's sample count, so every result can
be matched back to the input it came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from twi_asr.errors import (
    AudioError,
    EnvironmentProblem,
    InputError,
    InputNotFoundError,
    TwiAsrError,
    UsageError,
)
from twi_asr.pipeline import ItemResult, group_size, run_pipeline
from twi_asr.storage import InputItem
from twi_asr.types import TranscribeOptions, Transcript

SR = 16000


class FakeTranscriber:
    """Follows the Transcriber protocol; records every batch it is handed."""

    engine = "fake"
    model_name = "fake-model"
    device = "cpu"

    def __init__(
        self,
        *,
        fail_if: Callable[[Sequence[np.ndarray]], BaseException | None] | None = None,
        delay: float = 0.002,
    ) -> None:
        self.batches: list[list[int]] = []
        self.options: list[TranscribeOptions | None] = []
        self.fail_if = fail_if
        self.delay = delay

    def transcribe(
        self, audios: Sequence[np.ndarray], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        self.batches.append([len(a) for a in audios])
        self.options.append(options)
        if self.fail_if is not None:
            exc = self.fail_if(audios)
            if exc is not None:
                raise exc
        time.sleep(self.delay)  # so inference timings are measurably > 0
        return [
            Transcript(
                text=text_for(len(a)),
                language="en",
                duration=len(a) / SR,
                model=self.model_name,
                engine=self.engine,
            )
            for a in audios
        ]

    @property
    def batch_sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


def text_for(n_samples: int) -> str:
    return f"{n_samples} samples"


def write_wav(path: Path, n_samples: int) -> Path:
    t = np.arange(n_samples, dtype=np.float32) / SR
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * t), SR, subtype="PCM_16")
    return path


def item(path: Path) -> InputItem:
    return InputItem(source=str(path), relative=path.name, explicit=True)


@pytest.fixture
def clips(tmp_path: Path) -> list[tuple[InputItem, int]]:
    """Six valid clips of distinct lengths (0.05 s .. 0.30 s)."""
    out = []
    for i in range(6):
        n = 800 * (i + 1)
        out.append((item(write_wav(tmp_path / f"clip{i}.wav", n)), n))
    return out


def run(items: Sequence[InputItem], fake: FakeTranscriber, **kwargs: object) -> list[ItemResult]:
    return list(run_pipeline(items, fake, TranscribeOptions(), **kwargs))  # type: ignore[arg-type]


def test_a_group_also_ends_after_max_group_seconds(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber()
    # clips of 800, 1600 ... 4800 samples: 0.05, 0.1 ... 0.3 s; a group closes once it holds 0.25 s
    results = run([i for i, _ in clips], fake, batch_size=100, max_group_seconds=0.25)
    assert fake.batch_sizes == [3, 2, 1] and len(results) == 6
    assert [n for b in fake.batches for n in b] == [n for _, n in clips]
    assert group_size(4) == 16 and group_size(0) == 4


def test_results_in_input_order(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber()
    results = run([i for i, _ in clips], fake, batch_size=4)
    assert [r.item for r in results] == [i for i, _ in clips]
    assert all(r.ok for r in results)
    for r, (_, n) in zip(results, clips, strict=True):
        assert r.transcript is not None
        assert r.transcript.text == text_for(n)
        assert r.audio_seconds == pytest.approx(n / SR)
        assert r.transcript.engine == "fake"


def test_reversed_input_gives_reversed_results(clips: list[tuple[InputItem, int]]) -> None:
    items = [i for i, _ in reversed(clips)]
    results = run(items, FakeTranscriber(), batch_size=2)
    assert [r.item for r in results] == items
    assert [r.transcript.text for r in results if r.transcript] == [text_for(n) for _, n in reversed(clips)]


@pytest.mark.parametrize(
    ("batch_size", "expected"),
    [(1, [1] * 6), (2, [2, 2, 2]), (4, [4, 2]), (6, [6]), (100, [6]), (0, [1] * 6)],
)
def test_batch_sizes_are_respected(
    clips: list[tuple[InputItem, int]], batch_size: int, expected: list[int]
) -> None:
    fake = FakeTranscriber()
    results = run([i for i, _ in clips], fake, batch_size=batch_size)
    assert fake.batch_sizes == expected
    assert len(results) == 6
    # each batch holds consecutive inputs in order
    assert [n for b in fake.batches for n in b] == [n for _, n in clips]


def test_options_reach_the_engine(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber()
    options = TranscribeOptions(language="tw", beam_size=1)
    list(run_pipeline([clips[0][0]], fake, options))
    assert fake.options == [options]


def test_empty_input_list(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber()
    assert run([], fake) == []
    assert fake.batches == []


@pytest.mark.parametrize("kind", ["empty", "text", "missing", "header_only"])
def test_a_bad_file_fails_alone(tmp_path: Path, clips: list[tuple[InputItem, int]], kind: str) -> None:
    bad = tmp_path / "bad.wav"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("this is a text file, renamed .wav\n" * 20)
    elif kind == "header_only":
        write_wav(bad, 0)
    items = [clips[0][0], item(bad), clips[1][0], clips[2][0]]
    fake = FakeTranscriber()
    results = run(items, fake, batch_size=2)

    assert [r.item for r in results] == items
    assert [r.ok for r in results] == [True, False, True, True]
    failed = results[1]
    assert failed.transcript is None
    assert isinstance(failed.error, InputError)
    expected_type = InputNotFoundError if kind == "missing" else AudioError
    assert isinstance(failed.error, expected_type)
    assert "bad.wav" in failed.error.message
    assert failed.audio_seconds == 0.0
    assert [r.transcript.text for r in results if r.transcript] == [
        text_for(clips[0][1]),
        text_for(clips[1][1]),
        text_for(clips[2][1]),
    ]
    # the bad file never reached the engine; its batch went on with the good one
    assert fake.batch_sizes == [1, 2]


def test_a_batch_of_only_bad_files_skips_the_engine(
    tmp_path: Path, clips: list[tuple[InputItem, int]]
) -> None:
    (tmp_path / "e1.wav").write_bytes(b"")
    (tmp_path / "e2.wav").write_bytes(b"")
    items = [item(tmp_path / "e1.wav"), item(tmp_path / "e2.wav"), clips[0][0]]
    fake = FakeTranscriber()
    results = run(items, fake, batch_size=2)
    assert [r.ok for r in results] == [False, False, True]
    assert fake.batch_sizes == [1]


def test_engine_crash_on_one_clip_fails_only_that_clip(clips: list[tuple[InputItem, int]]) -> None:
    poison = clips[2][1]

    def fail_if(audios: Sequence[np.ndarray]) -> BaseException | None:
        return RuntimeError("CUDA kernel exploded") if any(len(a) == poison for a in audios) else None

    fake = FakeTranscriber(fail_if=fail_if)
    results = run([i for i, _ in clips], fake, batch_size=3)

    assert [r.item for r in results] == [i for i, _ in clips]
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    err = results[2].error
    assert isinstance(err, InputError)
    assert "clip2.wav" in err.message
    assert "CUDA kernel exploded" in err.message
    assert results[2].audio_seconds == pytest.approx(poison / SR)
    for r, (_, n) in zip(results, clips, strict=True):
        if r.ok:
            assert r.transcript is not None and r.transcript.text == text_for(n)
    # first batch failed, then one by one; the second batch went through whole
    assert fake.batch_sizes == [3, 1, 1, 1, 3]


def test_engine_crash_on_a_single_clip_batch(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber(fail_if=lambda audios: ValueError("nan logits"))
    results = run([clips[0][0]], fake, batch_size=1)
    assert not results[0].ok
    assert isinstance(results[0].error, InputError)
    assert "nan logits" in results[0].error.message
    assert fake.batch_sizes == [1]  # no pointless retry of a batch of one


@pytest.mark.parametrize("error", [UsageError("bad language 'xx'"), EnvironmentProblem("engine gave up")])
def test_twi_asr_error_from_the_engine_propagates(
    clips: list[tuple[InputItem, int]], error: TwiAsrError
) -> None:
    fake = FakeTranscriber(fail_if=lambda audios: error)
    with pytest.raises(type(error)) as info:
        run([i for i, _ in clips], fake, batch_size=2)
    assert info.value is error
    assert fake.batch_sizes == [2]  # no retry: it applies to every input


def test_input_error_from_the_engine_fails_only_that_clip(clips: list[tuple[InputItem, int]]) -> None:
    """A per-input refusal (a server's 413 for one clip, say) is that input's failure, not the run's."""
    bad = clips[1][1]

    def fail_if(audios: Sequence[np.ndarray]) -> BaseException | None:
        return InputError("audio too long") if any(len(a) == bad for a in audios) else None

    fake = FakeTranscriber(fail_if=fail_if)
    results = run([i for i, _ in clips], fake, batch_size=len(clips))
    assert [r.ok for r in results] == [i != 1 for i in range(len(clips))]
    assert "audio too long" in results[1].error.message  # type: ignore[union-attr]
    assert clips[1][0].source in results[1].error.message  # type: ignore[union-attr]


def test_twi_asr_error_during_one_by_one_retry_propagates(clips: list[tuple[InputItem, int]]) -> None:
    def fail_if(audios: Sequence[np.ndarray]) -> BaseException | None:
        return RuntimeError("batch crash") if len(audios) > 1 else UsageError("stop everything")

    fake = FakeTranscriber(fail_if=fail_if)
    with pytest.raises(UsageError, match="stop everything"):
        run([i for i, _ in clips], fake, batch_size=3)


def test_keyboard_interrupt_is_not_swallowed(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber(fail_if=lambda audios: KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run([i for i, _ in clips], fake, batch_size=2)


def test_results_stream_before_later_batches_run(clips: list[tuple[InputItem, int]]) -> None:
    fake = FakeTranscriber()
    gen = run_pipeline([i for i, _ in clips], fake, TranscribeOptions(), batch_size=2)
    first = next(gen)
    assert first.ok
    assert fake.batch_sizes == [2]
    gen.close()


def test_timings_are_filled(clips: list[tuple[InputItem, int]]) -> None:
    results = run([i for i, _ in clips], FakeTranscriber(delay=0.01), batch_size=2)
    for r in results:
        assert r.transcript is not None
        t = r.transcript.timings
        assert t.decode_audio >= 0.0
        assert t.inference > 0.0
        assert t.total > 0.0
        assert t.total == pytest.approx(t.decode_audio + t.inference, abs=2e-4)
        assert t.inference < 5.0


def test_on_start_is_called_for_each_decoded_item(tmp_path: Path, clips: list[tuple[InputItem, int]]) -> None:
    (tmp_path / "bad.wav").write_bytes(b"")
    items = [clips[0][0], item(tmp_path / "bad.wav"), clips[1][0]]
    seen: list[tuple[str, float]] = []
    run(items, FakeTranscriber(), batch_size=2, on_start=lambda it, s: seen.append((it.relative, s)))
    assert [name for name, _ in seen] == ["clip0.wav", "clip1.wav"]
    assert seen[0][1] == pytest.approx(clips[0][1] / SR)
