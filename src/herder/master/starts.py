"""Attempt starts, written late so that most of them need no write of their own.

An attempt's start (its subtask running, on which worker, since when) must reach the store: a
master that restarts holds running subtasks for their workers instead of running them again.
But a short attempt's result comes back within milliseconds, and the write that stores the
result can store the start too, in the same row update: one row write instead of two. So
starts wait here:

- a result takes its attempt's start (`take`) and its write carries it;
- what still waits WRITE_AFTER seconds after the first of them is posted to the store;
- every other write to subtasks (a failure, a requeue) posts them first (`post`): writes to one
  subtask stay in the order they were made. Reads of subtasks do too, so they never miss a start.
  A task's end need not: a start written after it finds its subtask final and changes nothing.

Part of the store's facade (`records`). Imports the master's `storethread` and `store.base`.
"""

from __future__ import annotations

import asyncio

from herder.master.storethread import StoreThread
from herder.store.base import AttemptStart, Store

#: seconds a start may wait for its result before it is posted alone (the store's own write-
#: behind then adds up to its FLUSH_DELAY)
WRITE_AFTER = 0.05


class UnwrittenStarts:
    def __init__(self, thread: StoreThread, store: Store) -> None:
        self._thread = thread
        self._write = store.start_attempts
        self._waiting: dict[tuple[str, int, int], AttemptStart] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, start: AttemptStart) -> None:
        """`start`: (task_id, index, attempt, worker, started_at, worker_uid)."""
        self._waiting[start[:3]] = start
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WRITE_AFTER, self.post)

    def take(self, task_id: str, index: int, attempt: int) -> AttemptStart | None:
        """The attempt's start if it is not written yet; its caller writes it from now on."""
        return self._waiting.pop((task_id, index, attempt), None) if self._waiting else None

    def post(self) -> None:
        """Post every start still waiting to the store, in the order they were made."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            starts, self._waiting = list(self._waiting.values()), {}
            self._thread.post(self._write, starts)

    def __len__(self) -> int:
        return len(self._waiting)
