"""The task journal: log lines and final states, written in batches, then handed on to be published.

Entries are buffered for FLUSH_INTERVAL and written in one transaction (a task that logs
thousands of lines costs one commit per batch, not one per line); once stored, each gets its
`seq` and goes to `publish` as a durable event. Live-only events (the states on a task's way,
which are not stored) wait in the same buffer, so that followers see everything in the order it
happened. Log lines are bounded per task: past `max_per_task` (plus 10 % of slack, so trimming
is rare) the oldest are deleted and counted.

Part of the store's facade (`records`). Imports the master's `storethread` and `events`,
`store.base` and `model`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from herder.master.events import Event, event_of
from herder.master.storethread import StoreThread
from herder.model import LogRecord
from herder.store.base import Store

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.02


class Journal:
    def __init__(
        self,
        thread: StoreThread,
        store: Store,
        publish: Callable[[Event], None],
        max_per_task: int,
    ) -> None:
        self._thread = thread
        self._store = store
        self._publish = publish
        self.max_per_task = max_per_task
        #: what the next flush stores (the records) and publishes (all of it, in this order)
        self._buffer: list[LogRecord | Event] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        #: log lines stored per task, for the bound (None until read from the store)
        self._counts: dict[str, int] = {}
        #: the task JSON that goes with a buffered final state record, by the record's id()
        self._final_views: dict[int, dict[str, Any]] = {}

    def append(self, entry: LogRecord | Event, view: dict[str, Any] | None = None) -> None:
        """A record to store, or a live-only event; `view`, the finished task's JSON, goes with
        a final state's live event (it is not stored)."""
        self._buffer.append(entry)
        if view is not None:
            self._final_views[id(entry)] = view
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(FLUSH_INTERVAL, self._flush_soon)

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
                records = await self._store_records(records)
                stored = {id(r) for r in records}
                batch = [e for e in batch if isinstance(e, Event) or id(e) in stored]
            views = self._final_views
            publish = self._publish
            for entry in batch:
                if isinstance(entry, Event):
                    publish(entry)
                else:  # stored: it has its seq now
                    publish(event_of(entry, views.pop(id(entry), None) if views else None))
            await self._bound(records)

    async def _store_records(self, records: list[LogRecord]) -> list[LogRecord]:
        """Store `records`, in one transaction with the writes posted before it (a commit saved
        per flush); those stored. Should the batch fail, each record is stored on its own, so
        that one bad record (a value the store cannot take) loses only itself."""
        try:
            await self._thread.commit(self._store.logs.append, records)
            return records
        except Exception as exc:
            log.warning("journal: a batch of %d records failed (%s); storing them one by one",
                        len(records), exc)
        stored = []
        for record in records:
            try:
                await self._thread.commit(self._store.logs.append, [record])
            except Exception as exc:
                self._final_views.pop(id(record), None)  # never published: its view goes too
                log.error("journal: dropped a %s record of task %s: %s",
                          record.kind, record.task_id, exc)
                continue
            stored.append(record)
        return stored

    async def _bound(self, stored: list[LogRecord]) -> None:
        added: dict[str, int] = {}
        for record in stored:
            if record.kind == "log":
                added[record.task_id] = added.get(record.task_id, 0) + 1
        for task_id, n in added.items():
            count = self._counts.get(task_id)
            if count is None:
                count = await self._thread.call(self._store.logs.count, task_id)
            else:
                count += n
            if count > self.max_per_task * 1.1:
                dropped = await self._thread.call(
                    self._store.logs.trim, task_id, self.max_per_task
                )
                count -= dropped
            self._counts[task_id] = count


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("journal write failed", exc_info=task.exception())
