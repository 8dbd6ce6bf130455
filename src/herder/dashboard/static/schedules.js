// The schedules (#/schedules): when each fires, its next run, its last run and the task that
// run made, and the firings it skipped; refreshed every 2 s.

import { api } from "./api.js";
import { fill, fmtTime, h, setText, thead } from "./dom.js";

const EVERY = 2000;

function when(s) {
  return s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${s.every}`;
}

export function mountSchedules(root) {
  const summary = h("span", { class: "muted", "data-testid": "schedules-summary" });
  const tbody = h("tbody");
  const error = h("div", { class: "error-text", role: "alert" });
  fill(root, h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, "Schedules"), summary),
    error,
    h("div", { class: "scroll" },
      h("table", { class: "table", "data-testid": "schedules-table" },
        thead(["ID", "Type", "When", "Next run", "Last run", "Last task", ["Skipped", "num"]]),
        tbody))));

  function draw(schedules) {
    setText(summary, `${schedules.length} schedule${schedules.length === 1 ? "" : "s"}`);
    fill(tbody, schedules.length ? schedules.map((s) => h("tr",
      { "data-testid": `schedule-row-${s.id}` },
      h("td", { class: "mono" }, s.id),
      h("td", {}, s.type),
      h("td", { class: "mono small" }, when(s)),
      h("td", { class: "nowrap", "data-testid": "schedule-next" }, fmtTime(s.next_run_at)),
      h("td", { class: "nowrap" }, s.last_run_at ? fmtTime(s.last_run_at) : "never"),
      h("td", { class: "mono", "data-testid": "schedule-last-task" }, s.last_task_id
        ? h("a", { href: `#/task/${encodeURIComponent(s.last_task_id)}` }, s.last_task_id)
        : ""),
      h("td", { class: "num" }, String(s.skipped))))
      : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No schedule.")));
  }

  async function refresh() {
    try {
      const { schedules } = await api.schedules();
      setText(error, "");
      draw(schedules);
    } catch (err) {
      setText(error, `Could not load schedules: ${err.message}`);
    }
  }

  refresh();
  const timer = setInterval(refresh, EVERY);
  return () => clearInterval(timer);
}
