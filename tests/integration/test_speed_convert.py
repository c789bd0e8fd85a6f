"""``twi-asr models convert`` for each quantisation the CLI offers, on the real tiny.en weights.

Every converted folder must carry what faster-whisper needs at load time (tokenizer.json,
preprocessor_config.json, and the generation config a fine-tune's language lives in), load
with the ctranslate2 engine on this CPU, and transcribe real speech as well as the int8
folder. Sizes follow the quantisation (int8 weights are about half of float16's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twi_asr import TranscribeOptions, decode_audio, load_transcriber
from twi_asr.convert import convert_hf_to_ct2
from twi_asr.text import wer

from .conftest import Clip

pytestmark = pytest.mark.slow

MAX_WER = 0.35


@pytest.fixture(scope="module")
def converted(tiny_en_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        q: convert_hf_to_ct2(tiny_en_hf, tmp_path_factory.mktemp(f"ct2-{q}"), quantization=q)
        for q in ("int8", "int8_float16", "float16")
    }


@pytest.mark.parametrize("quantization", ["int8", "int8_float16", "float16"])
def test_converted_folder_loads_and_transcribes(
    quantization: str, converted: dict[str, Path], tiny_en_hf: Path, speech_clips: list[Clip]
) -> None:
    out = converted[quantization]
    for name in (
        "model.bin",
        "config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "generation_config.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "preprocessor_config.json").read_bytes() == (
        tiny_en_hf / "preprocessor_config.json"
    ).read_bytes()
    engine = load_transcriber(str(out), engine="ctranslate2")  # CPU: int8 compute whatever is stored
    assert engine.engine == "ctranslate2" and engine.device == "cpu"
    results = engine.transcribe([decode_audio(c.path).samples for c in speech_clips], TranscribeOptions())
    score = wer([c.text for c in speech_clips], [r.text for r in results])
    print(f"{quantization}: WER {score:.3f} on {len(speech_clips)} clips")
    assert score < MAX_WER, [r.text for r in results]


def test_sizes_follow_the_quantisation(converted: dict[str, Path]) -> None:
    size = {q: (p / "model.bin").stat().st_size for q, p in converted.items()}
    assert size["int8"] < 0.7 * size["float16"], size
    assert size["int8_float16"] < 0.7 * size["float16"], size  # int8 weights, float16 compute
