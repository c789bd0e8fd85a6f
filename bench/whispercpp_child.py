"""One benchmark row for whisper.cpp (through pywhispercpp): transcribe a list of files, time it.

Why it exists. ``bench/engines.py`` runs every peer as one whole process with the same
protocol (issue 13's child-script contract), so whisper.cpp's row must be a process too:

    python bench/whispercpp_child.py GGML_FILE LIST OUT --beam {1|5} \
        --audio-ctx {default|fit|N} --threads N --language {en|auto}

``LIST`` holds one input path per line. For each input it writes ``OUT/<stem>.txt`` (the text,
one line) and, at the end, ``OUT/_timings.json`` = {"import_s", "load_s", "work_s"} (seconds
since this process started: imports, model load, decoding + writing), plus
``OUT/_whispercpp.json``: the whisper.cpp parameters actually used, so a row says what it ran.

What it runs. ``pywhispercpp.model.Model`` on the GGML file (``bench/ggml_convert.py``), one
``transcribe`` call per file, with whisper.cpp's defaults except:

* ``--beam 5``: the beam-search strategy with ``beam_size=5`` (whisper.cpp 1.8.5 picks the
  beam's candidates by *sampling* them from the token distribution, with per-decoder RNGs
  seeded once per model, so text can differ between calls in one process);
  ``--beam 1``: the greedy strategy with ``best_of=1`` (best_of only counts when the
  temperature fallback samples; at temperature 0 greedy uses one decoder anyway);
* ``--audio-ctx``: ``default`` = whisper.cpp's own (0: the full 1500 encoder frames, 30 s),
  ``fit`` = each clip's length + 1 s in encoder frames (50 per second, at most 1500), ``N`` =
  that many frames for every file. It shrinks the encoder's work for short audio; it can cost
  words;
* ``--language``: ``en`` forces English; ``auto`` lets whisper.cpp detect it. Pass ``en`` for an
  English-only model too: whisper.cpp 1.8.5 runs its detection pass whenever the language is
  empty or ``auto``, whatever the model (10 tiny.en clips, 2 cores: 16.3 s with ``auto``, 7.6 s
  with ``en``, the same text);
* progress and realtime printing off, whisper.cpp's log callback silenced (its log goes to
  stderr otherwise; stdout stays clean).

Kept at whisper.cpp's defaults (recorded in ``_whispercpp.json``): the temperature fallback
(``temperature=0``, ``temperature_inc=0.2``, ``entropy_thold=2.4``, ``logprob_thold=-1``),
timestamp tokens on (``no_timestamps=False``), ``no_context=True``, ``suppress_blank``.

Audio: each file is decoded with PyAV (FFmpeg) to 16 kHz mono, resampled by FFmpeg's
resampler to 16-bit and scaled to float32 in [-1, 1), as faster-whisper's ``decode_audio`` does,
and handed to whisper.cpp as samples (pywhispercpp's own reader takes only 16 kHz 16-bit WAV).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402  (T0 must come first: import time is part of the row)
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SAMPLE_RATE = 16_000
FRAMES_PER_SECOND = 50  # encoder frames: 1500 per 30 s window
MAX_AUDIO_CTX = 1500
PYWHISPERCPP_VERSION = "1.5.1"  # the version this child was written against


def fit_audio_ctx(n_samples: int) -> int:
    """Encoder frames for a clip: ceil((its seconds + 1) * 50), at most 1500."""
    seconds = n_samples / SAMPLE_RATE
    return min(MAX_AUDIO_CTX, math.ceil((seconds + 1.0) * FRAMES_PER_SECOND))


def audio_ctx_for(mode: str, n_samples: int) -> int:
    """whisper.cpp's ``audio_ctx`` for one clip: 0 (its default), the fitted size, or a fixed N."""
    if mode == "default":
        return 0
    if mode == "fit":
        return fit_audio_ctx(n_samples)
    return min(MAX_AUDIO_CTX, int(mode))


def audio_ctx_arg(value: str) -> str:
    """argparse type for ``--audio-ctx``: ``default``, ``fit`` or a positive frame count."""
    if value in ("default", "fit") or (value.isdigit() and 0 < int(value) <= MAX_AUDIO_CTX):
        return value
    raise argparse.ArgumentTypeError(f"expected default, fit or 1..{MAX_AUDIO_CTX}, got {value!r}")


