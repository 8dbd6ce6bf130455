"""The SQLite backend of the store: one embedded file (or `:memory:`), the default.

The SQL lives in `sql/`: versioned migrations `NNNN_name.sql` applied in order by `migrate()`, and
`queries.sql` holding every query by name. `SqliteDriver` opens the connection and runs those
queries inside transactions; `SqliteStore` is the repository over it, with SQLite's migrations,
and `SqliteLogs` its journal's part, with SQLite's appends. Imports `errors`, `model` and `store`
(`repository`, `rows`, `sqlfiles`) only.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from herder.errors import HerderError
from herder.model import LogRecord
from herder.store.repository import LogRepository, Params, Repository, ScheduleRepository
from herder.store.rows import Row, log_row
from herder.store.sqlfiles import Migration, migrations, queries, refuse_newer_schema

log = logging.getLogger(__name__)

#: how often the background checkpoint runs (seconds)
CHECKPOINT_EVERY = 0.5
#: WAL pages (4 KiB) after which a commit checkpoints itself (SQLite's default: 1,000)
WAL_LIMIT_PAGES = 10_000

#: free pages (4 KiB) given back to the system per `reclaim_space` at most
RECLAIM_PAGES = 1000

#: the folder of herder/store/ that holds this backend's SQL (sqlfiles)
SQL_FOLDER = "sql"
#: ids bound in one `IN (...)` (SQLite allows 32,766 parameters; smaller chunks plan faster)
_IDS_PER_QUERY = 500
_BUSY_TIMEOUT_MS = 5000
#: `PRAGMA auto_vacuum`'s answer for INCREMENTAL
_INCREMENTAL = 2


class SqliteStore(Repository["SqliteDriver"]):
    """The store in one SQLite file. Call `migrate()` once before anything else."""

    runs_inline = True

    def __init__(self, path: str) -> None:
        driver = SqliteDriver(path)
        super().__init__(driver, ScheduleRepository(driver), SqliteLogs(driver))
        self.path = path

    def migrate(self) -> None:
        db = self._driver
        db.db.execute(db.queries["create_schema_version"])
        for version, name, script in _migrations():
            with db.transaction():
                # Checked under the write lock, so two processes migrating at once apply each
                # version once: the second one waits, then finds it done.
                if version in db.applied_versions():
                    continue
                for statement in _statements(script):
                    db.db.execute(statement)
                db.write("record_version",
                         {"version": version, "name": name, "applied_at": time.time()})
        db.convert_to_incremental_vacuum()
        if self.path != ":memory:" and self.path:
            db.checkpoint_in_the_background()
        refuse_newer_schema(repr(self.path), db.applied_versions(), _migrations())

    def reclaim_space(self) -> None:
        """Give up to RECLAIM_PAGES free pages back to the system: a bounded step, so that it
        stays short on the event loop; what is left free is reused by later writes."""
        if not self._driver.db.in_transaction:  # (the pragma's script would commit it)
            self._driver.db.executescript(f"PRAGMA incremental_vacuum({RECLAIM_PAGES})")


class SqliteLogs(LogRepository["SqliteDriver"]):
    """The journal's part, with SQLite's appends."""

    def append(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        if not records:
            return []
        # One insert of the rows; their seqs are then known without a query per row: AUTOINCREMENT
        # gives each new row the largest rowid ever used plus one, and the write lock held by
        # the transaction keeps any other writer out between the rows.
        db = self._driver
        # all or nothing even inside a caller's transaction: a row that fails (a value SQLite
        # cannot bind) must not leave the rows before it to be committed with the others
        with db.atomic(len(records)), db.all_or_nothing("append_logs"):
            seq = db.insert_many("insert_log", [log_row(r) for r in records]) - len(records)
        for r in records:
            seq += 1
            r.seq = seq
        return list(records)


_NUMBERED = re.compile(r"\?(\d+)")

#: a row's values in the order of its query's placeholders
Reorder = Callable[[Sequence[Any]], tuple[Any, ...]]


def plain_placeholders(named: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Reorder]]:
    """The queries with their numbered parameters (?1, ?2, ...) made plain (?), and for those
    whose numbers are not 1, 2, 3, ... in order, what puts a row's values in their order.

    The queries number their parameters so that a row is bound from a tuple, and a value used
    twice is given once; but Python 3.14's sqlite3 refuses a tuple for numbered parameters (3.12
    and 3.13 warn), so they are bound as plain ones, from the tuple reordered."""
    plain: dict[str, str] = {}
    reorder: dict[str, Reorder] = {}
    for name, sql in named.items():
        order = [int(number) - 1 for number in _NUMBERED.findall(sql)]
        plain[name] = _NUMBERED.sub("?", sql) if order else sql
        if order and order != list(range(len(order))):
            reorder[name] = _picker(order)
    return plain, reorder


def _picker(order: list[int]) -> Reorder:
    if len(order) == 1:
        (index,) = order
        return lambda row: (row[index],)
    return operator.itemgetter(*order)


class SqliteDriver:
    """One connection to a SQLite file, and the thread that checkpoints its WAL."""

    def __init__(self, path: str) -> None:
        # isolation_level=None: the driver opens no transactions behind our back; each write
        # is either one statement (atomic by itself) or inside `transaction()`.
        # check_same_thread=False: the master's store thread need not be the one that opened us.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.queries, self._reorder = plain_placeholders(queries(SQL_FOLDER))
        self._path = path
        self._checkpointer: _Checkpointer | None = None
        # WAL with synchronous=NORMAL: a commit is in the WAL file (the OS page cache) when it
        # returns and the WAL is fsynced at checkpoints. Killing the process, even with -9, loses
        # nothing committed, because the OS still writes what it holds; only a power cut or an OS
        # crash may lose the last commits, and never corrupts the file. FULL would fsync on every
        # commit, which bounds submissions to the disk's flush rate for no gain against the
        # crashes DESIGN.md promises to survive. WAL also lets readers go on during a write.
        # Freed pages can go back to the system (`reclaim_space`). This takes effect only on a
        # file that has no table yet, and only before the switch to WAL, which writes the file's
        # header; a file made by an older herder is converted once by `migrate`.
        self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _switch_to_wal(self.db)
        self.db.execute("PRAGMA synchronous = NORMAL")
        # Another process holding the write lock (a second master, a migration) makes us wait
        # this long instead of failing at once with "database is locked".
        self.db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self.db.execute("PRAGMA foreign_keys = ON")
        # Checkpoints (copying the WAL into the database file, with an fsync) happen mostly on
        # a thread of their own (_Checkpointer), not in whichever commit crosses the WAL's size
        # limit, which would then wait for the disk. The commit that crosses WAL_LIMIT_PAGES
        # still checkpoints: only it can start the WAL over while writes go on, so that is what
        # bounds the file.
        self.db.execute(f"PRAGMA wal_autocheckpoint = {WAL_LIMIT_PAGES}")

    # -- the Driver ------------------------------------------------------------------------

    def rows(self, query: str, params: Params = ()) -> sqlite3.Cursor:
        return self.db.execute(self.queries[query], self._bound(query, params))

    def row(self, query: str, params: Params = ()) -> Row | None:
        row: Row | None = self.db.execute(
            self.queries[query], self._bound(query, params)).fetchone()
        return row

    def rows_by_ids(self, query: str, ids: Sequence[str]) -> Iterator[Row]:
        sql = self.queries[query]
        for first in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[first : first + _IDS_PER_QUERY]
            yield from self.db.execute(sql.replace("?ids", ", ".join("?" * len(chunk))),
                                               chunk)

    def write(self, query: str, params: Params) -> int:
        return self.db.execute(self.queries[query], self._bound(query, params)).rowcount

    def write_many(self, query: str, rows: Sequence[Params]) -> None:
        self.db.executemany(self.queries[query], self._all_bound(query, rows))

    def each_changed(self, query: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
        """One executemany when every row changes one (the usual case: its summed row count
        says so), which is cheaper than one execute per row; otherwise that is undone to a
        savepoint and the rows are run one by one, to tell which of them changed nothing."""
        db, sql = self.db, self.queries[query]
        rows = self._all_bound(query, rows)
        if len(rows) > 1:
            db.execute("SAVEPOINT each_changed")
            if db.executemany(sql, rows).rowcount == len(rows):
                db.execute("RELEASE each_changed")
                return [True] * len(rows)
            db.execute("ROLLBACK TO each_changed")
            db.execute("RELEASE each_changed")
        return [db.execute(sql, row).rowcount == 1 for row in rows]

    def atomic(self, statements: int) -> AbstractContextManager[object]:
        if statements <= 1 and not self.db.in_transaction:
            return contextlib.nullcontext()
        return self.transaction()

    @contextlib.contextmanager
    def all_or_nothing(self, name: str) -> Iterator[None]:
        """Inside a transaction, a savepoint: what fails in the block undoes the block's writes
        only. Outside one, nothing (a single statement is atomic by itself)."""
        db = self.db
        if not db.in_transaction:
            yield
            return
        db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            db.execute(f"ROLLBACK TO {name}")
            db.execute(f"RELEASE {name}")
            raise
        db.execute(f"RELEASE {name}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[object]:
        db = self.db
        # Inside a transaction() of the caller's, this is part of it (group commit).
        if db.in_transaction:
            yield db
            return
        # IMMEDIATE takes the write lock at BEGIN, so a read-then-write inside cannot be
        # overtaken by another writer between the two (and waits busy_timeout, not fails, on it).
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.db.close()

    def _bound(self, query: str, params: Any) -> Any:
        """`params` in the order of `query`'s plain placeholders (a mapping as it is)."""
        pick = self._reorder.get(query)
        return params if pick is None or isinstance(params, Mapping) else pick(params)

    def _all_bound(self, query: str, rows: Sequence[Any]) -> Sequence[Any]:
        pick = self._reorder.get(query)
        return rows if pick is None else list(map(pick, rows))

    # -- SQLite's own ----------------------------------------------------------------------

    def applied_versions(self) -> set[int]:
        return {row["version"] for row in self.rows("applied_versions")}

    def convert_to_incremental_vacuum(self) -> None:
        """A file made before herder set incremental auto-vacuum gets it now: the setting of a
        file that has tables takes a VACUUM, which rewrites the file once (outside any
        transaction; its time grows with the file's size) and is logged."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
            return
        log.warning("store %s: converting to incremental auto-vacuum (a one-time VACUUM)",
                    self._path)
        self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.db.execute("VACUUM")

    def insert_many(self, query: str, rows: Sequence[Params]) -> int:
        """Insert `rows` (at least one); the rowid of the last. One row is one execute, whose
        cursor knows its rowid; executemany's does not, so more rows take a query for it."""
        rows = self._all_bound(query, rows)
        if len(rows) == 1:
            return int(self.db.execute(self.queries[query], rows[0]).lastrowid or 0)
        self.db.executemany(self.queries[query], rows)
        return int(self.db.execute("SELECT last_insert_rowid()").fetchone()[0])

    def checkpoint_in_the_background(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self._path)


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


def _migrations() -> tuple[Migration, ...]:
    """(version, file name, script) for every migration file, by version."""
    return migrations(SQL_FOLDER)


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
