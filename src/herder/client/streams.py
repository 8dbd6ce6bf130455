"""The sans-I/O plans of followed streams, shared by both clients: what to request (resuming
where the previous connection stopped), what each Server-Sent Event yields, when the stream is
over, and when and how to reconnect (`Stream`, `EventStream`, `LogStream`).

Imports `protocol`, `errors`, `jsontext` and the client's `errors`, `plan` and `sse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from herder.client.errors import QueueFull, StreamUnavailable
from herder.client.plan import (
    Answer,
    Request,
    error_detail,
    is_final,
    log_seq,
    retry_after_of,
    status_request,
    task_path,
)
from herder.client.sse import ServerSentEvent, SSEParser
from herder.errors import ClientError, HerderError
from herder.jsontext import loads
from herder.protocol import paths
from herder.protocol.answers import FINAL_STATE_NAMES, LogLine

#: reconnections in a row (about 13 s of backoff) before a follow gives up
STREAM_RETRIES = 10
#: keep-alive comments arrive every 15 s: a stream silent for this long is dead
STREAM_READ_TIMEOUT = 45.0
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_STREAM_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    """One Server-Sent Event of the master: `kind` is `snapshot`, `state`, `progress` or `log`
    (see docs/api.md); `id` is set on durable events only (state and log), and is what to pass
    as `last_event_id` to resume after it; `data` is the decoded JSON."""

    kind: str
    id: int | None
    data: dict[str, Any]


class Retry(Exception):
    """Reconnect (within the retry budget); `error` is what to raise once the budget is spent,
    None for a stream that closed cleanly but too early."""

    def __init__(self, error: HerderError | None = None) -> None:
        super().__init__(error)
        self.error = error


class Stream(Generic[T]):
    """The plan of one followed stream.

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

    def request(self) -> Request:
        raise NotImplementedError

    def _item(self, sse: ServerSentEvent) -> T | None:
        raise NotImplementedError

    def end_request(self) -> Request | None:
        """What to ask the master, if anything, before deciding what a clean end means."""
        return None

    def ended(self, answer: Any) -> None:
        """The server closed the stream cleanly (`answer`: to `end_request()`, if any): set
        `done`, or raise Retry to reconnect."""
        raise Retry

    def opened(self, answer: Answer) -> None:
        """Check the answer to `request()` (its body read when it is an error)."""
        self._parser = SSEParser()
        status = answer.status_code
        if status in _RETRYABLE:
            raise Retry(QueueFull(error_detail(answer), retry_after_of(answer)) if status == 429
                        else ClientError(status, error_detail(answer)))
        if status >= 400:
            raise StreamUnavailable(status, error_detail(answer))
        kind = answer.header("content-type") or ""
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


class EventStream(Stream[Event]):
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

    def request(self) -> Request:
        path = (paths.EVENTS if self._task_id is None
                else task_path(paths.TASK_EVENTS, self._task_id))
        headers = _STREAM_HEADERS
        if self.last_event_id is not None:
            headers = {**headers, "Last-Event-ID": self.last_event_id}
        params = {"finished": "true"} if self._finished_only else None
        return Request("GET", path, params=params, headers=headers, timeout=STREAM_READ_TIMEOUT)

    def _item(self, sse: ServerSentEvent) -> Event:
        if sse.id:
            self.last_event_id = sse.id
        event = Event(sse.event, _event_id(sse.id), _json_object(sse.data))
        if self._task_id is not None:
            if event.kind == "snapshot":
                self._final_snapshot = is_final(event.data)
            elif event.kind == "state" and event.data.get("state") in FINAL_STATE_NAMES:
                self.done = True
        return event

    def ended(self, answer: Any) -> None:
        if not self._final_snapshot:
            raise Retry
        self.done = True


class LogStream(Stream[LogLine]):
    """`/tasks/{id}/logs?follow=true`, resumed with `since` = the last seq received. The server
    ends it once the task is finished and every record was sent; a clean end is checked against
    the task's state all the same, so that a master that closed it early is reconnected to."""

    def __init__(self, task_id: str, since: int, retries: int) -> None:
        super().__init__(retries)
        self._task_id = task_id
        self.since = since

    def request(self) -> Request:
        return Request(
            "GET", task_path(paths.TASK_LOGS, self._task_id),
            params={"since": self.since, "follow": "true"},
            headers=_STREAM_HEADERS, timeout=STREAM_READ_TIMEOUT,
        )

    def end_request(self) -> Request:
        return status_request(self._task_id)

    def ended(self, answer: Any) -> None:
        if not is_final(answer):
            raise Retry
        self.done = True

    def _item(self, sse: ServerSentEvent) -> LogLine | None:
        if sse.event != "log":
            return None
        record = _json_object(sse.data)
        record.pop("task_id", None)  # as `logs()` gives them: the handle knows its task
        seq = log_seq(record)
        if seq <= self.since:
            return None  # sent again after a reconnect
        self.since = seq
        return cast(LogLine, record)
