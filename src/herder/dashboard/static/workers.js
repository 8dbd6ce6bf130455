// The workers (#/workers): slots, busy slots, pool, state, last heartbeat and task types,
// refreshed every 2 s; the "x s ago" column ticks every second in between.

import { api } from "./api.js";
import { fill, fmtAgo, fmtTime, h, setText, stateBadge, thead } from "./dom.js";

const EVERY = 2000;

export function mountWorkers(root) {
  let workers = [];
  const summary = h("span", { class: "muted", "data-testid": "workers-summary" });
  const tbody = h("tbody");
  const error = h("div", { class: "error-text", role: "alert" });
  fill(root, h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, "Workers"), summary),
    error,
    h("div", { class: "scroll" },
      h("table", { class: "table", "data-testid": "workers-table" },
        thead(["Name", "ID", ["Slots", "num"], "Busy", "Pool", "State", "Last heartbeat",
          "Connected", "Types"]),
        tbody))));

  function draw() {
    const slots = workers.reduce((a, w) => a + w.slots, 0);
    const busy = workers.reduce((a, w) => a + w.busy, 0);
    setText(summary, `${workers.length} worker${workers.length === 1 ? "" : "s"} · ${busy} of `
      + `${slots} slots busy`);
    fill(tbody, workers.length ? workers.map((w) => h("tr", { "data-testid": `worker-row-${w.id}` },
      h("td", {}, w.name),
      h("td", { class: "mono small" }, w.id),
      h("td", { class: "num" }, String(w.slots)),
      h("td", { class: "busy-cell" },
        h("span", { class: "mini-bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": w.slots,
          "aria-valuenow": w.busy, "data-testid": "worker-busy" },
        h("span", { style: { width: `${w.slots ? (100 * w.busy) / w.slots : 0}%` } })),
        ` ${w.busy}/${w.slots}`),
      h("td", {}, w.pool),
      h("td", {}, stateBadge(w.state)),
      h("td", { class: "nowrap" }, fmtAgo(w.last_heartbeat)),
      h("td", { class: "nowrap" }, fmtTime(w.connected_at)),
      h("td", { class: "types", title: (w.types || []).join(", ") }, (w.types || []).join(", "))))
      : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No worker is connected.")));
  }

  async function refresh() {
    try {
      ({ workers } = await api.workers());
      workers.sort((a, b) => String(a.name).localeCompare(String(b.name)));
      setText(error, "");
      draw();
    } catch (err) {
      setText(error, `Could not load workers: ${err.message}`);
    }
  }

  refresh();
  const timers = [setInterval(refresh, EVERY), setInterval(() => workers.length && draw(), 1000)];
  return () => timers.forEach(clearInterval);
}
