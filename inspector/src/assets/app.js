// Live list: every new transaction (server-sent events) reloads the rows of the current search
// from the server, which renders and escapes them; nothing from mail is turned into markup here.
"use strict";
(function () {
  const rows = document.getElementById("rows");
  if (!rows || !window.EventSource) return;
  const q = rows.dataset.q || "";
  const start = rows.dataset.start || "0";
  if (start !== "0") return; // older pages stay as they are
  let pending = false;
  const refresh = async () => {
    if (pending) return;
    pending = true;
    try {
      const r = await fetch("/rows?q=" + encodeURIComponent(q), { cache: "no-store" });
      if (r.ok) rows.innerHTML = await r.text();
      const count = document.getElementById("count");
      if (count && !q) {
        const n = rows.querySelectorAll("tr:not(.empty)").length;
        const total = await fetch("/api/messages?limit=1").then((x) => x.json()).catch(() => null);
        count.textContent = (total ? total.total : n) + " transactions";
      }
    } finally {
      pending = false;
    }
  };
  const events = new EventSource("/api/events");
  events.addEventListener("message", refresh);
  const live = document.getElementById("live");
  events.addEventListener("open", () => {
    if (live) live.hidden = false;
    document.body.dataset.live = "1";
  });
  events.addEventListener("error", () => {
    if (live) live.hidden = true;
  });
})();
