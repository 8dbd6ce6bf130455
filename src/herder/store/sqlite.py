"""The SQLite backend of the store: one embedded file (or `:memory:`), the default.

The SQL lives in `sql/`: versioned migrations `NNNN_name.sql` applied in order by `migrate()`, and
`queries.sql` holding every query by name. This module opens the connection, runs those queries
inside transactions, and turns rows into `herder.model` records. Imports `model`, `errors` and
`store.base` only.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from herder import jsontext
from herder.errors import HerderError
from herder.jsontext import JSONText
from herder.model import (
    FINAL_TASK_STATES,
    JSON,
    TASK_TRANSITIONS,
    LogRecord,
    SubtaskRecord,
    SubtaskState,
    TaskError,
    TaskRecord,
    TaskState,
)
from herder.store.base import AttemptResult, AttemptStart, Store, TaskFinish, TaskStart

log = logging.getLogger(__name__)

#: how often the background checkpoint runs (seconds)
CHECKPOINT_EVERY = 0.5
#: WAL pages (4 KiB) after which a commit checkpoints itself (SQLite's default: 1,000)
WAL_LIMIT_PAGES = 10_000

_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MAX_PAGE = 1000
#: ids bound in one `IN (...)` (SQLite allows 32,766 parameters; smaller chunks plan faster)
_IDS_PER_QUERY = 500
_BUSY_TIMEOUT_MS = 5000
# `seq < _NO_CURSOR` holds for every row: the first page has no cursor.
_NO_CURSOR = 2**63 - 1


def _encode(value: JSON) -> str:
    """`value` as JSON text; a JSONText is that already."""
    return value if type(value) is JSONText else jsontext.compact(value)


class SqliteStore(Store):
    """The store in one SQLite file. Call `migrate()` once before anything else."""

    runs_inline = True

    def __init__(self, path: str) -> None:
        self.path = path
        # isolation_level=None: the driver opens no transactions behind our back; each write
        # below is either one statement (atomic by itself) or wrapped in `_transaction()`.
        # check_same_thread=False: the master's store thread need not be the one that opened us.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL with synchronous=NORMAL: a commit is in the WAL file (the OS page cache) when it
        # returns and the WAL is fsynced at checkpoints. Killing the process, even with -9, loses
        # nothing committed, because the OS still writes what it holds; only a power cut or an OS
        # crash may lose the last commits, and never corrupts the file. FULL would fsync on every
        # commit, which bounds submissions to the disk's flush rate for no gain against the
        # crashes DESIGN.md promises to survive. WAL also lets readers go on during a write.
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        # Another process holding the write lock (a second master, a migration) makes us wait
        # this long instead of failing at once with "database is locked".
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA foreign_keys = ON")
        # Checkpoints (copying the WAL into the database file, with an fsync) happen mostly on
        # a thread of their own (_Checkpointer), not in whichever commit crosses the WAL's size
        # limit: that commit would wait ~15 ms for the disk (W2's p99 was 19.5 ms with SQLite's
        # default of a checkpoint per 1,000 pages, 8.6 ms with this). The commit that crosses
        # WAL_LIMIT_PAGES still checkpoints: only it can start the WAL over while writes go on,
        # so that is what bounds the file.
        self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_LIMIT_PAGES}")
        self._q = _queries()
        self._checkpointer: _Checkpointer | None = None

    # -- life ------------------------------------------------------------------------------

    def migrate(self) -> None:
        self._db.execute(self._q["create_schema_version"])
        for version, name, script in _migrations():
            with self._transaction() as db:
                # Checked under the write lock, so two processes migrating at once apply each
                # version once: the second one waits, then finds it done.
                applied = {row[0] for row in db.execute(self._q["applied_versions"])}
                if version in applied:
                    continue
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(
                    self._q["record_version"],
                    {"version": version, "name": name, "applied_at": time.time()},
                )
        if self._checkpointer is None and self.path != ":memory:" and self.path:
            self._checkpointer = _Checkpointer(self.path)
        newest = max((row[0] for row in self._db.execute(self._q["applied_versions"])), default=0)
        known = max((v for v, _, _ in _migrations()), default=0)
        if newest > known:
            raise HerderError(
                f"store {self.path!r} has schema version {newest}, newer than the {known} this "
                "herder knows; upgrade herder"
            )

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._db.close()

    # -- tasks -----------------------------------------------------------------------------

    def insert_tasks(
        self, tasks: Sequence[TaskRecord], parts: Sequence[Sequence[JSON] | None] = ()
    ) -> list[bool]:
        with self._transaction() as db:
            inserted = _each_changed(db, self._q["insert_task"], [_task_row(t) for t in tasks])
            if parts:
                subtasks: list[tuple[str, int, str]] = []
                for task, its_parts, was_inserted in zip(tasks, parts, inserted, strict=True):
                    if was_inserted and its_parts is not None:
                        subtasks += _subtask_rows(task.id, its_parts)
                db.executemany(self._q["insert_subtask"], subtasks)
            return inserted

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._db.execute(self._q["get_task"], {"id": task_id}).fetchone()
        return None if row is None else _task_from_row(row)

    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        out: list[TaskRecord] = []
        unique = list(dict.fromkeys(task_ids))
        for first in range(0, len(unique), _IDS_PER_QUERY):
            chunk = unique[first : first + _IDS_PER_QUERY]
            query = self._q["get_tasks"].replace("?ids", ", ".join("?" * len(chunk)))
            out += (_task_from_row(row) for row in self._db.execute(query, chunk))
        return out

    def list_tasks(
        self,
        state: TaskState | None = None,
        type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Raises ValueError for a cursor that list_tasks did not hand out."""
        limit = max(1, min(int(limit), _MAX_PAGE))
        query = "list_tasks"
        params: dict[str, Any] = {"before": _parse_cursor(cursor), "limit": limit + 1}
        if state is not None:
            query += "_by_state"
            params["state"] = TaskState(state).value
        if type is not None:
            query += "_and_type" if state is not None else "_by_type"
            params["type"] = type
        # One row more than asked tells whether a next page exists, so the last page never
        # hands out a cursor that leads to an empty page.
        rows = self._db.execute(self._q[query], params).fetchall()
        next_cursor = str(rows[limit - 1]["seq"]) if len(rows) > limit else None
        return [_task_from_row(row) for row in rows[:limit]], next_cursor

    def count_unfinished(self) -> int:
        count: int = self._db.execute(self._q["count_unfinished"]).fetchone()[0]
        return count

    def unfinished_tasks(self) -> list[TaskRecord]:
        return [_task_from_row(row) for row in self._db.execute(self._q["unfinished_tasks"])]

    def start_task(self, task_id: str, parts: Sequence[JSON], started_at: float) -> None:
        """Does nothing unless the task is pending (one cancelled during its split stays so)."""
        self.start_tasks([(task_id, parts, started_at)])

    def start_tasks(self, items: Sequence[TaskStart]) -> None:
        # One UPDATE each (its row count says whether the task was still pending), then the
        # subtasks of all the tasks that started in one executemany.
        subtasks: list[tuple[str, int, str]] = []
        with self._transaction() as db:
            rows = [(task_id, started_at, len(parts)) for task_id, parts, started_at in items]
            started = _each_changed(db, self._q["start_task"], rows)
            for (task_id, parts, _), was_started in zip(items, started, strict=True):
                if was_started:
                    subtasks += _subtask_rows(task_id, parts)
            db.executemany(self._q["insert_subtask"], subtasks)

    def set_task_states(self, items: Sequence[tuple[str, TaskState]]) -> None:
        rows: list[dict[str, Any]] = []
        for task_id, state in items:
            state = TaskState(state)
            sources = [s for s, target in TASK_TRANSITIONS if target is state]
            if state.finished or not sources:
                raise ValueError(f"set_task_state: {state.value!r} is not a non-final target state")
            rows += ({"id": task_id, "state": state.value, "from_state": s.value} for s in sources)
        with self._transaction() as db:
            db.executemany(self._q["set_task_state"], rows)

    def finish_tasks(self, items: Sequence[TaskFinish]) -> None:
        # Successes in one executemany; the others one by one, since a task that did finish
        # here (row count 1) also has its open subtasks cancelled.
        succeeded = []
        with self._transaction() as db:
            for task_id, state, finished_at, result, error in items:
                if state == TaskState.SUCCEEDED:  # (a StrEnum: equal to its string too)
                    succeeded.append(
                        (task_id, "succeeded", finished_at, _encode_nullable(result),
                         _encode_error(error))
                    )
                else:
                    self.finish_task(task_id, state, finished_at, result, error)
            db.executemany(self._q["finish_task"], succeeded)

    def set_task_state(self, task_id: str, state: TaskState) -> None:
        """Does nothing when the task's current state cannot legally move to `state` (it was
        finished meanwhile, say). Raises ValueError for a final state: use finish_task."""
        self.set_task_states([(task_id, state)])

    def finish_task(
        self,
        task_id: str,
        state: TaskState,
        finished_at: float,
        result: JSON = None,
        error: TaskError | None = None,
    ) -> bool:
        state = TaskState(state)
        if state not in FINAL_TASK_STATES:
            raise ValueError(f"finish_task: {state.value!r} is not a final state")
        with self._transaction() as db:
            cur = db.execute(
                self._q["finish_task"],
                (task_id, state.value, finished_at, _encode_nullable(result),
                 _encode_error(error)),
            )
            if cur.rowcount != 1:
                return False
            if state is not TaskState.SUCCEEDED:
                db.execute(
                    self._q["cancel_open_subtasks"],
                    {"task_id": task_id, "finished_at": finished_at},
                )
        return True

    # -- subtasks --------------------------------------------------------------------------

    def start_attempt(
        self, task_id: str, index: int, attempt: int, worker: str, started_at: float
    ) -> None:
        """Does nothing for a subtask that is already final. `attempts` never decreases."""
        self.start_attempts([(task_id, index, attempt, worker, started_at)])

    def start_attempts(self, items: Sequence[AttemptStart]) -> None:
        if not items:
            return
        with self._transaction() as db:  # the items are the query's parameters, in order
            db.executemany(self._q["start_attempt"], items)

    def record_result(
        self, task_id: str, index: int, attempt: int, result: JSON, finished_at: float
    ) -> bool:
        """Also False, changing nothing, for an unknown subtask or one that is failed or
        cancelled (its task is over: a late result must not make it look succeeded)."""
        item = (task_id, index, attempt, _encode(result), finished_at, None, None)
        return self.record_results([item])[0]

    def record_results(self, items: Sequence[AttemptResult]) -> list[bool]:
        with self._transaction() as db:  # the items are record_result's parameters, in order
            return _each_changed(db, self._q["record_result"], items)

    def record_failure(
        self,
        task_id: str,
        index: int,
        attempt: int,
        error: TaskError,
        final: bool,
        finished_at: float,
    ) -> None:
        """Does nothing for a subtask that is already final: a failure of one attempt cannot
        undo the result of another."""
        params = {
            "task_id": task_id,
            "idx": index,
            "attempt": attempt,
            "error": _encode_error(error),
        }
        if final:
            self._db.execute(self._q["fail_subtask"], {**params, "finished_at": finished_at})
        else:
            self._db.execute(self._q["retry_subtask"], params)

    def requeue_subtask(self, task_id: str, index: int) -> None:
        self._db.execute(self._q["requeue_subtask"], {"task_id": task_id, "idx": index})

    def get_subtasks(self, task_id: str) -> list[SubtaskRecord]:
        rows = self._db.execute(self._q["get_subtasks"], {"task_id": task_id})
        return [_subtask_from_row(row) for row in rows]

    def get_results(self, task_id: str) -> list[JSON]:
        rows = self._db.execute(self._q["get_results"], {"task_id": task_id})
        return [_decode(row[0]) for row in rows]

    # -- logs ------------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[object]:
        return self._transaction()

    def append_logs(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        if not records:
            return []
        # One executemany; the seqs are then known without a round trip per row: AUTOINCREMENT
        # gives each new row the largest rowid ever used plus one, and the write lock held by
        # the transaction keeps any other writer out between the rows.
        with self._transaction() as db:
            db.executemany(
                self._q["insert_log"],
                [
                    (r.task_id, r.ts, r.level, r.message, r.subtask, r.attempt, r.worker, r.kind)
                    for r in records
                ],
            )
            last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
        seq = int(last) - len(records)
        for r in records:
            seq += 1
            r.seq = seq
        return list(records)

    def get_events(
        self, task_id: str | None, since: int = 0, limit: int = 1000
    ) -> list[LogRecord]:
        args: dict[str, object] = {"task_id": task_id, "since": since, "limit": max(0, limit)}
        query = self._q["get_all_events" if task_id is None else "get_task_events"]
        return [_log_from_row(row) for row in self._db.execute(query, args)]

    def count_logs(self, task_id: str) -> int:
        row = self._db.execute(self._q["count_logs"], {"task_id": task_id}).fetchone()
        return int(row[0])

    def trim_logs(self, task_id: str, keep: int) -> int:
        with self._transaction() as db:
            cur = db.execute(self._q["trim_logs"], {"task_id": task_id, "keep": max(1, keep)})
            dropped = max(0, cur.rowcount)
            if dropped:
                db.execute(self._q["add_logs_dropped"], {"task_id": task_id, "n": dropped})
        return dropped

    def get_logs(self, task_id: str, since: int = 0, limit: int = 1000) -> list[LogRecord]:
        rows = self._db.execute(
            self._q["get_logs"],
            # SQLite reads a negative LIMIT as "no limit"; a caller asking for less than nothing
            # gets nothing.
            {"task_id": task_id, "since": since, "limit": max(0, limit)},
        )
        return [_log_from_row(row) for row in rows]

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # Inside a transaction() of the caller's, this is part of it (group commit).
        if self._db.in_transaction:
            yield self._db
            return
        # IMMEDIATE takes the write lock at BEGIN, so a read-then-write inside cannot be
        # overtaken by another writer between the two (and waits busy_timeout, not fails, on it).
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise


def _each_changed(db: sqlite3.Connection, query: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Run `query` (a write that changes at most one row) once per row of parameters; which
    rows changed one. Inside a transaction.

    One executemany when every row changes one (the usual case: its summed row count says so),
    which costs about half of one execute per row; otherwise that is undone to a savepoint and
    the rows are run one by one, to tell which of them changed nothing.
    """
    if len(rows) > 1:
        db.execute("SAVEPOINT each_changed")
        if db.executemany(query, rows).rowcount == len(rows):
            db.execute("RELEASE each_changed")
            return [True] * len(rows)
        db.execute("ROLLBACK TO each_changed")
        db.execute("RELEASE each_changed")
    return [db.execute(query, row).rowcount == 1 for row in rows]


# -- SQL files ------------------------------------------------------------------------------


class _Checkpointer:
    """Checkpoints the WAL every CHECKPOINT_EVERY seconds on its own connection and thread.

    PASSIVE: it copies what no reader still needs and never waits for the writer, which goes on
    appending to the WAL meanwhile (the sqlite3 module releases the GIL during the copy and its
    fsync). When a checkpoint has copied everything, the next write starts the WAL over; under
    a steady stream of writes that moment rarely comes, and the writer's own checkpoint at
    WAL_LIMIT_PAGES does it (with little left to copy). Closing the last connection checkpoints
    what is left and removes the WAL.
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="herder-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY):
                try:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. busy: the next round tries again
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            self._db.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)


@functools.cache
def _queries() -> dict[str, str]:
    text = (importlib.resources.files("herder.store") / "sql" / "queries.sql").read_text("utf-8")
    parts = _QUERY_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@functools.cache
def _migrations() -> tuple[tuple[int, str, str], ...]:
    """(version, file name, script) for every migration file, by version."""
    found: list[tuple[int, str, str]] = []
    for entry in (importlib.resources.files("herder.store") / "sql").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise HerderError(f"store migrations must be numbered 1, 2, 3, ...; found {versions}")
    return tuple(found)


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements the way SQLite's own shell does (a `;` inside a string
    or a trigger body does not end one). Unlike executescript, this runs inside our transaction
    instead of committing first."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if any(line.strip() and not line.lstrip().startswith("--") for line in pending.splitlines()):
        raise HerderError(f"store migration ends in an unfinished statement: {pending.strip()!r}")


