"""The queries' logic, written once for every backend over a narrow `Driver`.

A `Repository` turns the contract's calls into named queries (each backend keeps its own SQL
under those names in `sql/`), shapes their parameters, groups them atomically and turns the
rows back into records (`rows`). A driver only runs a named query on its connection, groups
statements into a transaction and hands back rows indexed by column name. A backend module
subclasses `Repository` with its driver, adds its migrations and journal appends, and replaces
a method where its database has a better way to make the same batch (PostgreSQL: one statement
over arrays). The parts of the contract (`ScheduleRepository`, `LogRepository`) are written the
same way over the store's own driver, so that one transaction holds them all. Imports `model`
and `store` (`base`, `logs`, `rows`, `schedules`) only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from herder.model import (
    FINAL_TASK_STATES,
    JSON,
    TASK_TRANSITIONS,
    LogRecord,
    ScheduleRecord,
    SubtaskRecord,
    TaskRecord,
    TaskState,
)
from herder.store.base import (
    AttemptFailure,
    AttemptResult,
    AttemptStart,
    Store,
    SubtaskKey,
    TaskFinish,
    TaskStart,
)
from herder.store.logs import Logs
from herder.store.rows import (
    MAX_PAGE,
    NO_CURSOR,
    Row,
    decode,
    encode_error,
    encode_nullable,
    log_from_row,
    parse_cursor,
    schedule_from_row,
    schedule_row,
    subtask_from_row,
    subtask_rows,
    task_from_row,
    task_row,
)
from herder.store.schedules import Schedules

#: a query's parameters: by name, or by position
Params = Mapping[str, Any] | Sequence[Any]
#: finish_task's parameters: (id, state, finished_at, result, error)
FinishRow = tuple[str, str, float, str | None, str | None]

F = TypeVar("F", bound=Callable[..., Any])

#: the final states, by themselves or their values (finish_tasks)
_FINAL_VALUES: dict[str, str] = {state: state.value for state in FINAL_TASK_STATES}
#: the states a task may move to each non-final state from (set_task_states)
_SOURCES: dict[TaskState, tuple[TaskState, ...]] = {
    target: tuple(s for s, t in TASK_TRANSITIONS if t is target)
    for target in TaskState
    if not target.finished
}


class Driver(Protocol):
    """One connection to one database. Queries are named (the backend's `queries.sql`). The
    write primitives run on the connection as it is: the repository makes them atomic with
    `atomic`."""

    def rows(self, query: str, params: Params = ()) -> Iterable[Row]:
        """The rows the query returns."""
        ...

    def row(self, query: str, params: Params = ()) -> Row | None:
        """The first row the query returns, or None."""
        ...

    def rows_by_ids(self, query: str, ids: Sequence[str]) -> Iterable[Row]:
        """The rows of a query that takes a list of distinct ids (`?ids` / `%(ids)s`)."""
        ...

    def write(self, query: str, params: Params) -> int:
        """Run a write once; the number of rows it changed."""
        ...

    def write_many(self, query: str, rows: Sequence[Params]) -> None:
        """Run a write once per row of parameters."""
        ...

    def each_changed(self, query: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
        """Run a write that changes at most one row once per row of parameters, in order;
        which of them changed one."""
        ...

    def atomic(self, statements: int) -> AbstractContextManager[object]:
        """Make the `statements` statements run inside atomic: in a caller's transaction they
        are part of it; else one alone is atomic by itself, and more take a transaction."""
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """The contract's `transaction()`."""
        ...

    def close(self) -> None: ...


D = TypeVar("D", bound=Driver)


def repeatable(method: F) -> F:
    """Mark a method whose second try is right whether or not the first one's commit went
    through: a read, or a write guarded by the state it moves from (a second try then changes
    nothing). A backend that can lose its connection makes such a call again on a new one."""
    method.__dict__["repeatable"] = True
    return method


def is_repeatable(method: object) -> bool:
    return bool(getattr(method, "repeatable", False))


class Repository(Store, Generic[D]):
    """The contract over a driver; a backend adds `migrate`, and gives the parts over the same
    driver (its `LogRepository` adds `append`)."""

    def __init__(self, driver: D, schedules: Schedules, logs: Logs) -> None:
        self._driver = driver
        self.schedules = schedules
        self.logs = logs

    def close(self) -> None:
        self._driver.close()

    def transaction(self) -> AbstractContextManager[object]:
        return self._driver.transaction()

    # -- tasks -----------------------------------------------------------------------------

    def insert_tasks(
        self, tasks: Sequence[TaskRecord], parts: Sequence[Sequence[JSON] | None] = ()
    ) -> list[bool]:
        if not tasks:
            return []
        db = self._driver
        fired = any(t.schedule is not None for t in tasks)
        with db.atomic(len(tasks) + any(p is not None for p in parts) + fired):
            inserted = db.each_changed("insert_task", [task_row(t) for t in tasks])
            if fired:
                db.write_many("mark_fired", [
                    {"schedule": t.schedule, "fired_at": t.fired_at, "created_at": t.created_at,
                     "task_id": t.id}
                    for t, was_inserted in zip(tasks, inserted, strict=True)
                    if was_inserted and t.schedule is not None
                ])
            subtasks: list[tuple[str, int, str]] = []
            for task, its_parts, was_inserted in zip(
                tasks, parts or itertools.repeat(None, len(tasks)), inserted, strict=True
            ):
                if was_inserted and its_parts is not None:
                    subtasks += subtask_rows(task.id, its_parts)
            if subtasks:
                db.write_many("insert_subtask", subtasks)
            return inserted

    @repeatable
    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        ids = list(dict.fromkeys(task_ids))
        if len(ids) == 1:  # (the query for one id plans and binds faster than the list's)
            rows = self._driver.rows("get_task", {"id": ids[0]})
        elif ids:
            rows = self._driver.rows_by_ids("get_tasks", ids)
        else:
            return []
        return [task_from_row(row) for row in rows]

    @repeatable
    def list_tasks(
        self,
        state: TaskState | None = None,
        type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        schedule: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        limit = max(1, min(int(limit), MAX_PAGE))
        query = "list_tasks"
        params: dict[str, Any] = {"before": parse_cursor(cursor), "limit": limit + 1}
        if schedule is not None:
            query += "_by_schedule"
            params["schedule"] = schedule
        elif state is not None:
            query += "_by_state"
            params["state"] = TaskState(state).value
        if type is not None and schedule is None:
            query += "_and_type" if state is not None else "_by_type"
            params["type"] = type
        # One row more than asked tells whether a next page exists, so the last page never
        # hands out a cursor that leads to an empty page.
        rows = list(self._driver.rows(query, params))
        next_cursor = str(rows[limit - 1]["seq"]) if len(rows) > limit else None
        return [task_from_row(row) for row in rows[:limit]], next_cursor

    @repeatable
    def count_unfinished(self) -> int:
        return _count(self._driver, "count_unfinished", {})

    @repeatable
    def unfinished_tasks(self) -> list[TaskRecord]:
        return [task_from_row(row) for row in self._driver.rows("unfinished_tasks")]

    @repeatable
    def start_tasks(self, items: Sequence[TaskStart]) -> None:
        # One UPDATE each (its row count says whether the task was still pending), then the
        # subtasks of all the tasks that started in one batch.
        if not items:
            return
        db = self._driver
        with db.atomic(len(items) + any(parts for _, parts, _ in items)):
            rows = [(task_id, started_at, len(parts)) for task_id, parts, started_at in items]
            started = db.each_changed("start_task", rows)
            subtasks: list[tuple[str, int, str]] = []
            for (task_id, parts, _), was_started in zip(items, started, strict=True):
                if was_started:
                    subtasks += subtask_rows(task_id, parts)
            if subtasks:
                db.write_many("insert_subtask", subtasks)

    @repeatable
    def set_task_states(self, items: Sequence[tuple[str, TaskState]]) -> None:
        rows: list[dict[str, str]] = []
        for task_id, state in items:
            state = TaskState(state)
            sources = _SOURCES.get(state)
            if not sources:
                raise ValueError(f"set_task_state: {state.value!r} is not a non-final target state")
            rows += ({"id": task_id, "state": state.value, "from_state": s.value} for s in sources)
        if rows:
            with self._driver.atomic(len(rows)):
                self._driver.write_many("set_task_state", rows)

    @repeatable
    def finish_tasks(self, items: Sequence[TaskFinish]) -> list[bool]:
        # One UPDATE each, guarded by the task's state (its row count says whether the task
        # finished here), then the open subtasks of those that finished unsuccessfully.
        rows = finish_rows(items)
        if not rows:
            return []
        db = self._driver
        unsuccessful = any(row[1] != "succeeded" for row in rows)
        with db.atomic(len(rows) + unsuccessful):
            finished = db.each_changed("finish_task", rows)
            if unsuccessful:
                cancels = [
                    {"task_id": row[0], "finished_at": row[2]}
                    for row, was_finished in zip(rows, finished, strict=True)
                    if was_finished and row[1] != "succeeded"
                ]
                if cancels:
                    db.write_many("cancel_open_subtasks", cancels)
        return finished

    # -- retention -------------------------------------------------------------------------

    def delete_finished(self, task_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        db = self._driver
        with db.atomic(4):
            # in the transaction that deletes them: a finished task cannot leave its state
            doomed = [row["id"] for row in db.rows_by_ids("finished_of", ids)]
            rows = [(task_id,) for task_id in doomed]
            if rows:
                db.write_many("delete_task_logs", rows)
                db.write_many("delete_task_subtasks", rows)
                db.write_many("delete_task", rows)
        return doomed

    @repeatable
    def prune_finished(self, cutoff: float, limit: int) -> list[str]:
        db = self._driver
        with db.atomic(2):
            params = {"cutoff": cutoff, "limit": max(0, int(limit))}
            ids = [row["id"] for row in db.rows("finished_before", params)]
            return self.delete_finished(ids)

    # -- subtasks --------------------------------------------------------------------------

    @repeatable
    def start_attempts(self, items: Sequence[AttemptStart]) -> None:
        if items:
            with self._driver.atomic(len(items)):  # the items are the query's parameters
                self._driver.write_many("start_attempt", items)

    @repeatable
    def record_results(self, items: Sequence[AttemptResult]) -> list[bool]:
        if not items:
            return []
        with self._driver.atomic(len(items)):  # the items are the query's parameters
            return self._driver.each_changed("record_result", items)

    @repeatable
    def record_failures(self, items: Sequence[AttemptFailure]) -> None:
        if not items:
            return
        db = self._driver
        with db.atomic(len(items)):
            # consecutive items of one kind in one batch, so that the order holds
            for final, run in itertools.groupby(items, key=lambda item: item[4]):
                rows = [
                    {"task_id": task_id, "idx": index, "attempt": attempt,
                     "error": encode_error(error), "finished_at": finished_at}
                    for task_id, index, attempt, error, _, finished_at in run
                ]
                db.write_many("fail_subtask" if final else "retry_subtask", rows)

    @repeatable
    def requeue_subtasks(self, items: Sequence[SubtaskKey]) -> None:
        if items:
            with self._driver.atomic(len(items)):
                rows = [{"task_id": task_id, "idx": index} for task_id, index in items]
                self._driver.write_many("requeue_subtask", rows)

    @repeatable
    def get_subtasks(
        self, task_id: str, after: int = -1, limit: int | None = None
    ) -> list[SubtaskRecord]:
        # Both backends bind any signed 64-bit integer; no index is past NO_CURSOR.
        params = {
            "task_id": task_id,
            "after": max(-1, min(int(after), NO_CURSOR)),
            "limit": NO_CURSOR if limit is None else max(0, min(int(limit), NO_CURSOR)),
        }
        rows = self._driver.rows("get_subtasks", params)
        return [subtask_from_row(row) for row in rows]

    @repeatable
    def get_results(self, task_id: str) -> list[JSON]:
        rows = self._driver.rows("get_results", {"task_id": task_id})
        return [decode(row["result"]) for row in rows]


class ScheduleRepository(Schedules, Generic[D]):
    """The schedules' part over the store's driver: its calls share the store's connection and
    transactions."""

    def __init__(self, driver: D) -> None:
        self._driver = driver

    def insert(self, schedule: ScheduleRecord) -> bool:
        with self._driver.atomic(1):
            return self._driver.write("insert_schedule", schedule_row(schedule)) > 0

    @repeatable
    def all(self) -> list[ScheduleRecord]:
        return [schedule_from_row(row) for row in self._driver.rows("list_schedules")]

    @repeatable
    def get(self, schedule_id: str) -> ScheduleRecord | None:
        row = self._driver.row("get_schedule", {"id": schedule_id})
        return None if row is None else schedule_from_row(row)

    def delete(self, schedule_id: str) -> bool:
        with self._driver.atomic(1):
            return self._driver.write("delete_schedule", {"id": schedule_id}) > 0

    @repeatable
    def skip_firing(self, schedule_id: str, fired_at: float) -> bool:
        with self._driver.atomic(1):
            return self._driver.write(
                "skip_firing", {"id": schedule_id, "fired_at": fired_at}
            ) > 0


class LogRepository(Logs, Generic[D]):
    """The journal's part over the store's driver, sharing its connection and transactions; a
    backend adds `append`."""

    def __init__(self, driver: D) -> None:
        self._driver = driver

    @repeatable
    def lines(self, task_id: str, since: int = 0, limit: int = 1000) -> list[LogRecord]:
        # A caller asking for less than nothing gets nothing (SQLite reads a negative LIMIT as
        # none, PostgreSQL refuses it).
        args = {"task_id": task_id, "since": since, "limit": max(0, limit)}
        return [log_from_row(row) for row in self._driver.rows("get_logs", args)]

    @repeatable
    def events(
        self, task_id: str | None, since: int = 0, limit: int = 1000
    ) -> list[LogRecord]:
        args = {"task_id": task_id, "since": since, "limit": max(0, limit)}
        query = "get_all_events" if task_id is None else "get_task_events"
        return [log_from_row(row) for row in self._driver.rows(query, args)]

    @repeatable
    def count(self, task_id: str) -> int:
        return _count(self._driver, "count_logs", {"task_id": task_id})

    def trim(self, task_id: str, keep: int) -> int:
        with self._driver.atomic(2):
            dropped = max(0, self._driver.write(
                "trim_logs", {"task_id": task_id, "keep": max(1, keep)}
            ))
            if dropped:
                self._driver.write("add_logs_dropped", {"task_id": task_id, "n": dropped})
        return dropped


def _count(db: Driver, query: str, params: Params) -> int:
    """The `n` that a counting query returns."""
    row = db.row(query, params)
    assert row is not None
    return int(row["n"])


def finish_rows(items: Sequence[TaskFinish]) -> list[FinishRow]:
    """finish_task's parameters for each item. Raises ValueError for a state that is not
    final."""
    rows: list[FinishRow] = []
    for task_id, state, finished_at, result, error in items:
        value = _FINAL_VALUES.get(state)  # (a TaskState is a str: its value finds it too)
        if value is None:
            raise ValueError(f"finish_task: {TaskState(state).value!r} is not a final state")
        rows.append((task_id, value, finished_at, encode_nullable(result), encode_error(error)))
    return rows
