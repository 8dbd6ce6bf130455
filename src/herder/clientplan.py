"""The sans-I/O half of the client: what both `Client` and `AsyncClient` do, written once.

Building requests (`_Request`), reading responses into values or errors (`_read`), paging task
lists and logs (`_Pager`, `_LogPager`), the polling schedule of `wait` (`_Poll`), the plans of
followed streams (`_EventStream`, `_LogStream`: what to request, what each Server-Sent Event
yields, when the stream is over, when and how to reconnect), and the plan of waiting for many
tasks at once over one stream (`_BulkWait`, with `_Lookup` reading stored states in bulk), with
the errors they raise. `herder.client` sends the requests and reads the bytes.

Imports httpx (its types and timeouts), `config`, `errors` and `sse`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx

from herder.config import env_token, env_url
from herder.errors import ClientError, HerderError, TaskFailed
from herder.jsontext import loads
from herder.sse import ServerSentEvent, SSEParser

API = "/api/v1"
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

Task = dict[str, Any]
Log = dict[str, Any]


class MasterUnreachable(HerderError, ConnectionError):
    """The master could not be reached at all (refused, DNS, timeout, broken connection)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the master at {url}: {reason}")
        self.url = url
        self.reason = reason


class QueueFull(ClientError):
    """429: the master's pending queue is full; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


class BatchSubmitError(ClientError):
    """`submit_many`: some items were refused. The others *were* submitted: `handles` has, per
    item, its handle or None, and `details` the refusal message or None."""

    def __init__(
        self, handles: list[Any], statuses: list[int], details: list[str | None]
    ) -> None:
        refused = [(i, s, d) for i, (s, d) in enumerate(zip(statuses, details, strict=True))
                   if s != 201]
        first_i, first_status, first_detail = refused[0]
        summary = f"{len(refused)} of {len(statuses)} tasks refused; item {first_i}: {first_detail}"
        super().__init__(first_status, summary)
        self.handles = handles
        self.statuses = statuses
        self.details = details


def is_final(task: Mapping[str, Any]) -> bool:
    """True when the task JSON is in a state it will never leave."""
    return task.get("state") in FINAL_STATES


def normalize_url(url: str) -> str:
    """`localhost:8700` -> `http://localhost:8700`; no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


# -- sans I/O: requests and responses ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    #: seconds for this request, when it may take longer than the client's default (long polls)
    timeout: float | None = None


def _task_body(
    type: str, params: Mapping[str, Any] | None, priority: int, timeout: float | None,
    id: str | None, retries: int | None = None,
) -> dict[str, Any]:
    """A submission's JSON, without the fields left at the server's defaults (no params,
    priority 0, no timeout, id or retries): a batch of 1,000 bare tasks is 24 kB instead of 82,
    and the master validates it in three quarters of the time."""
    body: dict[str, Any] = {"type": type}
    if params:
        body["params"] = dict(params)
    if priority != 0:
        body["priority"] = priority
    if timeout is not None:
        body["timeout"] = timeout
    if id is not None:
        body["id"] = id
    if retries is not None:
        body["retries"] = retries
    return body


