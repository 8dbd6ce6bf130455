"""Attempt starts written late (`UnwrittenStarts`): taken by their result's write, or posted.

Imports herder.master and herder.store; SQLite in memory, no other processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from herder.master.starts import WRITE_AFTER, UnwrittenStarts
from herder.master.storethread import StoreThread
from herder.model import SubtaskState, TaskRecord
from herder.store.base import AttemptStart
from herder.store.sqlite import SqliteStore


class CountingStore(SqliteStore):
    def __init__(self) -> None:
        super().__init__(":memory:")
        self.started: list[list[AttemptStart]] = []

    def start_attempts(self, items: Sequence[AttemptStart]) -> None:
        self.started.append(list(items))
        super().start_attempts(items)


def store_with_a_task(parts: int) -> tuple[CountingStore, str]:
    """A store holding task "t", running, with `parts` queued subtasks."""
    store = CountingStore()
    store.migrate()
    store.insert_tasks([TaskRecord(id="t", type="noop", params={}, created_at=1.0)])
    store.start_tasks([("t", list(range(parts)), 1.0)])
    return store, "t"


def test_a_taken_start_is_never_written_alone_and_the_result_carries_it() -> None:
    store, task_id = store_with_a_task(parts=1)

    async def main() -> None:
        thread = StoreThread(store)
        starts = UnwrittenStarts(thread, store)
        starts.add((task_id, 0, 1, "w1", 2.0, "u1"))
        start = starts.take(task_id, 0, 1)
        assert start == (task_id, 0, 1, "w1", 2.0, "u1") and len(starts) == 0
        assert starts.take(task_id, 0, 1) is None  # once
        await thread.commit(
            store.record_results, [(task_id, 0, 1, "5", 3.0, start[3], start[4], start[5])]
        )
        await asyncio.sleep(WRITE_AFTER * 2)  # its timer, had it been left armed, went off
        thread.flush()

    asyncio.run(main())
    assert store.started == []
    (sub,) = store.get_subtasks(task_id)
    assert (sub.state, sub.worker, sub.started_at, sub.worker_uid, sub.result) == (
        SubtaskState.SUCCEEDED, "w1", 2.0, "u1", 5,
    )


def test_starts_left_waiting_are_written_after_a_while_in_one_call() -> None:
    store, task_id = store_with_a_task(parts=3)

    async def main() -> None:
        thread = StoreThread(store)
        starts = UnwrittenStarts(thread, store)
        for index in range(3):
            starts.add((task_id, index, 1, f"w{index}", 2.0, f"u{index}"))
        deadline = time.monotonic() + 5
        while not store.started and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    asyncio.run(main())
    assert store.started == [[(task_id, i, 1, f"w{i}", 2.0, f"u{i}") for i in range(3)]]
    subs = store.get_subtasks(task_id)
    assert [(s.state, s.worker, s.worker_uid) for s in subs] == [
        (SubtaskState.RUNNING, f"w{i}", f"u{i}") for i in range(3)
    ]


def test_post_writes_them_before_what_is_posted_after_it() -> None:
    # A requeue (or a failure) undoes a start: the start must reach the store first, or the
    # late start would make the requeued subtask look running again.
    store, task_id = store_with_a_task(parts=1)

    async def main() -> None:
        thread = StoreThread(store)
        starts = UnwrittenStarts(thread, store)
        starts.add((task_id, 0, 1, "lost", 2.0, None))
        starts.post()
        thread.post(store.requeue_subtask, task_id, 0)
        thread.flush()
        await asyncio.sleep(WRITE_AFTER * 2)
        thread.flush()

    asyncio.run(main())
    assert len(store.started) == 1
    (sub,) = store.get_subtasks(task_id)
    assert (sub.state, sub.worker, sub.attempts) == (SubtaskState.QUEUED, None, 1)
