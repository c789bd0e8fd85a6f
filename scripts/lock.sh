#!/usr/bin/env bash
# Regenerate the hash-pinned locks in locks/: one per install flavour, so every image and CI install
# exactly the versions that were tested (pyproject.toml keeps its ranges for `pip install twi-asr`).
#
#   bash scripts/lock.sh              # regenerate locks/*.txt (keeps current pins where still allowed)
#   bash scripts/lock.sh --upgrade    # any extra argument goes to every `uv pip compile` (e.g. --upgrade,
#                                     # --upgrade-package fastapi)
#   bash scripts/lock.sh --check      # compile into a temporary folder and fail if locks/ differs
#
# The locks (python 3.11, linux x86_64 manylinux_2_28, every pin with its sha256 hashes):
#   dev.txt      the CI/dev venv (scripts/setup.sh): twi-asr[all,dev] + torch==2.13.0+cpu + build deps
#   cpu.txt      Dockerfile ENGINES=ct2 (default):  twi-asr[server,ct2,models,s3] + build deps; no torch
#   cpu-all.txt  Dockerfile ENGINES=all:            cpu.txt's set + [transformers], torch==2.13.0+cpu
#   cuda.txt     Dockerfile.cuda:                   cpu-all's extras, torch==2.13.0 (PyPI's CUDA build)
#                                                   + nvidia-cublas-cu12 (CTranslate2 dlopens cuBLAS 12)
#   backend.txt  docker/backend/Dockerfile:         twi-asr[backend] + build deps; no torch
# dev.txt is compiled first; every other lock is compiled with it as a constraint (cuda.txt: less
# its torch), so a package that CI tests has the same version in every image.
#
# The tool is uv, pinned (UV_VERSION below): a `uv` of that version on PATH is used, else it is
# pip-installed once into a throwaway venv ($TWI_ASR_LOCK_TOOLS, default /tmp/twi-asr-uv-VERSION).
# Needs PyPI. The CPU torch wheel comes from $TORCH_FIND_LINKS: /opt/wheels where it lies there,
# else PyTorch's CPU wheel page (https://download.pytorch.org/whl/cpu/torch/).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
PYTHON_VERSION=3.11
PLATFORM=x86_64-manylinux_2_28
TORCH_CPU="torch==2.13.0+cpu"
TORCH_WHEEL=torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl

log() { echo "lock: $*" >&2; }

check=0
extra_args=()
for arg in "$@"; do
  if [[ "$arg" == "--check" ]]; then check=1; else extra_args+=("$arg"); fi
done

# --- uv, pinned -------------------------------------------------------------------------------
UV=""
if command -v uv >/dev/null && [[ "$(uv --version | awk '{print $2}')" == "$UV_VERSION" ]]; then
  UV="$(command -v uv)"
