// The backend (8000) from Node 20 with built-ins only (fetch, FormData, Blob, fs): no npm packages.
//
//   TWI_ASR_KEY=twk_... TWI_ASR_BACKEND=http://127.0.0.1:8000 \
//     node tests/js/backend_flow.mjs CLIP.wav word,word,word CLIP2.wav word,word,word
//
// CLIP goes through a multipart job, CLIP2 through the presigned upload flow; each one's transcript
// must contain its words (lowercase, punctuation ignored). Checks: submit (202, Location), an
// Idempotency-Key retry (200, same id), poll to done, txt/srt/json transcripts, the job list, the
// error body {"error": {"code", "message", "type", "param", "request_id"}} on 401/404/400, POST
// /v1/uploads + PUT + POST /v1/jobs {upload_id}, and the OpenAI-compatible POST
// /v1/audio/transcriptions with the user's key. Exit 0 when every check passed; 1 with a
// "FAIL: ..." line on the first that did not.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

const base = (process.env.TWI_ASR_BACKEND || "http://127.0.0.1:8000").replace(/\/+$/, "");
const key = process.env.TWI_ASR_KEY || "";
const timeoutS = Number(process.env.TWI_ASR_TIMEOUT || 180);

class CheckFailed extends Error {}

/** Throw a CheckFailed with `what` (and what was seen) unless `ok`. */
function check(ok, what, seen) {
  if (!ok) throw new CheckFailed(seen === undefined ? what : `${what}; got: ${describe(seen)}`);
}

function describe(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 600 ? `${text.slice(0, 600)}...` : text;
}

