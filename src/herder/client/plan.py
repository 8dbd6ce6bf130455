"""The sans-I/O half of the client's plain calls, written once for `Client` and `AsyncClient`:
the requests to send (`Request`, built from `protocol.paths`), the answers read into values or
errors (`Answer`, `read_answer`), paging task lists, subtasks and logs (`Pager`,
`SubtaskPager`, `LogPager`) and the polling schedule of `wait` (`Poll`). The plans of streams
live in `streams`, of waiting for many tasks in `bulk`; `sync` and `aio` send the requests.

Imports `protocol`, `errors`, `jsontext` and the client's `errors`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from herder.client.errors import QueueFull
from herder.errors import ClientError, TaskFailed
from herder.instants import parse_instant
from herder.jsontext import loads
from herder.protocol import paths
from herder.protocol.answers import FINAL_STATE_NAMES, LogLine, SubtaskView, TaskView

#: the final states, as the wire writes them (an alias of `protocol.answers.FINAL_STATE_NAMES`)
FINAL_STATES = FINAL_STATE_NAMES


def is_final(task: Mapping[str, Any]) -> bool:
    """True when the task JSON is in a state it will never leave."""
    return task.get("state") in FINAL_STATE_NAMES


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, as the plans decide it; the transport sends it to a master."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    #: seconds the answer may take, when not the client's default (long polls, streams)
    timeout: float | None = None
    #: sending it twice does no harm, so it may go again (to this or another master) after a
    #: failure that leaves unknown whether it arrived; GETs always may
    idempotent: bool = False


#: a task's `not_before`: an aware datetime, a UNIX timestamp, or an ISO 8601 text with a zone
Moment = datetime | float | str


def task_body(
    type: str, params: Mapping[str, Any] | None, priority: int, timeout: float | None,
    id: str | None, retries: int | None = None, not_before: Moment | None = None,
    *, max_parallel: int | None = None, labels: Iterable[str] = (),
) -> dict[str, Any]:
    """A submission's JSON, without the fields left at the server's defaults (no params,
    priority 0, no timeout, id, retries, not_before, max_parallel or labels): smaller to send
    and quicker for the master to read. ValueError for a `not_before` that is no time (a
    datetime without a zone)."""
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
    if not_before is not None:
        body["not_before"] = parse_instant(not_before)
    if max_parallel is not None:
        body["max_parallel"] = max_parallel
    if labels:
        body["labels"] = sorted(set(labels))
    return body


def batch_body(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    body = []
    for i, item in enumerate(items):
        if "type" not in item:
            raise ValueError(f"submit_many: item {i} has no 'type'")
        get = item.get
        body.append(
            task_body(
                item["type"], get("params"), get("priority", 0), get("timeout"), get("id"),
                get("retries"), get("not_before"), max_parallel=get("max_parallel"),
                labels=get("labels") or (),
            )
        )
    return body


def task_path(template: str, task_id: str) -> str:
    # Task ids are user-chosen; quote them so that '/' or '?' cannot reach another route.
    return template.format(task_id=quote(task_id, safe=""))


def status_request(task_id: str, wait: float = 0.0) -> Request:
    if wait <= 0:
        return Request("GET", task_path(paths.TASK, task_id))
    # a long poll: the master answers when the task finishes, or after `wait` seconds
    return Request("GET", task_path(paths.TASK, task_id), params={"wait": round(wait, 3)},
                   timeout=wait + 10.0)


def submit_request(body: dict[str, Any], wait: float = 0.0) -> Request:
    # With an id, the master refuses a second copy (409): safe to send again.
    again = "id" in body
    if wait <= 0:
        return Request("POST", paths.TASKS, json=body, idempotent=again)
    # also a long poll: the answer comes when the task finishes, or after `wait` seconds
    return Request("POST", paths.TASKS, json=body, params={"wait": round(wait, 3)},
                   timeout=wait + 10.0, idempotent=again)


def batch_request(body: list[dict[str, Any]]) -> Request:
    return Request("POST", paths.TASKS_BATCH, json=body,
                   idempotent=all("id" in item for item in body))


def first_wait(wait: float | None) -> float:
    """How long `run`'s submission may wait for the task to finish (a long poll's worth)."""
    return Poll.LONG_POLL if wait is None else max(0.001, min(Poll.LONG_POLL, wait))


def result_request(task_id: str) -> Request:
    return Request("GET", task_path(paths.TASK_RESULT, task_id))


def cancel_request(task_id: str) -> Request:
    return Request("POST", task_path(paths.TASK_CANCEL, task_id), idempotent=True)


def delete_request(task_id: str) -> Request:
    # not resent once it may have arrived: a second one would answer 404 for a task the first
    # deleted
    return Request("DELETE", task_path(paths.TASK, task_id))


def drain_request(name: str) -> Request:
    # asking a draining worker to drain again changes nothing
    return Request(
        "POST", paths.WORKER_DRAIN.format(name=quote(name, safe="")), idempotent=True
    )


def schedule_body(
    id: str, type: str, params: Mapping[str, Any] | None, cron: str | None,
    every: str | float | None, timezone: str, priority: int, timeout: float | None,
    overlap: str,
) -> dict[str, Any]:
    """`POST /schedules`' JSON; `every` in seconds when a number."""
    body: dict[str, Any] = {"id": id, "type": type, "params": dict(params or {}),
                            "timezone": timezone, "priority": priority, "overlap": overlap}
    if cron is not None:
        body["cron"] = cron
    if every is not None:
        body["every"] = every if isinstance(every, str) else f"{every:g}s"
    if timeout is not None:
        body["timeout"] = timeout
    return body


