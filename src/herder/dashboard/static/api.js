// Talking to the master: JSON requests with the bearer token, and the one token prompt.
//
// URLs are relative ("api/v1/..."), so the dashboard works at "/" and behind a path prefix.
// The token lives in sessionStorage: it survives reloads of the tab, not the browser session.

const TOKEN_KEY = "herder.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : { ...extra };
}

// The UI that asks for a token: set by app.js, returns a promise of the entered token.
let prompter = null;
let asking = null;

export function setTokenPrompter(fn) {
  prompter = fn;
}

// Called after a 401 on a request sent with `sent` (the token then, or null). Concurrent
// callers share one prompt; a caller whose token was already replaced just retries.
export async function askToken(sent) {
  if (token() !== sent) return;
  if (!asking) {
    const rejected = sent !== null;
    asking = (async () => {
      if (!prompter) throw new ApiError(401, "a token is required");
      setToken(await prompter({ rejected }));
    })().finally(() => {
      asking = null;
    });
  }
  await asking;
}

// A JSON request; throws ApiError with the server's `detail` on a 4xx/5xx answer.
export async function request(path, { method = "GET", body, signal } = {}) {
  for (;;) {
    const sent = token();
    const headers = authHeaders({ Accept: "application/json" });
    // the master takes a state change only as JSON (what a cross-site form cannot send)
    if (method !== "GET") headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method, headers, signal, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "the master is unreachable");
    }
    if (res.status === 401) {
      await askToken(sent);
      continue;
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail
        : data && data.detail ? JSON.stringify(data.detail) : `HTTP ${res.status}`;
      throw new ApiError(res.status, detail);
    }
    return data;
  }
}

export const api = {
  tasks: (query = "") => request(`api/v1/tasks${query}`),
  task: (id) => request(`api/v1/tasks/${encodeURIComponent(id)}`),
  subtasks: async (id) => {
    // the whole list, a page of the largest size at a time
    const path = `api/v1/tasks/${encodeURIComponent(id)}/subtasks?limit=10000`;
    const subtasks = [];
    let cursor = null;
    do {
      const page = await request(cursor === null ? path : `${path}&cursor=${cursor}`);
      for (const st of page.subtasks) subtasks.push(st);
      cursor = page.next_cursor ?? null;
    } while (cursor !== null);
    return { subtasks };
  },
  logs: (id, since, limit) =>
    request(`api/v1/tasks/${encodeURIComponent(id)}/logs?since=${since}&limit=${limit}`),
  cancel: (id) => request(`api/v1/tasks/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
  submit: (body) => request("api/v1/tasks", { method: "POST", body }),
  workers: () => request("api/v1/workers"),
  schedules: () => request("api/v1/schedules"),
  types: () => request("api/v1/types"),
  stats: () => request("api/v1/stats"),
};
