"""Live events for whoever follows tasks: a small publish/subscribe hub, and the SSE wire format.

Durable events (final states and log lines) carry the journal `seq` as their id, so a follower
that reconnects with Last-Event-ID is served the rest from the store. Progress events carry no id:
they are a view of the moment, and the next one supersedes them. A follower that falls too far
behind is dropped (its stream ends) instead of holding memory: it reconnects and replays from the
store. Imports `model` and `jsontext`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from herder.jsontext import to_bytes
from herder.model import LogRecord
from herder.values import value

QUEUE_LIMIT = 10_000


@value
class Event:
    kind: str  # snapshot | state | log | progress
    task_id: str
    data: dict[str, Any]
    id: int | None = None

    def sse(self) -> bytes:
        head = f"event: {self.kind}\ndata: "
        if self.id is not None:
            head = f"id: {self.id}\n{head}"
        return head.encode() + to_bytes(self.data) + b"\n\n"


KEEP_ALIVE = b": keep-alive\n\n"


def event_of(record: LogRecord, task: dict[str, Any] | None = None) -> Event:
    """The durable event of a journal record once stored (it has its `seq`); `task`, the
    finished task's JSON, goes with a final state's event."""
    if record.kind == "state":
        data: dict[str, Any] = {"task_id": record.task_id, "state": record.message, "ts": record.ts}
        if task is not None:
            data["task"] = task
        return Event("state", record.task_id, data, record.seq)
    return Event("log", record.task_id, {"task_id": record.task_id, **record.to_json()}, record.seq)


@dataclass(eq=False, slots=True)
class Subscription:
    task_id: str | None  # None: every task
    kinds: frozenset[str] | None = None  # None: every kind
    #: a last filter, applied before an event is queued (a client waiting for many tasks
    #: follows only their final states: three events in four are never queued)
    keep: Callable[[Event], bool] | None = None
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    #: it takes only final states (its `keep` says so): the states on a task's way and its
    #: progress need not even be made for it
    finals_only: bool = False

    def wants(self, event: Event) -> bool:
        if self.task_id is not None and event.task_id != self.task_id:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return self.keep is None or self.keep(event)


class Hub:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        #: how many subscriptions take more than final states
        self._following_updates = 0

    @property
    def active(self) -> bool:
        return bool(self._subs)

    @property
    def wants_updates(self) -> bool:
        """Does anyone follow more than tasks' final states (the states on their way, progress,
        logs)? A client waiting for many tasks follows only their final states."""
        return self._following_updates > 0

    def subscribe(
        self,
        task_id: str | None,
        kinds: frozenset[str] | None = None,
        keep: Callable[[Event], bool] | None = None,
        finals_only: bool = False,
    ) -> Subscription:
        """`finals_only`: `keep` takes only final state events."""
        sub = Subscription(task_id, kinds, keep, finals_only=finals_only)
        self._subs.add(sub)
        self._following_updates += not finals_only
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._following_updates -= not sub.finals_only

    def publish(self, event: Event) -> None:
        behind: list[Subscription] = []
        for sub in self._subs:
            if not sub.wants(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True
                behind.append(sub)
        for sub in behind:  # (not while iterating over the set)
            self.unsubscribe(sub)
