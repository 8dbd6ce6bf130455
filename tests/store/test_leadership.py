"""Leadership of masters sharing one PostgreSQL store (herder.store.leader) and the fencing of
their writes (PostgresDriver.fence), against the session's real server: one master at a time
holds the lease, a take-over raises the term, and a write with a stale term is refused by the
store's own statement, changing nothing.

Each test gets a new database on the session's server (tests/conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from herder.errors import Deposed
from herder.model import TaskState
from tests.pgserver import PostgresServer
from tests.store.test_contract import new_task, record_result, started

pytest.importorskip("psycopg")

from herder.store.base import Leader
from herder.store.leader import Lease
from herder.store.postgres import PostgresStore

TTL = 30.0


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(url)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


@pytest.fixture
def leases(url: str, store: PostgresStore) -> Iterator[tuple[Lease, Lease]]:
    a = Lease(url, "a-holder", "http://a:8700")
    b = Lease(url, "b-holder", "http://b:8700")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_one_master_holds_the_lease_and_a_take_over_raises_the_term(
    leases: tuple[Lease, Lease],
) -> None:
    a, b = leases
    assert a.leader() is None
    term = a.take(TTL)
    assert term == 1
    assert b.take(TTL) is None  # held and running: the other master stands by
    assert a.renew(term, TTL)
    assert b.leader() == Leader(1, "http://a:8700", True)
    a.release(term)
    assert b.leader() == Leader(1, "http://a:8700", False)
    assert b.take(TTL) == 2
    assert not a.renew(term, TTL)  # its term is over
    assert a.take(TTL) is None


def test_a_restarted_master_at_the_same_url_takes_the_lease_at_once(
    url: str, leases: tuple[Lease, Lease],
) -> None:
    a, _ = leases
    assert a.take(TTL) == 1
    again = Lease(url, "a-restarted", "http://a:8700")
    try:
        assert again.take(TTL) == 2
    finally:
        again.close()
    assert not a.renew(1, TTL)


def test_a_write_with_a_stale_term_is_refused_by_the_store(
    store: PostgresStore, leases: tuple[Lease, Lease],
) -> None:
    a, b = leases
    term = a.take(TTL)
    assert term is not None
    refused: list[threading.Thread] = []
    store.fence(term, lambda: refused.append(threading.current_thread()))
    task = started(store, parts=2)  # writes of the current term go through
    assert record_result(store, task.id, 0, 1, 10, 1002.0)
    a.release(term)
    assert b.take(TTL) == term + 1

    with pytest.raises(Deposed, match=f"term {term}"):
        record_result(store, task.id, 1, 1, 11, 1002.0)
    with pytest.raises(Deposed):
        store.insert_tasks([new_task()])
    with pytest.raises(Deposed):
        store.finish_tasks([(task.id, TaskState.FAILED, 2000.0, None, None)])
    assert len(refused) == 3
    # nothing of the refused writes is stored; reads still answer
    subtasks = store.get_subtasks(task.id)
    assert [s.result for s in subtasks] == [10, None]
    record = store.get_task(task.id)
    assert record is not None and record.state is TaskState.RUNNING
    assert store.count_unfinished() == 1


def test_a_take_over_ends_a_fenced_transaction_of_an_expired_term(
    store: PostgresStore, leases: tuple[Lease, Lease],
) -> None:
    import psycopg

    a, b = leases
    term = a.take(0.0)  # expired at once: any master may take it
    assert term is not None
    store.fence(term, lambda: None)
    with pytest.raises(psycopg.OperationalError), store.transaction():
        task = started(store, parts=1)
        # the take-over's UPDATE meets the share lock, gives up (lock_timeout) and ends the
        # session that holds it, since its term's lease is over: the write is rolled back
        assert b.take(TTL) is None  # (its commit then finds the session gone)
    assert b.take(TTL) == term + 1
    assert store.get_task(task.id) is None  # nothing of the ended transaction was stored
    with pytest.raises(Deposed):
        started(store, parts=1)


def test_a_write_of_an_expired_term_stuck_holding_the_row_is_ended_by_the_take_over(
    url: str, leases: tuple[Lease, Lease],
) -> None:
    # A master paused in the middle of a write transaction (mid-pipeline, where no idle timeout
    # ends it) holds the lease row's share lock; once its lease has run out, the take-over ends
    # that session instead of waiting on it for ever.
    import psycopg

    a, b = leases
    term = a.take(TTL)
    assert term == 1
    a.release(term)  # its lease is over, as a paused master's runs out
    stuck = psycopg.connect(url)  # no idle timeout: nothing but the take-over ends it
    try:
        stuck.execute("SELECT 1 FROM herder_leader WHERE name = 'master' FOR SHARE")
        assert b.take(TTL) is None  # the lock holds it off once, and its holder is ended
        assert b.take(TTL) == 2
        with pytest.raises(psycopg.OperationalError):
            stuck.execute("SELECT 1")  # its session was terminated: its writes rolled back
    finally:
        stuck.close()