def schedule_request(body: dict[str, Any]) -> Request:
    return Request("POST", paths.SCHEDULES, json=body)


def unschedule_request(schedule_id: str) -> Request:
    return Request(
        "DELETE", paths.SCHEDULE.format(schedule_id=quote(schedule_id, safe="")),
        idempotent=True,
    )


WORKERS = Request("GET", paths.WORKERS)
SCHEDULES = Request("GET", paths.SCHEDULES)
TYPES = Request("GET", paths.TYPES)
HEALTH = Request("GET", paths.HEALTHZ)
STATS = Request("GET", paths.STATS)


# -- answers -----------------------------------------------------------------------------------


class Answer:
    """An HTTP answer as the plans read it: its status, its headers as the transport got them
    ((name, value) byte pairs) and its body (empty for a stream until it is read)."""

    __slots__ = ("content", "raw_headers", "status_code")

    def __init__(
        self, status_code: int, raw_headers: Sequence[tuple[bytes, bytes]], content: bytes = b""
    ) -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.content = content

    def header(self, name: str) -> str | None:
        """The value of the header `name` (lower case), or None."""
        wanted = name.encode()
        for key, value in self.raw_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def error_detail(answer: Answer) -> str:
    """The server's `detail`, flattened to one line (FastAPI's 422 gives a list of problems)."""
    try:
        body = loads(answer.content)
    except ValueError:
        return answer.text.strip() or answer.reason_phrase
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
    return str(detail) if detail is not None else answer.reason_phrase


def retry_after_of(answer: Answer) -> float | None:
    try:
        return float(answer.header("retry-after") or "")
    except ValueError:
        return None


def read_answer(answer: Answer) -> Any:
    """The JSON body of a successful answer, or the matching ClientError."""
    status = answer.status_code
    if status == 204:  # done, and nothing to say (a delete)
        return None
    if status < 400:
        return loads(answer.content) if answer.content else None
    if status == 429:
        raise QueueFull(error_detail(answer), retry_after_of(answer))
    raise ClientError(status, error_detail(answer))


def batch_outcome(
    answer: list[dict[str, Any]],
) -> tuple[list[TaskView | None], list[int], list[str | None]]:
    tasks = [item.get("task") if item.get("status") == 201 else None for item in answer]
    statuses = [int(item.get("status", 0)) for item in answer]
    details = [item.get("detail") for item in answer]
    return tasks, statuses, details