def decode_audio(path: str) -> Any:
    """The file's first audio stream as 16 kHz mono float32 samples (PyAV / FFmpeg)."""
    import av
    import numpy as np

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[Any] = []
    with av.open(path) as container:
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def model_params(beam: int, threads: int, language: str) -> dict[str, Any]:
    """The keyword arguments for ``pywhispercpp.model.Model`` (the decode settings)."""
    params: dict[str, Any] = {
        "params_sampling_strategy": 0 if beam == 1 else 1,
        "n_threads": threads,
        "language": "" if language == "auto" else language,
        "print_progress": False,
        "print_realtime": False,
        "print_timestamps": False,
        "redirect_whispercpp_logs_to": None,
    }
    if beam == 1:
        params["greedy"] = {"best_of": 1}
    else:
        params["beam_search"] = {"beam_size": beam, "patience": -1.0}
    return params


def used_params(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """What whisper.cpp ran with (plain values only), for ``_whispercpp.json``."""
    keep = (
        "strategy", "n_threads", "language", "greedy", "beam_search", "temperature",
        "temperature_inc", "entropy_thold", "logprob_thold", "no_speech_thold", "no_timestamps",
        "no_context", "suppress_blank", "suppress_nst", "length_penalty", "max_initial_ts",
    )  # fmt: skip
    got = model.get_params()
    params = {k: got[k] if isinstance(got[k], (int, float, str, bool, dict)) else str(got[k]) for k in keep}
    return {
        "pywhispercpp": PYWHISPERCPP_VERSION,
        "whisper_cpp": whisper_cpp_version(),
        "audio_ctx": args.audio_ctx,
        "temperature_fallback": params["temperature_inc"] > 0,
        "audio_decode": "PyAV 16 kHz mono s16 -> float32",
        "params": params,
    }


def whisper_cpp_version() -> str:
    """The bundled libwhisper's version, from its file name (the binding reports only 'dev')."""
    import pywhispercpp

    libs = Path(pywhispercpp.__file__).parent.parent / "pywhispercpp.libs"
    names = sorted(p.name for p in libs.glob("libwhisper*.so.*")) if libs.is_dir() else []
    return names[0].split(".so.")[-1] if names else "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The child protocol's arguments."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("model", help="GGML file (bench/ggml_convert.py)")
    p.add_argument("list_file", type=Path, help="one input path per line")
    p.add_argument("out_dir", type=Path, help="where <stem>.txt and _timings.json go")
    p.add_argument("--beam", type=int, choices=(1, 5), default=5)
    p.add_argument("--audio-ctx", type=audio_ctx_arg, default="default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--language", choices=("en", "auto"), default="en")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Load once, transcribe every listed file, write the texts and the timings."""
    args = parse_args(argv)
    paths = [p for p in args.list_file.read_text(encoding="utf-8").split("\n") if p]
    args.out_dir.mkdir(parents=True, exist_ok=True)

    import _pywhispercpp
    import av  # noqa: F401  (used by decode_audio; imported here so its cost counts as import)
    import numpy  # noqa: F401
    from pywhispercpp.model import Model

    t_import = time.perf_counter()
    _pywhispercpp.whisper_log_set(lambda *_: None)  # whisper.cpp's log would go to stderr
    model = Model(args.model, **model_params(args.beam, args.threads, args.language))
    t_load = time.perf_counter()

    for path in paths:
        samples = decode_audio(path)
        segments = model.transcribe(samples, audio_ctx=audio_ctx_for(args.audio_ctx, samples.size))
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        (args.out_dir / (Path(path).stem + ".txt")).write_text(text + "\n", encoding="utf-8")
    t_end = time.perf_counter()

    timings = {"import_s": t_import - T0, "load_s": t_load - t_import, "work_s": t_end - t_load}
    (args.out_dir / "_timings.json").write_text(json.dumps(timings), encoding="utf-8")
    (args.out_dir / "_whispercpp.json").write_text(
        json.dumps(used_params(model, args), indent=1), encoding="utf-8"
    )
    # Free the context while the Python log callback can still run, then restore the default
    # logger: a callback left installed is called during interpreter teardown (a segfault).
    del model
    _pywhispercpp.whisper_log_set(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
