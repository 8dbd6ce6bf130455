"""What only PostgreSQL's backend has to show: its migrations, its schema's checks, the plans of
its queries, the life of its connection, and how `open_store` says what is wrong. The contract
itself runs against it in test_contract.py; these mirror that file's SQLite-only section.

Each test gets a new database on the session's server (tests/conftest.py). Imports
`herder.errors`, `herder.model`, `herder.store` and psycopg.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from herder.errors import HerderError
from herder.model import LogRecord, SubtaskState, TaskState
from herder.store import open_store, redact
from tests.pgserver import PostgresServer
from tests.store.test_contract import new_task, record_result, started

psycopg = pytest.importorskip("psycopg")

from psycopg.rows import DictRow  # noqa: E402

from herder.store import postgres as postgres_backend  # noqa: E402 - psycopg checked first
from herder.store.postgres import PostgresStore  # noqa: E402

_MIGRATIONS = postgres_backend._migrations()
_KNOWN = [v for v, _, _ in _MIGRATIONS]
_NEXT = max(_KNOWN) + 1


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture
def migrated(url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(url)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def _conn(store: PostgresStore) -> psycopg.Connection[DictRow]:
    """The store's connection, for the checks that go around the contract."""
    return store._driver.conn


def _versions(store: PostgresStore) -> list[int]:
    rows = _conn(store).execute("SELECT version FROM schema_version ORDER BY version")
    return [row["version"] for row in rows]


def _exists(store: PostgresStore, table: str) -> bool:
    row = _conn(store).execute("SELECT to_regclass(%s) IS NOT NULL AS found", (table,)).fetchone()
    return bool(row and row["found"])


# -- migrations -----------------------------------------------------------------------------


