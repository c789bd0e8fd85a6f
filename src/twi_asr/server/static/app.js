// twi-asr page: pick or record audio, stream the transcript from POST /v1/audio/transcriptions
// (stream=true, server-sent events read with fetch), then show segments and build SRT/VTT here.
// Plain ES2020, no framework. Server text only ever goes through textContent.
"use strict";

(() => {
  const KEY_STORAGE = "twi-asr.api-key";
  const API = "/v1/audio/transcriptions";

  // ------------------------------------------------------------------ pure helpers (also tested)
  /** Seconds -> "mm:ss.s" (or "h:mm:ss.s" past an hour) for the table. */
  function formatClock(seconds) {
    const tenths = Math.max(0, Math.round(Number(seconds || 0) * 10));
    const h = Math.floor(tenths / 36000);
    const m = Math.floor((tenths % 36000) / 600);
    const s = Math.floor((tenths % 600) / 10);
    const t = tenths % 10;
    const mmss = `${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}.${t}`;
    return h > 0 ? `${h}:${mmss}` : mmss;
  }

  /** Seconds -> "HH:MM:SS,mmm" (SRT, sep ",") or "HH:MM:SS.mmm" (VTT, sep "."). */
  function formatStamp(seconds, sep) {
    const ms = Math.max(0, Math.round(Number(seconds || 0) * 1000));
    const h = Math.floor(ms / 3600000);
    const m = Math.floor((ms % 3600000) / 60000);
    const s = Math.floor((ms % 60000) / 1000);
    const pad = (n, w) => String(n).padStart(w, "0");
    return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${sep}${pad(ms % 1000, 3)}`;
  }

  /** One line of cue text: no blank lines (they end a cue), no "-->" (it starts one). */
  function cueText(text) {
    return String(text || "").replace(/\s*[\r\n]+\s*/g, " ").replace(/-->/g, "->").trim();
  }

  function cues(segments) {
    return segments.map((s) => ({ start: s.start, end: Math.max(s.end, s.start), text: cueText(s.text) }))
      .filter((c) => c.text !== "");
  }

  function toSrt(segments) {
    return cues(segments).map((c, i) =>
      `${i + 1}\n${formatStamp(c.start, ",")} --> ${formatStamp(c.end, ",")}\n${c.text}\n`).join("\n");
  }

  function toVtt(segments) {
    const body = cues(segments).map((c) =>
      `${formatStamp(c.start, ".")} --> ${formatStamp(c.end, ".")}\n${c.text}\n`).join("\n");
    return body ? `WEBVTT\n\n${body}` : "WEBVTT\n";
  }

  /**
   * Incremental server-sent-events parser: feed() decoded text in any chunks, get back the
   * JSON of each complete event's data lines. Events end with a blank line (LF or CRLF).
   */
  function createEventParser() {
    let buffer = "";
    const parseBlock = (block) => {
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      if (data.length === 0) return null; // comments (":"), id:, retry: only
      const payload = data.join("\n");
      if (payload === "[DONE]") return null;
      return JSON.parse(payload);
    };
    const drain = (final) => {
      const events = [];
      buffer = buffer.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event !== null) events.push(event);
      }
      if (final && buffer.trim() !== "") {
        const event = parseBlock(buffer);
        buffer = "";
        if (event !== null) events.push(event);
      }
      return events;
    };
    return {
      feed(text) { buffer += text; return drain(false); },
      end() { return drain(true); },
    };
  }

  /** Join a delta to the text so far: a space between words unless either side has one. */
  function joinDelta(sofar, delta) {
    if (!sofar || !delta || /\s$/.test(sofar) || /^\s/.test(delta)) return sofar + delta;
    return `${sofar} ${delta}`;
  }

  window.TwiAsrPage = { formatClock, formatStamp, toSrt, toVtt, createEventParser, joinDelta };

  // ------------------------------------------------------------------ the page
  const $ = (id) => document.getElementById(id);
  const form = $("transcribe-form");
  const fileInput = $("file-input");
  const dropZone = $("drop-zone");
  const fileName = $("file-name");
  const preview = $("preview");
  const recordBtn = $("record-btn");
  const timer = $("record-timer");
  const language = $("language");
  const apiKey = $("api-key");
  const transcribeBtn = $("transcribe-btn");
  const cancelBtn = $("cancel-btn");
  const statusLine = $("status");
  const live = $("live-text");
  const results = $("results");
  const tbody = document.querySelector("#segments tbody");
  const srtLink = $("download-srt");
  const vttLink = $("download-vtt");

  let audio = null; // {blob, name}
  let recorder = null;
  let recordTimer = null;
  let controller = null;
  const objectUrls = { preview: null, srt: null, vtt: null };

  function setUrl(slot, blob) {
    if (objectUrls[slot]) URL.revokeObjectURL(objectUrls[slot]);
    objectUrls[slot] = blob ? URL.createObjectURL(blob) : null;
    return objectUrls[slot];
  }

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.dataset.kind = kind || "info";
  }

  function setAudio(blob, name) {
    audio = { blob, name };
    fileName.textContent = `${name} (${(blob.size / 1024).toFixed(0)} KB)`;
    preview.src = setUrl("preview", blob);
    preview.hidden = false;
    transcribeBtn.disabled = recorder !== null || controller !== null;
    setStatus("Ready: press Transcribe.", "info");
  }

  // -------------------------------------------------------------- file input and drop zone
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) setAudio(file, file.name);
  });
  for (const type of ["dragenter", "dragover"]) {
    dropZone.addEventListener(type, (e) => {
      e.preventDefault();
      dropZone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "dragend"]) dropZone.addEventListener(type, () => dropZone.classList.remove("over"));
  dropZone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropZone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (file) setAudio(file, file.name);
  });

  // -------------------------------------------------------------- recording
  function pickMime() {
    if (typeof MediaRecorder === "undefined" || !MediaRecorder.isTypeSupported) return "";
    for (const mime of ["audio/webm;codecs=opus", "audio/webm"]) {
      if (MediaRecorder.isTypeSupported(mime)) return mime;
    }
    return "";
  }

  async function startRecording() {
    if (!navigator.mediaDevices || typeof MediaRecorder === "undefined") {
      setStatus("This browser cannot record here (it needs MediaRecorder, and https or localhost).", "error");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      setStatus(`No microphone: ${err && err.message ? err.message : err}`, "error");
      return;
    }
    const mime = pickMime();
    const chunks = [];
    recorder = mime ? new MediaRecorder(stream, { mimeType: mime }) : new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (e) => { if (e.data && e.data.size) chunks.push(e.data); });
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((t) => t.stop());
      clearInterval(recordTimer);
      recorder = null;
      recordBtn.textContent = "Record";
      recordBtn.setAttribute("aria-pressed", "false");
      recordBtn.classList.remove("recording");
      const blob = new Blob(chunks, { type: "audio/webm" });
      if (blob.size === 0) {
        setStatus("The recording is empty: check the microphone and try again.", "error");
        return;
      }
      setAudio(blob, "recording.webm");
    });
    const started = performance.now();
    timer.textContent = formatClock(0);
    recordTimer = setInterval(() => { timer.textContent = formatClock((performance.now() - started) / 1000); }, 100);
    recorder.start(250);
    recordBtn.textContent = "Stop";
    recordBtn.setAttribute("aria-pressed", "true");
    recordBtn.classList.add("recording");
    transcribeBtn.disabled = true;
    setStatus("Recording… press Stop when done.", "busy");
  }

  recordBtn.addEventListener("click", () => {
    if (recorder) recorder.stop();
    else startRecording();
  });

  // -------------------------------------------------------------- API key (this tab only)
  try { apiKey.value = sessionStorage.getItem(KEY_STORAGE) || ""; } catch (_) { /* storage off */ }
  apiKey.addEventListener("input", () => {
    try {
      if (apiKey.value) sessionStorage.setItem(KEY_STORAGE, apiKey.value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) { /* storage off */ }
  });

  // -------------------------------------------------------------- transcript display
  let text = "";
  let segments = [];
  let deltas = 0;

  function setLiveState(state) {
    live.dataset.state = state;
    live.setAttribute("aria-busy", state === "streaming" ? "true" : "false");
  }

  function resetOutput() {
    text = "";
    segments = [];
    deltas = 0;
    live.textContent = "";
    live.dataset.deltas = "0";
    tbody.replaceChildren();
    results.hidden = true;
    setUrl("srt", null);
    setUrl("vtt", null);
  }

  function addRows(list) {
    for (const seg of list) {
      const row = document.createElement("tr");
      for (const value of [formatClock(seg.start), formatClock(seg.end), String(seg.text || "").trim()]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.appendChild(cell);
      }
      tbody.appendChild(row);
    }
    if (tbody.rows.length) results.hidden = false;
  }

  function normaliseSegments(list) {
    return (Array.isArray(list) ? list : [])
      .map((s) => ({ start: Number(s.start) || 0, end: Number(s.end) || 0, text: String(s.text == null ? "" : s.text) }))
      .filter((s) => s.text.trim() !== "");
  }

  function onDelta(event) {
    const piece = text ? String(event.delta || "") : String(event.delta || "").trimStart();
    const joined = joinDelta(text, piece);
    const span = document.createElement("span");
    span.className = "delta";
    span.textContent = joined.slice(text.length);
    live.appendChild(span);
    text = joined;
    deltas += 1;
    live.dataset.deltas = String(deltas);
    const segs = normaliseSegments(event.segments);
    segments.push(...segs);
    addRows(segs);
    setStatus(`Transcribing… ${deltas} piece${deltas === 1 ? "" : "s"} done` +
      (segs.length ? `, up to ${formatClock(segs[segs.length - 1].end)}` : "") + ".", "busy");
  }

  function finish(done) {
    const finalText = String(done.text == null ? text : done.text).trim();
    if (finalText !== text.trim()) live.textContent = finalText; // the server's stitched text wins
    text = finalText;
    const all = normaliseSegments(done.segments);
    if (all.length) segments = all;
    if (!segments.length && text) {
      // A server without segments (plain JSON): one cue over the whole clip, as long as the player says.
      const end = Number(done.duration) || (Number.isFinite(preview.duration) ? preview.duration : 0);
      segments = [{ start: 0, end, text }];
    }
    tbody.replaceChildren();
    addRows(segments);
    const base = (audio ? audio.name : "transcript").replace(/\.[^.]+$/, "") || "transcript";
    srtLink.href = setUrl("srt", new Blob([toSrt(segments)], { type: "application/x-subrip;charset=utf-8" }));
    vttLink.href = setUrl("vtt", new Blob([toVtt(segments)], { type: "text/vtt;charset=utf-8" }));
    srtLink.download = `${base}.srt`;
    vttLink.download = `${base}.vtt`;
    results.hidden = segments.length === 0;
    setLiveState("done");
    const dur = Number(done.duration) || (done.usage && Number(done.usage.seconds)) || 0;
    const lang = done.language ? `, language ${done.language}` : "";
    setStatus(`Done: ${segments.length} segment${segments.length === 1 ? "" : "s"}` +
      (dur ? ` from ${formatClock(dur)} of audio` : "") + `${lang}.`, "ok");
  }

  function fail(message) {
    setLiveState("error");
    setStatus(message, "error");
  }

  async function errorMessage(response) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
      else if (body && typeof body.detail === "string") message = body.detail;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) {
      return `The server needs an API key: enter it in the API key field. (${message})`;
    }
    return `The server said: ${message}`;
  }

  async function readStream(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    const parser = createEventParser();
    const handle = (events) => {
      for (const event of events) {
        if (event.type === "transcript.text.delta") onDelta(event);
        else if (event.type === "transcript.text.done") { finish(event); return true; }
        else if (event.type === "error") {
          const err = event.error || {};
          fail(`Transcription failed: ${err.message || err.code || "unknown error"}`);
          return true;
        }
      }
      return false;
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (handle(parser.feed(decoder.decode(value, { stream: true })))) { reader.cancel().catch(() => {}); return; }
    }
    if (handle(parser.feed(decoder.decode()).concat(parser.end()))) return;
    fail("The connection ended before the transcript was complete; try again.");
  }

  async function transcribe() {
    if (!audio || controller) return;
    resetOutput();
    const body = new FormData();
    body.append("file", audio.blob, audio.name);
    body.append("model", "whisper-1");
    if (language.value) body.append("language", language.value);
    body.append("response_format", "json");
    body.append("stream", "true");
    body.append("timestamp_granularities[]", "segment");
    const headers = { Accept: "text/event-stream, application/json" };
    const key = apiKey.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;

    controller = new AbortController();
    transcribeBtn.disabled = true;
    recordBtn.disabled = true;
    cancelBtn.hidden = false;
    setLiveState("streaming");
    setStatus(`Uploading ${audio.name}…`, "busy");
    try {
      const response = await fetch(API, { method: "POST", body, headers, signal: controller.signal });
      if (!response.ok) {
        fail(await errorMessage(response));
      } else if ((response.headers.get("content-type") || "").includes("text/event-stream")) {
        setStatus("Transcribing…", "busy");
        await readStream(response);
      } else {
        finish(await response.json()); // a server without streaming answers the whole JSON at once
      }
    } catch (err) {
      if (err && err.name === "AbortError") fail("Cancelled.");
      else fail(`Cannot reach the server: ${err && err.message ? err.message : err}`);
    } finally {
      controller = null;
      cancelBtn.hidden = true;
      recordBtn.disabled = false;
      transcribeBtn.disabled = !audio;
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    transcribe();
  });
  cancelBtn.addEventListener("click", () => { if (controller) controller.abort(); });
})();