def _batch_body(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    body = []
    for i, item in enumerate(items):
        if "type" not in item:
            raise ValueError(f"submit_many: item {i} has no 'type'")
        get = item.get
        body.append(
            _task_body(
                item["type"], get("params"), get("priority", 0), get("timeout"), get("id"),
                get("retries"),
            )
        )
    return body


def _task_path(task_id: str, suffix: str = "") -> str:
    # Task ids are user-chosen; quote them so that '/' or '?' cannot reach another route.
    return f"{API}/tasks/{quote(task_id, safe='')}{suffix}"


def _status_request(task_id: str, wait: float = 0.0) -> _Request:
    if wait <= 0:
        return _Request("GET", _task_path(task_id))
    # a long poll: the master answers when the task finishes, or after `wait` seconds
    return _Request(
        "GET", _task_path(task_id), params={"wait": round(wait, 3)}, timeout=wait + 10.0
    )


def _submit_request(body: dict[str, Any], wait: float = 0.0) -> _Request:
    if wait <= 0:
        return _Request("POST", f"{API}/tasks", json=body)
    # also a long poll: the answer comes when the task finishes, or after `wait` seconds
    return _Request(
        "POST", f"{API}/tasks", json=body, params={"wait": round(wait, 3)}, timeout=wait + 10.0
    )


def _first_wait(wait: float | None) -> float:
    """How long `run`'s submission may wait for the task to finish (a long poll's worth)."""
    return _Poll.LONG_POLL if wait is None else max(0.001, min(_Poll.LONG_POLL, wait))


def _result_of(task: Task) -> tuple[bool, Any]:
    """(True, result) from a finished task's JSON when it holds the result; TaskFailed if the
    task did not succeed; (False, None) when the result must be read (an older master)."""
    _raise_unless_succeeded(task)
    return ("result" in task), task.get("result")


def _result_request(task_id: str) -> _Request:
    return _Request("GET", _task_path(task_id, "/result"))


def _cancel_request(task_id: str) -> _Request:
    return _Request("POST", _task_path(task_id, "/cancel"))


def _subtasks_request(task_id: str) -> _Request:
    return _Request("GET", _task_path(task_id, "/subtasks"))


class _Answer(Protocol):
    """What `_read` needs of an answer: httpx.Response, or keepalive.Answer."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    @property
    def content(self) -> bytes: ...


def _detail(response: _Answer) -> str:
    """The server's `detail`, flattened to one line (FastAPI's 422 gives a list of problems)."""
    try:
        body = loads(response.content)
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail) if detail is not None else response.reason_phrase


def _retry_after(response: _Answer) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _read(response: _Answer) -> Any:
    """The JSON body of a successful answer, or the matching ClientError."""
    if response.status_code == 429:
        raise QueueFull(_detail(response), _retry_after(response))
    if response.status_code >= 400:
        raise ClientError(response.status_code, _detail(response))
    return loads(response.content)


def _unreachable(url: str, exc: Exception) -> MasterUnreachable:
    """`exc`: an httpx.TransportError, or an OSError / http.client error of keepalive's."""
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        reason = f"no answer in time ({type(exc).__name__})"
    else:
        reason = str(exc) or type(exc).__name__
    return MasterUnreachable(url, reason)


def _batch_outcome(answer: list[dict[str, Any]]) -> tuple[list[Task | None], list[int],
                                                           list[str | None]]:
    tasks = [item.get("task") if item.get("status") == 201 else None for item in answer]
    statuses = [int(item.get("status", 0)) for item in answer]
    details = [item.get("detail") for item in answer]
    return tasks, statuses, details


class _Pager:
    """Follows `next_cursor` until `limit` tasks are collected or the list ends."""

    def __init__(self, state: str | None, type: str | None, limit: int) -> None:
        self._filters = {k: v for k, v in (("state", state), ("type", type)) if v is not None}
        self._limit = limit
        self._cursor: str | None = None
        self._done = limit <= 0
        self.tasks: list[Task] = []

    def next_request(self) -> _Request | None:
        if self._done:
            return None
        params: dict[str, Any] = {**self._filters, "limit": self._limit - len(self.tasks)}
        if self._cursor is not None:
            params["cursor"] = self._cursor
        return _Request("GET", f"{API}/tasks", params=params)

    def feed(self, page: dict[str, Any]) -> None:
        self.tasks.extend(page.get("tasks", [])[: self._limit - len(self.tasks)])
        self._cursor = page.get("next_cursor")
        self._done = self._cursor is None or len(self.tasks) >= self._limit


class _Poll:
    """The schedule of `wait`: long polls (the master answers as soon as the task finishes, or
    after LONG_POLL seconds), within the caller's deadline. A finished task is seen at once,
    with one request per LONG_POLL seconds of waiting."""

    LONG_POLL = 10.0

    def __init__(self, task_id: str, timeout: float | None) -> None:
        self._task_id = task_id
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def next_wait(self, task: Task | None) -> float:
        """Seconds the next poll may wait; TimeoutError once the deadline has passed."""
        if self._deadline is None:
            return self.LONG_POLL
        left = self._deadline - time.monotonic()
        if task is None:  # the first look is always taken, even with no time to wait
            return max(0.0, min(self.LONG_POLL, left))
        if left <= 0:
            raise TimeoutError(
                f"task {self._task_id} is still {task.get('state')} after {self._timeout} s"
            )
        return min(self.LONG_POLL, left)


def _timeout_of(request: _Request) -> Any:
    return httpx.USE_CLIENT_DEFAULT if request.timeout is None else request.timeout


def _raise_unless_succeeded(task: Task) -> None:
    if task.get("state") != "succeeded":
        raise TaskFailed(str(task.get("id")), str(task.get("state")), task.get("error"))


# -- sans I/O: logs and live streams ------------------------------------------------------------


def _seq(record: Mapping[str, Any]) -> int:
    try:
        return int(record.get("seq") or 0)
    except (TypeError, ValueError):
        return 0


