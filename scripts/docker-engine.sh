#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, for the container tests and `twi-asr docker`.
#
#   bash scripts/docker-engine.sh          # install docker.io if needed, start dockerd if none answers
#   bash scripts/docker-engine.sh stop     # stop the dockerd this script started (nothing else)
#
# Installs Debian's docker.io (dockerd + containerd) and debootstrap (for scripts/base-image.sh)
# when they are missing, then starts dockerd in the background unless an engine already answers
# (`docker info`). The pid of a dockerd started here goes to $DOCKERD_PIDFILE, so `stop` only ever
# stops what this script started. Needs root (or sudo) to install and to start dockerd.
# Environment: DOCKERD_PIDFILE (/tmp/twi-asr-dockerd.pid), DOCKERD_LOG (/tmp/twi-asr-dockerd.log),
# DOCKER_DATA_ROOT (/var/lib/docker: its layer cache makes a second image build fast).
set -euo pipefail

PIDFILE="${DOCKERD_PIDFILE:-/tmp/twi-asr-dockerd.pid}"
LOG="${DOCKERD_LOG:-/tmp/twi-asr-dockerd.log}"
DATA_ROOT="${DOCKER_DATA_ROOT:-/var/lib/docker}"
SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"

log() { echo "docker-engine: $*" >&2; }

if [[ "${1:-start}" == "stop" ]]; then
  [[ -s "$PIDFILE" ]] || { log "no dockerd started by this script"; exit 0; }
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    $SUDO kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    log "stopped dockerd (pid $pid)"
  fi
  rm -f "$PIDFILE"
  exit 0
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { log "install Docker (dockerd) first: no apt-get here"; exit 3; }
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  log "a Docker engine already answers; leaving it as it is"
  exit 0
fi

log "starting dockerd (data root $DATA_ROOT, log $LOG)"
$SUDO sh -c "nohup dockerd --data-root '$DATA_ROOT' -H unix:///var/run/docker.sock >'$LOG' 2>&1 & echo \$! >'$PIDFILE'"
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "dockerd is up (pid $(cat "$PIDFILE"))"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; its last log lines:"
tail -n 20 "$LOG" >&2 || true
exit 3
