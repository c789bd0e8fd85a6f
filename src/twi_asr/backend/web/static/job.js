// The transcript view: the player and its segments (click to seek, the one playing highlighted,
// words too when they have times), search inside the transcript, and corrections saved per segment.
"use strict";
(function () {
  const { api, clock, toast, el } = window.twi;
  const article = document.getElementById("job");
  const jobId = article.dataset.jobId;
  const player = document.getElementById("player");
  const list = document.getElementById("segments");
  const wait = document.getElementById("segments-wait");
  const find = document.getElementById("find");
  const findCount = document.getElementById("find-count");
  let segments = [];
  let items = [];
  let playing = -1;

  function showJob(job) {
    const status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = `status status-${job.status}`;
    article.dataset.status = job.status;
    document.getElementById("job-language").textContent = job.language ? `language: ${job.language}` : "language: auto";
    const seconds = job.duration ?? job.audio_seconds;
    document.getElementById("job-duration").textContent = seconds ? `duration ${clock(seconds)}` : "";
    document.getElementById("job-edited").textContent = job.edited_segments ? `${job.edited_segments} segment(s) corrected` : "";
    const error = document.getElementById("job-error");
    const message = job.status === "failed" && job.error ? job.error.message : job.waiting ? `Waiting: ${job.waiting}` : "";
    error.textContent = message;
    error.hidden = !message;
    const remove = document.getElementById("job-delete");
    remove.textContent = job.status === "queued" || job.status === "running" ? "Cancel" : "Delete";
  }

  document.getElementById("job-delete").addEventListener("click", async (e) => {
    const cancelling = e.target.textContent === "Cancel";
    const question = cancelling ? "Cancel this job?" : "Delete this job, its audio and its transcripts? This cannot be undone.";
    if (!confirm(question)) return;
    try {
      const answer = await api(`/v1/jobs/${jobId}`, { method: "DELETE" });
      if (answer) { showJob(answer); toast("Cancelled."); }
      else location.href = "/";
    } catch (err) { toast(`Not done: ${err.message}`, "error"); }
  });

  async function watch() {
    try {
      const job = await api(`/v1/jobs/${jobId}`);
      showJob(job);
      if (job.status === "done") return load();
      if (job.status === "failed" || job.status === "cancelled") {
        wait.textContent = job.status === "failed" ? "This job failed: no transcript." : "This job was cancelled.";
        return;
      }
      wait.textContent = job.status === "running" ? "Transcribing…" : "Queued…";
    } catch (err) {
      wait.textContent = `Cannot read the job: ${err.message}`;
    }
    setTimeout(watch, 1500);
  }

  function textNodes(seg) {
    if (seg.words && seg.words.length) {
      const nodes = [];
      seg.words.forEach((w, i) => {
        const word = w.word.trim();
        if (i && !/^[.,;:!?%)\]}»”’]/.test(word)) nodes.push(document.createTextNode(" "));
        nodes.push(el("span", { class: "word", "data-start": w.start, "data-end": w.end, "data-i": i, text: word }));
      });
      return nodes;
    }
    return [document.createTextNode(seg.text)];
  }

  function segmentItem(seg) {
    const time = el("button", {
      type: "button", class: "seg-time", "aria-label": `Play from ${clock(seg.start, true)}`,
      text: `${clock(seg.start, true)} – ${clock(seg.end, true)}`,
    });
    const text = el("span", { class: "seg-text", lang: "" }, ...textNodes(seg));
    const edit = el("button", { type: "button", class: "seg-edit", "aria-label": `Edit segment ${seg.index + 1}`, text: "Edit" });
    const original = seg.edited ? el("p", { class: "original small muted", text: `Model said: ${seg.original_text}` }) : null;
    const item = el("li", { class: "segment" + (seg.edited ? " edited" : ""), "data-index": seg.index, "data-start": seg.start, "data-end": seg.end },
      time, text, edit, original);
    time.addEventListener("click", () => seek(seg));
    text.addEventListener("click", (e) => {
      const word = e.target.closest(".word");
      seek(seg, word ? Number(word.dataset.start) : seg.start);
    });
    edit.addEventListener("click", () => startEdit(seg, item));
    return item;
  }

  function seek(seg, at) {
    player.currentTime = at ?? seg.start;
    const started = player.play();
    if (started && started.catch) started.catch(() => { /* the browser may refuse: the seek still holds */ });
    highlight();
  }

  function startEdit(seg, item) {
    if (item.querySelector("form")) return;
    const area = el("textarea", { id: `edit-${seg.index}`, rows: "3", maxlength: "5000" });
    area.value = seg.text;
    const save = el("button", { type: "submit", class: "primary", text: "Save" });
    const cancel = el("button", { type: "button", text: "Cancel" });
    const undo = seg.edited ? el("button", { type: "button", text: "Back to the model's text" }) : null;
    const form = el("form", { class: "seg-form" },
      el("label", { for: `edit-${seg.index}`, class: "visually-hidden", text: `Text of segment ${seg.index + 1}` }),
      area, el("div", { class: "row" }, save, cancel, undo));
    item.append(form);
    area.focus();
    cancel.addEventListener("click", () => form.remove());
    const store = async (value) => {
      save.disabled = true;
      try {
        const updated = await api(`/v1/jobs/${jobId}/segments/${seg.index}`, { method: "PATCH", json: { text: value } });
        segments[seg.index] = updated;
        const fresh = segmentItem(updated);
        items[seg.index] = fresh;
        item.replaceWith(fresh);
        toast(value === null ? "The model's text is back." : "Saved. Downloads now use your correction.");
        const job = await api(`/v1/jobs/${jobId}`);
        showJob(job);
        applySearch();
      } catch (err) {
        toast(`Not saved: ${err.message}`, "error");
        save.disabled = false;
      }
    };
    form.addEventListener("submit", (e) => { e.preventDefault(); store(area.value); });
    area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") form.remove();
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); store(area.value); }
    });
    if (undo) undo.addEventListener("click", () => store(null));
  }

  async function load() {
    try {
      const answer = await api(`/v1/jobs/${jobId}/segments`);
      segments = answer.data;
      items = segments.map(segmentItem);
      list.replaceChildren(...items);
      wait.textContent = segments.length ? "" : "No speech was found in this audio.";
      wait.hidden = segments.length > 0;
      applySearch();
    } catch (err) {
      wait.textContent = `Cannot load the transcript: ${err.message}`;
    }
  }

  function highlight() {
    const t = player.currentTime;
    let now = -1;
    for (let i = 0; i < segments.length; i++) {
      if (t >= segments[i].start && t < segments[i].end + 0.05) { now = i; break; }
    }
    if (now !== playing) {
      if (items[playing]) { items[playing].classList.remove("playing"); items[playing].removeAttribute("aria-current"); }
      if (items[now]) {
        items[now].classList.add("playing");
        items[now].setAttribute("aria-current", "true");
        if (!player.paused) items[now].scrollIntoView({ block: "nearest", behavior: "smooth" });
      }
      playing = now;
    }
    for (const w of list.querySelectorAll(".word.now")) w.classList.remove("now");
    if (items[now]) {
      for (const w of items[now].querySelectorAll(".word")) {
        if (t >= Number(w.dataset.start) && t < Number(w.dataset.end)) w.classList.add("now");
      }
    }
  }
  player.addEventListener("timeupdate", highlight);
  player.addEventListener("seeked", highlight);
  player.addEventListener("error", () => toast("The audio cannot be played here (its file may be gone).", "error"));

  function applySearch() {
    const query = find.value.trim().toLocaleLowerCase();
    let hits = 0;
    items.forEach((item, i) => {
      const match = !!query && segments[i].text.toLocaleLowerCase().includes(query);
      item.classList.toggle("match", match);
      if (match) hits++;
    });
    findCount.textContent = query ? `${hits} segment(s) match` : "";
    const first = list.querySelector(".segment.match");
    if (first) first.scrollIntoView({ block: "nearest" });
  }
  find.addEventListener("input", applySearch);

  watch();
})();
