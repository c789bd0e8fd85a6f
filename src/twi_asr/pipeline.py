"""The one pipeline: source -> audio -> engine -> transcript, item by item.

Decoding runs one group ahead in a worker thread while the engine works on
the previous group. Every failure is caught per input and reported as a
result with its error, so one bad file never costs the others; an engine
failure on a batch is retried clip by clip to find the culprit.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .audio import Audio, decode_audio
from .engines.base import Transcriber
from .errors import AudioError, EnvironmentProblem, InputError, InputNotFoundError, TwiAsrError, UsageError
from .storage import InputItem, read_bytes
from .types import Timings, TranscribeOptions, Transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemResult:
    """What happened to one input: a transcript, or the error that stopped it."""

    item: InputItem
    transcript: Transcript | None
    error: TwiAsrError | None
    audio_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when a transcript was produced."""
        return self.error is None


def load_item(item: InputItem) -> Audio:
    """Decode one input (local path or S3 object) to 16 kHz mono float32."""
    if item.is_s3:
        return decode_audio(read_bytes(item.source), name=item.source)
    return decode_audio(item.source)


Decoded = tuple[InputItem, Audio | TwiAsrError, float]
"""One decoded input: the item, its audio (or why it could not be decoded), seconds spent decoding."""

GROUP_BATCHES = 4
"""Engine batches per pipeline group: the engine sorts a group's clips by length before it batches
them, so the encoder window (cut to a batch's longest clip) wastes less than in file order."""
MAX_GROUP_SECONDS = 900.0
"""A group also ends after this much decoded audio, so long files do not pile up in memory."""


def group_size(batch_size: int) -> int:
    """Clips per engine call for an engine batch of ``batch_size`` (see :data:`GROUP_BATCHES`).

    Callers use it when the batch size is the engine's own choice; an explicit
    ``--batch-size`` stays the group size, so memory stays what the user asked for.
    """
    return max(1, batch_size) * GROUP_BATCHES


def _decode_one(item: InputItem) -> Decoded:
    t0 = time.perf_counter()
    try:
        audio: Audio | TwiAsrError = load_item(item)
    except TwiAsrError as exc:
        audio = exc
    except OSError as exc:  # permission denied, I/O error...
        audio = InputError(f"{item.source}: cannot read: {exc.strerror or exc}")
    return item, audio, time.perf_counter() - t0


def run_pipeline(
    items: Sequence[InputItem],
    transcriber: Transcriber,
    options: TranscribeOptions,
    *,
    batch_size: int = 8,
    max_group_seconds: float = MAX_GROUP_SECONDS,
    on_start: Callable[[InputItem, float], None] | None = None,
) -> Iterator[ItemResult]:
    """Transcribe ``items`` in groups, yielding one :class:`ItemResult` per input, in order.

    A group is ``batch_size`` inputs, or fewer once they hold ``max_group_seconds``
    of audio; each group is one engine call (which may batch it further). The
    next group's inputs are decoded in a worker thread while the engine works.
    ``on_start(item, seconds)`` is called when an item's audio is decoded and
    handed to the engine (progress bars use it).
    """
    size = max(1, batch_size)
    queue = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="twi-asr-decode") as pool:
        ahead: deque[Future[Decoded]] = deque()

        def top_up() -> None:
            while len(ahead) < size and (item := next(queue, None)) is not None:
                ahead.append(pool.submit(_decode_one, item))

        top_up()
        group: list[Decoded] = []
        seconds = 0.0
        while ahead:
            decoded = ahead.popleft().result()
            top_up()
            group.append(decoded)
            if isinstance(decoded[1], Audio):
                seconds += decoded[1].duration
            if len(group) >= size or seconds >= max_group_seconds or not ahead:
                yield from _transcribe_decoded(group, transcriber, options, on_start)
                group, seconds = [], 0.0


def _transcribe_decoded(
    decoded: list[Decoded],
    transcriber: Transcriber,
    options: TranscribeOptions,
    on_start: Callable[[InputItem, float], None] | None,
) -> Iterable[ItemResult]:
    good = [(item, audio, dt) for item, audio, dt in decoded if isinstance(audio, Audio)]
    results: dict[int, ItemResult] = {}
    for idx, (item, audio, _) in enumerate(decoded):
        if not isinstance(audio, Audio):
            results[idx] = ItemResult(item=item, transcript=None, error=audio)
    for item, audio, _ in good:
        if on_start:
            on_start(item, audio.duration)
    transcripts = _engine_call(transcriber, [a for _, a, _ in good], options, [i for i, _, _ in good])
    positions = [i for i, (_, a, _) in enumerate(decoded) if isinstance(a, Audio)]
    for pos, (item, audio, decode_s), (result, infer_s) in zip(positions, good, transcripts, strict=True):
        if isinstance(result, TwiAsrError):
            results[pos] = ItemResult(item=item, transcript=None, error=result, audio_seconds=audio.duration)
            continue
        timings = Timings(
            decode_audio=round(decode_s, 4), inference=round(infer_s, 4), total=round(decode_s + infer_s, 4)
        )
        results[pos] = ItemResult(
            item=item, transcript=result.with_meta(timings=timings), error=None, audio_seconds=audio.duration
        )
    return [results[i] for i in range(len(decoded))]


def _engine_call(
    transcriber: Transcriber, audios: list[Audio], options: TranscribeOptions, items: list[InputItem]
) -> list[tuple[Transcript | TwiAsrError, float]]:
    """One batched engine call; on failure, retry one by one so only the culprit fails."""
    if not audios:
        return []
    t0 = time.perf_counter()
    try:
        out = transcriber.transcribe([a.samples for a in audios], options)
        per_item = (time.perf_counter() - t0) / len(audios)
        return [(t, per_item) for t in out]
    except (UsageError, EnvironmentProblem):
        raise  # a usage/environment problem applies to every input: stop
    except Exception as exc:  # one bad clip (an engine crash, a server refusal) must not sink the batch
        if len(audios) == 1:
            log.debug("engine failed on %s", items[0].source, exc_info=True)
            error = exc if isinstance(exc, TwiAsrError) else InputError(f"the engine failed: {exc}")
            if items[0].source not in error.message:  # name the input, keep the kind where we can
                kind = (
                    type(error) if type(error) in (InputError, AudioError, InputNotFoundError) else InputError
                )
                error = kind(f"{items[0].source}: {error.message}")
            return [(error, time.perf_counter() - t0)]
        log.warning("batch of %d failed (%s); retrying one by one", len(audios), exc)
    results: list[tuple[Transcript | TwiAsrError, float]] = []
    for audio, item in zip(audios, items, strict=True):
        results.extend(_engine_call(transcriber, [audio], options, [item]))
    return results