def result_of(task: TaskView) -> tuple[bool, Any]:
    """(True, result) from a finished task's JSON when it holds the result; TaskFailed if the
    task did not succeed; (False, None) when the result must be read (an older master)."""
    raise_unless_succeeded(task)
    return ("result" in task), task.get("result")


def raise_unless_succeeded(task: Mapping[str, Any]) -> None:
    if task.get("state") != "succeeded":
        raise TaskFailed(str(task.get("id")), str(task.get("state")), task.get("error"))


# -- paging and polling ------------------------------------------------------------------------


class Pager:
    """Follows `next_cursor` until `limit` tasks are collected or the list ends."""

    def __init__(
        self, state: str | None, type: str | None, limit: int, schedule: str | None = None
    ) -> None:
        filters = (("state", state), ("type", type), ("schedule", schedule))
        self._filters = {k: v for k, v in filters if v is not None}
        self._limit = limit
        self._cursor: str | None = None
        self._done = limit <= 0
        self.tasks: list[TaskView] = []

    def next_request(self) -> Request | None:
        if self._done:
            return None
        params: dict[str, Any] = {**self._filters, "limit": self._limit - len(self.tasks)}
        if self._cursor is not None:
            params["cursor"] = self._cursor
        return Request("GET", paths.TASKS, params=params)

    def feed(self, page: Mapping[str, Any]) -> None:
        self.tasks.extend(page.get("tasks", [])[: self._limit - len(self.tasks)])
        self._cursor = page.get("next_cursor")
        self._done = self._cursor is None or len(self.tasks) >= self._limit


class SubtaskPager:
    """Follows `next_cursor` through a task's subtasks until the last page."""

    PAGE = 1000

    def __init__(self, task_id: str) -> None:
        self._path = task_path(paths.TASK_SUBTASKS, task_id)
        self._cursor: str | None = None
        self._done = False
        self.subtasks: list[SubtaskView] = []

    def next_request(self) -> Request | None:
        if self._done:
            return None
        params: dict[str, Any] = {"limit": self.PAGE}
        if self._cursor is not None:
            params["cursor"] = self._cursor
        return Request("GET", self._path, params=params)

    def feed(self, page: Mapping[str, Any]) -> None:
        self.subtasks.extend(page.get("subtasks") or [])
        self._cursor = page.get("next_cursor")
        self._done = self._cursor is None


class Poll:
    """The schedule of `wait`: long polls (the master answers as soon as the task finishes, or
    after LONG_POLL seconds), within the caller's deadline. A finished task is seen at once,
    with one request per LONG_POLL seconds of waiting."""

    LONG_POLL = 10.0

    def __init__(self, task_id: str, timeout: float | None) -> None:
        self._task_id = task_id
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def next_wait(self, task: Mapping[str, Any] | None) -> float:
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


def log_seq(record: Mapping[str, Any]) -> int:
    try:
        return int(record.get("seq") or 0)
    except (TypeError, ValueError):
        return 0


class LogPager:
    """Reads stored log records after `since`, a page at a time, until a short page.

    Records at or below the last seq seen are skipped: the server may repeat its dropped-records
    marker (whose seq is just below the oldest kept record) on the next page.
    """

    PAGE = 1000

    def __init__(self, task_id: str, since: int) -> None:
        self._task_id = task_id
        self.since = since
        self._done = False
        self.logs: list[LogLine] = []

    def next_request(self) -> Request | None:
        if self._done:
            return None
        return Request("GET", task_path(paths.TASK_LOGS, self._task_id),
                       params={"since": self.since, "limit": self.PAGE})

    def feed(self, page: Mapping[str, Any]) -> None:
        records = page.get("logs") or []
        fresh = [r for r in records if log_seq(r) > self.since]
        self.logs.extend(fresh)
        if fresh:
            self.since = max(self.since, *(log_seq(r) for r in fresh))
        self._done = len(records) < self.PAGE or not fresh
