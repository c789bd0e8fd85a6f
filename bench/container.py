"""Benchmark: the server image. Size, build times, start to ready, first-request latency.

What it measures, each next to a reference from the same run on the same engine:

* **Image size** of the CPU image with tiny.en baked in, layer by layer (base,
  dependencies, source, model), next to its base image.
* **Build time**, through :func:`twi_asr.containers.build_image` (what
  ``twi-asr docker build`` calls): cold (``--no-cache``: every pip download and
  install), warm with nothing changed, and warm after a one-line source edit.
  The reference is a naive Dockerfile on the same base (``COPY . .`` then one
  ``pip install``), which pays the whole dependency install again for that same
  edit; ours rebuilds only the source layer.
* **Start to ready**: from ``twi-asr docker run`` (container create + start +
  model load + ``/ready`` answering) and, as the reference, from starting
  ``twi-asr serve`` on the host without a container, same model, same flags.
  Both are polled every 50 ms by this script.
* **First request**: the latency of the first ``POST /v1/audio/transcriptions``
  after ready (cold caches, first decode) and the median of the next ten, for
  the container and for the host process. The answers' WER is reported so a
  fast wrong answer cannot pass.

Builds run in a temporary copy of the tracked files, so the source edit never
touches the working tree. Needs a Docker engine (``scripts/docker-engine.sh``)
and a base image (``scripts/base-image.sh`` makes ``twi-asr-base:bookworm``
where no registry is reachable). Results go to ``bench/results/container.json``.

Run: ``python bench/container.py [--base-image IMG] [--skip-cold]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    clean_env,
    machine_info,
    median,
    package_versions,
    print_cells,
    utc_now,
    warn_if_busy,
    write_json,
)
from transcribe_folder import DEFAULT_CACHE, Clip, build_corpus

from twi_asr import containers
from twi_asr.text import wer

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "container.json"
DISTRIBUTIONS = ("twi-asr", "docker", "ctranslate2", "faster-whisper")
TAG = "twi-asr:bench"
NAIVE_TAG = "twi-asr:bench-naive"
MODEL = "tiny.en"
WARM_REQUESTS = 10
READY_TIMEOUT_S = 180.0
POLL_S = 0.05

NAIVE_DOCKERFILE = """\
# The reference: what one writes first. Source and dependencies in one layer.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /app
COPY . .
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir ".[server,ct2,models,s3]"
ENV TWI_ASR_MODEL=tiny.en TWI_ASR_HOST=0.0.0.0
EXPOSE 8001
ENTRYPOINT ["/opt/venv/bin/twi-asr"]
CMD ["serve"]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _context_copy(dest: Path) -> Path:
    """The tracked files of this checkout (plus uncommitted edits to them) in ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _edit_source(context: Path, n: int) -> None:
    """A one-line source change, as in an edit-build-test loop."""
    with (context / "src" / "twi_asr" / "types.py").open("a", encoding="utf-8") as f:
        f.write(f"# bench edit {n}\n")


def _build(context: Path, tag: str, dockerfile: str, base: str, *, no_cache: bool = False) -> float:
    args = {"BASE_IMAGE": base}
    if tag == TAG:
        args["MODEL"] = MODEL
    start = time.perf_counter()
    containers.build_image(context, tag=tag, dockerfile=dockerfile, build_args=args, no_cache=no_cache)
    return time.perf_counter() - start


def _wait_ready(url: str, start: float, timeout_s: float = READY_TIMEOUT_S) -> float:
    import httpx

    while time.perf_counter() - start < timeout_s:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(POLL_S)
    raise SystemExit(f"{url} not ready after {timeout_s:g} s")


def _requests(url: str, clips: list[Clip]) -> dict[str, Any]:
    """The first request's latency, then the median of the next WARM_REQUESTS, and the WER of all."""
    import httpx

    latencies: list[float] = []
    hyps: list[str] = []
    refs: list[str] = []
    with httpx.Client(timeout=120) as client:
        for i in range(WARM_REQUESTS + 1):
            clip = clips[i % len(clips)]
            start = time.perf_counter()
            with clip.path.open("rb") as f:
                response = client.post(
                    url + "/v1/audio/transcriptions",
                    files={"file": (clip.path.name, f, "audio/wav")},
                    data={"model": MODEL, "response_format": "json"},
                )
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            hyps.append(str(response.json()["text"]))
            refs.append(clip.text)
    return {"first_s": latencies[0], "warm_median_s": median(latencies[1:]), "wer": wer(refs, hyps)}


