#!/usr/bin/env bash
# Make a local Debian bookworm base image for the Dockerfiles, for machines that cannot pull from a
# container registry (this project's CI). Elsewhere just use the public default (python:3.11-slim).
#
#   bash scripts/base-image.sh                  # -> twi-asr-base:bookworm (skipped if it exists)
#   docker build --build-arg BASE_IMAGE=twi-asr-base:bookworm -t twi-asr:cpu .
#
# The image holds python3 (+ venv, pip) and ca-certificates only: the CPU image needs no other
# system package (soundfile bundles libsndfile, PyAV and faster-whisper bundle FFmpeg). The host's
# CA bundle is copied in and PIP_CERT points at it, so pip inside `docker build` trusts the same
# certificates as the host (needed behind an intercepting proxy).
#
# Environment: BASE_TAG (default twi-asr-base:bookworm), SUITE (bookworm), MIRROR
# (http://deb.debian.org/debian), FORCE=1 rebuilds even if the tag exists. BASE_TAR=FILE caches the
# image in a file for machines whose Docker data does not survive between runs: when the tag is
# missing and FILE exists it is loaded (seconds) instead of rebuilt (about a minute), and when FILE
# is missing it is written. Needs a running Docker engine; building also needs root and debootstrap.
set -euo pipefail

BASE_TAG="${BASE_TAG:-twi-asr-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"

log() { echo "base-image: $*" >&2; }

docker info >/dev/null 2>&1 || { log "no Docker engine answers (start dockerd first)"; exit 3; }

save_tar() {
  [[ -n "${BASE_TAR:-}" ]] || return 0
  mkdir -p "$(dirname "$BASE_TAR")"
  docker save -o "$BASE_TAR.tmp" "$BASE_TAG" && mv -f "$BASE_TAR.tmp" "$BASE_TAR"
  log "saved $BASE_TAG to $BASE_TAR"
}

if [[ "${FORCE:-0}" != "1" ]] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  log "$BASE_TAG exists; nothing to do (FORCE=1 rebuilds)"
  [[ -z "${BASE_TAR:-}" || -s "$BASE_TAR" ]] || save_tar
  exit 0
fi

if [[ "${FORCE:-0}" != "1" && -n "${BASE_TAR:-}" && -s "${BASE_TAR}" ]]; then
  log "loading $BASE_TAG from $BASE_TAR"
  if docker load -i "$BASE_TAR" >&2 && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    exit 0
  fi
  log "$BASE_TAR did not hold $BASE_TAG; building it"
fi

command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 3; }
[[ "$(id -u)" == 0 ]] || { log "debootstrap needs root"; exit 3; }

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/twi-asr-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT
start=$SECONDS
log "debootstrap $SUITE into $ROOTFS ($PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
  tail -n 30 "$ROOTFS.log" >&2
  rm -f "$ROOTFS.log"
  exit 1
}
rm -f "$ROOTFS.log"

# Trust what the host trusts (pip reads PIP_CERT; requests/urllib read the system bundle).
if [[ -s "$HOST_CA" ]]; then
  install -D -m 0644 "$HOST_CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
# Smaller and reproducible: no apt lists, caches, docs or man pages.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*

tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - "$BASE_TAG" >/dev/null
log "made $BASE_TAG in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$BASE_TAG") bytes)"
save_tar