def test_applies_a_later_migration_once_and_in_order(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(url)
    store.migrate()
    assert _versions(store) == _KNOWN
    store.close()

    later = (
        _NEXT, "9999_extra.sql", "CREATE TABLE extra (x BIGINT);\nINSERT INTO extra VALUES (1);"
    )
    monkeypatch.setattr(postgres_backend, "_migrations", lambda: (*_MIGRATIONS, later))
    store = PostgresStore(url)
    try:
        store.migrate()
        store.migrate()
        assert _versions(store) == [*_KNOWN, _NEXT]
        row = _conn(store).execute("SELECT count(*) AS n FROM extra").fetchone()
        assert row is not None and row["n"] == 1
    finally:
        store.close()


def test_a_failing_migration_leaves_nothing_behind(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (
        _NEXT, "9999_broken.sql", "CREATE TABLE half (x BIGINT);\nINSERT INTO nowhere VALUES (1);"
    )
    monkeypatch.setattr(postgres_backend, "_migrations", lambda: (*_MIGRATIONS, broken))
    store = PostgresStore(url)
    try:
        with pytest.raises(psycopg.errors.UndefinedTable, match="nowhere"):
            store.migrate()
        # the whole run was one transaction: not even the versions before the broken one
        assert not _exists(store, "tasks")
        assert not _exists(store, "half")
        monkeypatch.setattr(postgres_backend, "_migrations", lambda: _MIGRATIONS)
        store.migrate()  # the connection goes on
        assert _versions(store) == _KNOWN
    finally:
        store.close()


def test_a_start_stored_before_0002_names_no_worker_uid(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database of the first migration, with a subtask running, as that schema stored it...
    monkeypatch.setattr(postgres_backend, "_migrations", lambda: _MIGRATIONS[:1])
    store = PostgresStore(url)
    store.migrate()
    task = new_task()  # its row as the code of that schema wrote it (today's has not_before)
    _conn(store).execute(
        "INSERT INTO tasks (id, type, params, state, created_at) "
        "VALUES (%s, %s, '{}', 'pending', %s)",
        (task.id, task.type, task.created_at),
    )
    store.start_tasks([(task.id, [0, 1], 1001.0)])
    _conn(store).execute(
        "UPDATE subtasks SET state = 'running', attempts = 1, worker = 'w1', started_at = 2.0 "
        "WHERE task_id = %s AND idx = 0",
        (task.id,),
    )
    store.close()
    # ...migrates: the running subtask keeps its start and names no uid (nobody may claim it
    # back after a restart), and the new starts carry theirs
    monkeypatch.setattr(postgres_backend, "_migrations", lambda: _MIGRATIONS)
    store = PostgresStore(url)
    try:
        store.migrate()
        assert _versions(store) == _KNOWN
        store.start_attempts([(task.id, 1, 1, "w2", 3.0, "u2")])
        assert [(s.state, s.worker, s.started_at, s.worker_uid)
                for s in store.get_subtasks(task.id)] == [
            (SubtaskState.RUNNING, "w1", 2.0, None),
            (SubtaskState.RUNNING, "w2", 3.0, "u2"),
        ]
    finally:
        store.close()


def test_refuses_a_schema_newer_than_it_knows(migrated: PostgresStore) -> None:
    _conn(migrated).execute("INSERT INTO schema_version VALUES (99, '0099_future.sql', 0)")
    with pytest.raises(HerderError, match="schema version 99"):
        migrated.migrate()


def test_the_migrations_make_the_shape_sqlite_has(migrated: PostgresStore) -> None:
    # 0001_initial.sql is written at once, not replayed from SQLite's history: with the later
    # migrations, its tables must have the columns SQLite's migrations end with.
    from herder.store.sqlite import SqliteStore

    lite = SqliteStore(":memory:")
    try:
        lite.migrate()

        def sqlite_columns(table: str) -> list[str]:
            return [row[1] for row in lite._driver.db.execute(f"PRAGMA table_info({table})")]

        expected = {t: sqlite_columns(t) for t in ("tasks", "subtasks", "logs")}
    finally:
        lite.close()
    got = {
        table: [
            row["column_name"]
            for row in _conn(migrated).execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position",
                (table,),
            )
        ]
        for table in expected
    }
    assert {t: sorted(c) for t, c in got.items()} == {t: sorted(c) for t, c in expected.items()}


# -- the schema's own checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "bad", "error"),
    [
        ("UPDATE tasks SET state = %s WHERE id = %s", "done", "CheckViolation"),
        ("UPDATE subtasks SET state = %s WHERE task_id = %s", "done", "CheckViolation"),
        ("UPDATE tasks SET state = %s WHERE id = %s", None, "NotNullViolation"),
    ],
)
def test_schema_refuses_a_state_it_does_not_know(
    migrated: PostgresStore, statement: str, bad: str | None, error: str
) -> None:
    task = started(migrated, parts=1)
    with pytest.raises(getattr(psycopg.errors, error)):
        _conn(migrated).execute(statement, (bad, task.id))
    # every state the code writes is taken
    for state in TaskState:
        _conn(migrated).execute("UPDATE tasks SET state = %s WHERE id = %s", (state.value, task.id))
    for sub_state in SubtaskState:
        _conn(migrated).execute(
            "UPDATE subtasks SET state = %s WHERE task_id = %s", (sub_state.value, task.id)
        )


def test_subtasks_need_their_task(migrated: PostgresStore) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        _conn(migrated).execute(
            "INSERT INTO subtasks (task_id, idx, part, state) VALUES ('nobody', 0, '1', 'queued')"
        )


def test_queries_by_state_walk_the_partial_indexes(migrated: PostgresStore) -> None:
    # As SQLite's 0007: the state index holds open and failed-like tasks only. With sequential
    # scans priced out (the tables are tiny), each plan shows the index the query can use; a
    # query written so that its WHERE does not imply the index's would show none.
    conn = _conn(migrated)
    conn.execute("SET enable_seqscan = off")

    def plan(name: str, **params: object) -> str:
        rows = conn.execute("EXPLAIN " + migrated._driver.queries[name], params)
        return " | ".join(row["QUERY PLAN"] for row in rows)

    assert "tasks_open_state_seq" in plan("count_unfinished")
    assert "tasks_open_state_seq" in plan("unfinished_tasks")
    page = {"before": 10, "limit": 5}
    assert "tasks_open_state_seq" in plan("list_tasks_by_state", state="running", **page)
    assert "tasks_failed_state_seq" in plan("list_tasks_by_state", state="failed", **page)
    assert "tasks_pkey" in plan("list_tasks_by_state", state="succeeded", **page)
    assert "tasks_type_seq" in plan("list_tasks_by_type", type="noop", **page)
    assert "logs_task_seq" in plan("get_logs", task_id="t", since=0, limit=5)
    conn.execute("RESET enable_seqscan")
    # and they answer as before, whichever way they go
    tasks = [new_task(state=s) for s in (TaskState.SUCCEEDED, TaskState.FAILED,
                                         TaskState.RUNNING, TaskState.SUCCEEDED)]
    migrated.insert_tasks(tasks)
    assert migrated.count_unfinished() == 1
    assert [t.id for t in migrated.unfinished_tasks()] == [tasks[2].id]
    assert [t.id for t in migrated.list_tasks(state=TaskState.SUCCEEDED)[0]] == [
        tasks[3].id, tasks[0].id
    ]


def test_a_nul_character_is_stored_as_the_replacement_character(
    migrated: PostgresStore,
) -> None:
    # (the contract suite allows either; this is what PostgreSQL does)
    task = started(migrated, parts=1)
    migrated.logs.append([LogRecord(task.id, 1.0, "INFO", "a\x00b", worker="w\x00")])
    (line,) = migrated.logs.lines(task.id)
    assert (line.message, line.worker) == ("a\ufffdb", "w\ufffd")


# -- the connection -------------------------------------------------------------------------


def _break(server: PostgresServer, url: str) -> None:
    """Close the store's connection from the server's side, as a restart of the server would;
    the store finds out at its next call."""
    database = url.rsplit("/", 1)[1]
    assert server.terminate_connections(database) == 1
    deadline = time.monotonic() + 10
    while server.connections(database):
        assert time.monotonic() < deadline, "the server did not close the connection"
        time.sleep(0.01)


def test_a_read_or_a_guarded_write_goes_on_over_a_new_connection(
    postgres_server: PostgresServer,
    migrated: PostgresStore,
    url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = started(migrated, parts=2)
    _break(postgres_server, url)
    got = migrated.get_task(task.id)  # made again on a new connection
    assert got is not None and got.id == task.id
    _break(postgres_server, url)
    assert migrated.record_results([(task.id, 0, 1, '"r"', 2.0, "w", 1.0, "u")]) == [True]
    assert migrated.get_results(task.id) == ["r", None]
    retried = [r.getMessage() for r in caplog.records if "again on a new one" in r.getMessage()]
    assert [m.rsplit(";", 1)[1] for m in retried] == [
        " get_tasks again on a new one", " record_results again on a new one",
    ]


def test_the_parts_reads_go_on_over_a_new_connection_too(
    postgres_server: PostgresServer,
    migrated: PostgresStore,
    url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `schedules` and `logs` run on the store's driver: its new connection serves them too
    task = started(migrated, parts=1)
    (line,) = migrated.logs.append([LogRecord(task.id, 1.0, "INFO", "kept")])
    _break(postgres_server, url)
    assert migrated.logs.lines(task.id) == [line]
    _break(postgres_server, url)
    assert migrated.schedules.all() == []
    retried = [r.getMessage() for r in caplog.records if "again on a new one" in r.getMessage()]
    assert [m.rsplit(";", 1)[1] for m in retried] == [
        " lines again on a new one", " all again on a new one",
    ]


def test_a_write_that_cannot_be_made_twice_fails_and_the_next_call_reconnects(
    postgres_server: PostgresServer, migrated: PostgresStore, url: str
) -> None:
    # Had the insert's commit gone through before the break, a second try would say the task
    # exists (a 409 for the submission that stored it); the journal would hold lines twice.
    _break(postgres_server, url)
    task = new_task()
    with pytest.raises(psycopg.OperationalError):
        migrated.insert_tasks([task])
    assert migrated.insert_tasks([task]) == [True]
    _break(postgres_server, url)
    with pytest.raises(psycopg.OperationalError):
        migrated.logs.append([LogRecord(task.id, 1.0, "INFO", "once")])
    assert [r.message for r in migrated.logs.lines(task.id)] == []


def test_a_failed_call_inside_a_transaction_undoes_only_itself(migrated: PostgresStore) -> None:
    # A call that fails inside a caller's transaction is rolled back to its savepoint; the
    # others commit with the transaction, as they would with SQLite.
    task = started(migrated, parts=1)
    other = new_task()
    with migrated.transaction():
        migrated.insert_tasks([other])
        with pytest.raises(ValueError, match="longer"):
            # its insert runs, then its parts do not match its tasks: the call fails
            migrated.insert_tasks([new_task()], [[1], [2]])
        record_result(migrated, task.id, 0, 1, "r", finished_at=2.0)
    assert migrated.get_task(other.id) == other
    assert migrated.get_results(task.id) == ["r"]
    assert migrated.count_unfinished() == 2


def test_a_statement_that_failed_inside_a_transaction_is_not_committed_quietly(
    migrated: PostgresStore,
) -> None:
    # Whatever ran outside the store's calls: a transaction whose statement failed and whose
    # caller went on raises at its end instead of rolling back without a word.
    task = new_task()
    with pytest.raises(HerderError, match="rolled back"), migrated.transaction():
        migrated.insert_tasks([task])
        with pytest.raises(psycopg.errors.UndefinedTable):
            _conn(migrated).execute("SELECT * FROM nowhere")
    assert migrated.get_task(task.id) is None


# -- open_store -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_opens_a_migrated_postgres_store(url: str, scheme: str) -> None:
    store = open_store(url.replace("postgresql://", f"{scheme}://", 1))
    try:
        assert isinstance(store, PostgresStore)
        assert store.runs_inline is False
        assert store.insert_tasks([new_task()]) == [True]
    finally:
        store.close()


def test_open_store_says_in_one_line_that_the_server_cannot_be_reached() -> None:
    from tests.pgserver import free_port

    url = f"postgresql://herder@127.0.0.1:{free_port()}/herder"
    started_at = time.monotonic()
    with pytest.raises(HerderError) as caught:
        open_store(url)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL at {url}: ")
    assert "refused" in message
    assert "\n" not in message
    assert time.monotonic() - started_at < 10


def test_open_store_never_shows_the_password(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_database").replace("postgres@", "postgres:hunter2@")
    with pytest.raises(HerderError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "no_such_database" in message
    assert "does not exist" in message
    assert "hunter2" not in message
    assert redact(url) == postgres_server.url("no_such_database")


def test_open_store_refuses_a_url_libpq_cannot_read() -> None:
    with pytest.raises(HerderError, match="not a PostgreSQL URL"):
        open_store("postgresql://herder@127.0.0.1/herder?no_such_option=1")


def test_open_store_says_to_install_the_extra_when_psycopg_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `import psycopg` fails as it does where the extra is not installed
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "herder.store.postgres")
    with pytest.raises(HerderError, match=r"install herder\[postgres\]") as caught:
        open_store("postgresql://herder@127.0.0.1/herder")
    assert "\n" not in str(caught.value)


def test_the_connection_names_itself_and_keeps_alive_unless_the_url_says(
    postgres_server: PostgresServer, url: str
) -> None:
    for given, expected in [
        (url, {"application_name": "herder", "keepalives_idle": "30", "connect_timeout": "10"}),
        (url + "?application_name=mine&keepalives_idle=7&connect_timeout=3",
         {"application_name": "mine", "keepalives_idle": "7", "connect_timeout": "3"}),
    ]:
        store = PostgresStore(given)
        try:
            params = _conn(store).info.get_parameters()
            assert {k: params.get(k) for k in expected} == expected
            row = _conn(store).execute("SELECT current_setting('application_name') AS a").fetchone()
            assert row is not None and row["a"] == expected["application_name"]
        finally:
            store.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgresql://u:s%40cret@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        ("postgresql://h/db?sslmode=require&password=secret",
         "postgresql://h/db?sslmode=require&password=***"),
        ("path/to/herder.db", "path/to/herder.db"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact(url) == shown
