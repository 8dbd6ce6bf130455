"""The SQLite backend of the store: one embedded file (or `:memory:`), the default.

The SQL lives in `sql/`: versioned migrations `NNNN_name.sql` applied in order by `migrate()`, and
`queries.sql` holding every query by name. This module opens the connection, runs those queries
inside transactions, and turns rows into `herder.model` records. Imports `model`, `errors` and
`store.base` only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from herder.errors import HerderError
from herder.model import (
    FINAL_TASK_STATES,
    JSON,
    TASK_TRANSITIONS,
    LogRecord,
    SubtaskRecord,
    TaskError,
    TaskRecord,
    TaskState,
)
from herder.store import sqlfiles
from herder.store.base import AttemptResult, AttemptStart, Store, TaskFinish, TaskStart
from herder.store.rows import (
    MAX_PAGE,
    decode,
    encode,
    encode_error,
    encode_nullable,
    log_from_row,
    log_row,
    parse_cursor,
    subtask_from_row,
    subtask_rows,
    task_from_row,
    task_row,
)

log = logging.getLogger(__name__)

#: how often the background checkpoint runs (seconds)
CHECKPOINT_EVERY = 0.5
#: WAL pages (4 KiB) after which a commit checkpoints itself (SQLite's default: 1,000)
WAL_LIMIT_PAGES = 10_000

#: the folder of herder/store/ that holds this backend's SQL (sqlfiles)
SQL_FOLDER = "sql"
#: ids bound in one `IN (...)` (SQLite allows 32,766 parameters; smaller chunks plan faster)
_IDS_PER_QUERY = 500
_BUSY_TIMEOUT_MS = 5000


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
        _switch_to_wal(self._db)
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
            inserted = _each_changed(db, self._q["insert_task"], [task_row(t) for t in tasks])
            if parts:
                subtasks: list[tuple[str, int, str]] = []
                for task, its_parts, was_inserted in zip(tasks, parts, inserted, strict=True):
                    if was_inserted and its_parts is not None:
                        subtasks += subtask_rows(task.id, its_parts)
                db.executemany(self._q["insert_subtask"], subtasks)
            return inserted

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._db.execute(self._q["get_task"], {"id": task_id}).fetchone()
        return None if row is None else task_from_row(row)

    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        out: list[TaskRecord] = []
        unique = list(dict.fromkeys(task_ids))
        for first in range(0, len(unique), _IDS_PER_QUERY):
            chunk = unique[first : first + _IDS_PER_QUERY]
            query = self._q["get_tasks"].replace("?ids", ", ".join("?" * len(chunk)))
            out += (task_from_row(row) for row in self._db.execute(query, chunk))
        return out

    def list_tasks(
        self,
        state: TaskState | None = None,
        type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Raises ValueError for a cursor that list_tasks did not hand out."""
        limit = max(1, min(int(limit), MAX_PAGE))
        query = "list_tasks"
        params: dict[str, Any] = {"before": parse_cursor(cursor), "limit": limit + 1}
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
        return [task_from_row(row) for row in rows[:limit]], next_cursor

    def count_unfinished(self) -> int:
        count: int = self._db.execute(self._q["count_unfinished"]).fetchone()[0]
        return count

    def unfinished_tasks(self) -> list[TaskRecord]:
        return [task_from_row(row) for row in self._db.execute(self._q["unfinished_tasks"])]

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
                    subtasks += subtask_rows(task_id, parts)
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
                        (task_id, "succeeded", finished_at, encode_nullable(result),
                         encode_error(error))
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
                (task_id, state.value, finished_at, encode_nullable(result),
                 encode_error(error)),
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
        item = (task_id, index, attempt, encode(result), finished_at, None, None)
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
            "error": encode_error(error),
        }
        if final:
            self._db.execute(self._q["fail_subtask"], {**params, "finished_at": finished_at})
        else:
            self._db.execute(self._q["retry_subtask"], params)

    def requeue_subtask(self, task_id: str, index: int) -> None:
        self._db.execute(self._q["requeue_subtask"], {"task_id": task_id, "idx": index})

    def get_subtasks(self, task_id: str) -> list[SubtaskRecord]:
        rows = self._db.execute(self._q["get_subtasks"], {"task_id": task_id})
        return [subtask_from_row(row) for row in rows]

    def get_results(self, task_id: str) -> list[JSON]:
        rows = self._db.execute(self._q["get_results"], {"task_id": task_id})
        return [decode(row[0]) for row in rows]

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
                [log_row(r) for r in records],
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
        return [log_from_row(row) for row in self._db.execute(query, args)]

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
        return [log_from_row(row) for row in rows]

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


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (a no-op once it is). Switching needs the file to itself, and
    of connections opening a new file at once (masters started together), SQLite answers all
    but one "database is locked" at once, without waiting busy_timeout (waiting could
    deadlock): they try again until the switch is made, by whichever."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


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


def _queries() -> dict[str, str]:
    return sqlfiles.queries(SQL_FOLDER)


def _migrations() -> tuple[sqlfiles.Migration, ...]:
    """(version, file name, script) for every migration file, by version."""
    return sqlfiles.migrations(SQL_FOLDER)


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
