// One task (#/task/ID): its fields, live progress and ETA, error or result, a Cancel button,
// the timeline of its subtasks on each worker, the subtasks table and the live logs.
//
// The task's event stream drives state, progress and logs; the subtasks are polled (about
// once a second while the task runs, less often for very large tasks).

import { api, ApiError } from "./api.js";
import { timeline } from "./charts.js";
import {
  FINAL_STATES, fill, fmtDuration, fmtEta, fmtTime, h, json, progressBar, setProgress, setText,
  stateBadge, thead, updateBadge,
} from "./dom.js";
import { openStream } from "./sse.js";

const MAX_LOG_LINES = 5000;
const LOG_PAGE = 1000;
const MAX_TABLE_ROWS = 1000;
const MAX_RESULT_CHARS = 100_000;

export function mountTask(root, id) {
  let task = null;
  let drawnKey = null;
  let subtasks = [];
  let streamOpen = false;
  let finalSeen = false;
  let closed = false;
  const timers = [];
  const names = new Map();

  const title = h("h1", { class: "mono" }, id);
  const badge = stateBadge("…", "task-state");
  const cancelButton = h("button", {
    class: "danger", "data-testid": "cancel-button", disabled: true, onclick: cancel,
  }, "Cancel");
  const cancelMsg = h("span", { class: "error-text", role: "alert", "data-testid": "cancel-error" });
  const bar = progressBar("progress-bar");
  const progressText = h("div", { class: "muted", "data-testid": "progress-text" });
  const waiting = h("div", { class: "muted", "data-testid": "task-waiting" });
  const eta = h("span", { class: "eta", "data-testid": "task-eta" });
  const details = h("dl", { class: "details" });
  const outcome = h("div");
  const timelineBox = h("div", { class: "chart-box" });
  const subtaskNote = h("span", { class: "muted small", "data-testid": "subtask-note" });
  const subtaskBody = h("tbody");
  const logList = h("div", { class: "logs", "data-testid": "task-logs", role: "log" });
  const logNote = h("span", { class: "muted small" });
  const followBox = h("input", { type: "checkbox", checked: true, "aria-label": "follow" });
  const pageError = h("div", { class: "error-text", role: "alert" });

  fill(root,
    h("div", { class: "page-head" },
      h("a", { href: "#/tasks", class: "muted" }, "← Tasks"),
      title, badge, h("span", { class: "spacer" }), cancelMsg, cancelButton),
    pageError,
    h("section", { class: "card" },
      h("div", { class: "progress-row" }, bar, eta),
      progressText, waiting),
    outcome,
    h("section", { class: "card" }, h("h2", {}, "Details"), details),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Timeline"),
        h("span", { class: "muted small" },
          "each subtask's last attempt; one row per busy slot of each worker")),
      timelineBox),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Subtasks"), subtaskNote),
      h("div", { class: "scroll" },
        h("table", { class: "table", "data-testid": "subtasks-table" },
          thead([["#", "num"], "State", ["Attempts", "num"], "Worker", "Started", "Finished",
            ["Duration", "num"], "Progress", "Error"]),
          subtaskBody))),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Logs"), logNote,
        h("label", { class: "small" }, followBox, " follow")),
      logList));

  // -- the task ---------------------------------------------------------------------------------

  function setTask(next) {
    const fraction = next.state === "succeeded" ? 1
      : FINAL_STATES.has(next.state) ? next.progress?.fraction ?? 0
        : Math.max(next.progress?.fraction ?? 0, task?.progress?.fraction ?? 0);
    const wasFinal = task && FINAL_STATES.has(task.state);
    task = { ...next, progress: { ...(next.progress || {}), fraction } };
    draw();
    if (FINAL_STATES.has(task.state) && !wasFinal) refreshSubtasks();
  }

  function draw() {
    const final = FINAL_STATES.has(task.state);
    updateBadge(badge, task.state);
    cancelButton.disabled = final;
    setProgress(bar, task.progress.fraction, task.state);
    setText(eta, fmtEta(task));
    const p = task.progress;
    const elapsed = task.started_at ? (task.finished_at ?? Date.now() / 1000) - task.started_at : null;
    setText(progressText, [
      p.subtasks_total ? `${p.subtasks_done}/${p.subtasks_total} subtasks done` : "not split yet",
      p.subtasks_running ? `${p.subtasks_running} running` : null,
      p.subtasks_failed ? `${p.subtasks_failed} failed` : null,
      elapsed !== null ? `${final ? "took" : "elapsed"} ${fmtDuration(elapsed)}` : null,
    ].filter(Boolean).join(" · "));
    setText(waiting, !final && task.waiting_for ? `Waiting: ${task.waiting_for}` : "");
    // the details and outcome change only with the state: redrawing them each second would
    // lose the reader's text selection
    const key = `${task.state} ${task.finished_at} ${task.started_at}`;
    if (key === drawnKey) return;
    drawnKey = key;
    fill(details,
      item("Type", task.type), item("Priority", task.priority),
      item("Timeout", task.timeout === null ? "none" : fmtDuration(task.timeout)),
      item("Max parallel", task.max_parallel ?? "no cap"),
      item("Labels", task.labels?.length ? task.labels.join(" ") : "none"),
      item("Created", fmtTime(task.created_at)),
      ...(task.not_before === null ? [] : [item("Not before", fmtTime(task.not_before))]),
      item("Started", fmtTime(task.started_at)),
      item("Finished", fmtTime(task.finished_at)),
      item("Params", h("pre", { class: "json" }, json(task.params))));
    drawOutcome();
  }

  function item(label, value) {
    return [h("dt", {}, label), h("dd", {}, value instanceof Node ? value : String(value ?? "—"))];
  }

  function drawOutcome() {
    if (task.error) {
      const e = task.error;
      fill(outcome, h("section", { class: "card error-card", "data-testid": "task-error" },
        h("h2", {}, "Error"),
        h("div", { class: "error-text" }, e.message),
        h("div", { class: "muted small" }, [
          e.subtask !== null && e.subtask !== undefined ? `subtask ${e.subtask}` : null,
          e.attempt ? `attempt ${e.attempt}` : null,
          e.worker ? `on ${names.get(e.worker) ?? e.worker}` : null,
        ].filter(Boolean).join(" · ")),
        e.traceback ? h("pre", { class: "traceback" }, e.traceback) : null));
    } else if (task.state === "succeeded") {
      let text = json(task.result);
      const cut = text.length > MAX_RESULT_CHARS;
      if (cut) text = `${text.slice(0, MAX_RESULT_CHARS)}\n…`;
      fill(outcome, h("section", { class: "card" },
        h("h2", {}, "Result"),
        cut ? h("div", { class: "muted small" }, "truncated: the full result is at ",
          h("a", { href: `api/v1/tasks/${encodeURIComponent(id)}/result` }, "/result")) : null,
        h("pre", { class: "json", "data-testid": "task-result" }, text)));
    } else {
      fill(outcome);
    }
    outcome.hidden = !outcome.firstChild;
  }

  async function loadTask() {
    try {
      setTask(await api.task(id));
      setText(pageError, "");
    } catch (err) {
      setText(pageError, err instanceof ApiError && err.status === 404
        ? `Task ${id} was not found.` : `Could not load the task: ${err.message}`);
    }
  }

  async function cancel() {
    cancelButton.disabled = true;
    setText(cancelMsg, "");
    try {
      setTask(await api.cancel(id));
    } catch (err) {
      setText(cancelMsg, err.message);
      cancelButton.disabled = task ? FINAL_STATES.has(task.state) : false;
    }
  }

  // -- subtasks and timeline -----------------------------------------------------------------

  async function refreshSubtasks() {
    try {
      ({ subtasks } = await api.subtasks(id));
    } catch (err) {
      setText(subtaskNote, `unavailable: ${err.message}`);
      return;
    }
    if ([...subtasks].some((st) => st.worker && !names.has(st.worker))) await loadWorkerNames();
    drawSubtasks();
  }

  async function loadWorkerNames() {
    try {
      for (const w of (await api.workers()).workers) names.set(w.id, w.name);
    } catch {
      // names are a nicety: ids are shown instead
    }
  }

  function drawSubtasks() {
    const now = Date.now() / 1000;
    const shown = subtasks.slice(0, MAX_TABLE_ROWS);
    setText(subtaskNote, subtasks.length > shown.length
      ? `showing ${shown.length} of ${subtasks.length}` : `${subtasks.length} subtasks`);
    fill(subtaskBody, shown.map((st) => h("tr", { "data-testid": `subtask-row-${st.index}` },
      h("td", { class: "num" }, String(st.index)),
      h("td", {}, stateBadge(st.state)),
      h("td", { class: "num" }, String(st.attempts)),
      h("td", { class: "mono small" }, st.worker ? names.get(st.worker) ?? st.worker : "—"),
      h("td", { class: "nowrap" }, fmtTime(st.started_at)),
      h("td", { class: "nowrap" }, fmtTime(st.finished_at)),
      h("td", { class: "num" }, fmtDuration(st.duration)),
      h("td", {}, st.state === "running" && st.fraction !== null && st.fraction !== undefined
        ? `${Math.round(st.fraction * 100)}%${st.message ? ` ${st.message}` : ""}` : st.message ?? ""),
      h("td", { class: "subtask-error small" }, st.error ?? ""))));
    const width = timelineBox.clientWidth || 800;
    fill(timelineBox, timeline(subtasks, { width, now, names }));
  }

  function subtaskInterval() {
    // a big task's subtask list is big: poll it less often so that watching stays cheap
    return Math.min(10_000, Math.max(1000, subtasks.length));
  }

  async function pollSubtasks() {
    if (closed) return;
    await refreshSubtasks();
    // the stream carries no `waiting_for` (what holds the task back): polled with the subtasks
    if (!closed) await loadTask();
    if (!closed && task && !FINAL_STATES.has(task.state)) {
      timers.push(setTimeout(pollSubtasks, subtaskInterval()));
    }
  }

  // -- logs -------------------------------------------------------------------------------------

  let lastSeq = -1;
  let pending = [];
  let logsLoaded = false;

  function addLogs(records) {
    const follow = followBox.checked
      && logList.scrollTop + logList.clientHeight >= logList.scrollHeight - 30;
    for (const rec of records) {
      if (rec.seq <= lastSeq) continue; // already shown (a replay after a reconnect)
      lastSeq = rec.seq;
      logList.appendChild(logLine(rec));
    }
    while (logList.childElementCount > MAX_LOG_LINES) logList.firstElementChild.remove();
    if (follow) logList.scrollTop = logList.scrollHeight;
    setText(logNote, lastSeq >= 0 ? `${logList.childElementCount} shown` : "");
  }

  function logLine(rec) {
    const level = String(rec.level || "INFO").toUpperCase();
    return h("div", { class: `log level-${level.toLowerCase()}`, "data-seq": rec.seq },
      h("span", { class: "ts" }, rec.ts ? new Date(rec.ts * 1000).toLocaleTimeString([], {
        hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
        hour12: false }) : ""),
      h("span", { class: "lvl" }, level),
      h("span", { class: "src" }, rec.subtask === null || rec.subtask === undefined ? "task"
        : `#${rec.subtask}${rec.attempt ? `/${rec.attempt}` : ""}`),
      h("span", { class: "msg" }, rec.message ?? ""));
  }

  async function loadLogs() {
    let since = 0;
    try {
      for (let page = 0; page < 20 && !closed; page++) {
        const { logs } = await api.logs(id, since, LOG_PAGE);
        addLogs(logs);
        if (logs.length < LOG_PAGE) break;
        since = logs[logs.length - 1].seq;
      }
    } catch (err) {
      setText(logNote, `unavailable: ${err.message}`);
    }
    logsLoaded = true;
    addLogs(pending.sort((a, b) => a.seq - b.seq));
    pending = [];
  }

  // -- live events ------------------------------------------------------------------------------

  function onEvent({ type, data }) {
    if (!data || typeof data !== "object") return;
    if (type === "snapshot") {
      setTask(data);
    } else if (type === "progress" && task) {
      setTask({ ...task, state: data.state ?? task.state, progress: data.progress,
        eta_seconds: data.eta_seconds });
    } else if (type === "state" && task) {
      // a final state comes with a result or an error: show them together, from the task
      if (FINAL_STATES.has(data.state)) {
        finalSeen = true;
        loadTask();
      } else {
        setTask({ ...task, state: data.state });
      }
    } else if (type === "log") {
      if (logsLoaded) addLogs([data]);
      else pending.push(data);
    }
  }

  // The stream is opened before the logs are fetched, so no record falls between the two.
  const stream = openStream(`api/v1/tasks/${encodeURIComponent(id)}/events`, {
    onOpen: () => { streamOpen = true; },
    onError: (err) => {
      streamOpen = false;
      if (err instanceof ApiError && err.status === 404) stream.close(); // no such task
    },
    // the server ends the stream after the final state: reconnecting would replay it all
    onEnd: () => {
      streamOpen = false;
      return !finalSeen && !(task && FINAL_STATES.has(task.state));
    },
    onEvent,
  });
  timers.push(setInterval(() => task && !FINAL_STATES.has(task.state) && draw(), 1000));
  loadTask().then(() => { loadLogs(); pollSubtasks(); });

  return () => {
    closed = true;
    stream.close();
    timers.forEach((t) => { clearTimeout(t); clearInterval(t); });
  };
}