else
  tools="${TWI_ASR_LOCK_TOOLS:-${TMPDIR:-/tmp}/twi-asr-uv-$UV_VERSION}"
  if [[ ! -x "$tools/bin/uv" ]] || [[ "$("$tools/bin/uv" --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
    log "installing uv==$UV_VERSION into $tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
  fi
  UV="$tools/bin/uv"
fi
# uv ships its own CA roots; behind a proxy with its own CA the system bundle is the one to trust.
if [[ -z "${SSL_CERT_FILE:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi

if [[ -n "${TORCH_FIND_LINKS:-}" ]]; then
  torch_links="$TORCH_FIND_LINKS"
elif [[ -f "/opt/wheels/$TORCH_WHEEL" ]]; then
  torch_links=/opt/wheels
else
  torch_links=https://download.pytorch.org/whl/cpu/torch/
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out_dir=locks
if ((check)); then
  out_dir="$work/locks"
  mkdir "$out_dir"
  cp locks/*.txt "$out_dir"/  # the current pins are uv's preferences, as in a normal run
fi

# compile NAME DESCRIPTION INSTALL_NOTE UV_ARGS...: one lock, with a header that says how it was made.
compile() {
  local name="$1" description="$2" note="$3"
  shift 3
  local out="$out_dir/$name"
  log "$name"
  "$UV" pip compile --quiet --no-config --generate-hashes \
    --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" \
    --index-url https://pypi.org/simple \
    --custom-compile-command "bash scripts/lock.sh" \
    --output-file "$out" "$@" ${extra_args[@]+"${extra_args[@]}"}
  # The constraint file of cuda.txt is a temporary copy of dev.txt: name it for what it is.
  sed -i "s|-c $work/dev-without-torch.txt|-c locks/dev.txt (without torch)|" "$out"
  {
    echo "# locks/$name: $description"
    echo "# Made by scripts/lock.sh with uv $UV_VERSION: uv pip compile --generate-hashes --python-version"
    echo "# $PYTHON_VERSION --python-platform $PLATFORM (see that script for the inputs). Do not edit by hand."
    echo "# $note"
    echo "#"
    cat "$out"
  } >"$work/with-header" && mv "$work/with-header" "$out"
}

compile dev.txt "the CI/dev venv (scripts/setup.sh): twi-asr[all,bentoml,dev] + torch CPU." \
  "Install: pip install --no-deps --require-hashes -r locks/dev.txt (torch: /opt/wheels or PyTorch's CPU index)." \
  --find-links "$torch_links" --extra all --extra bentoml --extra dev pyproject.toml locks/build.in locks/torch-cpu.in

# dev.txt less torch: the constraint for cuda.txt, whose torch is PyPI's CUDA build of the same version.
awk '/^torch==/{skip=1; next} skip && /^    /{next} {skip=0; print}' "$out_dir/dev.txt" >"$work/dev-without-torch.txt"

compile cpu.txt "the CPU image, Dockerfile ENGINES=ct2 (default): torch-free." \
  "Install: pip install --no-deps --require-hashes -r locks/cpu.txt" \
  -c "$out_dir/dev.txt" --extra server --extra ct2 --extra models --extra s3 pyproject.toml locks/build.in

compile cpu-all.txt "the CPU image with both engines, Dockerfile ENGINES=all (torch CPU build)." \
  "Install: pip install --no-deps --require-hashes --extra-index-url https://download.pytorch.org/whl/cpu -r locks/cpu-all.txt" \
  --find-links "$torch_links" -c "$out_dir/dev.txt" \
  --extra server --extra ct2 --extra models --extra s3 --extra transformers \
  pyproject.toml locks/build.in locks/torch-cpu.in

compile cuda.txt "the GPU image, Dockerfile.cuda: both engines, torch from PyPI (CUDA build)." \
  "Install: pip install --no-deps --require-hashes -r locks/cuda.txt" \
  -c "$work/dev-without-torch.txt" \
  --extra server --extra ct2 --extra models --extra s3 --extra transformers \
  pyproject.toml locks/build.in locks/cuda.in

compile backend.txt "the backend image, docker/backend/Dockerfile: no torch, no ctranslate2." \
  "Install: pip install --no-deps --require-hashes -r locks/backend.txt" \
  -c "$out_dir/dev.txt" --extra backend pyproject.toml locks/build.in

if ((check)); then
  # Compare the pins and hashes: annotations name the constraint file by its temporary path.
  status=0
  for f in locks/*.txt; do
    if ! diff -q <(grep -v '^ *#' "$f") <(grep -v '^ *#' "$out_dir/$(basename "$f")") >/dev/null; then
      log "$f is out of date: run bash scripts/lock.sh"
      status=1
    fi
  done
  exit "$status"
fi
for f in locks/*.txt; do log "$(printf '%-20s %7d bytes, %3d pins' "$f" "$(wc -c <"$f")" "$(grep -c '^[A-Za-z0-9]' "$f")")"; done