const passed = (what) => console.log(`ok - ${what}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const bearer = (k = key) => ({ Authorization: `Bearer ${k}` });

/** fetch base+path; returns {status, headers, text, json (or null)}. */
async function call(path, init = {}) {
  const url = path.startsWith("http") ? path : base + path;
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new CheckFailed(`${init.method || "GET"} ${url}: no answer (${error.cause?.code || error.message})`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON (srt, txt): json stays null
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** The lowercase words of `text`, punctuation dropped. */
const wordsOf = (text) => new Set((text || "").toLowerCase().match(/[\p{L}\p{N}']+/gu) || []);

function mentions(text, words, where) {
  const seen = wordsOf(text);
  const missing = words.filter((w) => !seen.has(w));
  check(missing.length === 0, `${where} lacks ${JSON.stringify(missing)}`, text);
}

/** The error body's shape, and its code. */
function errorShape(r, status, code, where) {
  check(r.status === status, `${where}: status ${status}`, `${r.status} ${r.text}`);
  const e = r.json && r.json.error;
  check(e && typeof e === "object", `${where}: body is {"error": {...}}`, r.text);
  for (const field of ["code", "message", "type", "param", "request_id"]) {
    check(field in e, `${where}: error has "${field}"`, r.json);
  }
  check(typeof e.message === "string" && e.message.length > 0, `${where}: error.message is a sentence`, r.json);
  if (code) check(e.code === code, `${where}: error.code is ${code}`, r.json);
  passed(`${where}: ${status} ${e.code}`);
}

async function form(path, fields = {}) {
  const body = new FormData();
  body.append("file", new Blob([await readFile(path)], { type: "audio/wav" }), basename(path));
  for (const [k, v] of Object.entries(fields)) body.append(k, v);
  return body;
}

async function waitDone(id) {
  const start = Date.now();
  for (;;) {
    const r = await call(`/v1/jobs/${id}`, { headers: bearer() });
    check(r.status === 200, `GET /v1/jobs/${id}: 200`, `${r.status} ${r.text}`);
    const job = r.json;
    if (!["queued", "running"].includes(job.status)) {
      check(job.status === "done", `job ${id} ends done`, job);
      passed(`job ${id} done in ${((Date.now() - start) / 1000).toFixed(1)} s`);
      return job;
    }
    check(Date.now() - start < timeoutS * 1000, `job ${id} done within ${timeoutS} s`, job);
    await sleep(250);
  }
}

async function multipartJob(clip, words) {
  const idem = randomUUID();
  const headers = { ...bearer(), "Idempotency-Key": idem };
  const first = await call("/v1/jobs", { method: "POST", headers, body: await form(clip, { language: "en" }) });
  check(first.status === 202, "POST /v1/jobs (multipart): 202", `${first.status} ${first.text}`);
  const job = first.json;
  check(/^job_/.test(job.id) && job.object === "transcription.job", "a job object with an id", job);
  check(["queued", "running"].includes(job.status), "a new job is queued or running", job);
  check(first.headers.get("location") === `/v1/jobs/${job.id}`, "Location: /v1/jobs/ID", first.headers.get("location"));
  passed(`submitted ${job.id} (multipart, language=en)`);

  const again = await call("/v1/jobs", { method: "POST", headers, body: await form(clip, { language: "en" }) });
  check(again.status === 200, "the same Idempotency-Key again: 200", `${again.status} ${again.text}`);
  check(again.json.id === job.id, "the same Idempotency-Key returns the same job", again.json);
  passed("Idempotency-Key: the retry returned the same id");

  const done = await waitDone(job.id);
  mentions(done.text, words, "the job's text");
  check(done.formats.includes("srt") && done.formats.includes("json"), "formats list srt and json", done);
  check(done.language === "en" && typeof done.duration === "number" && done.duration > 1, "language and duration", done);
  passed(`text: ${done.text}`);

  const srt = await call(`/v1/jobs/${job.id}/transcript?format=srt`, { headers: bearer() });
  check(srt.status === 200, "GET transcript?format=srt: 200", `${srt.status} ${srt.text}`);
  check(/^1\r?\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}/.test(srt.text), "SRT starts with cue 1 and a time line", srt.text);
  mentions(srt.text, words, "the SRT");
  const disposition = srt.headers.get("content-disposition") || "";
  check(disposition.startsWith("attachment") && disposition.includes(".srt"), "Content-Disposition names a .srt", disposition);
  passed("SRT transcript");

  const json = await call(`/v1/jobs/${job.id}/transcript?format=json`, { headers: bearer() });
  check(json.status === 200 && json.json, "GET transcript?format=json: 200 JSON", `${json.status} ${json.text}`);
  mentions(json.json.text, words, "the JSON transcript's text");
  check(Array.isArray(json.json.segments) && json.json.segments.length > 0, "JSON transcript has segments", json.json);
  const seg = json.json.segments[0];
  check(typeof seg.start === "number" && seg.end > seg.start, "segments have start < end", seg);
  passed("JSON transcript");

  const txt = await call(`/v1/jobs/${job.id}/transcript`, { headers: bearer() });
  check(txt.status === 200, "GET transcript (txt): 200", `${txt.status} ${txt.text}`);
  mentions(txt.text, words, "the txt transcript");

  const list = await call("/v1/jobs?limit=100", { headers: bearer() });
  check(list.status === 200 && list.json.object === "list", "GET /v1/jobs: a list", list.text);
  check(list.json.data.some((j) => j.id === job.id), "the list holds the job", list.json);
  check("next_cursor" in list.json, "the list has next_cursor", list.json);
  const doneOnly = await call("/v1/jobs?status=done&limit=100", { headers: bearer() });
  check(doneOnly.json.data.every((j) => j.status === "done"), "status=done lists only done jobs", doneOnly.json);
  check(doneOnly.json.data.some((j) => j.id === job.id), "status=done lists the job", doneOnly.json);
  passed(`GET /v1/jobs: ${list.json.data.length} job(s)`);

  errorShape(
    await call(`/v1/jobs/${job.id}/transcript?format=docx`, { headers: bearer() }),
    400, "invalid_format", "unknown transcript format",
  );
  return job.id;
}

async function uploadJob(clip, words) {
  const bytes = await readFile(clip);
  const r = await call("/v1/uploads", {
    method: "POST",
    headers: { ...bearer(), "Content-Type": "application/json" },
    body: JSON.stringify({ filename: basename(clip), content_type: "audio/wav", size: bytes.length }),
  });
  check(r.status === 201, "POST /v1/uploads: 201", `${r.status} ${r.text}`);
  const up = r.json;
  check(/^upl_/.test(up.upload_id) && up.method === "PUT" && up.url, "an upload id, PUT and a URL", up);
  passed(`upload slot ${up.upload_id}`);

  const put = await call(up.url, { method: "PUT", headers: up.headers || {}, body: bytes });
  check(put.status >= 200 && put.status < 300, "PUT to the upload URL: 2xx", `${put.status} ${put.text}`);
  passed(`PUT ${bytes.length} bytes: ${put.status}`);

  const sub = await call("/v1/jobs", {
    method: "POST",
    headers: { ...bearer(), "Content-Type": "application/json" },
    body: JSON.stringify({ upload_id: up.upload_id, language: "en" }),
  });
  check(sub.status === 202, "POST /v1/jobs {upload_id}: 202", `${sub.status} ${sub.text}`);
  const done = await waitDone(sub.json.id);
  mentions(done.text, words, "the uploaded job's text");
  passed(`upload flow text: ${done.text}`);
}

async function openaiRoute(clip, words) {
  const r = await call("/v1/audio/transcriptions", { method: "POST", headers: bearer(), body: await form(clip) });
  check(r.status === 200 && r.json, "POST /v1/audio/transcriptions on 8000: 200 JSON", `${r.status} ${r.text}`);
  mentions(r.json.text, words, "the OpenAI route's json text");
  const jobId = r.headers.get("x-twi-asr-job-id");
  check(/^job_/.test(jobId || ""), "X-Twi-Asr-Job-Id names a job", jobId);
  const job = await call(`/v1/jobs/${jobId}`, { headers: bearer() });
  check(job.status === 200 && job.json.status === "done", "the synchronous call is recorded as a done job", job.text);
  passed(`OpenAI route (json): ${r.json.text} [${jobId}]`);

  const verbose = await call("/v1/audio/transcriptions", {
    method: "POST", headers: bearer(), body: await form(clip, { response_format: "verbose_json", model: "tiny.en" }),
  });
  check(verbose.status === 200, "verbose_json on 8000: 200", `${verbose.status} ${verbose.text}`);
  check(Array.isArray(verbose.json.segments) && verbose.json.duration > 1, "verbose_json has segments and duration", verbose.json);
  mentions(verbose.json.text, words, "verbose_json text");
  passed("OpenAI route (verbose_json)");

  const srt = await call("/v1/audio/transcriptions", {
    method: "POST", headers: bearer(), body: await form(clip, { response_format: "srt" }),
  });
  check(srt.status === 200 && / --> /.test(srt.text), "srt on 8000: 200 SRT", `${srt.status} ${srt.text}`);
  mentions(srt.text, words, "the OpenAI route's SRT");
  passed("OpenAI route (srt)");

  errorShape(
    await call("/v1/audio/transcriptions", { method: "POST", headers: bearer("twk_wrong"), body: await form(clip) }),
    401, "invalid_api_key", "OpenAI route with a wrong key",
  );
}

async function main() {
  const [clip, words, clip2, words2] = process.argv.slice(2);
  if (!key || !clip || !words || !clip2 || !words2) {
    console.error("usage: TWI_ASR_KEY=twk_... node backend_flow.mjs CLIP w1,w2 CLIP2 w1,w2");
    process.exit(2);
  }
  const split = (s) => s.toLowerCase().split(",").filter(Boolean);

  const health = await call("/health");
  check(health.status === 200 && health.json?.status === "ok", "GET /health: 200 ok", health.text);
  passed("GET /health");

  errorShape(await call("/v1/jobs", { headers: bearer("twk_wrong") }), 401, "invalid_api_key", "a wrong key");
  errorShape(await call("/v1/jobs"), 401, "unauthorized", "no key");
  errorShape(
    await call("/v1/jobs/job_doesnotexist0000000", { headers: bearer() }), 404, "job_not_found", "an unknown job",
  );

  await multipartJob(clip, split(words));
  await uploadJob(clip2, split(words2));
  await openaiRoute(clip, split(words));
  console.log("all backend checks passed");
}

main().catch((error) => {
  console.error(error instanceof CheckFailed ? `FAIL: ${error.message}` : `FAIL (unexpected): ${error.stack}`);
  process.exit(1);
});
