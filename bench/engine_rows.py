"""The rows of ``bench/engines.py``: the child scripts each row runs, and the list of rows per input set.

Every row is one whole process, ``python CHILD MODEL LIST_FILE OUT_DIR`` (or the ``twi-asr``
CLI on the input folder), which writes ``OUT_DIR/<stem>.txt`` per input and, for child
scripts, ``OUT_DIR/_timings.json`` = import/load/work seconds since its own start (the
protocol of /work/spec/issue13.md, shared with ``bench/whispercpp_child.py``). The scripts are
the smallest honest code a user would write with each library; only the decoding settings
the comparison needs are set (beam size, batch size, language on a multilingual model).

Row keys are stable (``fw-b5``, ``wcpp-b1-ctx1024``, ``cli-ct2-b5``...): the targets in
``engine_report.py`` name rows by key, the printed tables by name.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from _common import REPO_ROOT
from corpus import InputSet
from transcribe_folder import twi_asr_executable

BEAM = 5
WCPP_CHILD = REPO_ROOT / "bench" / "whispercpp_child.py"
AUDIO_CTX_SWEEP = ("fit", "512", "768", "1024", "1280")
WCPP_BEAM_NOTE = "whisper.cpp 1.8.5 beam search samples: text can vary run to run"

_PRELUDE = """\
import json, sys, time
T0 = time.perf_counter()
from pathlib import Path
model_dir, paths, out = sys.argv[1], Path(sys.argv[2]).read_text().split("\\n"), Path(sys.argv[3])
paths = [p for p in paths if p]
def done(t_import, t_load):
    t_end = time.perf_counter()
    (out / "_timings.json").write_text(json.dumps(
        {{"import_s": t_import - T0, "load_s": t_load - t_import, "work_s": t_end - t_load}}))
def write(p, text):
    (out / (Path(p).stem + ".txt")).write_text(" ".join(text.split()) + "\\n", encoding="utf-8")
"""

# transformers pipeline, one call per file ({ts}: return_timestamps, needed past 30 s).
PIPELINE_LOOP = (
    _PRELUDE
    + """\
from transformers import pipeline
t_import = time.perf_counter()
asr = pipeline("automatic-speech-recognition", model=model_dir, device="cpu")
t_load = time.perf_counter()
for p in paths:
    write(p, asr(p, return_timestamps={ts}, generate_kwargs={gen})["text"])
done(t_import, t_load)
"""
)

# transformers pipeline, the whole list in one call, batch_size=8 (the batched recipe).
PIPELINE_LIST = (
    _PRELUDE
    + """\
from transformers import pipeline
t_import = time.perf_counter()
asr = pipeline("automatic-speech-recognition", model=model_dir, device="cpu")
t_load = time.perf_counter()
for p, r in zip(paths, asr(paths, batch_size=8, generate_kwargs={gen})):
    write(p, r["text"])
done(t_import, t_load)
"""
)

# transformers pipeline on a long file: 30 s chunks, 8 at a time (the long-file recipe users copy).
PIPELINE_CHUNKED = (
    _PRELUDE
    + """\
from transformers import pipeline
t_import = time.perf_counter()
asr = pipeline("automatic-speech-recognition", model=model_dir, device="cpu", chunk_length_s=30)
t_load = time.perf_counter()
for p in paths:
    write(p, asr(p, batch_size=8, generate_kwargs={gen})["text"])
done(t_import, t_load)
"""
)

FASTER_WHISPER_LOOP = (
    _PRELUDE
    + """\
from faster_whisper import WhisperModel
t_import = time.perf_counter()
model = WhisperModel(model_dir, device="cpu", compute_type="int8")
t_load = time.perf_counter()
for p in paths:
    segments, _ = model.transcribe(p, beam_size={beam}{lang})
    write(p, " ".join(s.text.strip() for s in segments))
done(t_import, t_load)
"""
)

FASTER_WHISPER_BATCHED = (
    _PRELUDE
    + """\
from faster_whisper import BatchedInferencePipeline, WhisperModel
t_import = time.perf_counter()
model = BatchedInferencePipeline(WhisperModel(model_dir, device="cpu", compute_type="int8"))
t_load = time.perf_counter()
for p in paths:
    segments, _ = model.transcribe(p, beam_size={beam}, batch_size=8{lang})
    write(p, " ".join(s.text.strip() for s in segments))
done(t_import, t_load)
"""
)

TWI_ASR_LIBRARY = (
    _PRELUDE
    + """\
