"""The PostgreSQL backend of the store: `--db postgresql://user@host/db`, for a master whose state
lives on a database server (production, several machines).

The SQL lives in `sql/postgres/`: versioned migrations `NNNN_name.sql` applied in order by
`migrate()`, and `queries.sql` holding every query by name. This module holds one psycopg 3
connection, runs those queries and turns rows into `herder.model` records (`store.rows`, shared
with SQLite). Imports `model`, `errors`, `jsontext` (through `rows`) and `store` only.

Threads. `runs_inline` is False: the master makes every call, read or write, awaited or posted,
on its one store thread (`master/storethread.py`: a one-thread executor, in the order the calls
were made); `open_store` migrates on the caller's thread before the master exists, and `close`
runs after that executor has shut down. So the connection is used by one thread at a time and
takes no lock of ours. (A store shared by several threads would need one around each call:
psycopg's own connection lock keeps their statements from interleaving on the wire, not their
transactions.)

Transactions. The connection is in autocommit mode: a call made of one statement is that
statement's transaction, one round trip (the writes that must change two tables at once are one
statement each, with data-modifying CTEs); a call of several statements runs them in
`conn.transaction()`. Inside a caller's `transaction()` each call that writes takes a savepoint:
it commits with the caller's transaction, and a call that fails undoes only itself, as SQLite's
statements do. Without it an error would abort the whole transaction, and PostgreSQL would answer
its COMMIT by rolling everything back without a word.

A broken connection (the server restarted, the network dropped it) is opened again by the next
call. The call that met the break is made once more on the new connection when that is safe
whatever the first try did (reads, and the guarded writes: `@_again_if_disconnected`); the others
(inserting tasks, appending to the journal) fail, and the master goes on.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg.adapt import Buffer
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import StrDumperUnknown

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
from herder.store.base import (
    AttemptResult,
    AttemptStart,
    Store,
    TaskFinish,
    TaskStart,
    redact,
)
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

P = ParamSpec("P")
R = TypeVar("R")

#: the folder of herder/store/ that holds this backend's SQL (sqlfiles)
SQL_FOLDER = "sql/postgres"
#: seconds to wait for the server when connecting, unless the URL says (libpq waits forever)
CONNECT_TIMEOUT = 10
#: how the server lists our connection (pg_stat_activity), unless the URL says
APPLICATION_NAME = "herder"
#: TCP keepalives, unless the URL says: a server that vanished (a machine gone, a network cut)
#: is noticed after ~60 s of silence, not after the system's default of over two hours, during
#: which the store's thread, and every call queued behind it, would wait
KEEPALIVES = {"keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

Connection = psycopg.Connection[DictRow]


def open_postgres(url: str) -> PostgresStore:
    """Connect and migrate, or raise HerderError in one line saying what went wrong (for the
    CLI to print): the server cannot be reached, the login is refused, the schema cannot be
    made."""
    store = PostgresStore(url)
    try:
        store.migrate()
    except psycopg.Error as exc:
        store.close()
        raise HerderError(f"PostgreSQL at {redact(url)}: the schema could not be made: "
                          f"{_one_line(exc)}") from None
    except BaseException:
        store.close()
        raise
    return store


def _again_if_disconnected(
    method: Callable[Concatenate[PostgresStore, P], R],
) -> Callable[Concatenate[PostgresStore, P], R]:
    """Make the call once more, on a new connection, when the connection broke under it (outside
    a caller's transaction). Only for calls whose second try is right whether or not the first
    one's commit went through: reads, and the writes guarded by the state they move from, which
    then change nothing. (`record_results` may then say False for a result its first try stored;
    the master reads such results back from the store.)"""

    @functools.wraps(method)
    def call(self: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not self._conn.closed or self._depth:
                raise
            log.warning("PostgreSQL connection lost (%s); %s again on a new one",
                        _one_line(exc), method.__name__)
            return method(self, *args, **kwargs)  # (its _live() connects again)

    return call


class PostgresStore(Store):
    """The store in a PostgreSQL database. Call `migrate()` once before anything else."""

    runs_inline = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._q = sqlfiles.queries(SQL_FOLDER)
        #: transactions of ours open on the connection (a savepoint counts as one)
        self._depth = 0
        self._conn = self._connect()

    # -- life ------------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._transaction() as conn:
            # Every step under the lock, even the first CREATE TABLE IF NOT EXISTS: two of
            # those at once on an empty database would both try to create the table.
            conn.execute(self._q["migration_lock"])
            conn.execute(self._q["create_schema_version"])
            applied = {row["version"] for row in conn.execute(self._q["applied_versions"])}
            for version, name, script in _migrations():
                if version in applied:
                    continue
                conn.execute(script)  # a whole file: several statements, no parameters
                conn.execute(
                    self._q["record_version"],
                    {"version": version, "name": name, "applied_at": time.time()},
                )
                applied.add(version)
        newest = max(applied, default=0)
        known = max((v for v, _, _ in _migrations()), default=0)
        if newest > known:
            raise HerderError(
                f"store {redact(self.url)} has schema version {newest}, newer than the {known} "
                "this herder knows; upgrade herder"
            )

    def close(self) -> None:
        self._conn.close()

    def transaction(self) -> AbstractContextManager[object]:
        return self._transaction()

    # -- tasks -----------------------------------------------------------------------------

    def insert_tasks(
        self, tasks: Sequence[TaskRecord], parts: Sequence[Sequence[JSON] | None] = ()
    ) -> list[bool]:
        if not tasks:
            return []
        statements = len(tasks) + any(p is not None for p in parts)
        with self._atomic(statements) as conn:
            inserted = _each_changed(conn, self._q["insert_task"], [task_row(t) for t in tasks])
            subtasks: list[tuple[str, int, str]] = []
            for task, its_parts, was_inserted in zip(tasks, parts or [None] * len(tasks),
                                                     inserted, strict=True):
                if was_inserted and its_parts is not None:
                    subtasks += subtask_rows(task.id, its_parts)
            if subtasks:
                conn.cursor().executemany(self._q["insert_subtask"], subtasks)
            return inserted

    @_again_if_disconnected
    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._live().execute(self._q["get_task"], {"id": task_id}).fetchone()
        return None if row is None else task_from_row(row)

    @_again_if_disconnected
    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        if not task_ids:
            return []
        ids = list(dict.fromkeys(task_ids))
        rows = self._live().execute(self._q["get_tasks"], {"ids": ids})
        return [task_from_row(row) for row in rows]

    @_again_if_disconnected
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
        rows = self._live().execute(self._q[query], params).fetchall()
        next_cursor = str(rows[limit - 1]["seq"]) if len(rows) > limit else None
        return [task_from_row(row) for row in rows[:limit]], next_cursor

    @_again_if_disconnected
    def count_unfinished(self) -> int:
        row = self._live().execute(self._q["count_unfinished"]).fetchone()
        assert row is not None
        return int(row["n"])

    @_again_if_disconnected
    def unfinished_tasks(self) -> list[TaskRecord]:
        return [task_from_row(row) for row in self._live().execute(self._q["unfinished_tasks"])]

    def start_task(self, task_id: str, parts: Sequence[JSON], started_at: float) -> None:
        """Does nothing unless the task is pending (one cancelled during its split stays so)."""
        self.start_tasks([(task_id, parts, started_at)])

    @_again_if_disconnected
    def start_tasks(self, items: Sequence[TaskStart]) -> None:
        # One UPDATE each (its row count says whether the task was still pending), then the
        # subtasks of all the tasks that started in one executemany.
        if not items:
            return
        with self._atomic(len(items) + any(parts for _, parts, _ in items)) as conn:
            rows = [(task_id, started_at, len(parts)) for task_id, parts, started_at in items]
            started = _each_changed(conn, self._q["start_task"], rows)
            subtasks: list[tuple[str, int, str]] = []
            for (task_id, parts, _), was_started in zip(items, started, strict=True):
                if was_started:
                    subtasks += subtask_rows(task_id, parts)
            if subtasks:
                conn.cursor().executemany(self._q["insert_subtask"], subtasks)

    def set_task_state(self, task_id: str, state: TaskState) -> None:
        """Does nothing when the task's current state cannot legally move to `state` (it was
        finished meanwhile, say). Raises ValueError for a final state: use finish_task."""
        self.set_task_states([(task_id, state)])

    @_again_if_disconnected
    def set_task_states(self, items: Sequence[tuple[str, TaskState]]) -> None:
        rows: list[dict[str, Any]] = []
        for task_id, state in items:
            state = TaskState(state)
            sources = [s.value for s, target in TASK_TRANSITIONS if target is state]
            if state.finished or not sources:
                raise ValueError(f"set_task_state: {state.value!r} is not a non-final target state")
            rows.append({"id": task_id, "state": state.value, "from_states": sources})
        self._write_many(self._q["set_task_state"], rows)

    def finish_task(
        self,
        task_id: str,
        state: TaskState,
        finished_at: float,
        result: JSON = None,
        error: TaskError | None = None,
    ) -> bool:
        return self._finish_tasks([(task_id, state, finished_at, result, error)])[0]

    @_again_if_disconnected
    def finish_tasks(self, items: Sequence[TaskFinish]) -> None:
        self._finish_tasks(items)

    def _finish_tasks(self, items: Sequence[TaskFinish]) -> list[bool]:
        """`finish_tasks`, telling per task whether it finished here (False: it was final
        already, and nothing changed)."""
        rows = []
        for task_id, state, finished_at, result, error in items:
            state = TaskState(state)
            if state not in FINAL_TASK_STATES:
                raise ValueError(f"finish_task: {state.value!r} is not a final state")
            rows.append(
                (task_id, state.value, finished_at, encode_nullable(result), encode_error(error))
            )
        # One statement for the batch. A task named twice (the master does not) is finished by
        # its first item at most: the later ones find it final, as one after the other would.
        if not rows:
            return []
        first: dict[str, int] = {}
        for i, row in enumerate(rows):
            first.setdefault(row[0], i)
        batch = [rows[i] for i in first.values()]
        columns = ("ids", "states", "finished_at", "results", "errors")
        params = {name: [row[c] for row in batch] for c, name in enumerate(columns)}
        with self._atomic(1) as conn:
            done = {row["id"] for row in conn.execute(self._q["finish_tasks"], params)}
        return [first[row[0]] == i and row[0] in done for i, row in enumerate(rows)]

    # -- subtasks --------------------------------------------------------------------------

    def start_attempt(
        self, task_id: str, index: int, attempt: int, worker: str, started_at: float
    ) -> None:
        """Does nothing for a subtask that is already final. `attempts` never decreases."""
        self.start_attempts([(task_id, index, attempt, worker, started_at)])

    @_again_if_disconnected
    def start_attempts(self, items: Sequence[AttemptStart]) -> None:
        # the items are the query's parameters, in order
        self._write_many(self._q["start_attempt"], items)

    def record_result(
        self, task_id: str, index: int, attempt: int, result: JSON, finished_at: float
    ) -> bool:
        """Also False, changing nothing, for an unknown subtask or one that is failed or
        cancelled (its task is over: a late result must not make it look succeeded)."""
        item = (task_id, index, attempt, encode(result), finished_at, None, None)
        return self.record_results([item])[0]

    @_again_if_disconnected
    def record_results(self, items: Sequence[AttemptResult]) -> list[bool]:
        if not items:
            return []
        # One statement for the batch. A subtask named twice takes its first item's result at
        # most: the later ones find it final, as they would one after the other.
        first: dict[tuple[str, int], int] = {}
        for i, item in enumerate(items):
            first.setdefault((item[0], item[1]), i)
        batch = [items[i] for i in first.values()]
        columns = ("task_ids", "idxs", "attempts", "results", "finished_at", "workers",
                   "started_at")
        params = {name: [item[c] for item in batch] for c, name in enumerate(columns)}
        with self._atomic(1) as conn:
            rows = conn.execute(self._q["record_results"], params)
            changed = {(row["task_id"], row["idx"]) for row in rows}
        return [first[(item[0], item[1])] == i and (item[0], item[1]) in changed
                for i, item in enumerate(items)]

    @_again_if_disconnected
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
            self._write_many(self._q["fail_subtask"], [{**params, "finished_at": finished_at}])
        else:
            self._write_many(self._q["retry_subtask"], [params])

    @_again_if_disconnected
    def requeue_subtask(self, task_id: str, index: int) -> None:
        self._write_many(self._q["requeue_subtask"], [{"task_id": task_id, "idx": index}])

    @_again_if_disconnected
    def get_subtasks(self, task_id: str) -> list[SubtaskRecord]:
        rows = self._live().execute(self._q["get_subtasks"], {"task_id": task_id})
        return [subtask_from_row(row) for row in rows]

    @_again_if_disconnected
    def get_results(self, task_id: str) -> list[JSON]:
        rows = self._live().execute(self._q["get_results"], {"task_id": task_id})
        return [decode(row["result"]) for row in rows]

    # -- logs ------------------------------------------------------------------------------

    def append_logs(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        if not records:
            return []
        with self._transaction() as conn:
            conn.execute(self._q["journal_lock"])
            rows = _each_row(conn, self._q["insert_log"], [log_row(r) for r in records])
            for record, row in zip(records, rows, strict=True):
                record.seq = row["seq"]
        return list(records)

    @_again_if_disconnected
    def get_logs(self, task_id: str, since: int = 0, limit: int = 1000) -> list[LogRecord]:
        # PostgreSQL refuses a negative LIMIT: a caller asking for less than nothing gets
        # nothing, as from SQLite.
        args = {"task_id": task_id, "since": since, "limit": max(0, limit)}
        return [log_from_row(row) for row in self._live().execute(self._q["get_logs"], args)]

    @_again_if_disconnected
    def get_events(
        self, task_id: str | None, since: int = 0, limit: int = 1000
    ) -> list[LogRecord]:
        args: dict[str, object] = {"task_id": task_id, "since": since, "limit": max(0, limit)}
        query = self._q["get_all_events" if task_id is None else "get_task_events"]
        return [log_from_row(row) for row in self._live().execute(query, args)]

    @_again_if_disconnected
    def count_logs(self, task_id: str) -> int:
        row = self._live().execute(self._q["count_logs"], {"task_id": task_id}).fetchone()
        assert row is not None
        return int(row["n"])

    def trim_logs(self, task_id: str, keep: int) -> int:
        # one statement: the delete and the count of what it dropped
        with self._atomic(1) as conn:
            row = conn.execute(
                self._q["trim_logs"], {"task_id": task_id, "keep": max(1, keep)}
            ).fetchone()
        assert row is not None
        return int(row["dropped"])

    # -- connection and transactions -------------------------------------------------------

    def _connect(self) -> Connection:
        try:
            given = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as exc:
            raise HerderError(f"--db: not a PostgreSQL URL: {_one_line(exc)}") from None
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row,
                # the URL's own values, else ours
                connect_timeout=given.get("connect_timeout") or CONNECT_TIMEOUT,
                application_name=given.get("application_name") or APPLICATION_NAME,
                keepalives_idle=given.get("keepalives_idle") or KEEPALIVES["keepalives_idle"],
                keepalives_interval=(
                    given.get("keepalives_interval") or KEEPALIVES["keepalives_interval"]
                ),
                keepalives_count=given.get("keepalives_count") or KEEPALIVES["keepalives_count"],
            )
        except psycopg.OperationalError as exc:
            raise HerderError(
                f"cannot connect to PostgreSQL at {redact(self.url)}: {_one_line(exc)}"
            ) from None
        conn.adapters.register_dumper(str, _TextDumper)
        return conn

    def _live(self) -> Connection:
        """The connection, opened again if it broke (not inside a transaction: that one is
        lost with it, and its caller told)."""
        if self._conn.closed and not self._depth:
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction, or a savepoint in the one open (it commits with it)."""
        conn = self._live()
        self._depth += 1
        try:
            with conn.transaction():
                yield conn
                if conn.info.transaction_status is TransactionStatus.INERROR:
                    # a statement failed and its caller went on: COMMIT would roll back quietly
                    raise HerderError("a statement of this store transaction failed: rolled back")
        finally:
            self._depth -= 1

    @contextmanager
    def _atomic(self, statements: int) -> Iterator[Connection]:
        """Make `statements` statements atomic: one alone is, outside a transaction (autocommit:
        no BEGIN and COMMIT round trips); more, or any inside a caller's transaction, take
        `_transaction`."""
        conn = self._live()
        if statements <= 1 and not self._depth:
            yield conn
            return
        with self._transaction() as conn:
            yield conn

    def _write_many(self, query: str, rows: Sequence[Any]) -> None:
        """Run the write `query` once per row of parameters, atomically."""
        if not rows:
            return
        with self._atomic(len(rows)) as conn:
            if len(rows) == 1:
                conn.execute(query, rows[0])
            else:
                conn.cursor().executemany(query, rows)


