"""Retention in the store contract: deleting finished tasks with every row they own, on every
backend; and, on SQLite, the space those deletes free being reused (incremental auto-vacuum).

Rows are counted per table straight from the database, not through the store, so that a row the
store forgot to delete cannot hide behind a query that no longer finds it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from herder.model import LogRecord, TaskState
from herder.store.base import Store
from herder.store.sqlite import SqliteStore
from tests.store.test_contract import (
    finish_task,
    new_task,
    record_result,
    start_attempt,
    started,
)

#: the tables that hold a task's rows, and the column that names the task in each
_TABLES = {"tasks": "id", "subtasks": "task_id", "logs": "task_id"}


def _count(store: Store, sql: str, params: tuple[Any, ...] = ()) -> int:
    driver: Any = getattr(store, "_driver")  # noqa: B009 - the raw connection, on purpose
    if isinstance(store, SqliteStore):
        return int(driver.db.execute(sql, params).fetchone()[0])
    return int(driver.conn.execute(sql.replace("?", "%s"), params).fetchone()["count"])


def rows_of(store: Store, task_id: str) -> dict[str, int]:
    """How many rows of each table belong to the task."""
    return {
        table: _count(store, f"SELECT count(*) AS count FROM {table} WHERE {column} = ?",
                      (task_id,))
        for table, column in _TABLES.items()
    }


def total_rows(store: Store) -> dict[str, int]:
    return {table: _count(store, f"SELECT count(*) AS count FROM {table}") for table in _TABLES}


def finished(store: Store, state: TaskState, at: float, parts: int = 3, logs: int = 2) -> str:
    """A task with `parts` subtasks (one of them with a result) and `logs` log lines, finished
    in `state` at `at`; its id."""
    task = started(store, parts=parts)
    start_attempt(store, task.id, 0, 1, "w1", at - 1)
    record_result(store, task.id, 0, 1, {"part": 0}, at)
    store.logs.append([LogRecord(task_id=task.id, ts=at, level="INFO", message=f"line {i}")
                       for i in range(logs)])
    finish_task(store, task.id, state, at, result=None)
    store.logs.append([LogRecord(task_id=task.id, ts=at, level="INFO", message=state.value,
                                 kind="state")])
    return task.id


def test_a_prune_deletes_exactly_the_finished_tasks_older_than_the_cutoff(store: Store) -> None:
    old = [finished(store, state, at=100.0 + i) for i, state in enumerate(
        [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT])]
    recent = finished(store, TaskState.SUCCEEDED, at=500.0)
    running = started(store, parts=2).id  # created long before the cutoff, never finished
    store.logs.append([LogRecord(task_id=running, ts=1.0, level="INFO", message="busy")])
    pending = new_task(created_at=1.0)
    store.insert_tasks([pending])
    kept = [recent, running, pending.id]
    before = {task_id: rows_of(store, task_id) for task_id in old + kept}
    totals = total_rows(store)
    assert all(before[t] == {"tasks": 1, "subtasks": 3, "logs": 3} for t in old)

    assert sorted(store.prune_finished(cutoff=200.0, limit=500)) == sorted(old)

    for task_id in old:
        assert rows_of(store, task_id) == {"tasks": 0, "subtasks": 0, "logs": 0}
        assert store.get_task(task_id) is None
        assert store.get_subtasks(task_id) == []
        assert store.logs.events(task_id) == []
    for task_id in kept:
        assert rows_of(store, task_id) == before[task_id]
    gone = {table: sum(before[t][table] for t in old) for table in _TABLES}
    assert total_rows(store) == {table: totals[table] - gone[table] for table in _TABLES}
    assert store.prune_finished(cutoff=200.0, limit=500) == []


def test_a_prune_takes_the_oldest_first_and_at_most_its_limit(store: Store) -> None:
    ids = [finished(store, TaskState.SUCCEEDED, at=at) for at in (30.0, 10.0, 40.0, 20.0)]
    by_age = [ids[1], ids[3], ids[0], ids[2]]
    assert set(store.prune_finished(cutoff=100.0, limit=3)) == set(by_age[:3])
    assert store.prune_finished(cutoff=100.0, limit=3) == by_age[3:]
    assert store.count_unfinished() == 0 and total_rows(store)["tasks"] == 0


def test_delete_finished_deletes_only_finished_tasks(store: Store) -> None:
    done = finished(store, TaskState.FAILED, at=10.0)
    running = started(store).id
    assert store.delete_finished([done, running, "unknown", done]) == [done]
    assert rows_of(store, done) == {"tasks": 0, "subtasks": 0, "logs": 0}
    assert rows_of(store, running) == {"tasks": 1, "subtasks": 3, "logs": 0}
    assert store.delete_finished([done]) == []
    assert store.delete_finished([]) == []


def test_a_deleted_id_may_be_used_again(store: Store) -> None:
    done = finished(store, TaskState.SUCCEEDED, at=10.0)
    assert store.delete_finished([done]) == [done]
    assert store.insert_tasks([new_task(id=done)]) == [True]
    assert store.get_subtasks(done) == []


# -- SQLite only ----------------------------------------------------------------------------


def _auto_vacuum(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA auto_vacuum").fetchone()[0])


def test_sqlite_a_new_file_has_incremental_auto_vacuum(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "new.db"))
    store.migrate()
    store.close()
    assert _auto_vacuum(tmp_path / "new.db") == 2  # INCREMENTAL


def test_sqlite_an_older_file_is_converted_at_open_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SqliteStore(str(path))
    store.migrate()
    done = finished(store, TaskState.SUCCEEDED, at=10.0)
    store.close()
    # as an older herder left it: no auto-vacuum, and without the retention migration
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA auto_vacuum = NONE")
        db.execute("VACUUM")
        db.execute("DROP INDEX tasks_finished_at")
        db.execute("DELETE FROM schema_version WHERE version = 11")
    assert _auto_vacuum(path) == 0

    store = SqliteStore(str(path))
    store.migrate()
    try:
        assert store.get_task(done) is not None
        assert store.prune_finished(cutoff=100.0, limit=10) == [done]
    finally:
        store.close()
    assert _auto_vacuum(path) == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tasks_finished_at'"
                          ).fetchone()[0] == 1


def _file_size(store: SqliteStore) -> int:
    """The database file's size once the WAL is copied into it."""
    store._driver.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return os.path.getsize(store.path)


def test_sqlite_the_file_stops_growing_across_load_and_prune_cycles(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "cycles.db"))
    store.migrate()
    try:
        sizes = []
        for cycle in range(3):
            ids = [finished(store, TaskState.SUCCEEDED, at=float(cycle), parts=20, logs=20)
                   for _ in range(200)]
            peak = _file_size(store)
            deleted: list[str] = []
            while batch := store.prune_finished(cutoff=1e9, limit=50):
                deleted += batch
                store.reclaim_space()
            assert sorted(deleted) == sorted(ids)
            assert total_rows(store) == {"tasks": 0, "subtasks": 0, "logs": 0}
            sizes.append((peak, _file_size(store)))
        (first_peak, _), _, (last_peak, last_low) = sizes
        assert last_peak <= first_peak * 1.1, sizes
        assert last_low < first_peak, sizes  # pages went back to the system
    finally:
        store.close()
