// SVG charts: a task's subtasks on each worker over time (Gantt-style, like Dask's task
// stream) and the cluster's throughput. Both are drawn in pixels for the width they are given,
// and redrawn whole on each refresh (a few hundred elements at most).

import { fmtDuration, s } from "./dom.js";

const ROW = 22;
const LABEL = 150;
const AXIS = 22;
const MAX_BARS = 3000;

// Round a step up to 1, 2 or 5 times a power of ten, so ticks land on readable values.
function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// subtasks: the API's subtask list; names: worker id -> display name; now: unix seconds.
export function timeline(subtasks, { width, now, names = new Map(), origin = null }) {
  const started = subtasks.filter((st) => st.started_at !== null && st.started_at !== undefined);
  if (!started.length) {
    return s("svg", { class: "chart timeline empty", width, height: 40, "data-testid": "timeline" },
      s("text", { x: 8, y: 24, class: "muted" }, "No subtask has started yet."));
  }
  // With very many subtasks, draw the latest ones: they are what a watcher looks at.
  const shown = started.length > MAX_BARS
    ? [...started].sort((a, b) => a.started_at - b.started_at).slice(-MAX_BARS)
    : started;
  const lanes = packLanes(shown, now, names);
  const t0 = origin ?? Math.min(...shown.map((st) => st.started_at));
  const t1 = Math.max(t0 + 0.001, ...shown.map((st) => st.finished_at ?? now));
  const plot = Math.max(100, width - LABEL - 10);
  const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * plot;
  const height = lanes.length * ROW + AXIS + 6;

  const svg = s("svg", {
    class: "chart timeline", width, height, viewBox: `0 0 ${width} ${height}`,
    "data-testid": "timeline", role: "img",
    "aria-label": `timeline of ${shown.length} subtasks on ${new Set(lanes.map((l) => l.worker)).size} workers`,
  });
  let shade = false;
  lanes.forEach((lane, row) => {
    const y = row * ROW;
    if (lane.first) shade = !shade;
    if (!shade) svg.appendChild(s("rect", { x: 0, y, width, height: ROW, class: "stripe" }));
    if (!lane.first) return;
    const label = String(names.get(lane.worker) ?? lane.worker);
    svg.appendChild(s("text", { x: 6, y: y + ROW / 2 + 4, class: "row-label" },
      label.length > 20 ? `${label.slice(0, 19)}…` : label, s("title", {}, String(lane.worker))));
  });
  lanes.forEach((lane, row) => {
    for (const st of lane.bars) {
      const end = st.finished_at ?? now;
      const x0 = x(st.started_at);
      const bar = s("rect", {
        x: x0, y: row * ROW + 3, width: Math.max(1.5, x(end) - x0), height: ROW - 6, rx: 2,
        class: `bar state-fill-${st.state}`, "data-index": st.index,
      });
      bar.appendChild(s("title", {}, `subtask ${st.index} · attempt ${st.attempts} · ${st.state}`
        + ` · ${fmtDuration(end - st.started_at)}`));
      svg.appendChild(bar);
    }
  });
  axis(svg, t0, t1, x, lanes.length * ROW, width);
  return svg;
}

// One row per worker slot in use: each subtask goes to the first lane of its worker that is
// free when it starts, so subtasks that overlap on a multi-slot worker do not hide each other.
function packLanes(subtasks, now, names) {
  const byWorker = new Map();
  for (const st of [...subtasks].sort((a, b) => a.started_at - b.started_at)) {
    const w = st.worker ?? "?";
    if (!byWorker.has(w)) byWorker.set(w, []);
    const lanes = byWorker.get(w);
    let lane = lanes.find((l) => l.end <= st.started_at + 1e-6);
    if (!lane) {
      lane = { worker: w, first: lanes.length === 0, end: 0, bars: [] };
      lanes.push(lane);
    }
    lane.bars.push(st);
    lane.end = st.finished_at ?? now;
  }
  const workers = [...byWorker.keys()].sort((a, b) =>
    String(names.get(a) ?? a).localeCompare(String(names.get(b) ?? b)));
  return workers.flatMap((w) => byWorker.get(w));
}

// Time ticks on readable steps: 1, 2, 5, 10, 15, 30 s, then minutes.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

function timeStep(raw) {
  return raw < 1 ? niceStep(raw) : TIME_STEPS.find((st) => st >= raw) ?? niceStep(raw);
}

// A tick label with as many decimals as the step needs: ms below 0.1 s steps.
function fmtTick(seconds, step = 1) {
  const decimals = (unit) => Math.max(0, -Math.floor(Math.log10(step * unit) + 1e-9));
  if (step < 0.1) return `${(seconds * 1000).toFixed(decimals(1000))} ms`;
  if (step < 1) return `${seconds.toFixed(decimals(1))} s`;
  if (seconds < 60 || seconds % 60) return `${Math.round(seconds)} s`;
  return `${seconds / 60} min`;
}

function axis(svg, t0, t1, x, y, width) {
  svg.appendChild(s("line", { x1: LABEL, x2: width - 10, y1: y + 1, y2: y + 1, class: "axis" }));
  const step = timeStep((t1 - t0) / 8);
  for (let t = 0; t <= t1 - t0 + 1e-9; t += step) {
    const px = x(t0 + t);
    svg.appendChild(s("line", { x1: px, x2: px, y1: y + 1, y2: y + 5, class: "axis" }));
    svg.appendChild(s("text", { x: px, y: y + 17, class: "tick", "text-anchor": "middle" },
      fmtTick(t, step)));
  }
}

// points: [[unix_second, count], ...]; draws the last `windowSec` seconds ending at `now`.
export function throughputChart(points, { width, height = 160, now, windowSec = 300 }) {
  const end = Math.floor(now);
  const start = end - windowSec + 1;
  const counts = new Array(windowSec).fill(0);
  for (const [sec, n] of points) {
    const i = Math.floor(sec) - start;
    if (i >= 0 && i < windowSec) counts[i] += n;
  }
  const max = Math.max(1, ...counts);
  // counts per second are whole numbers: so are the grid lines
  const yStep = Math.max(1, niceStep(max / 4));
  const top = yStep * Math.ceil(max / yStep);
  const left = 48;
  const bottom = 20;
  const plotW = Math.max(50, width - left - 8);
  const plotH = height - bottom - 8;
  const x = (i) => left + (i / (windowSec - 1)) * plotW;
  const y = (v) => 8 + plotH - (v / top) * plotH;

  const svg = s("svg", {
    class: "chart throughput", width, height, viewBox: `0 0 ${width} ${height}`,
    "data-testid": "throughput-chart", role: "img",
    "aria-label": "subtasks finished per second",
  });
  for (let v = 0; v <= top + 1e-9; v += yStep) {
    svg.appendChild(s("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(s("text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" },
      String(v)));
  }
  const line = counts.map((c, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(c).toFixed(1)}`);
  svg.appendChild(s("path", {
    d: `${line.join("")}L${x(windowSec - 1)},${y(0)}L${x(0)},${y(0)}Z`, class: "area",
  }));
  svg.appendChild(s("path", { d: line.join(""), class: "line" }));
  const tickEvery = timeStep(windowSec / 6);
  for (let ago = 0; ago < windowSec; ago += tickEvery) {
    const px = x(windowSec - 1 - ago);
    svg.appendChild(s("text", { x: px, y: height - 4, class: "tick", "text-anchor": "middle" },
      ago === 0 ? "now" : `-${fmtTick(ago)}`));
  }
  return svg;
}
