// The inference server (8001) straight from Node 20 with built-ins only (fetch, FormData, Blob, fs).
//
//   TWI_ASR_URL=http://127.0.0.1:8001 node tests/js/asr_direct.mjs CLIP.wav word,word,word
//
// Checks: GET /health, GET /ready, GET /v1/models (the served card), POST /v1/audio/transcriptions
// as json, verbose_json and srt (the transcript contains the words, lowercase, punctuation ignored),
// and the error body {"error": {"code", "message", ...}} for an upload that is not audio.
// Exit 0 when every check passed; 1 with a "FAIL: ..." line on the first that did not.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

const base = (process.env.TWI_ASR_URL || "http://127.0.0.1:8001").replace(/\/+$/, "");
const headers = process.env.TWI_ASR_API_KEY ? { Authorization: `Bearer ${process.env.TWI_ASR_API_KEY}` } : {};

class CheckFailed extends Error {}

function check(ok, what, seen) {
  if (!ok) {
    const text = typeof seen === "string" ? seen : JSON.stringify(seen);
    throw new CheckFailed(seen === undefined ? what : `${what}; got: ${(text || "").slice(0, 600)}`);
  }
}

const passed = (what) => console.log(`ok - ${what}`);
const wordsOf = (text) => new Set((text || "").toLowerCase().match(/[\p{L}\p{N}']+/gu) || []);

function mentions(text, words, where) {
  const seen = wordsOf(text);
  const missing = words.filter((w) => !seen.has(w));
  check(missing.length === 0, `${where} lacks ${JSON.stringify(missing)}`, text);
}

async function call(path, init = {}) {
  let response;
  try {
    response = await fetch(base + path, { ...init, headers: { ...headers, ...(init.headers || {}) } });
  } catch (error) {
    throw new CheckFailed(`${init.method || "GET"} ${base + path}: no answer (${error.cause?.code || error.message})`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // srt or text: json stays null
  }
  return { status: response.status, headers: response.headers, text, json };
}

function transcribe(bytes, name, fields = {}) {
  const body = new FormData();
  body.append("file", new Blob([bytes]), name);
  for (const [k, v] of Object.entries(fields)) body.append(k, v);
  return call("/v1/audio/transcriptions", { method: "POST", body });
}

async function main() {
  const [clip, wordList] = process.argv.slice(2);
  if (!clip || !wordList) {
    console.error("usage: TWI_ASR_URL=http://127.0.0.1:8001 node asr_direct.mjs CLIP.wav w1,w2");
    process.exit(2);
  }
  const words = wordList.toLowerCase().split(",").filter(Boolean);
  const bytes = await readFile(clip);

  const health = await call("/health");
  check(health.status === 200 && health.json?.status === "ok", "GET /health: 200 ok", health.text);
  passed("GET /health");
  const ready = await call("/ready");
  check(ready.status === 200, "GET /ready: 200", `${ready.status} ${ready.text}`);
  passed("GET /ready");

  const models = await call("/v1/models");
  check(models.status === 200 && models.json?.object === "list", "GET /v1/models: a list", models.text);
  const card = models.json.data[0];
  check(card && typeof card.id === "string" && card.object === "model", "a model card with an id", models.json);
  check(typeof card.engine === "string", "the card names its engine", card);
  passed(`GET /v1/models: ${card.id} (${card.engine})`);

  const json = await transcribe(bytes, basename(clip));
  check(json.status === 200 && json.json, "json: 200", `${json.status} ${json.text}`);
  mentions(json.json.text, words, "json text");
  passed(`json: ${json.json.text}`);

  const verbose = await transcribe(bytes, basename(clip), { response_format: "verbose_json", language: "en" });
  check(verbose.status === 200 && verbose.json, "verbose_json: 200", `${verbose.status} ${verbose.text}`);
  const v = verbose.json;
  mentions(v.text, words, "verbose_json text");
  check(typeof v.duration === "number" && v.duration > 1, "verbose_json has the duration", v);
  check(typeof v.language === "string" && v.language.length > 0, "verbose_json has the language", v);
  check(Array.isArray(v.segments) && v.segments.length > 0, "verbose_json has segments", v);
  const seg = v.segments[0];
  check(typeof seg.start === "number" && seg.end > seg.start && typeof seg.text === "string", "a segment has start, end, text", seg);
  passed(`verbose_json: ${v.segments.length} segment(s), ${v.duration.toFixed(2)} s, ${v.language}`);

  const srt = await transcribe(bytes, basename(clip), { response_format: "srt" });
  check(srt.status === 200, "srt: 200", `${srt.status} ${srt.text}`);
  check(/^1\r?\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}/.test(srt.text), "SRT starts with cue 1 and a time line", srt.text);
  mentions(srt.text, words, "the SRT");
  passed("srt");

  const bad = await transcribe(new TextEncoder().encode("plain text, not audio\n".repeat(40)), "notes.wav");
  check(bad.status >= 400 && bad.status < 500, "not audio: a 4xx", `${bad.status} ${bad.text}`);
  const e = bad.json && bad.json.error;
  check(e && typeof e.code === "string" && typeof e.message === "string", 'not audio: {"error": {"code", "message"}}', bad.text);
  passed(`not audio: ${bad.status} ${e.code}`);
  console.log("all 8001 checks passed");
}

main().catch((error) => {
  console.error(error instanceof CheckFailed ? `FAIL: ${error.message}` : `FAIL (unexpected): ${error.stack}`);
  process.exit(1);
});
