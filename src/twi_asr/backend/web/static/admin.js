// The admin page: every user with their quotas (editable), today's use and audio minutes per day.
"use strict";
(function () {
  const { api, toast, el } = window.twi;
  const table = document.getElementById("users");

  function quotaInput(user, field, label) {
    const id = `${field}-${user.name}`;
    const input = el("input", { id, type: "number", min: "0", step: field === "max_concurrent_jobs" ? "1" : "any",
                                 value: user[field] ?? "", placeholder: "default", class: "quota" });
    input.addEventListener("change", async () => {
      const raw = input.value.trim();
      const value = raw === "" ? null : Number(raw);
      try {
        await api(`/v1/users/${encodeURIComponent(user.name)}`, { method: "PATCH", json: { [field]: value } });
        toast(`${user.name}: ${label} saved.`);
      } catch (err) { toast(`${user.name}: ${err.message}`, "error"); }
    });
    return [el("label", { for: id, class: "visually-hidden", text: `${label} of ${user.name}` }), input];
  }

  async function load() {
    try {
      const [usage, people] = await Promise.all([api("/v1/admin/usage?days=7"), api("/v1/users")]);
      const byName = Object.fromEntries(people.data.map((u) => [u.name, u]));
      const head = table.querySelector("thead tr");
      head.replaceChildren(...["User", "Jobs at once", "Minutes a day", "Now", ...usage.days.map((d) => d.slice(5)), ""]
        .map((t) => el("th", { scope: "col", text: t })));
      table.querySelector("tbody").replaceChildren(...usage.data.map((row) => {
        const user = byName[row.name] || { name: row.name };
        const toggle = el("button", { type: "button", text: user.disabled ? "Enable" : "Disable", class: user.disabled ? "" : "danger" });
        toggle.addEventListener("click", async () => {
          try { await api(`/v1/users/${encodeURIComponent(user.name)}`, { method: "PATCH", json: { disabled: !user.disabled } }); load(); }
          catch (err) { toast(err.message, "error"); }
        });
        const setPw = el("button", { type: "button", text: "Set password" });
        setPw.addEventListener("click", async () => {
          const pw = prompt(`New password for ${user.name} (8 characters or more):`);
          if (!pw) return;
          try { await api(`/v1/users/${encodeURIComponent(user.name)}`, { method: "PATCH", json: { password: pw } }); toast("Password set."); }
          catch (err) { toast(err.message, "error"); }
        });
        const name = el("td", {}, el("strong", { text: user.name }), user.is_admin ? " (admin)" : "", user.disabled ? el("span", { class: "muted", text: " disabled" }) : "");
        return el("tr", { "data-user": user.name },
          name,
          el("td", {}, ...quotaInput(user, "max_concurrent_jobs", "Jobs at once")),
          el("td", {}, ...quotaInput(user, "audio_minutes_per_day", "Minutes a day")),
          el("td", { text: `${row.usage.active_jobs} jobs, ${row.usage.audio_minutes_today.toFixed(1)} of ${row.quotas.audio_minutes_per_day} min` }),
          ...usage.days.map((d) => el("td", { class: "num", text: row.minutes[d] ? row.minutes[d].toFixed(1) : "·" })),
          el("td", { class: "actions" }, toggle, " ", setPw));
      }));
    } catch (err) { toast(`Cannot list users: ${err.message}`, "error"); }
  }

  document.getElementById("new-user").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: document.getElementById("new-name").value.trim(), admin: document.getElementById("new-admin").checked };
    const pw = document.getElementById("new-user-password").value;
    if (pw) body.password = pw;
    const out = document.getElementById("new-user-key");
    try {
      const made = await api("/v1/users", { method: "POST", json: body });
      out.className = "ok";
      out.textContent = `${made.name} made. First API key (shown once): ${made.api_key}`;
      e.target.reset();
      load();
    } catch (err) { out.className = "error"; out.textContent = err.message; }
  });
  load();
})();
