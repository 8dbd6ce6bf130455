"""The sans-I/O plan of waiting for many tasks at once (`as_completed`, `gather`), shared by
both clients: `BulkWait` over one event stream of all tasks, with `Lookup` reading the stored
states of many tasks in bulk.

Imports `protocol`, `errors` and the client's `plan` and `streams`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar, cast

from herder.client.plan import Poll, Request, is_final, raise_unless_succeeded, status_request
from herder.client.streams import STREAM_READ_TIMEOUT, STREAM_RETRIES, Event, EventStream
from herder.errors import ClientError
from herder.protocol import paths
from herder.protocol.answers import FINAL_STATE_NAMES, TaskView


class HandleLike(Protocol):
    id: str
    task: TaskView | None


H = TypeVar("H", bound=HandleLike)


class Lookup:
    """Finds the stored JSON of those of `ids` whose tasks are finished: `POST /tasks/lookup`,
    CHUNK ids a request. It reads exactly those tasks, however many others the master holds."""

    CHUNK = 1000

    def __init__(self, ids: Iterable[str]) -> None:
        self.wanted = sorted(set(ids))
        self.found: dict[str, TaskView] = {}
        self._next = 0

    def next_request(self) -> Request | None:
        if self._next >= len(self.wanted):
            return None
        chunk = self.wanted[self._next : self._next + self.CHUNK]
        self._next += len(chunk)
        return Request("POST", paths.TASKS_LOOKUP, json={"ids": chunk, "finished_only": True},
                       idempotent=True)

    def feed(self, answer: Mapping[str, Any]) -> None:
        for task in answer.get("tasks") or []:
            if isinstance(task, dict) and is_final(task):
                self.found[str(task.get("id"))] = cast(TaskView, task)


class BulkWait(Generic[H]):
    """Which handles are still unfinished, which are ready to be handed out, what to look up,
    and the deadline.

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
        self.tasks: dict[str, TaskView] = {}
        self._ready: list[H] = []
        self._looked_up_at = -math.inf
        self._poll = self.POLL_FIRST
        self.stream = EventStream(None, None, STREAM_RETRIES, finished_only=True)
        for h in self.handles:
            if h.task is not None and is_final(h.task):
                self.tasks[h.id] = h.task
                self.states[h.id] = str(h.task["state"])
                self._ready.append(h)
            else:
                self.pending.setdefault(h.id, []).append(h)

    # -- what finished --

    def _finish(self, task_id: str, state: str, task: TaskView | None = None) -> None:
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
            if event.kind == "state" and event.data.get("state") in FINAL_STATE_NAMES:
                # a live final event carries the task's JSON: no lookup for its result then
                task = event.data.get("task")
                self._finish(
                    str(event.data.get("task_id")), str(event.data["state"]),
                    cast(TaskView, task) if isinstance(task, dict) and is_final(task) else None,
                )
        return not events and time.monotonic() - self._looked_up_at >= self.RECHECK

    def lookup(self) -> Lookup:
        """What to read to find the pending tasks that are already finished."""
        self._looked_up_at = time.monotonic()
        return Lookup(self.pending)

    def results_lookup(self) -> Lookup:
        """What to read to have the final JSON (with its result) of every finished task."""
        return Lookup(i for i in self.states if i not in self.tasks)

    def looked_up(self, lookup: Lookup) -> None:
        for task_id, task in lookup.found.items():
            if task_id in self.pending:
                self._finish(task_id, str(task["state"]), task)
            elif task_id in self.states:
                self.tasks[task_id] = task

    def few(self) -> bool:
        """Few enough unfinished tasks to long-poll each in turn (cheaper than a stream)."""
        return len(self.pending) <= self.FEW

    def long_poll(self) -> Request | None:
        """A long poll of one pending task (the master answers when it finishes)."""
        if not self.pending:
            return None
        self.raise_if_expired()
        left = self.left()
        wait = Poll.LONG_POLL if left is None else max(0.001, min(Poll.LONG_POLL, left))
        return status_request(next(iter(self.pending)), wait)

    def polled(self, task: TaskView) -> None:
        if is_final(task):
            self._finish(str(task["id"]), str(task["state"]), task)

    def results(self) -> list[Any]:
        """Each handle's result, in order (after `results_lookup`); TaskFailed for a failure."""
        out = []
        for h in self.handles:
            task = self.tasks.get(h.id)
            if task is None:  # it finished, and then the master no longer knew it
                raise ClientError(404, f"task {h.id!r} not found")
            raise_unless_succeeded(task)
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

    def stream_request(self) -> Request:
        """The stream's next request, whose read timeout ends at the deadline, so that a silent
        stream cannot outlast it."""
        request = self.stream.request()
        left = self.left()
        if left is None:
            return request
        read = max(0.001, min(STREAM_READ_TIMEOUT, left))
        return Request(request.method, request.path, request.params, headers=request.headers,
                       timeout=read)

    def next_poll(self) -> float:
        delay = self._poll
        self._poll = min(self.POLL_CAP, self._poll * 2)
        return self.capped(delay)
