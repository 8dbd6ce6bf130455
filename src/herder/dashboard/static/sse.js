// Server-Sent Events over fetch(): EventSource cannot send an Authorization header.
//
// openStream(path, {onEvent, onOpen, onError, onEnd}) reads `id:`, `event:` and `data:` lines,
// calls onEvent({type, id, data}) with `data` parsed as JSON when it is JSON, and reconnects
// with the Last-Event-ID header so that no stored event is missed. When the server ends the
// stream, onEnd() decides: return false to stop, anything else to reconnect.

import { ApiError, askToken, authHeaders, token } from "./api.js";

const MIN_DELAY = 500;
const MAX_DELAY = 10000;

export function openStream(path, handlers) {
  const ctrl = new AbortController();
  let lastId = null;
  let closed = false;

  const run = async () => {
    let delay = MIN_DELAY;
    while (!closed) {
      let ended = false;
      try {
        const sent = token();
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const res = await fetch(path, { headers, signal: ctrl.signal, cache: "no-store" });
        if (res.status === 401) {
          await askToken(sent);
          continue;
        }
        if (!res.ok || !res.body) throw new ApiError(res.status, `HTTP ${res.status}`);
        delay = MIN_DELAY;
        handlers.onOpen?.();
        await readEvents(res.body, (event) => {
          if (event.id !== null) lastId = event.id;
          if (event.type) handlers.onEvent(event);
        });
        ended = true;
      } catch (err) {
        if (closed) return;
        handlers.onError?.(err);
      }
      if (closed) return;
      if (ended && handlers.onEnd?.() === false) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, MAX_DELAY);
    }
  };
  run();
  return {
    close() {
      closed = true;
      ctrl.abort();
    },
  };
}

// Parse a text/event-stream body as the HTML standard says: lines end in CRLF, LF or CR; a
// blank line dispatches; `:` starts a comment; one space after the colon is dropped.
export async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let type = "";
  let data = [];
  let id = null;
  const line = (text) => {
    if (text === "") {
      if (data.length || id !== null) {
        const raw = data.join("\n");
        dispatch({ type: data.length ? type || "message" : "", id, data: parseData(raw) });
      }
      type = "";
      data = [];
      id = null;
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const re = /\r\n|\r|\n/g;
    let start = 0;
    let m;
    while ((m = re.exec(buf)) !== null) {
      // a CR at the very end may be the first half of a CRLF split across two chunks
      if (m[0] === "\r" && m.index === buf.length - 1) break;
      line(buf.slice(start, m.index));
      start = re.lastIndex;
    }
    buf = buf.slice(start);
  }
}

function parseData(raw) {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
