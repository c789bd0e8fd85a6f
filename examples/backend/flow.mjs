// Transcribe one file through the twi-asr backend with Node 20's built-in fetch (no npm packages):
// submit, wait, download the SRT.
//
//   TWI_ASR_KEY=twk_... node examples/backend/flow.mjs examples/hello.wav [out.srt]
//
// TWI_ASR_KEY      your API key (`twi-asr backend users create NAME --json` prints one)
// TWI_ASR_BACKEND  the backend's URL (default http://localhost:8000)
// TWI_ASR_TIMEOUT  seconds to wait for the job (default 3600)
import { randomUUID } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { basename, extname } from "node:path";

const base = (process.env.TWI_ASR_BACKEND || "http://localhost:8000").replace(/\/+$/, "");
const key = process.env.TWI_ASR_KEY;
const timeoutS = Number(process.env.TWI_ASR_TIMEOUT || 3600);

/** One call to the backend; returns the Response, or throws with the API's error code and message. */
async function api(path, init = {}) {
  const headers = { Authorization: `Bearer ${key}`, ...(init.headers || {}) };
  const response = await fetch(base + path, { ...init, headers });
  if (!response.ok) {
    const text = await response.text();
    let detail = text;
    try {
      const { error } = JSON.parse(text);
      detail = `${error.code}: ${error.message}`;
    } catch {
      // not the JSON error body (a proxy in between?): show the text as it is
    }
    throw new Error(`HTTP ${response.status} from ${path}: ${detail}`);
  }
  return response;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const [file, outArg] = process.argv.slice(2);
  if (!key || !file) {
    console.error("usage: TWI_ASR_KEY=twk_... node flow.mjs AUDIO_FILE [OUT.srt]");
    process.exit(2);
  }
  const out = outArg || `${basename(file, extname(file))}.srt`;

  // 1. Submit: multipart upload. Add form.append("language", "en"), ("word_timestamps", "true")
  //    or ("webhook_url", "https://...") as needed. The Idempotency-Key makes a retry safe.
  const form = new FormData();
  form.append("file", new Blob([await readFile(file)]), basename(file));
  let job = await (
    await api("/v1/jobs", { method: "POST", body: form, headers: { "Idempotency-Key": randomUUID() } })
  ).json();
  console.error(`submitted ${job.id} (${file})`);

  // 2. Wait: poll until done, failed or cancelled (a webhook saves the polling).
  const start = Date.now();
  while (job.status === "queued" || job.status === "running") {
    if (Date.now() - start > timeoutS * 1000) throw new Error(`job ${job.id} still ${job.status} after ${timeoutS} s`);
    await sleep(1000);
    job = await (await api(`/v1/jobs/${job.id}`)).json();
  }
  if (job.status !== "done") {
    const error = job.error || {};
    throw new Error(`job ${job.id} ${job.status}: ${error.code}: ${error.message}`);
  }
  console.error(`done in ${((Date.now() - start) / 1000).toFixed(1)} s: ${job.text}`);

  // 3. Download the transcript (txt, json, srt, vtt or tsv).
  const srt = await (await api(`/v1/jobs/${job.id}/transcript?format=srt`)).text();
  await writeFile(out, srt, "utf-8");
  console.error(`wrote ${out}`);
}

main().catch((error) => {
  console.error(`error: ${error.message}`);
  process.exit(1);
});
