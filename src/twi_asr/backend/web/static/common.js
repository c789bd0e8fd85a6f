// twi-asr web app: what every page shares. The JSON API call (session cookie + X-CSRF-Token),
// errors said in words, times and durations written for people, and a status toast.
"use strict";
(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // The API's error body is {"error": {"code", "message"}}; anything else is said plainly.
  async function errorOf(response) {
    let code = "http_" + response.status;
    let message = `The server answered ${response.status} ${response.statusText || ""}`.trim();
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch (_) { /* not JSON */ }
    if (response.status === 401) message = `Your session has ended: sign in again (${message}).`;
    return new ApiError(response.status, code, message);
  }

  async function api(path, options = {}) {
    const init = { method: options.method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (init.method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (options.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    } else if (options.body !== undefined) {
      init.body = options.body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "network", "The backend cannot be reached: check your connection.");
    }
    if (!response.ok) throw await errorOf(response);
    if (response.status === 204) return null;
    const kind = response.headers.get("content-type") || "";
    return kind.includes("json") ? response.json() : response.text();
  }

  function clock(seconds, withMs) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
    const s = Math.max(0, seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
    const two = (n) => String(n).padStart(2, "0");
    let text = h ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
    if (withMs) text += "." + String(Math.floor((s % 1) * 10));
    return text;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  let toastTimer = null;
  function toast(message, kind) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.className = "toast " + (kind || "");
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 8000 : 3000);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  window.twi = { api, ApiError, clock, when, toast, el, csrf };
})();
