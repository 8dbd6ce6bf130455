"""One bad record never fails a journal batch that carries other tasks' records.

The journal over a real SQLite store (in memory) and its StoreThread, inline as the master runs
it; no other processes.
"""

from __future__ import annotations

import asyncio

from herder.master.events import Event
from herder.master.journal import Journal
from herder.master.storethread import StoreThread
from herder.model import LogRecord
from herder.store.sqlite import SqliteStore


def test_a_record_the_store_cannot_take_loses_only_itself() -> None:
    store = SqliteStore(":memory:")
    store.migrate()
    published: list[Event] = []

    async def run() -> None:
        journal = Journal(StoreThread(store), store, published.append, max_per_task=1000)
        journal.append(LogRecord("a", 1.0, "INFO", "first of a", subtask=0, attempt=1))
        # an index SQLite cannot bind (past 2^63): a worker's frame never carries one, but
        # whatever the reason a record fails, it must fail alone
        journal.append(LogRecord("bad", 2.0, "INFO", "huge", subtask=2**64, attempt=1))
        journal.append(LogRecord("b", 3.0, "INFO", "line of b", subtask=0, attempt=1))
        journal.append(LogRecord("a", 4.0, "INFO", "succeeded", kind="state"))
        await journal.flush()

    asyncio.run(run())
    stored = store.logs.events(None)
    assert [(r.task_id, r.message) for r in stored] == [
        ("a", "first of a"), ("b", "line of b"), ("a", "succeeded")]
    assert [r.kind for r in stored] == ["log", "log", "state"]
    # each stored record published once, in order, with its seq; the bad one not at all
    assert [(e.task_id, e.id) for e in published] == [(r.task_id, r.seq) for r in stored]
