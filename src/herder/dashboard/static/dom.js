// DOM helpers and formatters. Every string from the server goes through textContent or
// setAttribute, never innerHTML, so a task's params, logs or errors cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

// h("div", {class: "x", "data-testid": "y", onclick: fn}, child, "text", [more]) -> Element
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// The same for SVG elements (they need their namespace).
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "style" && typeof value === "object") {
      // through the CSSOM: the page's Content-Security-Policy refuses inline style attributes
      Object.assign(el.style, value);
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else if (key === "checked" || key === "disabled" || key === "selected") {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// Replace all children of `el`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// Set the text of an element only when it changed (keeps selections and avoids layout work).
export function setText(el, text) {
  const value = String(text ?? "");
  if (el.textContent !== value) el.textContent = value;
}

// A table head; a column given as [label, class] gets that class (e.g. "num": right-aligned).
export function thead(columns) {
  return h("thead", {}, h("tr", {}, columns.map((c) =>
    Array.isArray(c) ? h("th", { class: c[1] }, c[0]) : h("th", {}, c))));
}

// -- formatters ---------------------------------------------------------------------------------

export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  const hours = Math.floor(m / 60);
  return `${hours} h ${m % 60} min`;
}

export function fmtAgo(ts) {
  if (ts === null || ts === undefined) return "—";
  const ago = Math.max(0, Date.now() / 1000 - ts);
  return ago < 60 ? `${ago.toFixed(ago < 10 ? 1 : 0)} s ago` : `${fmtDuration(ago)} ago`;
}

export function fmtEta(task, prefix = "ETA ") {
  if (FINAL_STATES.has(task.state)) return "";
  if (task.eta_seconds === null || task.eta_seconds === undefined) return `${prefix}—`;
  return `${prefix}${fmtDuration(task.eta_seconds)}`;
}

export const FINAL_STATES = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

// -- widgets ------------------------------------------------------------------------------------

export function stateBadge(state, testid) {
  return h("span", { class: `badge state-${state}`, "data-testid": testid }, state);
}

export function updateBadge(el, state) {
  setText(el, state);
  el.className = `badge state-${state}`;
}

// A progress bar: role=progressbar, aria-valuenow in percent (0-100, one decimal).
export function progressBar(testid = "progress-bar") {
  const fillEl = h("div", { class: "progress-fill" });
  const label = h("span", { class: "progress-label" }, "0%");
  const bar = h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": 0, "data-testid": testid },
    fillEl, label,
  );
  return bar;
}

export function setProgress(bar, fraction, state) {
  const pct = Math.round(Math.min(1, Math.max(0, fraction || 0)) * 1000) / 10;
  if (bar.getAttribute("aria-valuenow") !== String(pct)) {
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstChild.style.width = `${pct}%`;
    setText(bar.lastChild, `${pct.toFixed(pct >= 10 || pct === 0 ? 0 : 1)}%`);
  }
  bar.dataset.state = state || "";
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}