from twi_asr import TranscribeOptions, decode_audio, load_transcriber
t_import = time.perf_counter()
asr = load_transcriber(model_dir, engine="{engine}", compute_type="{compute_type}", long_form="{long_form}")
t_load = time.perf_counter()
options = TranscribeOptions(beam_size={beam}, language={language!r})
for p, r in zip(paths, asr.transcribe([decode_audio(p).samples for p in paths], options)):
    write(p, r.text)
done(t_import, t_load)
"""
)


@dataclass(frozen=True)
class ModelSet:
    """One model's weights in every format the rows need, and the language its rows are told."""

    name: str  # "tiny.en" or "base"
    ct2: Path
    hf: Path
    ggml: Path | None  # None: whisper.cpp rows are skipped (no converter or no child script)
    language: str | None  # "en" on the multilingual base (every row does the same work), None on tiny.en


@dataclass(frozen=True)
class RowSpec:
    """One thing to time: a command that writes ``<stem>.txt`` per input into ``out_dir``."""

    key: str
    name: str
    kind: str  # "ours" or "peer"
    family: str  # "ctranslate2", "transformers" or "whisper.cpp"
    engine: str
    beam: int
    cmd: list[str]
    out_dir: Path
    audio_ctx: str | None = None  # whisper.cpp rows: "default", "fit" or a frame count
    note: str = ""

    def matches(self, words: list[str]) -> bool:
        """True when key, name, engine or kind contains one of ``words`` (``--rows``)."""
        hay = f"{self.key} {self.name} {self.engine} {self.kind}"
        return any(w in hay for w in words)


def whispercpp_available() -> bool:
    """Whether helper B's whisper.cpp child script and GGML converter are in ``bench/``."""
    return WCPP_CHILD.is_file() and (REPO_ROOT / "bench" / "ggml_convert.py").is_file()


# key, input set ("short", "long" or "both"), name, beam. Kind, family, engine and command follow
# from the key (_Builder.command); the whisper.cpp sweep is inserted where "wcpp" stands.
ROWS = [
    ("fw-b5", "both", "faster-whisper WhisperModel per file", BEAM),
    ("fw-b1", "short", "faster-whisper WhisperModel per file", 1),
    ("fw-batched", "short", "faster-whisper BatchedInferencePipeline per file", BEAM),
    ("fw-batched", "long", "faster-whisper BatchedInferencePipeline", BEAM),
    ("pipe", "short", "transformers pipeline per file", BEAM),
    ("pipe", "long", "transformers pipeline, sequential long-form", BEAM),
    ("pipe-list8", "short", "transformers pipeline over the list, batch_size=8", BEAM),
    ("pipe-chunk30-b8", "long", "transformers pipeline, chunk_length_s=30, batch_size=8", BEAM),
    ("wcpp", "short", "whisper.cpp per file", 0),
    ("lib-ct2-b5", "both", "twi-asr library", BEAM),
    ("cli-ct2-b5", "both", "twi-asr CLI", BEAM),
    ("lib-ct2-seq", "long", "twi-asr library, sequential long-form", BEAM),
    ("lib-ct2-b1", "short", "twi-asr library", 1),
    ("cli-ct2-b1", "short", "twi-asr CLI", 1),
    ("lib-hf", "both", "twi-asr library", BEAM),
    ("cli-hf", "both", "twi-asr CLI", BEAM),
    ("lib-hf-seq", "long", "twi-asr library, sequential long-form", BEAM),
    ("lib-hf-int8", "both", "twi-asr library", BEAM),
]


