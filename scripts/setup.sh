#!/usr/bin/env bash
# Set up twi-asr for development in the *current* Python environment (activate a venv first):
# system tools (ffmpeg, espeak-ng, sox, libsndfile), then exactly the packages of locks/dev.txt
# (every extra + the CPU build of torch, hash-checked, nothing resolved: the versions CI tests and
# the images ship; bash scripts/lock.sh regenerates the lock), then this checkout, editable.
# Safe to rerun. TWI_ASR_SKIP_APT=1 skips the system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the browser tests of the page at / (Playwright drives /usr/bin/chromium; its fonts-* deps
# carry the glyphs for ɛ ɔ ŋ). Playwright's own browser download is not used.
# postgresql: the server binaries the backend's integration tests start (tests/integration/postgres.py);
# docker-compose (v1): validates docker/compose.yaml; curl: health checks; nodejs only if `node` is missing.
APT_PACKAGES=(ffmpeg espeak-ng sox libsndfile1 chromium fonts-dejavu-core postgresql docker-compose curl)
command -v node >/dev/null || APT_PACKAGES+=(nodejs)
if [[ "${TWI_ASR_SKIP_APT:-0}" != "1" ]] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    echo "setup: installing system packages: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
if [[ -z "${VIRTUAL_ENV:-}" && -z "${CI:-}" ]]; then
  echo "setup: warning: no virtualenv is active; installing into $($PY -c 'import sys; print(sys.prefix)')" >&2
fi
# The lock's torch is 2.13.0+cpu: pip finds it in /opt/wheels here (pip.conf find-links), else pass
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu. --no-deps: the lock is the whole set.
"$PY" -m pip install -q --no-deps --require-hashes -r locks/dev.txt
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
"$PY" -m pip check >&2
echo "setup: done ($("$PY" -m twi_asr --version))" >&2
