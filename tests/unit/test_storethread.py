"""The store's write-behind queue (`StoreThread`) and the ids the master gives tasks.

Imports herder.master and herder.store; SQLite in memory, no other processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from herder.master import core
from herder.master.storethread import FLUSH_DELAY, StoreThread
from herder.model import TaskRecord, TaskState
from herder.store.base import TaskFinish
from herder.store.sqlite import SqliteStore


class CountingStore(SqliteStore):
    def __init__(self) -> None:
        super().__init__(":memory:")
        self.calls: list[tuple[str, int]] = []

    def finish_tasks(self, items: Sequence[TaskFinish]) -> None:
        self.calls.append(("finish_tasks", len(items)))
        super().finish_tasks(items)

    def set_task_states(self, items: Sequence[tuple[str, TaskState]]) -> None:
        self.calls.append(("set_task_states", len(items)))
        super().set_task_states(items)


def test_consecutive_items_share_one_call_and_keep_their_order() -> None:
    store = CountingStore()
    store.migrate()
    ids = [f"t{i}" for i in range(5)]
    store.insert_tasks([TaskRecord(id=i, type="noop", params={}, created_at=1.0) for i in ids])
    store.start_tasks([(i, [0], 2.0) for i in ids])

    async def main() -> None:
        thread = StoreThread(store)
        for i in ids[:3]:
            thread.post_item(store.set_task_states, (i, TaskState.AGGREGATING))
        for i in ids[:3]:
            thread.post_item(store.finish_tasks, (i, TaskState.SUCCEEDED, 3.0, i, None))
        # another method in between: the items after it are a new call, after it
        thread.post_item(store.set_task_states, (ids[3], TaskState.AGGREGATING))
        thread.post_item(store.finish_tasks, (ids[3], TaskState.SUCCEEDED, 4.0, None, None))
        thread.flush()

    asyncio.run(main())
    assert store.calls == [
        ("set_task_states", 3), ("finish_tasks", 3), ("set_task_states", 1), ("finish_tasks", 1),
    ]
    got = [store.get_task(i) for i in ids]
    assert [(t.state, t.result) for t in got if t] == [
        *((TaskState.SUCCEEDED, i) for i in ids[:3]),
        (TaskState.SUCCEEDED, None),
        (TaskState.RUNNING, None),
    ]


def test_posted_writes_wait_for_what_their_step_readied_and_commit_before_a_commit() -> None:
    store = CountingStore()
    store.migrate()
    store.insert_tasks([TaskRecord(id=i, type="noop", params={}, created_at=1.0) for i in "ab"])
    store.start_tasks([(i, [0], 2.0) for i in "ab"])
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        thread = StoreThread(store)
        thread.post_item(store.finish_tasks, ("a", TaskState.SUCCEEDED, 3.0, 1, None))
        loop.call_soon(order.append, "readied by the same step")
        loop.call_soon(lambda: order.append(f"writes made: {len(store.calls)}"))
        await asyncio.sleep(FLUSH_DELAY * 2)
        order.append(f"a moment later: {len(store.calls)}")
        # a commit makes the writes posted before it first, in its own transaction
        thread.post_item(store.finish_tasks, ("b", TaskState.SUCCEEDED, 3.0, 2, None))
        await thread.commit(store.set_task_states, [])
        order.append(f"after a commit: {len(store.calls)}")

    asyncio.run(main())
    assert order == [
        "readied by the same step", "writes made: 0", "a moment later: 1", "after a commit: 3",
    ]
    assert [t.result for t in (store.get_task("a"), store.get_task("b")) if t] == [1, 2]


def test_task_ids_sort_in_creation_order(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_700_000_000_000_000_000, 1_700_000_001_000_000_000, 1_000_000))
    monkeypatch.setattr(core.time, "time_ns", lambda: next(clock))
    ids = [core.new_task_id() for _ in range(200)]  # one per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