class _LogPager:
    """Reads stored log records after `since`, a page at a time, until a short page.

    Records at or below the last seq seen are skipped: the server may repeat its dropped-records
    marker (whose seq is just below the oldest kept record) on the next page.
    """

    PAGE = 1000

    def __init__(self, task_id: str, since: int) -> None:
        self._task_id = task_id
        self.since = since
        self._done = False
        self.logs: list[dict[str, Any]] = []

    def next_request(self) -> _Request | None:
        if self._done:
            return None
        return _Request("GET", _task_path(self._task_id, "/logs"),
                        params={"since": self.since, "limit": self.PAGE})

    def feed(self, page: dict[str, Any]) -> None:
        records = page.get("logs") or []
        fresh = [r for r in records if _seq(r) > self.since]
        self.logs.extend(fresh)
        if fresh:
            self.since = max(self.since, *(_seq(r) for r in fresh))
        self._done = len(records) < self.PAGE or not fresh


@dataclass(frozen=True, slots=True)
class Event:
    """One Server-Sent Event of the master: `kind` is `snapshot`, `state`, `progress` or `log`
    (see docs/api.md); `id` is set on durable events only (state and log), and is what to pass
    as `last_event_id` to resume after it; `data` is the decoded JSON."""

    kind: str
    id: int | None
    data: dict[str, Any]


class StreamUnavailable(ClientError):
    """The master refused to open an event stream, or answered with something that is not one
    (an older master, an unknown task, a proxy in the way). Retrying will not help; polling may."""


class _Retry(Exception):
    """Reconnect (within the retry budget); `error` is what to raise once the budget is spent,
    None for a stream that closed cleanly but too early."""

    def __init__(self, error: HerderError | None = None) -> None:
        super().__init__(error)
        self.error = error


# Keep-alive comments arrive every 15 s: a connection silent for 45 s is dead.
_STREAM_TIMEOUT = httpx.Timeout(10.0, read=45.0)
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
#: reconnections in a row (about 13 s of backoff) before a follow gives up
STREAM_RETRIES = 10
T = TypeVar("T")


class _Stream(Generic[T]):
    """The sans-I/O plan of one followed stream, shared by both clients: the request to send
    (resuming where the previous connection stopped), what each Server-Sent Event yields, when
    the stream is over, and how long to wait before reconnecting.

    Reconnects back off exponentially from FIRST to CAP seconds; after `retries` failures in a
    row (a failure: an error, or a connection that closed before it delivered an event) the last
    error is raised. Every event received resets the count.
    """

    FIRST = 0.1
    CAP = 2.0

    def __init__(self, retries: int) -> None:
        self._retries = retries
        self._failures = 0
        self._parser = SSEParser()
        #: the stream is over: stop reading and do not reconnect
        self.done = False

    def request(self) -> _Request:
        raise NotImplementedError

    def _item(self, sse: ServerSentEvent) -> T | None:
        raise NotImplementedError

    def end_request(self) -> _Request | None:
        """What to ask the master, if anything, before deciding what a clean end means."""
        return None

    def ended(self, answer: Any) -> None:
        """The server closed the stream cleanly (`answer`: to `end_request()`, if any): set
        `done`, or raise _Retry to reconnect."""
        raise _Retry

    def opened(self, response: httpx.Response) -> None:
        """Check the answer to `request()` (its body read when it is an error)."""
        self._parser = SSEParser()
        status = response.status_code
        if status in _RETRYABLE:
            raise _Retry(QueueFull(_detail(response), _retry_after(response)) if status == 429
                         else ClientError(status, _detail(response)))
        if status >= 400:
            raise StreamUnavailable(status, _detail(response))
        kind = response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            raise StreamUnavailable(status, f"expected text/event-stream, got {kind or 'nothing'}")

    def feed(self, chunk: bytes) -> list[T]:
        return self._items(self._parser.feed(chunk))

    def close(self) -> list[T]:
        return self._items(self._parser.close())

    def _items(self, events: list[ServerSentEvent]) -> list[T]:
        items = []
        for sse in events:
            self._failures = 0
            item = self._item(sse)
            if item is not None:
                items.append(item)
            if self.done:
                break
        return items

    def failed(self, error: HerderError) -> float:
        """Seconds to wait before reconnecting after `error`; raise it once retries run out."""
        self._failures += 1
        if self._failures > self._retries:
            raise error
        delay: float = min(self.CAP, self.FIRST * 2.0 ** (self._failures - 1))
        if isinstance(error, QueueFull) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


def _event_id(raw: str | None) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