class _Builder:
    """Writes the child scripts and the input list for one (model, input set), and makes row specs."""

    def __init__(self, model: ModelSet, inputs: InputSet, scripts: Path, outputs: Path) -> None:
        self.model, self.inputs = model, inputs
        self.scripts = scripts / f"{model.name}-{inputs.name}"
        self.scripts.mkdir(parents=True, exist_ok=True)
        self.outputs = outputs / model.name / inputs.name
        self.listing = self.scripts / "inputs.list"
        self.listing.write_text("\n".join(str(i.path) for i in inputs.items) + "\n")
        lang = model.language
        self.fw_lang = "" if lang is None else f", language={lang!r}"
        gen: dict[str, object] = {"num_beams": BEAM}
        if lang is not None:
            gen.update(language=lang, task="transcribe")
        self.gen = repr(gen)

    def child(self, key: str, template: str, weights: Path, **fmt: object) -> list[str]:
        """A child script written from ``template``, with the protocol's argv."""
        script = self.scripts / f"{key}.py"
        script.write_text(template.format(**fmt))
        return [sys.executable, str(script), str(weights), str(self.listing), str(self.outputs / key)]

    def command(self, key: str, beam: int) -> tuple[str, str, str, list[str]]:
        """Kind, family, engine and command of the row ``key``."""
        m, long = self.model, self.inputs.name == "long"
        if key.startswith("fw"):
            template = FASTER_WHISPER_BATCHED if key == "fw-batched" else FASTER_WHISPER_LOOP
            return (
                "peer",
                "ctranslate2",
                "ct2 int8",
                self.child(key, template, m.ct2, beam=beam, lang=self.fw_lang),
            )
        if key.startswith("pipe"):
            template = {"pipe": PIPELINE_LOOP, "pipe-list8": PIPELINE_LIST}.get(key, PIPELINE_CHUNKED)
            return (
                "peer",
                "transformers",
                "torch fp32",
                self.child(key, template, m.hf, ts=long, gen=self.gen),
            )
        ct2 = "-ct2" in key
        family, weights = ("ctranslate2", m.ct2) if ct2 else ("transformers", m.hf)
        compute = "int8" if ct2 or key.endswith("int8") else "default"
        engine = "ct2 int8" if ct2 else ("torch int8 (dynamic)" if compute == "int8" else "torch fp32")
        if key.startswith("cli-"):
            lang = [] if m.language is None else ["--language", m.language]
            cmd = [twi_asr_executable(), "transcribe", str(self.inputs.folder), "-o", str(self.outputs / key)]
            cmd += ["-f", "txt", "--beam-size", str(beam), "--model", str(weights), "--engine", family, *lang]
            return "ours", family, engine, cmd
        long_form = "sequential" if key.endswith("-seq") else "auto"
        cmd = self.child(key, TWI_ASR_LIBRARY, weights, engine=family, compute_type=compute,
                         long_form=long_form, beam=beam, language=m.language)  # fmt: skip
        return "ours", family, engine, cmd

    def wcpp(self, beam: int, ctx: str) -> RowSpec:
        """One whisper.cpp row: helper B's child at ``beam`` and audio_ctx ``ctx``."""
        assert self.model.ggml is not None
        key = f"wcpp-b{beam}-{'ctx' + ctx if ctx.isdigit() else ctx}"
        cmd = [
            sys.executable,
            str(WCPP_CHILD),
            str(self.model.ggml),
            str(self.listing),
            str(self.outputs / key),
        ]
        # English-only models get "en", never "auto" (whisper.cpp would detect: see the child)
        cmd += ["--beam", str(beam), "--audio-ctx", ctx, "--threads", str(os.cpu_count() or 1),
                "--language", self.model.language or "en"]  # fmt: skip
        label = "default audio_ctx" if ctx == "default" else f"audio_ctx {ctx}"
        note = WCPP_BEAM_NOTE if beam > 1 else ""
        return RowSpec(key, f"whisper.cpp per file, {label}", "peer", "whisper.cpp", "ggml f16", beam, cmd,
                       self.outputs / key, ctx, note)  # fmt: skip


def row_specs(
    model: ModelSet,
    inputs: InputSet,
    scripts: Path,
    outputs: Path,
    *,
    audio_ctx: dict[int, list[str]] | None = None,
) -> list[RowSpec]:
    """Every row for one model and input set, in the order of ``ROWS``.

    ``audio_ctx`` maps a beam size to the whisper.cpp audio_ctx values swept at it (short clips
    only; ``default`` is always run); None = the whole sweep at beam 1 and beam 5. No
    whisper.cpp rows when the model has no GGML file.
    """
    b = _Builder(model, inputs, scripts, outputs)
    sweep = audio_ctx if audio_ctx is not None else {1: list(AUDIO_CTX_SWEEP), BEAM: list(AUDIO_CTX_SWEEP)}
    rows: list[RowSpec] = []
    for key, where, name, beam in ROWS:
        if where not in ("both", inputs.name):
            continue
        if key == "wcpp":
            if model.ggml is not None:
                for bm in sorted(sweep):
                    rows += [b.wcpp(bm, c) for c in ["default", *[c for c in sweep[bm] if c != "default"]]]
            continue
        kind, family, engine, cmd = b.command(key, beam)
        rows.append(RowSpec(key, name, kind, family, engine, beam, cmd, b.outputs / key))
    return rows
