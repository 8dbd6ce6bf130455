"""The store's write-behind queue (`StoreThread`) and the ids the master gives tasks.

Imports herder.master and herder.store; SQLite in memory, no other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import pytest

from herder.master import ids as task_ids
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


def test_writes_posted_after_a_commit_get_their_own_full_delay() -> None:
    # A commit makes the writes pending; the flush that had been armed for them must not then
    # take the next ones early, in a transaction of their own (W2 paid a commit per round trip).
    store = CountingStore()
    store.migrate()
    store.insert_tasks([TaskRecord(id=i, type="noop", params={}, created_at=1.0) for i in "ab"])
    store.start_tasks([(i, [0], 2.0) for i in "ab"])
    made_at: list[float] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        thread = StoreThread(store)
        thread.post_item(store.finish_tasks, ("a", TaskState.SUCCEEDED, 3.0, 1, None))
        await asyncio.sleep(FLUSH_DELAY / 2)  # the scenario: a commit comes half-way
        await thread.commit(store.set_task_states, [])
        posted_at = loop.time()
        thread.post(lambda: made_at.append(loop.time()))
        deadline = posted_at + FLUSH_DELAY * 50
        while not made_at and loop.time() < deadline:
            await asyncio.sleep(FLUSH_DELAY / 10)
        return posted_at

    posted_at = asyncio.run(main())
    assert made_at and made_at[0] - posted_at >= FLUSH_DELAY * 0.99
    assert store.calls == [("finish_tasks", 1), ("set_task_states", 0)]


def test_a_write_is_told_once_committed_by_the_next_commit_or_the_flush() -> None:
    store = CountingStore()
    store.migrate()
    seen: list[str] = []

    async def main() -> None:
        thread = StoreThread(store)
        first = thread.write(store.insert_tasks, [TaskRecord(id="a", type="noop", params={})])
        # items after a write are not merged into it (its value is the write's own)
        thread.post_item(store.finish_tasks, ("a", TaskState.CANCELLED, 2.0, None, None))
        await asyncio.sleep(0)
        seen.append(f"after a turn: done={first.done()}")
        await thread.commit(store.set_task_states, [])  # any commit makes it
        seen.append(f"after a commit: {first.result()}")
        # with no commit coming, the flush FLUSH_DELAY later makes it
        second = thread.write(store.insert_tasks, [TaskRecord(id="b", type="noop", params={})])
        assert await asyncio.wait_for(second, FLUSH_DELAY * 50) == [True]
        # the write's own exception goes to its future; the writes beside it still commit
        bad = thread.write(store.set_task_states, [("b", TaskState.SUCCEEDED)])
        thread.post_item(store.finish_tasks, ("b", TaskState.SUCCEEDED, 3.0, "ok", None))
        thread.flush()
        with pytest.raises(ValueError, match="non-final"):
            await bad

    asyncio.run(main())
    assert seen == ["after a turn: done=False", "after a commit: [True]"]
    assert [(t.state, t.result) for t in (store.get_task("a"), store.get_task("b")) if t] == [
        (TaskState.CANCELLED, None), (TaskState.SUCCEEDED, "ok"),
    ]


def test_a_write_whose_commit_fails_gets_the_failure() -> None:
    class FailingCommit(SqliteStore):
        def transaction(self) -> AbstractContextManager[object]:
            @contextlib.contextmanager
            def failing() -> Iterator[object]:
                with super(FailingCommit, self).transaction() as db:
                    yield db
                    raise OSError("disk full")  # at the commit: the transaction rolls back

            return failing()

    store = FailingCommit(":memory:")
    store.migrate()

    async def main() -> None:
        thread = StoreThread(store)
        stored = thread.write(store.insert_tasks, [TaskRecord(id="a", type="noop", params={})])
        with pytest.raises(OSError, match="disk full"):
            thread.flush()
        with pytest.raises(OSError, match="disk full"):
            await stored

    asyncio.run(main())
    assert store.get_task("a") is None


class ThreadedStore(CountingStore):
    """SQLite called as a store that waits on a network is: on the store's thread. Each call
    notes the thread it ran on; `hold` keeps the thread busy until it is set."""

    runs_inline = False

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.hold = threading.Event()
        self.hold.set()

    def finish_tasks(self, items: Sequence[TaskFinish]) -> None:
        self.threads.add(threading.get_ident())
        super().finish_tasks(items)

    def set_task_states(self, items: Sequence[tuple[str, TaskState]]) -> None:
        self.threads.add(threading.get_ident())
        assert self.hold.wait(timeout=10)
        super().set_task_states(items)

    def get_task(self, task_id: str) -> TaskRecord | None:
        self.threads.add(threading.get_ident())
        return super().get_task(task_id)


def test_on_the_thread_items_posted_while_it_is_busy_share_one_call_in_order() -> None:
    store = ThreadedStore()
    store.migrate()
    ids = [f"t{i}" for i in range(6)]
    store.insert_tasks([TaskRecord(id=i, type="noop", params={}, created_at=1.0) for i in ids])
    store.start_tasks([(i, [0], 2.0) for i in ids])

    async def main() -> list[TaskRecord | None]:
        thread = StoreThread(store)
        assert not thread.inline
        store.hold.clear()  # the thread is busy with the first call
        thread.post_item(store.set_task_states, (ids[0], TaskState.AGGREGATING))
        for i in ids[:3]:
            thread.post_item(store.finish_tasks, (i, TaskState.SUCCEEDED, 3.0, i, None))
        # a call of its own in between: the items after it are a new call, after it
        read = asyncio.ensure_future(thread.read(store.get_task, ids[3]))
        await asyncio.sleep(0)  # (it is made in its first step)
        for i in ids[3:5]:
            thread.post_item(store.finish_tasks, (i, TaskState.SUCCEEDED, 4.0, i, None))
        store.hold.set()
        before = await read
        assert before is not None and before.state is TaskState.RUNNING
        await thread.call(lambda: None)  # the thread has made everything before: it is idle
        # an item posted now is a call of its own
        thread.post_item(store.finish_tasks, (ids[5], TaskState.SUCCEEDED, 5.0, None, None))
        got = await thread.call(lambda: [store.get_task(i) for i in ids])
        await asyncio.get_running_loop().run_in_executor(None, thread.close)
        return got

    got = asyncio.run(main())
    assert store.calls == [
        ("set_task_states", 1), ("finish_tasks", 3), ("finish_tasks", 2), ("finish_tasks", 1),
    ]
    assert [(t.state, t.result) for t in got if t] == [
        *((TaskState.SUCCEEDED, i) for i in ids[:5]), (TaskState.SUCCEEDED, None),
    ]
    # every call, read or write, ran on the one store thread
    assert len(store.threads) == 1
    assert threading.get_ident() not in store.threads


def test_task_ids_sort_in_creation_order(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_700_000_000_000_000_000, 1_700_000_001_000_000_000, 1_000_000))
    monkeypatch.setattr(task_ids.time, "time_ns", lambda: next(clock))
    ids = [task_ids.new_task_id() for _ in range(200)]  # one per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_task_cancelled_while_its_results_are_read_back_is_not_aggregated() -> None:
    # On the thread, a task whose results are not in memory (here: recovered after a restart,
    # every subtask done) has them read back before its aggregate runs; a cancel may come in
    # between. The task stays cancelled: no aggregate runs, no state goes out after the final.
    from herder.config import MasterSettings
    from herder.master.core import Master
    from herder.tasktype import Registry

    class SlowResults(ThreadedStore):
        def __init__(self) -> None:
            super().__init__()
            self.reading = threading.Event()
            self.release = threading.Event()

        def get_results(self, task_id: str) -> list[object]:
            self.reading.set()
            assert self.release.wait(timeout=10)
            return super().get_results(task_id)

    store = SlowResults()
    store.migrate()
    store.insert_tasks([TaskRecord(id="t", type="sleep", params={"seconds": 0, "parts": 2})])
    store.start_tasks([("t", [0, 0], 1.0)])
    store.record_results([("t", i, 1, "0", 2.0, "w", 1.5, "u") for i in range(2)])

    async def main() -> list[str]:
        master = Master(MasterSettings(), store, Registry.from_modules([]))
        states = master.live.hub.subscribe("t", frozenset({"state"}))
        await master.start()  # recovers the task: its results are being read
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, store.reading.wait, 10)
        cancelling = asyncio.ensure_future(master.tasks.cancel("t"))
        await asyncio.sleep(0)  # ended in its first step; its answer waits for the thread
        assert "t" not in master.tasks.active
        store.release.set()
        await cancelling
        deadline = loop.time() + 10
        while len(master.background) and loop.time() < deadline:  # the read and what follows
            await asyncio.sleep(0.01)
        await master.records.commit_waiting()
        stored = await master.records.task("t")
        await master.stop()
        assert stored is not None and stored.state is TaskState.CANCELLED
        seen = []
        while not states.queue.empty():
            seen.append(states.queue.get_nowait().data["state"])
        return seen

    seen = asyncio.run(main())
    assert seen[-1] == "cancelled"
    assert "succeeded" not in seen