class _EventStream(_Stream[Event]):
    """`/tasks/{id}/events` or `/events`, resumed with Last-Event-ID.

    A task stream is over after the task's final `state` event, or when the server closes it
    after a snapshot of a finished task (its final state event is no longer stored). Any other
    end, of either stream, is a dropped connection.
    """

    def __init__(
        self,
        task_id: str | None,
        last_event_id: int | str | None,
        retries: int,
        finished_only: bool = False,
    ) -> None:
        super().__init__(retries)
        self._task_id = task_id
        self._finished_only = finished_only
        self.last_event_id = None if last_event_id is None else str(last_event_id)
        self._final_snapshot = False

    def request(self) -> _Request:
        path = f"{API}/events" if self._task_id is None else _task_path(self._task_id, "/events")
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        params = {"finished": "true"} if self._finished_only else None
        return _Request("GET", path, params=params, headers=headers)

    def _item(self, sse: ServerSentEvent) -> Event:
        if sse.id:
            self.last_event_id = sse.id
        event = Event(sse.event, _event_id(sse.id), _json_object(sse.data))
        if self._task_id is not None:
            if event.kind == "snapshot":
                self._final_snapshot = is_final(event.data)
            elif event.kind == "state" and event.data.get("state") in FINAL_STATES:
                self.done = True
        return event

    def ended(self, answer: Any) -> None:
        if not self._final_snapshot:
            raise _Retry
        self.done = True


class _LogStream(_Stream[dict[str, Any]]):
    """`/tasks/{id}/logs?follow=true`, resumed with `since` = the last seq received. The server
    ends it once the task is finished and every record was sent; a clean end is checked against
    the task's state all the same, so that a master that closed it early is reconnected to."""

    def __init__(self, task_id: str, since: int, retries: int) -> None:
        super().__init__(retries)
        self._task_id = task_id
        self.since = since

    def request(self) -> _Request:
        return _Request(
            "GET", _task_path(self._task_id, "/logs"),
            params={"since": self.since, "follow": "true"},
            headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"},
        )

    def end_request(self) -> _Request:
        return _status_request(self._task_id)

    def ended(self, answer: Any) -> None:
        if not is_final(answer):
            raise _Retry
        self.done = True

    def _item(self, sse: ServerSentEvent) -> dict[str, Any] | None:
        if sse.event != "log":
            return None
        record = _json_object(sse.data)
        record.pop("task_id", None)  # as `logs()` gives them: the handle knows its task
        seq = _seq(record)
        if seq <= self.since:
            return None  # sent again after a reconnect
        self.since = seq
        return record


# -- sans I/O: waiting for many tasks ----------------------------------------------------------


class _HandleLike(Protocol):
    id: str
    task: Task | None


H = TypeVar("H", bound=_HandleLike)

class _Lookup:
    """Finds the stored JSON of those of `ids` whose tasks are finished: `POST /tasks/lookup`,
    CHUNK ids a request. It reads exactly those tasks, however many others the master holds."""

    CHUNK = 1000

    def __init__(self, ids: Iterable[str]) -> None:
        self.wanted = sorted(set(ids))
        self.found: dict[str, Task] = {}
        self._next = 0

    def next_request(self) -> _Request | None:
        if self._next >= len(self.wanted):
            return None
        chunk = self.wanted[self._next : self._next + self.CHUNK]
        self._next += len(chunk)
        return _Request("POST", f"{API}/tasks/lookup", json={"ids": chunk, "finished_only": True})

    def feed(self, answer: Any) -> None:
        for task in answer.get("tasks") or []:
            if isinstance(task, dict) and is_final(task):
                self.found[str(task.get("id"))] = task


