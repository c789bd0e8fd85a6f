"""Plain, frozen result and option types shared by every layer.

They carry no behaviour beyond (de)serialisation so that engines, writers,
the CLI and the HTTP server can all exchange them without importing each
other. Times are seconds as floats; text is NFC-normalised Unicode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class Word:
    """One word with its time span and the model's confidence (0..1, if known)."""

    start: float
    end: float
    word: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: start/end in seconds from the start of the clip."""

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] | None = None
    avg_logprob: float | None = None
    """Mean natural-log probability of the decoded tokens (of the 30 s window it came from)."""
    compression_ratio: float | None = None
    """gzip ratio of the window's text: high means repetitive (a looping decode)."""
    no_speech_prob: float | None = None
    """The model's probability of its no-speech token at the start of the window."""
    temperature: float | None = None
    """The temperature of the decode that was kept (0.0 = beam search / greedy)."""


_SEGMENT_FLOATS = ("avg_logprob", "compression_ratio", "no_speech_prob", "temperature")
"""Segment fields that are optional floats: left out of :meth:`Transcript.to_dict` when None."""


@dataclass(frozen=True)
class TokenLogprob:
    """One decoded token (OpenAI's ``include[]=logprobs`` shape).

    ``token`` is its text (a token that holds part of a multi-byte letter such as ``ɛ`` shows
    U+FFFD; its ``bytes`` are exact: join them to rebuild the text), ``logprob`` its natural-log
    probability.
    """

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Timings:
    """Where the wall time went for one transcript (seconds)."""

    decode_audio: float = 0.0
    inference: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class Transcript:
    """The result for one clip: what every writer and HTTP response is made from."""

    text: str
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = ()
    model: str | None = None
    engine: str | None = None
    timings: Timings = field(default_factory=Timings)
    language_probability: float | None = None
    """How sure language detection was (1.0 when the language was given or the model is
    English-only, as faster-whisper reports it); None when the engine cannot tell."""
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Every text token of ``text`` with its log-probability, when asked for
    (:attr:`TranscribeOptions.token_logprobs`) and the engine could give them."""

    @property
    def words(self) -> tuple[Word, ...]:
        """All words of all segments, in order (empty without word timestamps)."""
        return tuple(w for s in self.segments for w in (s.words or ()))

    def with_meta(self, **changes: Any) -> Transcript:
        """A copy with some fields replaced (model, engine, timings...)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the schema of the json writer and the HTTP API."""
        d = asdict(self)
        d["words"] = [asdict(w) for w in self.words]
        for seg in d["segments"]:
            for key in ("words", *_SEGMENT_FLOATS):
                if seg[key] is None:
                    del seg[key]
        for key in ("language_probability", "logprobs"):
            if d[key] is None:
                del d[key]
        if "logprobs" in d:
            d["logprobs"] = [{**lp, "bytes": list(lp["bytes"])} for lp in d["logprobs"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        """Inverse of :meth:`to_dict` (used by the HTTP client)."""
        segments = tuple(
            Segment(
                id=int(s["id"]),
                start=float(s["start"]),
                end=float(s["end"]),
                text=s["text"],
                words=tuple(Word(**w) for w in s["words"]) if s.get("words") is not None else None,
                **{k: float(s[k]) for k in _SEGMENT_FLOATS if s.get(k) is not None},
            )
            for s in d.get("segments", ())
        )
        logprobs = d.get("logprobs")
        language_probability = d.get("language_probability")
        return cls(
            text=d["text"],
            language=d.get("language"),
            duration=float(d.get("duration", 0.0)),
            segments=segments,
            model=d.get("model"),
            engine=d.get("engine"),
            timings=Timings(**d.get("timings", {})),
            language_probability=float(language_probability) if language_probability is not None else None,
            logprobs=tuple(
                TokenLogprob(
                    token=lp["token"],
                    logprob=float(lp["logprob"]),
                    bytes=tuple(int(b) for b in lp.get("bytes", ())),
                )
                for lp in logprobs
            )
            if logprobs is not None
            else None,
        )


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode. One dataclass instead of a 40-argument function.

    ``language``: an ISO code, or None / ``auto`` to detect; ``tw``, ``twi``,
    ``ak`` and ``akan`` mean the checkpoint's own default language (Whisper
    has no Twi token), see :func:`twi_asr.languages.resolve_language`.
    ``temperatures`` is the fallback ladder tried when a decode looks like a
    failure (compression ratio too high or average log-probability too low).
    """

    language: str | None = None
    task: Task = "transcribe"
    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    initial_prompt: str | None = None
    word_timestamps: bool = False
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    token_logprobs: bool = False
    """Fill :attr:`Transcript.logprobs` (opt-in: it costs one more decoder pass per batch)."""

    def __post_init__(self) -> None:
        from .errors import UsageError

        if self.task not in ("transcribe", "translate"):
            raise UsageError(f"task must be 'transcribe' or 'translate', not {self.task!r}")
        if self.beam_size < 1:
            raise UsageError(f"beam size must be at least 1, not {self.beam_size}")
        if not self.temperatures or any(not 0.0 <= t <= 2.0 for t in self.temperatures):
            raise UsageError(f"temperatures must be between 0 and 2, got {self.temperatures}")