# -- rows <-> records -----------------------------------------------------------------------


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return _NO_CURSOR
    if not (cursor.isascii() and cursor.isdigit()):
        raise ValueError(f"cursor: {cursor!r} is not a cursor that list_tasks returned")
    # Past the largest seq there is, a cursor means "from the newest"; SQLite cannot bind more.
    return min(int(cursor), _NO_CURSOR)


def _encode_nullable(value: JSON) -> str | None:
    return None if value is None else _encode(value)


def _encode_error(error: TaskError | None) -> str | None:
    return None if error is None else _encode(error.to_json())


def _decode(text: str | None) -> JSON:
    return None if text is None else json.loads(text)


def _decode_error(text: str | None) -> TaskError | None:
    return None if text is None else TaskError.from_json(json.loads(text))


def _subtask_rows(task_id: str, parts: Sequence[JSON]) -> list[tuple[str, int, str]]:
    """insert_subtask's parameters for a task's parts: its subtasks, queued."""
    return [(task_id, i, _encode(part)) for i, part in enumerate(parts)]


def _task_row(task: TaskRecord) -> tuple[Any, ...]:
    """insert_task's parameters: the columns in order."""
    return (
        task.id, task.type, _encode(task.params), task.priority, task.timeout,
        str(task.state), _encode_nullable(task.result), _encode_error(task.error),
        task.created_at, task.started_at, task.finished_at, task.subtasks_total,
        task.max_retries,
    )


def _task_from_row(row: sqlite3.Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        type=row["type"],
        params=json.loads(row["params"]),
        priority=row["priority"],
        timeout=row["timeout"],
        state=TaskState(row["state"]),
        result=_decode(row["result"]),
        error=_decode_error(row["error"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        subtasks_total=row["subtasks_total"],
        max_retries=row["max_retries"],
        logs_dropped=row["logs_dropped"],
    )


def _subtask_from_row(row: sqlite3.Row) -> SubtaskRecord:
    return SubtaskRecord(
        task_id=row["task_id"],
        index=row["idx"],
        part=json.loads(row["part"]),
        state=SubtaskState(row["state"]),
        attempts=row["attempts"],
        worker=row["worker"],
        result=_decode(row["result"]),
        error=_decode_error(row["error"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _log_from_row(row: sqlite3.Row) -> LogRecord:
    return LogRecord(
        task_id=row["task_id"],
        ts=row["ts"],
        level=row["level"],
        message=row["message"],
        subtask=row["subtask"],
        attempt=row["attempt"],
        worker=row["worker"],
        seq=row["seq"],
        kind=row["kind"],
    )