class _BulkWait(Generic[H]):
    """The plan of `as_completed` / `gather`, shared by both clients: which handles are still
    unfinished, which are ready to be handed out, what to look up, and the deadline.

    The waiting itself is done over ONE stream of all tasks' events (`GET /events`): a final
    `state` event of a pending task finishes it. A task that finished before the stream was
    subscribed announced itself to nobody, so after each (re)connection the stored state of
    the pending tasks is read once (`lookup()`), in bulk. The master subscribes a stream before
    it answers with its headers, so once the answer has arrived nothing can slip between the two.
    Should an event be missed all the same (a master that dropped it), a stream silent but for
    its keep-alives for RECHECK seconds triggers another lookup.
    """

    RECHECK = 10.0
    #: at most this many unfinished tasks are long-polled one by one instead of a stream
    FEW = 16
    #: polling, for a master that refuses event streams
    POLL_FIRST = 0.05
    POLL_CAP = 1.0

    def __init__(self, handles: Iterable[H], timeout: float | None) -> None:
        self.handles = list(handles)
        self.total = len({h.id for h in self.handles})
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.pending: dict[str, list[H]] = {}
        #: final state and, when it was read, final JSON, by task id
        self.states: dict[str, str] = {}
        self.tasks: dict[str, Task] = {}
        self._ready: list[H] = []
        self._looked_up_at = -math.inf
        self._poll = self.POLL_FIRST
        self.stream = _EventStream(None, None, STREAM_RETRIES, finished_only=True)
        for h in self.handles:
            if h.task is not None and is_final(h.task):
                self.tasks[h.id] = h.task
                self.states[h.id] = str(h.task["state"])
                self._ready.append(h)
            else:
                self.pending.setdefault(h.id, []).append(h)

    # -- what finished --

    def _finish(self, task_id: str, state: str, task: Task | None = None) -> None:
        handles = self.pending.pop(task_id, None)
        if handles is None:
            return
        self.states[task_id] = state
        if task is not None:
            self.tasks[task_id] = task
            for h in handles:
                h.task = task
        self._ready.extend(handles)

    def take(self) -> list[H]:
        """The handles found finished since the last call, in the order they were found."""
        ready, self._ready = self._ready, []
        return ready

    def on_events(self, events: list[Event]) -> bool:
        """Apply a chunk's events; True when a lookup is due (a silent stream, see RECHECK)."""
        for event in events:
            if event.kind == "state" and event.data.get("state") in FINAL_STATES:
                # a live final event carries the task's JSON: no lookup for its result then
                task = event.data.get("task")
                self._finish(
                    str(event.data.get("task_id")), str(event.data["state"]),
                    task if isinstance(task, dict) and is_final(task) else None,
                )
        return not events and time.monotonic() - self._looked_up_at >= self.RECHECK

    def lookup(self) -> _Lookup:
        """What to read to find the pending tasks that are already finished."""
        self._looked_up_at = time.monotonic()
        return _Lookup(self.pending)

    def results_lookup(self) -> _Lookup:
        """What to read to have the final JSON (with its result) of every finished task."""
        return _Lookup(i for i in self.states if i not in self.tasks)

    def looked_up(self, lookup: _Lookup) -> None:
        for task_id, task in lookup.found.items():
            if task_id in self.pending:
                self._finish(task_id, str(task["state"]), task)
            elif task_id in self.states:
                self.tasks[task_id] = task

    def few(self) -> bool:
        """Few enough unfinished tasks to long-poll each in turn (cheaper than a stream)."""
        return len(self.pending) <= self.FEW

    def long_poll(self) -> _Request | None:
        """A long poll of one pending task (the master answers when it finishes)."""
        if not self.pending:
            return None
        self.raise_if_expired()
        left = self.left()
        wait = _Poll.LONG_POLL if left is None else max(0.001, min(_Poll.LONG_POLL, left))
        return _status_request(next(iter(self.pending)), wait)

    def polled(self, task: Task) -> None:
        if is_final(task):
            self._finish(str(task["id"]), str(task["state"]), task)

    def results(self) -> list[Any]:
        """Each handle's result, in order (after `results_lookup`); TaskFailed for a failure."""
        out = []
        for h in self.handles:
            task = self.tasks.get(h.id)
            if task is None:  # it finished, and then the master no longer knew it
                raise ClientError(404, f"task {h.id!r} not found")
            _raise_unless_succeeded(task)
            out.append(task.get("result"))
        return out

    # -- time --

    def left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def raise_if_expired(self) -> None:
        left = self.left()
        if left is not None and left <= 0 and self.pending:
            unfinished = len(self.pending)
            raise TimeoutError(
                f"{unfinished} of {self.total} tasks still unfinished after {self._timeout} s"
            )

    def capped(self, delay: float) -> float:
        left = self.left()
        return delay if left is None else max(0.0, min(delay, left))

    def stream_timeout(self) -> httpx.Timeout:
        """The stream's read timeout ends at the deadline, so that a silent stream cannot
        outlast it."""
        left = self.left()
        read = 45.0 if left is None else max(0.001, min(45.0, left))
        return httpx.Timeout(10.0, read=read)

    def next_poll(self) -> float:
        delay = self._poll
        self._poll = min(self.POLL_CAP, self._poll * 2)
        return self.capped(delay)


class _Base:
    """URL, headers and request building, shared by both clients."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self.url = normalize_url(url or env_url())
        self.token = token if token is not None else env_token()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "herder-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
