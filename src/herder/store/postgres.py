"""The PostgreSQL backend of the store: `--db postgresql://user@host/db`, for a master whose state
lives on a database server (production, several machines).

The SQL lives in `sql/postgres/`: versioned migrations `NNNN_name.sql` applied in order by
`migrate()`, and `queries.sql` holding every query by name. `PostgresDriver` holds one psycopg 3
connection and runs those queries; `PostgresStore` is the repository over it, with PostgreSQL's
migrations and the batches it makes in one statement over arrays; `PostgresLogs` its journal's
part, with PostgreSQL's appends, and `PostgresSchedules` its schedules' part. Imports
`errors`, `model` and `store` (`base`, `repository`, `rows`, `sqlfiles`) only.

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

Fencing. A master that holds leadership (`store.leader`) gives its term to `fence()`: from then
on every write transaction starts with the `fence` query, which finds the term current and
share-locks the leadership row until the transaction ends (a take-over's UPDATE waits for it), or
raises `Deposed` and rolls the transaction back. Every write goes through `atomic` or
`transaction`, so this is the one check for all of them; a fenced write is never a lone
autocommit statement. The server also ends a transaction left idle (a master paused mid-way)
after `idle_in_transaction_session_timeout`, so that it cannot hold the row's lock forever.

A broken connection (the server restarted, the network dropped it) is opened again by the next
call. The call that met the break is made once more on the new connection when that is safe
whatever the first try did (the methods marked `repository.repeatable`: reads, and the guarded
writes); the others (inserting tasks, appending to the journal) fail, and the master goes on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import psycopg
from psycopg.adapt import Buffer
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import StrDumperUnknown

from herder.errors import Deposed, HerderError
from herder.model import LogRecord
from herder.store.base import AttemptResult, TaskFinish, redact
from herder.store.repository import (
    LogRepository,
    Params,
    Repository,
    ScheduleRepository,
    finish_rows,
    is_repeatable,
    repeatable,
)
from herder.store.rows import log_row
from herder.store.sqlfiles import Migration, migrations, queries, refuse_newer_schema

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=type)

#: the folder of herder/store/ that holds this backend's SQL (sqlfiles)
SQL_FOLDER = "sql/postgres"
#: seconds to wait for the server when connecting, unless the URL says (libpq waits forever)
CONNECT_TIMEOUT = 10
#: how the server lists our connection (pg_stat_activity), unless the URL says
APPLICATION_NAME = "herder"
#: TCP keepalives, unless the URL says: a server that vanished (a machine gone, a network cut)
#: is noticed after a minute of silence, not after the system's default of over two hours,
#: during which the store's thread, and every call queued behind it, would wait
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


class _OverPostgres(Protocol):
    """The store, or a part of it: what runs its calls on a `PostgresDriver`."""

    @property
    def _driver(self) -> PostgresDriver: ...


Part = TypeVar("Part", bound=_OverPostgres)


def _again_if_disconnected(
    method: Callable[Concatenate[Part, P], R],
) -> Callable[Concatenate[Part, P], R]:
    """Make the call once more, on a new connection, when the connection broke under it (outside
    a caller's transaction). Only for calls whose second try is right whether or not the first
    one's commit went through. (`record_results` may then say False for a result its first try
    stored; the master reads such results back from the store.)"""

    @functools.wraps(method)
    def call(self: Part, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not self._driver.lost_outside_transaction:
                raise
            log.warning("PostgreSQL connection lost (%s); %s again on a new one",
                        _one_line(exc), method.__name__)
            return method(self, *args, **kwargs)  # (the driver connects again)

    return call


def _reconnecting(cls: S) -> S:
    """The class (the store, or a part of it) with every repeatable method made again after a
    lost connection."""
    for name in dir(cls):
        method = getattr(cls, name)
        if is_repeatable(method):
            setattr(cls, name, _again_if_disconnected(method))
    return cls


@_reconnecting
class PostgresStore(Repository["PostgresDriver"]):
    """The store in a PostgreSQL database. Call `migrate()` once before anything else."""

    runs_inline = False

    def __init__(self, url: str) -> None:
        driver = PostgresDriver(url)
        super().__init__(driver, PostgresSchedules(driver), PostgresLogs(driver))
        self.url = url

    def fence(self, term: int, on_deposed: Callable[[], None],
              idle_timeout: float | None = None) -> None:
        """From now on refuse every write unless `term` is the current term of leadership:
        such a write raises `Deposed` after calling `on_deposed` (from the store's thread).
        `idle_timeout`: seconds after which the server ends a transaction of ours left idle."""
        self._driver.fence(term, on_deposed, idle_timeout)

    def migrate(self) -> None:
        db = self._driver
        with db.transaction():
            # Every step under the lock, even the first CREATE TABLE IF NOT EXISTS: two of
            # those at once on an empty database would both try to create the table.
            db.row("migration_lock")
            db.write("create_schema_version", ())
            applied = {row["version"] for row in db.rows("applied_versions")}
            for version, name, script in _migrations():
                if version in applied:
                    continue
                db.conn.execute(script)  # a whole file: several statements, no parameters
                db.write("record_version",
                         {"version": version, "name": name, "applied_at": time.time()})
                applied.add(version)
        refuse_newer_schema(redact(self.url), applied, _migrations())

    @repeatable
    def finish_tasks(self, items: Sequence[TaskFinish]) -> list[bool]:
        # One statement, which also cancels the open subtasks of the tasks that finished
        # unsuccessfully.
        columns = ("ids", "states", "finished_at", "results", "errors")
        return self._driver.each_changed_over_arrays("finish_tasks", finish_rows(items),
                                                     columns, key=1)

    @repeatable
    def record_results(self, items: Sequence[AttemptResult]) -> list[bool]:
        columns = ("task_ids", "idxs", "attempts", "results", "finished_at", "workers",
                   "started_at", "worker_uids")
        return self._driver.each_changed_over_arrays("record_results", items, columns, key=2)

    def delete_finished(self, task_ids: Sequence[str]) -> list[str]:
        # one statement: the tasks, their subtasks and their journal rows
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        with self._driver.atomic(1):
            return [row["id"] for row in self._driver.rows("delete_finished", {"ids": ids})]

    def reclaim_space(self) -> None:
        """Nothing: autovacuum makes the space of deleted rows reusable."""


@_reconnecting
class PostgresSchedules(ScheduleRepository["PostgresDriver"]):
    """The schedules' part, its repeatable calls made again after a lost connection."""


@_reconnecting
class PostgresLogs(LogRepository["PostgresDriver"]):
    """The journal's part, with PostgreSQL's appends and its trim in one statement."""

    def append(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        if not records:
            return []
        db = self._driver
        with db.transaction():
            db.row("journal_lock")
            rows = db.each_returned("insert_log", [log_row(r) for r in records])
            for record, row in zip(records, rows, strict=True):
                record.seq = row["seq"]
        return list(records)

    def trim(self, task_id: str, keep: int) -> int:
        # one statement: the delete, the count of what it dropped and its addition to the task
        with self._driver.atomic(1):
            row = self._driver.row("trim_logs", {"task_id": task_id, "keep": max(1, keep)})
        assert row is not None
        return int(row["dropped"])


class PostgresDriver:
    """One psycopg connection in autocommit mode, opened again when it broke."""

    def __init__(self, url: str, session: dict[str, str] | None = None) -> None:
        """`session`: server settings for the connection (`SET name = value` on each connect)."""
        self.url = url
        self.queries = queries(SQL_FOLDER)
        self.session = dict(session or {})
        #: transactions of ours open on the connection (a savepoint counts as one)
        self._depth = 0
        #: the term every write transaction must find current (None: writes are not fenced)
        self._term: int | None = None
        self._on_deposed: Callable[[], None] = _nothing
        self.conn = self._connect()

    def fence(self, term: int, on_deposed: Callable[[], None], idle_timeout: float | None) -> None:
        self._term, self._on_deposed = term, on_deposed
        if idle_timeout is not None:
            self.session["idle_in_transaction_session_timeout"] = f"{int(idle_timeout * 1000)}"
            self._apply_session(self.conn)

    # -- the Driver ------------------------------------------------------------------------

    def rows(self, query: str, params: Params = ()) -> psycopg.Cursor[DictRow]:
        return self._live().execute(self.queries[query], params or None)

    def row(self, query: str, params: Params = ()) -> DictRow | None:
        return self._live().execute(self.queries[query], params or None).fetchone()

    def rows_by_ids(self, query: str, ids: Sequence[str]) -> psycopg.Cursor[DictRow]:
        return self.rows(query, {"ids": ids})

    def write(self, query: str, params: Params) -> int:
        return self._live().execute(self.queries[query], params or None).rowcount

    def write_many(self, query: str, rows: Sequence[Params]) -> None:
        conn = self._live()
        if len(rows) == 1:
            conn.execute(self.queries[query], rows[0])
        else:
            conn.cursor().executemany(self.queries[query], rows)

    def each_changed(self, query: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
        """In one pipeline: one round trip for them all."""
        conn, sql = self._live(), self.queries[query]
        if len(rows) == 1:
            return [conn.execute(sql, rows[0]).rowcount == 1]
        cur = conn.cursor()
        cur.executemany(sql, rows, returning=True)
        changed = []
        for _ in rows:
            changed.append(cur.rowcount == 1)
            cur.nextset()
        return changed

    def atomic(self, statements: int) -> AbstractContextManager[object]:
        """One statement alone, outside a transaction, is atomic by itself (autocommit: no
        BEGIN and COMMIT round trips)."""
        if statements <= 1 and not self._depth and self._term is None:
            return contextlib.nullcontext()
        return self.transaction()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction, or a savepoint in the one open (it commits with it). A fenced one
        starts with the check of the term (`fence`)."""
        conn = self._live()
        outermost = not self._depth
        self._depth += 1
        try:
            with conn.transaction():
                if outermost and self._term is not None:
                    self._check_term(conn)
                yield conn
                if conn.info.transaction_status is TransactionStatus.INERROR:
                    # a statement failed and its caller went on: COMMIT would roll back quietly
                    raise HerderError("a statement of this store transaction failed: rolled back")
        finally:
            self._depth -= 1

    def close(self) -> None:
        self.conn.close()

    def _check_term(self, conn: Connection) -> None:
        if conn.execute(self.queries["fence"], {"term": self._term}).fetchone() is None:
            self._on_deposed()
            raise Deposed(f"store write refused: term {self._term} of leadership is over")

    # -- PostgreSQL's own ------------------------------------------------------------------

    def each_changed_over_arrays(
        self, query: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], key: int
    ) -> list[bool]:
        """`each_changed` in one statement, atomic by itself: `query` takes one array per
        column (named by `columns`, `unnest`ed) and returns the key (the first `key` columns)
        of each row it changed. A row whose key an earlier row has is not sent: it answers
        False, as it would after the earlier one (the writes are guarded by the state they
        move from), and one statement cannot change a row twice."""
        if not rows:
            return []
        first: dict[tuple[Any, ...], int] = {}
        for i, row in enumerate(rows):
            first.setdefault(tuple(row[:key]), i)
        batch = [rows[i] for i in first.values()]
        params = {name: [row[c] for row in batch] for c, name in enumerate(columns)}
        with self.atomic(1):
            changed = {tuple(row.values()) for row in self.rows(query, params)}
        return [first[k] == i and k in changed
                for i, k in enumerate(tuple(row[:key]) for row in rows)]

    def each_returned(self, query: str, rows: Sequence[Sequence[Any]]) -> list[DictRow]:
        """Run `query` (which returns one row) once per row of parameters, in one pipeline; the
        row each returned."""
        conn, sql = self._live(), self.queries[query]
        if len(rows) == 1:
            one = conn.execute(sql, rows[0]).fetchone()
            assert one is not None
            return [one]
        cur = conn.cursor()
        cur.executemany(sql, rows, returning=True)
        out = []
        for _ in rows:
            row = cur.fetchone()
            assert row is not None
            out.append(row)
            cur.nextset()
        return out

    @property
    def lost_outside_transaction(self) -> bool:
        """The connection broke while no transaction of ours was open: a call may be made
        again (the next one connects again)."""
        return self.conn.closed and not self._depth

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
        self._apply_session(conn)
        return conn

    def _apply_session(self, conn: Connection) -> None:
        for name, value in self.session.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))

    def _live(self) -> Connection:
        """The connection, opened again if it broke (not inside a transaction: that one is
        lost with it, and its caller told)."""
        if self.conn.closed and not self._depth:
            self.conn = self._connect()
        return self.conn


class _TextDumper(StrDumperUnknown):
    """Python strings as psycopg sends them, except that a NUL character, which PostgreSQL's
    text cannot hold, becomes U+FFFD (the replacement character). SQLite stores a NUL; here a
    log line or a worker name holding one is stored with the replacement instead of failing its
    whole batch, and an id holding one is looked up as such and found nowhere."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)


def _nothing() -> None:
    pass


def _migrations() -> tuple[Migration, ...]:
    """(version, file name, script) for every migration file, by version."""
    return migrations(SQL_FOLDER)


def _one_line(exc: BaseException) -> str:
    """libpq's messages run over several lines (a hint on the second): one line for the CLI."""
    return " ".join(str(exc).split()) or type(exc).__name__