def _host_server(clips: list[Clip]) -> dict[str, Any]:
    """The reference: `twi-asr serve` on the host, no container."""
    port = _free_port()
    twi_asr = str(Path(sys.executable).with_name("twi-asr"))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [twi_asr, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        ready = _wait_ready(url, start)
        return {"ready_s": ready, **_requests(url, clips)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _container_server(clips: list[Clip]) -> dict[str, Any]:
    """Ours: `twi-asr docker run` (the CLI process), then the same requests."""
    port = _free_port()
    name = f"twi-asr-bench-{os.getpid()}"
    twi_asr = str(Path(sys.executable).with_name("twi-asr"))
    start = time.perf_counter()
    run = subprocess.run(
        [twi_asr, "docker", "run", "--image", TAG, "--name", name, "--port", str(port)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT_S,
        check=False,
    )
    cli_ready = time.perf_counter() - start
    try:
        if run.returncode != 0:
            raise SystemExit(f"twi-asr docker run failed: {run.stderr[-1500:]}")
        url = run.stdout.strip()
        return {"ready_s": cli_ready, **_requests(url, clips)}
    finally:
        subprocess.run([twi_asr, "docker", "stop", name], capture_output=True, timeout=60, check=False)


def _layers(tag: str) -> list[dict[str, Any]]:
    """The image's layers that hold bytes, newest first, with the step that made them."""
    dc = containers.client()
    out = []
    for layer in dc.api.history(tag):
        size = int(layer.get("Size") or 0)
        if size > 0:
            step = str(layer.get("CreatedBy") or "").replace("/bin/sh -c ", "").replace("#(nop) ", "")
            out.append({"mb": round(size / 1e6, 1), "step": " ".join(step.split())[:90]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-image", default=os.environ.get("TWI_ASR_TEST_BASE_IMAGE", "twi-asr-base:bookworm")
    )
    parser.add_argument("--skip-cold", action="store_true", help="No --no-cache builds (no downloads).")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    dc = containers.client()
    dc.images.get(args.base_image)  # a clear docker-py error if it is missing
    clips = build_corpus(DEFAULT_CACHE / "clips")
    warn_if_busy(os.getloadavg()[0])

    builds: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="twi-asr-bench-ctx-") as tmp:
        context = _context_copy(Path(tmp))
        (context / "Dockerfile.naive").write_text(NAIVE_DOCKERFILE, encoding="utf-8")
        for label, tag, dockerfile in (("ours", TAG, "Dockerfile"), ("naive", NAIVE_TAG, "Dockerfile.naive")):
            print(f"building {label} ...", file=sys.stderr)
            cold = (
                None if args.skip_cold else _build(context, tag, dockerfile, args.base_image, no_cache=True)
            )
            if cold is None:
                _build(context, tag, dockerfile, args.base_image)  # make sure the cache is there
            unchanged = _build(context, tag, dockerfile, args.base_image)
            _edit_source(context, 1 if label == "ours" else 2)
            edited = _build(context, tag, dockerfile, args.base_image)
            builds[label] = {"cold_s": cold, "unchanged_s": unchanged, "source_edit_s": edited}

    image = dc.images.get(TAG)
    size_mb = int(image.attrs["Size"]) / 1e6
    naive_mb = int(dc.images.get(NAIVE_TAG).attrs["Size"]) / 1e6
    base_mb = int(dc.images.get(args.base_image).attrs["Size"]) / 1e6
    layers = _layers(TAG)

    print("starting the container and the host server ...", file=sys.stderr)
    container_run = _container_server(clips)
    host_run = _host_server(clips)

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    ours, naive = builds["ours"], builds["naive"]
    print_cells(
        ["build", "ours (layered Dockerfile)", "naive (COPY . + one pip install)"],
        [
            ["cold, --no-cache (s)", s(builds["ours"]["cold_s"]), s(builds["naive"]["cold_s"])],
            [
                "warm, nothing changed (s)",
                s(builds["ours"]["unchanged_s"]),
                s(builds["naive"]["unchanged_s"]),
            ],
            [
                "warm, one source line (s)",
                s(builds["ours"]["source_edit_s"]),
                s(builds["naive"]["source_edit_s"]),
            ],
            ["image size (MB)", f"{size_mb:.0f}", f"{naive_mb:.0f}"],
        ],
        f"Image build on {args.base_image} ({base_mb:.0f} MB)",
    )
    print_cells(
        ["serve tiny.en", "container (twi-asr docker run)", "host process (twi-asr serve)"],
        [
            ["start -> /ready (s)", f"{container_run['ready_s']:.2f}", f"{host_run['ready_s']:.2f}"],
            [
                "first request (ms)",
                f"{container_run['first_s'] * 1000:.0f}",
                f"{host_run['first_s'] * 1000:.0f}",
            ],
            [
                f"next {WARM_REQUESTS}, median (ms)",
                f"{container_run['warm_median_s'] * 1000:.0f}",
                f"{host_run['warm_median_s'] * 1000:.0f}",
            ],
            ["WER of the answers", f"{container_run['wer']:.3f}", f"{host_run['wer']:.3f}"],
        ],
        "Start and first request",
    )
    print_cells(
        ["MB", "layer (newest first)"], [[f"{x['mb']:.1f}", x["step"]] for x in layers], f"{TAG} layers"
    )
    payload = {
        "benchmark": "container",
        "date": utc_now(),
        "machine": machine_info(),
        "versions": package_versions(DISTRIBUTIONS),
        "base_image": {"tag": args.base_image, "size_mb": round(base_mb, 1)},
        "image": {"tag": TAG, "model": MODEL, "size_mb": round(size_mb, 1), "layers": layers},
        "naive_image_size_mb": round(naive_mb, 1),
        "builds": builds,
        "serve": {"container": container_run, "host_process": host_run},
    }
    write_json(args.json, payload)
    print(
        f"summary: image {size_mb:.0f} MB; rebuild after a source edit {ours['source_edit_s']:.1f} s "
        f"(naive {naive['source_edit_s']:.1f} s); cold build {s(ours['cold_s'])} s; "
        f"docker run -> ready {container_run['ready_s']:.2f} s (host {host_run['ready_s']:.2f} s); "
        f"first request {container_run['first_s'] * 1000:.0f} ms -> {args.json.relative_to(REPO_ROOT)}"
    )


if __name__ == "__main__":
    main()
