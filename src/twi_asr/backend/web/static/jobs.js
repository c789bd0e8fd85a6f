// The jobs page: new jobs (files, drag and drop, recording with a level meter) and the live list.
"use strict";
(function () {
  const { api, clock, when, toast, el, csrf } = window.twi;
  const PAGE_SIZE = 20;
  const FORMATS_KEY = "twi-asr.formats";

  // ------------------------------------------------------------------ options
  const form = document.getElementById("new-job");
  const DIRECT_BYTES = Number(form.dataset.directBytes); // bigger files go straight to storage (presigned PUT)
  const MAX_BYTES = Number(form.dataset.maxBytes);
  const formatBoxes = [...form.querySelectorAll('input[name="formats"]')];
  try {
    const saved = JSON.parse(localStorage.getItem(FORMATS_KEY) || "null");
    if (Array.isArray(saved)) formatBoxes.forEach((b) => { b.checked = saved.includes(b.value); });
  } catch (_) { /* storage off */ }
  formatBoxes.forEach((b) => b.addEventListener("change", () => {
    try { localStorage.setItem(FORMATS_KEY, JSON.stringify(chosenFormats())); } catch (_) { /* off */ }
    render();
  }));
  function chosenFormats() { return formatBoxes.filter((b) => b.checked).map((b) => b.value); }
  function options() {
    return {
      language: document.getElementById("language").value,
      task: document.getElementById("task").value,
      word_timestamps: document.getElementById("word_timestamps").checked ? "true" : "false",
    };
  }

  // ------------------------------------------------------------------ uploads
  const uploadsList = document.getElementById("uploads");
  const queue = [];
  let busy = false;

  function send(method, url, body, headers, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [k, v] of Object.entries(headers || {})) xhr.setRequestHeader(k, v);
      xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) progress(e.loaded / e.total); });
      xhr.addEventListener("load", () => {
        let body = null;
        try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (_) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else {
          const message = body && body.error ? body.error.message : `the server answered ${xhr.status}`;
          reject(new Error(xhr.status === 401 ? "Your session has ended: sign in again." : message));
        }
      });
      xhr.addEventListener("error", () => reject(new Error("the upload was cut off: check your connection")));
      xhr.send(body);
    });
  }

  async function upload(file, item) {
    const bar = item.querySelector("progress");
    const state = item.querySelector(".state");
    const progress = (f) => { bar.value = f; state.textContent = `${Math.round(f * 100)} %`; };
    const opts = options();
    let job;
    if (file.size > MAX_BYTES) throw new Error(`it has ${(file.size / 1048576).toFixed(1)} MB, over the ${(MAX_BYTES / 1048576).toFixed(0)} MB limit`);
    if (file.size > DIRECT_BYTES) {
      state.textContent = "asking for an upload URL…";
      const slot = await api("/v1/uploads", {
        method: "POST",
        json: { filename: file.name, content_type: file.type || "application/octet-stream", size: file.size },
      });
      await send(slot.method, slot.url, file, slot.headers, progress);
      const fields = { upload_id: slot.upload_id, language: opts.language, task: opts.task,
                       word_timestamps: opts.word_timestamps === "true" };
      job = await api("/v1/jobs", { method: "POST", json: fields });
    } else {
      const data = new FormData();
      data.append("file", file, file.name);
      for (const [k, v] of Object.entries(opts)) data.append(k, v);
      job = await send("POST", "/v1/jobs", data, { "X-CSRF-Token": csrf, Accept: "application/json" }, progress);
    }
    bar.value = 1;
    item.dataset.via = file.size > DIRECT_BYTES ? "storage" : "form";
    state.textContent = "";
    state.append("sent: ", el("a", { href: `/jobs/${job.id}`, text: "open the job" }));
    item.classList.add("sent");
  }

  async function pump() {
    if (busy) return;
    busy = true;
    while (queue.length) {
      const { file, item } = queue.shift();
      try {
        await upload(file, item);
        refresh();
      } catch (err) {
        item.classList.add("failed");
        item.querySelector(".state").textContent = `not sent: ${err.message}`;
        toast(`${file.name}: ${err.message}`, "error");
      }
    }
    busy = false;
  }

  function addFiles(files) {
    for (const file of files) {
      const item = el("li", { class: "upload" },
        el("span", { class: "name", text: file.name }),
        el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` }),
        el("span", { class: "state", text: "waiting" }));
      uploadsList.append(item);
      queue.push({ file, item });
    }
    pump();
  }

  const input = document.getElementById("files");
  input.addEventListener("change", () => { addFiles([...input.files]); input.value = ""; });
  const zone = document.getElementById("drop-zone");
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "dragend"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles([...e.dataTransfer.files]);
  });

  // ------------------------------------------------------------------ recording
  const recordBtn = document.getElementById("record");
  const timer = document.getElementById("record-timer");
  const meter = document.getElementById("level");
  const recordStatus = document.getElementById("record-status");
  let recorder = null;

  async function startRecording() {
    if (!navigator.mediaDevices || typeof MediaRecorder === "undefined") {
      recordStatus.textContent = "This browser cannot record here (it needs MediaRecorder, and https or localhost).";
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      recordStatus.textContent = `No microphone: ${err && err.message ? err.message : err}`;
      return;
    }
    const mime = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg"].find((m) => MediaRecorder.isTypeSupported(m)) || "";
    const chunks = [];
    recorder = mime ? new MediaRecorder(stream, { mimeType: mime }) : new MediaRecorder(stream);
    const audio = new AudioContext();
    const analyser = audio.createAnalyser();
    analyser.fftSize = 1024;
    audio.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const started = performance.now();
    const tick = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      meter.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      timer.textContent = clock((performance.now() - started) / 1000);
    }, 100);
    recorder.addEventListener("dataavailable", (e) => { if (e.data && e.data.size) chunks.push(e.data); });
    recorder.addEventListener("stop", () => {
      clearInterval(tick);
      stream.getTracks().forEach((t) => t.stop());
      audio.close();
      meter.value = 0;
      recorder = null;
      recordBtn.textContent = "Record";
      recordBtn.setAttribute("aria-pressed", "false");
      recordBtn.classList.remove("recording");
      const type = (mime || "audio/webm").split(";")[0];
      const blob = new Blob(chunks, { type });
      if (!blob.size) { recordStatus.textContent = "The recording is empty: check the microphone."; return; }
      const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
      recordStatus.textContent = `Recorded ${timer.textContent}: sending.`;
      addFiles([new File([blob], `recording-${stamp}.${type.endsWith("ogg") ? "ogg" : "webm"}`, { type })]);
    });
    recorder.start(250);
    recordBtn.textContent = "Stop";
    recordBtn.setAttribute("aria-pressed", "true");
    recordBtn.classList.add("recording");
    recordStatus.textContent = "Recording… press Stop when done.";
  }
  recordBtn.addEventListener("click", () => { if (recorder) recorder.stop(); else startRecording(); });

  // ------------------------------------------------------------------ the live list
  const tbody = document.querySelector("#jobs tbody");
  const empty = document.getElementById("jobs-empty");
  const total = document.getElementById("jobs-total");
  const live = document.getElementById("live");
  const search = document.getElementById("search");
  const statusFilter = document.getElementById("status");
  const newer = document.getElementById("newer");
  const older = document.getElementById("older");
  const pageNo = document.getElementById("page-no");
  let cursors = [null]; // cursors[i]: the cursor of page i
  let page = 0;
  let rows = [];
  let next = null;
  let timerId = null;

  function cell(job) {
    if (job.status === "done") {
      const links = chosenFormats().map((f) =>
        el("a", { href: `/v1/jobs/${job.id}/transcript?format=${f}`, download: "", class: "download", text: f }));
      return links.length ? links : [el("a", { href: `/jobs/${job.id}`, text: "open" })];
    }
    if (job.status === "failed" && job.error) return [el("span", { class: "error", text: job.error.message })];
    if (job.waiting) return [el("span", { class: "muted", text: `waiting: ${job.waiting}` })];
    return [];
  }

  function render() {
    tbody.replaceChildren(...rows.map((job) => {
      const links = el("td", { class: "links" });
      cell(job).forEach((n) => links.append(n, " "));
      links.dataset.label = "";
      return el("tr", { "data-job-id": job.id, "data-status": job.status },
        el("td", { class: "filename" }, el("a", { href: `/jobs/${job.id}`, text: job.filename })),
        el("td", { class: "state" }, el("span", { class: `status status-${job.status}`, text: job.status })),
        el("td", { class: "duration", "data-label": "Duration", text: clock(job.duration ?? job.audio_seconds) || "–" }),
        el("td", { class: "language", "data-label": "Language", text: job.language || "auto" }),
        el("td", { class: "created", "data-label": "Created" }, el("time", { datetime: job.created_at, text: when(job.created_at) })),
        links);
    }));
    empty.hidden = rows.length > 0;
    newer.disabled = page === 0;
    older.disabled = !next;
    pageNo.textContent = `Page ${page + 1}`;
  }

  async function refresh() {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE), total: "true" });
    if (statusFilter.value) query.set("status", statusFilter.value);
    if (search.value.trim()) query.set("q", search.value.trim());
    if (cursors[page]) query.set("cursor", cursors[page]);
    try {
      const answer = await api(`/v1/jobs?${query}`);
      rows = answer.data;
      next = answer.next_cursor;
      cursors[page + 1] = next;
      total.textContent = `(${answer.total})`;
      live.textContent = `updated ${new Date().toLocaleTimeString()}`;
      render();
    } catch (err) {
      live.textContent = `not updated: ${err.message}`;
      if (err.status === 401) location.href = "/login?next=/";
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timerId);
    const active = rows.some((j) => j.status === "queued" || j.status === "running") || busy;
    timerId = setTimeout(() => { if (!document.hidden) refresh(); else schedule(); }, active ? 1500 : 5000);
  }

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { cursors = [null]; page = 0; refresh(); }, 300);
  });
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  statusFilter.addEventListener("change", () => { cursors = [null]; page = 0; refresh(); });
  newer.addEventListener("click", () => { if (page > 0) { page -= 1; refresh(); } });
  older.addEventListener("click", () => { if (next) { page += 1; refresh(); } });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
