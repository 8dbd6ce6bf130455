"""herder on PostgreSQL, end to end: a real master process started with `--db postgresql://...`
on the session's server (tests/conftest.py), real workers, the public client. The master then
runs its store on a thread (`runs_inline` is False), the path SQLite never takes.

The fault test of a master killed mid-task and restarted on the same database is
tests/faults/test_master_restart.py, which runs on both backends.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from herder import Client, LocalCluster
from herder.cluster import free_port
from herder.errors import TaskFailed
from herder.model import SubtaskState, TaskState
from tests.integration.conftest import TEST_TASKS, assert_healthy, busy_slots, wait_until
from tests.pgserver import PostgresServer


@pytest.fixture(scope="module")
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture(scope="module")
def pg_cluster(pg_url: str) -> Iterator[LocalCluster]:
    cluster = LocalCluster(workers=2, slots=2, tasks=TEST_TASKS, db=pg_url)
    with cluster:
        yield cluster


@pytest.fixture(scope="module")
def pg_client(pg_cluster: LocalCluster) -> Client:
    return pg_cluster.client


def test_split_and_aggregate_tasks_give_their_results(pg_client: Client, pg_url: str) -> None:
    primes = pg_client.submit("primes", {"limit": 1_000_000, "parts": 7})
    words = ["apple", "Banana", "cherry", "don't", "e2e", "fig"]
    text = " ".join(words[(i * 7 + i // 3) % len(words)] for i in range(5000))
    counts = Counter(re.findall(r"[a-z0-9']+", text.lower()))
    expected_top = [[w, n] for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
    wordcount = pg_client.submit("wordcount", {"text": text, "parts": 6, "top": 5})

    assert primes.result(timeout=30) == 78498
    assert wordcount.result(timeout=30) == expected_top
    # in the database: the task succeeded with its result, each of its 7 parts has its own
    from herder.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        # (the answer may come before the final state's write, which follows within ~20 ms)
        record = wait_until(
            lambda: (r := store.get_task(primes.id)) and r.state.finished and r,
            what="the task stored finished",
        )
        assert (record.state, record.result, record.subtasks_total) == (
            TaskState.SUCCEEDED, 78498, 7
        )
        subtasks = store.get_subtasks(primes.id)
        assert [s.state for s in subtasks] == [SubtaskState.SUCCEEDED] * 7
        assert sum(s.result for s in subtasks) == 78498
        assert all(s.worker and s.attempts == 1 for s in subtasks)
        # the journal holds its final state, which the event stream is resumed from
        events = wait_until(lambda: store.logs.events(primes.id), what="the journal's entry")
        assert [e.message for e in events] == ["succeeded"]
    finally:
        store.close()
    assert_healthy(pg_client)


def test_logs_listing_and_lookups_are_read_from_postgres(pg_client: Client) -> None:
    handle = pg_client.submit("logs", {})
    assert handle.result(timeout=15) == [{}]  # one part, the params, returned
    # (stored in batches every ~20 ms, maybe after the answer)
    lines = wait_until(lambda: len(got := handle.logs()) >= 3 and got, what="3 log lines")
    assert [line["message"] for line in lines] == ["starting part {}", "halfway there", "done"]
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "INFO"]
    def listed() -> bool:
        return handle.id in [t["id"] for t in pg_client.list_tasks(state="succeeded", type="logs")]

    wait_until(listed, what="the task listed as succeeded")
    (subtask,) = handle.subtasks()
    assert subtask["state"] == "succeeded"


def test_failures_and_cancellation_are_stored(pg_client: Client, pg_url: str) -> None:
    with pytest.raises(TaskFailed) as failed:
        pg_client.run("fail", {"times": 99}, retries=0, wait=15)
    assert failed.value.state == "failed"

    sleeper = pg_client.submit("sleep", {"seconds": 30, "parts": 4})
    wait_until(lambda: busy_slots(pg_client) == 4, what="4 busy slots")
    sleeper.cancel()
    assert sleeper.wait(timeout=15)["state"] == "cancelled"
    wait_until(lambda: busy_slots(pg_client) == 0, timeout=15, what="every slot free")

    from herder.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        record = wait_until(
            lambda: (r := store.get_task(sleeper.id)) and r.state.finished and r,
            what="the task stored finished",
        )
        assert record.state is TaskState.CANCELLED
        assert {s.state for s in store.get_subtasks(sleeper.id)} == {SubtaskState.CANCELLED}
        failures = wait_until(lambda: store.list_tasks(state=TaskState.FAILED)[0])
        assert [t.type for t in failures] == ["fail"]
        assert failures[0].error is not None
    finally:
        store.close()


def test_a_slow_aggregate_is_listed_as_aggregating(pg_client: Client) -> None:
    handle = pg_client.submit("slowaggregate", {"seconds": 1.5})

    def listed_as_aggregating() -> bool:
        return any(t["id"] == handle.id for t in pg_client.list_tasks(state="aggregating"))

    wait_until(listed_as_aggregating, timeout=5, what="listed as aggregating")
    assert handle.result(timeout=10) == "aggregated"


def test_aggregates_read_the_results_back_from_postgres(postgres_server: PostgresServer) -> None:
    # Past --results-in-memory (40 bytes) results are not kept: the aggregate reads them from
    # the store, on the store's thread, then runs (Aggregation._read_results_then_aggregate).
    url = postgres_server.create_database()
    with LocalCluster(workers=1, slots=2, tasks=TEST_TASKS, db=url,
                      extra_master_args=["--results-in-memory", "40"]) as client:
        items = [{"i": i, "pad": "x" * 5} for i in range(20)]
        assert client.run("echo", {"items": items}, wait=30) == items
        assert client.run("primes", {"limit": 10_000}, wait=30) == 1229


def test_the_master_says_in_one_line_that_postgres_cannot_be_reached() -> None:
    # no server on this port: the master exits at once with one line, no traceback
    port = free_port()
    url = f"postgresql://herder:secret@127.0.0.1:{port}/herder"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "herder", "master", "--db", url, "--port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    shown = f"postgresql://herder@127.0.0.1:{port}/herder"  # the password left out
    assert errors[0].startswith(f"error: cannot connect to PostgreSQL at {shown}: ")
    assert "refused" in errors[0]
    assert "Traceback" not in done.stderr
    assert "secret" not in done.stderr + done.stdout
    assert time.monotonic() - started < 30