class _TextDumper(StrDumperUnknown):
    """Python strings as psycopg sends them, except that a NUL character, which PostgreSQL's
    text cannot hold, becomes U+FFFD (the replacement character). SQLite stores a NUL; here a
    log line or a worker name holding one is stored with the replacement instead of failing its
    whole batch, and an id holding one is looked up as such and found nowhere."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)


def _each_changed(conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Run `query` (a write that changes at most one row) once per row of parameters, in one
    pipeline (one round trip for them all); which rows changed one."""
    if len(rows) == 1:
        return [conn.execute(query, rows[0]).rowcount == 1]
    cur = conn.cursor()
    cur.executemany(query, rows, returning=True)
    changed = []
    for _ in rows:
        changed.append(cur.rowcount == 1)
        cur.nextset()
    return changed


def _each_row(conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> list[DictRow]:
    """Run `query` (which returns one row) once per row of parameters, in one pipeline; the row
    each returned."""
    if len(rows) == 1:
        one = conn.execute(query, rows[0]).fetchone()
        assert one is not None
        return [one]
    cur = conn.cursor()
    cur.executemany(query, rows, returning=True)
    out = []
    for _ in rows:
        row = cur.fetchone()
        assert row is not None
        out.append(row)
        cur.nextset()
    return out


def _migrations() -> tuple[sqlfiles.Migration, ...]:
    """(version, file name, script) for every migration file, by version."""
    return sqlfiles.migrations(SQL_FOLDER)


def _one_line(exc: BaseException) -> str:
    """libpq's messages run over several lines (a hint on the second): one line for the CLI."""
    return " ".join(str(exc).split()) or type(exc).__name__
