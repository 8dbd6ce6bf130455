// The overview (#/tasks): throughput over time, queue depth by priority, and the latest tasks
// with live progress. Rows are keyed by task id and updated in place: the global event
// stream moves the bars between the periodic refreshes of the list.

import { api } from "./api.js";
import { throughputChart } from "./charts.js";
import {
  FINAL_STATES, fill, fmtEta, fmtTime, h, progressBar, setProgress, setText, stateBadge, thead,
  updateBadge,
} from "./dom.js";
import { openStream } from "./sse.js";

const LIST_EVERY = 3000;
const STATS_EVERY = 2000;
const STATES = ["scheduled", "pending", "running", "aggregating", "succeeded", "failed", "cancelled", "timed_out"];

export function mountTasks(root) {
  const timers = [];
  let filter = "";
  const rows = new Map();
  const tbody = h("tbody");
  const status = h("span", { class: "live", "data-testid": "live-status" }, "connecting…");
  const note = h("div", { class: "muted small" });
  const listError = h("div", { class: "error-text", role: "alert" });
  const stateSelect = h("select", {
    "data-testid": "state-filter", "aria-label": "filter by state",
    onchange: () => { filter = stateSelect.value; refreshList(); },
  }, h("option", { value: "" }, "all states"), STATES.map((st) => h("option", { value: st }, st)));

  const chartBox = h("div", { class: "chart-box" });
  const rateText = h("span", { class: "muted" });
  const queueBox = h("div", { class: "queue", "data-testid": "queue-depth" });
  const countsBox = h("div", { class: "counts" });
  let windowSec = 300;
  const windowSelect = h("select", {
    "aria-label": "chart window",
    onchange: () => { windowSec = Number(windowSelect.value); refreshStats(); },
  }, [[60, "1 min"], [300, "5 min"], [600, "10 min"]].map(([v, label]) =>
    h("option", { value: v, selected: v === windowSec }, label)));

  fill(root,
    h("section", { class: "grid-2" },
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Throughput"), rateText, windowSelect),
        h("div", { class: "muted small" }, "subtasks finished per second"),
        chartBox),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Queue")),
        h("div", { class: "muted small" }, "subtasks waiting, by priority"),
        queueBox,
        h("h3", {}, "Unfinished tasks"),
        countsBox)),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Tasks"), status, stateSelect,
        h("a", { class: "button", href: "#/submit" }, "New task")),
      listError,
      h("table", { class: "table", "data-testid": "tasks-table" },
        thead(["ID", "Type", "State", ["Priority", "num"], "Progress", "ETA", "Created"]),
        tbody),
      note));

  function row(task) {
    let r = rows.get(task.id);
    if (!r) {
      r = {
        tr: h("tr", { "data-testid": `task-row-${task.id}` }),
        state: stateBadge(task.state, "task-state"),
        bar: progressBar("progress-bar"),
        counts: h("span", { class: "muted small" }),
        waiting: h("div", { class: "muted small", "data-testid": "task-waiting" }),
        eta: h("td", { class: "nowrap", "data-testid": "task-eta" }),
        task,
      };
      fill(r.tr,
        h("td", { class: "mono" }, h("a", { href: `#/task/${encodeURIComponent(task.id)}` },
          task.id.length > 14 ? `${task.id.slice(0, 12)}…` : task.id)),
        h("td", {}, task.type),
        h("td", {}, r.state, r.waiting),
        h("td", { class: "num" }, String(task.priority)),
        h("td", {}, h("div", { class: "progress-cell" }, r.bar, r.counts)),
        r.eta,
        h("td", { class: "nowrap" }, fmtTime(task.created_at)));
      rows.set(task.id, r);
    }
    return r;
  }

  // Merge what we learn (a listed task or an event) into the row; the bar never moves back
  // while the task runs, since a list fetched before an event may arrive after it.
  function update(r, patch) {
    const t = r.task;
    const progress = { ...(t.progress || {}), ...(patch.progress || {}) };
    const state = patch.state ?? t.state;
    let fraction = progress.fraction ?? 0;
    if (state === "succeeded") fraction = 1;
    else if (!FINAL_STATES.has(state)) fraction = Math.max(fraction, t.progress?.fraction ?? 0);
    progress.fraction = fraction;
    r.task = { ...t, ...patch, state, progress };
    updateBadge(r.state, state);
    setProgress(r.bar, fraction, state);
    setText(r.counts, progress.subtasks_total
      ? `${progress.subtasks_done ?? 0}/${progress.subtasks_total}` : "");
    setText(r.eta, fmtEta(r.task, ""));
    // what holds it back (a cap, no worker with its labels): known from the list only
    if ("waiting_for" in patch || FINAL_STATES.has(state)) {
      setText(r.waiting, FINAL_STATES.has(state) ? "" : patch.waiting_for ?? "");
    }
  }

  async function refreshList() {
    try {
      const query = `?limit=100${filter ? `&state=${filter}` : ""}`;
      const { tasks, next_cursor: more } = await api.tasks(query);
      setText(listError, "");
      const keep = new Set();
      tasks.forEach((task, i) => {
        const r = row(task);
        update(r, task);
        keep.add(task.id);
        if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
      });
      for (const [id, r] of rows) {
        if (!keep.has(id)) {
          r.tr.remove();
          rows.delete(id);
        }
      }
      setText(note, tasks.length === 0 ? "No tasks yet." : more ? "Showing the latest 100." : "");
    } catch (err) {
      setText(listError, `Could not load tasks: ${err.message}`);
    }
  }

  let refreshSoon = null;
  function onEvent({ type, data }) {
    if (!data || typeof data !== "object" || !data.task_id) return;
    const r = rows.get(data.task_id);
    if (!r) {
      // a task we do not list yet (just submitted): fetch the list once things settle
      if (!refreshSoon && (type === "state" || type === "progress")) {
        refreshSoon = setTimeout(() => { refreshSoon = null; refreshList(); }, 250);
      }
      return;
    }
    if (filter && type === "state" && data.state !== filter) {
      refreshList();
      return;
    }
    if (type === "progress") {
      update(r, { state: data.state, progress: data.progress, eta_seconds: data.eta_seconds });
    } else if (type === "state") {
      update(r, { state: data.state, ...(FINAL_STATES.has(data.state) ? { eta_seconds: null } : {}) });
      if (FINAL_STATES.has(data.state)) {
        api.task(data.task_id).then((task) => rows.has(task.id) && update(rows.get(task.id), task))
          .catch(() => {});
      }
    }
  }

  async function refreshStats() {
    try {
      const stats = await api.stats();
      const now = Math.max(Date.now() / 1000, ...stats.throughput.map((p) => p[0]));
      const width = chartBox.clientWidth || 600;
      fill(chartBox, throughputChart(stats.throughput, { width, now, windowSec }));
      const recent = stats.throughput.filter(([sec]) => sec > now - 11 && sec <= now - 1);
      const rate = recent.reduce((a, [, n]) => a + n, 0) / 10;
      setText(rateText, `${rate.toFixed(rate < 10 ? 1 : 0)}/s over the last 10 s`);
      drawQueue(stats.queue_depth || {});
      drawCounts(stats.tasks || {});
    } catch (err) {
      fill(chartBox, h("div", { class: "muted" }, `Statistics unavailable: ${err.message}`));
    }
  }

  function drawQueue(depth) {
    const entries = Object.entries(depth).map(([p, n]) => [Number(p), n]).sort((a, b) => b[0] - a[0]);
    if (!entries.length || entries.every(([, n]) => n === 0)) {
      fill(queueBox, h("div", { class: "muted" }, "Nothing is waiting."));
      return;
    }
    const max = Math.max(...entries.map(([, n]) => n));
    fill(queueBox, entries.map(([p, n]) => h("div", { class: "qrow", "data-testid": `queue-${p}` },
      h("span", { class: "qlabel" }, `priority ${p}`),
      h("span", { class: "qbar" }, h("span", { style: { width: `${(100 * n) / max}%` } })),
      h("span", { class: "num" }, String(n)))));
  }

  function drawCounts(counts) {
    const entries = Object.entries(counts).filter(([, n]) => n > 0);
    fill(countsBox, entries.length
      ? entries.map(([st, n]) => h("span", { class: "count" }, stateBadge(st), ` ${n}`))
      : h("span", { class: "muted" }, "none"));
  }

  const stream = openStream("api/v1/events", {
    onOpen: () => { setText(status, "live"); status.className = "live on"; },
    onError: () => { setText(status, "reconnecting…"); status.className = "live off"; },
    onEvent,
  });
  refreshList();
  refreshStats();
  timers.push(setInterval(refreshList, LIST_EVERY), setInterval(refreshStats, STATS_EVERY));
  return () => {
    stream.close();
    timers.forEach(clearInterval);
    clearTimeout(refreshSoon);
  };
}
