"""The task journal: log lines and final states, written in batches, then published live.

Entries are buffered for a few milliseconds and written in one transaction (a task that logs
thousands of lines costs one commit per batch, not one per line); once stored, each gets its
`seq` and goes out to followers as a durable event. The states a task passes through on its way
(pending, running, aggregating) are live events only, like progress: they go out in the same
order, with no id, and are not stored (a follower who reconnects gets the task's snapshot, which
holds its state; the task's row holds when it started). That saves two of a short task's three
journal rows. Log lines are bounded per task: past `max_per_task` (plus 10 % of slack, so
trimming is rare) the oldest are deleted and counted. Imports the master's `events` and
`storethread`, and `model`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from herder.master.events import Event, Hub
from herder.master.storethread import StoreThread
from herder.model import FINAL_TASK_STATES, STATE_TEXT, LogRecord

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.02


class Journal:
    def __init__(self, store: StoreThread, hub: Hub, max_per_task: int) -> None:
        self._store = store
        self._hub = hub
        self.max_per_task = max_per_task
        #: what the next flush stores (the records) and publishes (all of it, in this order)
        self._buffer: list[LogRecord | Event] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        #: log lines stored per task, for the bound (None until read from the store)
        self._counts: dict[str, int] = {}
        #: the task JSON that goes with a buffered final state record, by the record's id()
        self._final_views: dict[int, dict[str, Any]] = {}

    def append(self, record: LogRecord | Event) -> None:
        self._buffer.append(record)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(FLUSH_INTERVAL, self._flush_soon)

    def state(
        self, task_id: str, state: str, ts: float, view: dict[str, Any] | None = None
    ) -> None:
        """A final state is stored; `view`, the finished task's JSON, goes with its live event
        (not stored with it), so that a client waiting for many tasks needs no request per task
        for their results. Any other state is a live event only (nothing to do when nobody
        follows them)."""
        state = STATE_TEXT[state]  # not the enum member: JSON encoders take a plain str faster
        if state not in FINAL_TASK_STATES:  # (a StrEnum's members match their strings)
            if self._hub.wants_updates:
                data = {"task_id": task_id, "state": state, "ts": ts}
                self.append(Event("state", task_id, data))
            return
        record = LogRecord(task_id=task_id, ts=ts, level="INFO", message=state, kind="state")
        if view is not None:
            self._final_views[id(record)] = view
        self.append(record)

    def forget(self, task_id: str) -> None:
        self._counts.pop(task_id, None)

    def _flush_soon(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.flush())
        task.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Write what is buffered, then publish it; in order, one flush at a time."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            records = [r for r in batch if not isinstance(r, Event)]
            if records:
                # one transaction with the writes posted before it (a commit saved per flush)
                try:
                    await self._store.commit(self._store.store.append_logs, records)
                except BaseException:
                    for record in records:  # never published: their views go too
                        self._final_views.pop(id(record), None)
                    raise
            views = self._final_views
            publish = self._hub.publish
            for entry in batch:
                if isinstance(entry, Event):
                    publish(entry)
                else:  # stored: it has its seq now
                    publish(event_of(entry, views.pop(id(entry), None) if views else None))
            await self._bound(records)

    async def _bound(self, stored: list[LogRecord]) -> None:
        added: dict[str, int] = {}
        for record in stored:
            if record.kind == "log":
                added[record.task_id] = added.get(record.task_id, 0) + 1
        for task_id, n in added.items():
            count = self._counts.get(task_id)
            if count is None:
                count = await self._store.call(self._store.store.count_logs, task_id)
            else:
                count += n
            if count > self.max_per_task * 1.1:
                dropped = await self._store.call(
                    self._store.store.trim_logs, task_id, self.max_per_task
                )
                count -= dropped
            self._counts[task_id] = count


def event_of(record: LogRecord, task: dict[str, Any] | None = None) -> Event:
    if record.kind == "state":
        data: dict[str, Any] = {"task_id": record.task_id, "state": record.message, "ts": record.ts}
        if task is not None:
            data["task"] = task
        return Event("state", record.task_id, data, record.seq)
    return Event("log", record.task_id, {"task_id": record.task_id, **record.to_json()}, record.seq)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("journal write failed", exc_info=task.exception())
