"""The BentoML service, for real: ``bentoml serve`` on loopback with the tiny.en weights.

The official ``openai`` client transcribes espeak-ng speech through it; 16 concurrent requests
come back right, batched by BentoML's adaptive batching; bad uploads get a 4xx and the service
keeps serving; ``bentoml build`` works offline and ``bentoml serve`` serves the bento it made.
Skipped only where the ``twi-asr[bentoml]`` extra is not installed (CI installs it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf

from twi_asr.text import wer

from .conftest import Clip, speak
from .services import EASY_SENTENCES, free_port, wait_until_up

if os.environ.get("CI"):
    import bentoml  # noqa: F401  CI installs the extra: there a missing BentoML fails, it does not skip
else:
    pytest.importorskip("bentoml", reason="the BentoML path needs its extra: pip install 'twi-asr[bentoml]'")
pytestmark = pytest.mark.slow

MAX_WER = 0.35
API_KEY = "bento-test-key"
READY_S = 240.0


@dataclass
class Bento:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM to BentoML's whole process group (its workers too), SIGKILL after 30 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWI_ASR_", "BENTOML_"))}
    env.update(
        {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    )
    env.update(extra)
    return env


def start(cmd: list[str], log: Path, env: dict[str, str], port: int) -> Bento:
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    bento = Bento(f"http://127.0.0.1:{port}", proc, log)
    wait_until_up(proc, bento.url + "/readyz", READY_S, bento.tail, bento.stop)
    return bento


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml-home")


@pytest.fixture(scope="module")
def service(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bento]:
    """``twi-asr bento serve --model tiny.en``: ``bentoml serve twi_asr.bento:TwiAsr``, no key."""
    port = free_port()
    cmd = [sys.executable, "-m", "twi_asr", "bento", "serve", "--model", "tiny.en",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    bento = start(cmd, tmp_path_factory.mktemp("bento") / "serve.log", _env(home), port)
    yield bento
    bento.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("bento-speech")
    sentences = EASY_SENTENCES[:16]
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda it: speak(it[1], folder / f"b{it[0]:02d}.wav"), enumerate(sentences)))
    return [Clip(p, t) for p, t in zip(paths, sentences, strict=True)]


def client(bento: Bento, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=bento.url + "/v1", api_key=api_key, max_retries=0, timeout=180)


def test_probes_are_bentoml_own(service: Bento) -> None:
    assert httpx.get(service.url + "/livez").status_code == 200
    assert httpx.get(service.url + "/readyz").status_code == 200
    models = httpx.get(service.url + "/v1/models").json()
    assert models["data"][0]["id"] == "tiny.en" and models["data"][0]["engine"] == "ctranslate2"


def test_openai_client_transcribes_speech(service: Bento, clips: list[Clip]) -> None:
    texts = []
    for clip in clips[:3]:
        with clip.path.open("rb") as f:
            texts.append(client(service).audio.transcriptions.create(model="whisper-1", file=f).text)
    refs = [c.text for c in clips[:3]]
    assert wer(refs, texts) < MAX_WER, list(zip(refs, texts, strict=True))


def test_verbose_json_and_subtitles_as_twi_asr_serve_shapes_them(service: Bento, clips: list[Clip]) -> None:
    clip = clips[1]
    with clip.path.open("rb") as f:
        verbose = client(service).audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    assert verbose.language == "english"
    assert 1.0 < verbose.duration < 8.0
    assert verbose.segments and verbose.words
    assert wer(clip.text, verbose.text) < MAX_WER
    with clip.path.open("rb") as f:
        srt = httpx.post(
            service.url + "/v1/audio/transcriptions", files={"file": f}, data={"response_format": "srt"}
        )
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:")


def test_16_concurrent_requests_come_back_right_and_batched(service: Bento, clips: list[Clip]) -> None:
    before = httpx.get(service.url + "/metrics").text
    barrier = threading.Barrier(len(clips))
    c = client(service)

    def one(clip: Clip) -> str:
        data = clip.path.read_bytes()
        barrier.wait(30)
        return c.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, data)).text

    with ThreadPoolExecutor(len(clips)) as pool:
        texts = list(pool.map(one, clips))
    after = httpx.get(service.url + "/metrics").text
    refs = [clip.text for clip in clips]
    own = [wer(r, t) for r, t in zip(refs, texts, strict=True)]
    for i, text in enumerate(texts):
        others = min(wer(r, text) for j, r in enumerate(refs) if j != i)
        assert own[i] < 0.5 * others, (refs[i], text, own[i], others)  # no mix-ups
    assert wer(refs, texts) < MAX_WER
    name = "bentoml_service_adaptive_batch_size"
    batches = _batches(after, name) - _batches(before, name)
    clips_in = _sum(after, name + "_sum") - _sum(before, name + "_sum")
    assert clips_in == len(clips), (clips_in, batches)
    assert 1 <= batches < len(clips), batches  # BentoML put several requests in one engine batch


def _sum(text: str, name: str) -> float:
    """A Prometheus metric summed over its label sets (BentoML labels per worker and method)."""
    lines = [line for line in text.splitlines() if line.startswith((name + "{", name + " "))]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def _batches(text: str, name: str) -> float:
    """The histogram's count: its +Inf bucket (Prometheus' multiprocess mode writes no _count)."""
    lines = [line for line in text.splitlines() if line.startswith(name + "_bucket{") and 'le="+Inf"' in line]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_bad_uploads_get_4xx_and_the_service_keeps_serving(service: Bento, clips: list[Clip]) -> None:
    url = service.url + "/v1/audio/transcriptions"
    not_audio = httpx.post(url, files={"file": ("notes.wav", b"this is not audio at all" * 40)})
    assert not_audio.status_code == 415, not_audio.text
    assert not_audio.json()["error"]["code"] == "invalid_audio"
    empty = httpx.post(url, files={"file": ("empty.wav", b"")})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_file"
    no_file = httpx.post(url, data={"model": "whisper-1"})
    assert no_file.status_code == 422 and no_file.json()["error"]["code"] == "missing_field"
    bad_option = httpx.post(url, files={"file": clips[0].path.read_bytes()}, data={"language": "klingon"})
    assert bad_option.status_code == 400 and bad_option.json()["error"]["code"] == "invalid_option"
    streamed = httpx.post(url, files={"file": clips[0].path.read_bytes()}, data={"stream": "true"})
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "stream"
    assert httpx.get(service.url + "/readyz").status_code == 200
    with clips[0].path.open("rb") as f:
        text = client(service).audio.transcriptions.create(model="whisper-1", file=f).text
    assert wer(clips[0].text, text) < MAX_WER


def test_bentoml_build_offline_then_bentoml_serve_serves_the_bento(
    home: Path, clips: list[Clip], tmp_path: Path
) -> None:
    env = _env(home)
    built = subprocess.run(
        [sys.executable, "-m", "twi_asr", "bento", "build", "--model", "tiny.en", "--version", "citest",
         "--write-bentofile", str(tmp_path / "bentofile.yaml")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    bento_dir = home / "bentos" / "twi_asr" / "citest"
    assert (bento_dir / "src" / "twi_asr" / "bento" / "service.py").is_file()
    assert not list((bento_dir / "src").rglob("__pycache__"))
    meta = (bento_dir / "bento.yaml").read_text()
    assert "TWI_ASR_MODEL" in meta and "tiny.en" in meta
    assert json.loads((tmp_path / "bentofile.yaml").read_text())["service"] == "twi_asr.bento:TwiAsr"

    # The same limits as twi-asr serve, from the same variables: a key, and the longest audio.
    seconds = {c.path: sf.info(str(c.path)).duration for c in clips}
    short = min(clips, key=lambda c: seconds[c.path])
    long = max(clips, key=lambda c: seconds[c.path])
    limit = (seconds[short.path] + seconds[long.path]) / 2
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", "twi_asr:citest", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    limits = {"TWI_ASR_API_KEY": API_KEY, "TWI_ASR_MAX_AUDIO_S": f"{limit:.2f}"}
    bento = start(cmd, tmp_path / "bento-serve.log", {**env, **limits}, port)
    try:
        with pytest.raises(openai.AuthenticationError), short.path.open("rb") as f:
            client(bento, "wrong").audio.transcriptions.create(model="whisper-1", file=f)
        with short.path.open("rb") as f:
            text = client(bento, API_KEY).audio.transcriptions.create(model="whisper-1", file=f).text
        assert wer(short.text, text) < MAX_WER
        refused = httpx.post(bento.url + "/v1/audio/transcriptions", files={"file": long.path.read_bytes()},
                             headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["code"] == "audio_too_long", refused.text
    finally:
        bento.stop()


def test_bentoml_containerize_builds_an_image_that_transcribes(
    home: Path, clips: list[Clip], tmp_path: Path
) -> None:
    """``bentoml containerize`` against the local engine and base image (no registry, no buildx).

    BentoML's docker backend asks for BuildKit, and the Docker CLI here has no buildx plugin:
    ``DOCKER_BUILDKIT=0`` makes it use the legacy builder, which BentoML's Dockerfile supports
    when BuildKit is off. The base is the local Debian image (``--base-image``); its Python is
    the distribution's, so the bento's envs let pip install uv there (PEP 668) and let uv trust
    the image's CA bundle. Packages come from PyPI inside the build.
    """
    from .docker_helpers import base_image, docker_client

    engine = docker_client()
    base = base_image(engine)
    if not base.startswith("twi-asr-base"):
        pytest.skip(f"needs the local Debian base (scripts/base-image.sh), not {base}")
    env = _env(home)
    built = subprocess.run(
        [sys.executable, "-m", "twi_asr", "bento", "build", "--model", "tiny.en", "--version", "citest-image",
         "--base-image", base],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = "twi-asr-bento:citest"
    made = subprocess.run(
        [sys.executable, "-m", "bentoml", "containerize", "twi_asr:citest-image", "--backend", "docker",
         "-t", tag],
        capture_output=True, text=True, env={**env, "DOCKER_BUILDKIT": "0"}, timeout=1200,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-4000:]
    port = free_port()
    container = engine.containers.run(tag, detach=True, ports={"3000/tcp": ("127.0.0.1", port)})
    try:
        bento = Bento(f"http://127.0.0.1:{port}", subprocess.Popen(["true"]), tmp_path / "unused.log")
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(bento.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            logs = container.logs().decode(errors="replace")[-3000:]
            pytest.fail("the bento container never got ready:\n" + logs)
        with clips[3].path.open("rb") as f:
            text = client(bento).audio.transcriptions.create(model="whisper-1", file=f).text
        assert wer(clips[3].text, text) < MAX_WER
        assert "TWI_ASR_MODEL=tiny.en" in container.attrs["Config"]["Env"]
    finally:
        container.remove(force=True)
        engine.images.remove(tag, force=True)
