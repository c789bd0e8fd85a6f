#!/usr/bin/env bash
# Transcribe one file through the twi-asr backend with curl: submit, wait, download the SRT.
#
#   TWI_ASR_KEY=twk_... bash examples/backend/flow.sh examples/hello.wav [out.srt]
#
# TWI_ASR_KEY      your API key (`twi-asr backend users create NAME --json` prints one)
# TWI_ASR_BACKEND  the backend's URL (default http://localhost:8000)
# TWI_ASR_TIMEOUT  seconds to wait for the job (default 3600)
# Needs curl and python3 (for reading JSON; no jq). Exit 0 when the SRT is written, 1 otherwise.
set -euo pipefail

base="${TWI_ASR_BACKEND:-http://localhost:8000}"
base="${base%/}"
key="${TWI_ASR_KEY:?set TWI_ASR_KEY to your API key (twi-asr backend users create NAME --json)}"
file="${1:?usage: flow.sh AUDIO_FILE [OUT.srt]}"
stem="$(basename "${file%.*}")"
out="${2:-$stem.srt}"
timeout="${TWI_ASR_TIMEOUT:-3600}"
body="$(mktemp)"
trap 'rm -f "$body"' EXIT

# field NAME: one field of the JSON in $body ("" when absent); dots go deeper (error.message).
field() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1], encoding="utf-8"))
for part in sys.argv[2].split("."):
    value = value.get(part) if isinstance(value, dict) else None
print("" if value is None else value)' "$body" "$1"
}

# api ARGS...: curl the backend with the key; the body lands in $body; fails on a non-2xx answer.
api() {
  local status
  status="$(curl -sS -o "$body" -w '%{http_code}' -H "Authorization: Bearer $key" "$@")"
  if [[ "$status" != 2* ]]; then
    echo "error: HTTP $status: $(field error.code): $(field error.message)" >&2
    exit 1
  fi
}

# 1. Submit: multipart upload of the file. Add -F language=en, -F word_timestamps=true,
#    -F webhook_url=https://... as needed. An Idempotency-Key makes a retried POST safe.
api -X POST "$base/v1/jobs" -H "Idempotency-Key: $(python3 -c 'import uuid; print(uuid.uuid4())')" \
  -F "file=@$file"
job="$(field id)"
echo "submitted $job ($file)" >&2

# 2. Wait: poll the job until it is done, failed or cancelled (a webhook saves the polling).
start=$SECONDS
while :; do
  api "$base/v1/jobs/$job"
  status="$(field status)"
  case "$status" in
    done) break ;;
    failed | cancelled)
      echo "error: job $job $status: $(field error.code): $(field error.message)" >&2
      exit 1 ;;
  esac
  if ((SECONDS - start > timeout)); then
    echo "error: job $job still $status after $timeout s" >&2
    exit 1
  fi
  sleep 1
done
echo "done in $((SECONDS - start)) s: $(field text)" >&2

# 3. Download the transcript (txt, json, srt, vtt or tsv).
api "$base/v1/jobs/$job/transcript?format=srt"
cp "$body" "$out"
echo "wrote $out" >&2
