// The account page: API keys (made and shown once, copied, revoked) and the password change.
"use strict";
(function () {
  const { api, when, toast, el } = window.twi;
  const tbody = document.querySelector("#keys tbody");

  async function loadKeys() {
    try {
      const answer = await api("/v1/me/keys");
      tbody.replaceChildren(...answer.data.map((k) => {
        const state = el("td");
        if (k.revoked_at) state.append(el("span", { class: "muted", text: `revoked ${when(k.revoked_at)}` }));
        else {
          const revoke = el("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.name}`, text: "Revoke" });
          revoke.addEventListener("click", async () => {
            if (!confirm(`Revoke the key "${k.name}"? Programs using it stop working at once.`)) return;
            try { await api(`/v1/me/keys/${k.id}`, { method: "DELETE" }); toast("Key revoked."); loadKeys(); }
            catch (err) { toast(`Not revoked: ${err.message}`, "error"); }
          });
          state.append(revoke);
        }
        return el("tr", { "data-key-id": k.id, "data-revoked": k.revoked_at ? "yes" : "no" },
          el("td", { text: k.name }), el("td", {}, el("code", { text: `${k.prefix}…` })),
          el("td", { text: when(k.created_at) }), el("td", { text: k.last_used_at ? when(k.last_used_at) : "never" }), state);
      }));
    } catch (err) { toast(`Cannot list your keys: ${err.message}`, "error"); }
  }

  document.getElementById("new-key").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("key-name");
    try {
      const made = await api("/v1/me/keys", { method: "POST", json: { name: name.value.trim() } });
      document.getElementById("made-key").hidden = false;
      const value = document.getElementById("made-key-value");
      value.value = made.api_key;
      value.select();
      name.value = "";
      loadKeys();
    } catch (err) { toast(`No key made: ${err.message}`, "error"); }
  });
  document.getElementById("copy-key").addEventListener("click", async () => {
    const value = document.getElementById("made-key-value");
    try { await navigator.clipboard.writeText(value.value); toast("Copied."); }
    catch (_) { value.select(); document.execCommand("copy"); toast("Copied."); }
  });

  document.getElementById("password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = document.getElementById("password-status");
    const current = document.getElementById("current-password").value;
    const fresh = document.getElementById("new-password").value;
    if (fresh !== document.getElementById("new-password-2").value) {
      out.className = "error"; out.textContent = "The two new passwords differ."; return;
    }
    try {
      const done = await api("/v1/me/password", { method: "POST", json: { current_password: current, new_password: fresh } });
      out.className = "ok";
      out.textContent = `Password changed. ${done.other_sessions_ended} other session(s) signed out.`;
      e.target.reset();
    } catch (err) { out.className = "error"; out.textContent = err.message; }
  });

  loadKeys();
})();
