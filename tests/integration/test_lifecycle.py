"""Deadlines, cancellation, retries and errors in task code, on real processes."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herder import Client, LocalCluster
from herder.errors import TaskFailed
from herder.model import TaskRecord
from herder.store.sqlite import SqliteStore
from tests.integration.conftest import TEST_TASKS, assert_healthy, busy_slots, wait_until


def _final(client: Client, task_id: str, timeout: float) -> dict[str, Any]:
    return client.get(task_id).wait(timeout=timeout)


def test_timeout_ends_the_task_and_frees_the_slots(client: Client) -> None:
    handle = client.submit("sleep", {"seconds": 30, "parts": 4}, timeout=0.5)
    wait_until(lambda: busy_slots(client) == 4)
    started = time.monotonic()
    status = _final(client, handle.id, timeout=2.5)
    assert status["state"] == "timed_out"
    assert "deadline" in status["error"]["message"]
    assert time.monotonic() - started < 2.0
    wait_until(lambda: busy_slots(client) == 0, timeout=2.0)
    assert client.submit("noop", {"value": 1}).result(timeout=10) == 1


def test_cancelling_a_task_of_many_quick_subtasks_leaves_nothing_running(client: Client) -> None:
    # Quick attempts are pipelined deep and queued many per slot next to the slot threads: a
    # cancel must still end them all, free every slot, and leave the workers taking new work.
    # (Not `sleep`: the master pipelines a type by its average run time, and the other tests
    # here count on `sleep` being slow.)
    handle = client.submit("echo", {"items": list(range(50_000))})
    wait_until(lambda: handle.status()["progress"]["subtasks_done"] > 2_000, timeout=30)
    assert handle.cancel()["state"] == "cancelled"
    wait_until(lambda: busy_slots(client) == 0, timeout=5.0)
    states = Counter(s["state"] for s in handle.subtasks())
    assert set(states) <= {"succeeded", "cancelled"} and states["cancelled"] > 0
    assert client.submit("noop", {"value": 3}).result(timeout=10) == 3


def test_cancel_ends_the_task_and_frees_the_slots(client: Client) -> None:
    handle = client.submit("sleep", {"seconds": 30, "parts": 6})
    wait_until(lambda: busy_slots(client) == 4)
    started = time.monotonic()
    answer = handle.cancel()
    assert answer["state"] == "cancelled"
    assert handle.status()["state"] == "cancelled"
    wait_until(lambda: busy_slots(client) == 0, timeout=2.0)
    assert time.monotonic() - started < 2.0
    with pytest.raises(TaskFailed):
        handle.result(timeout=1)
    assert client.submit("noop", {"value": 2}).result(timeout=10) == 2


def test_exception_in_execute_is_retried_then_reported(client: Client) -> None:
    # fails on attempts 1 and 2, succeeds on the third (max_retries of `fail` is 3)
    assert client.submit("fail", {"times": 2}).result(timeout=20) == 3
    handle = client.submit("fail", {})
    status = _final(client, handle.id, timeout=20)
    assert status["state"] == "failed"
    error = status["error"]
    assert isinstance(error, dict)
    assert "ValueError" in error["message"] and "boom" in error["message"]
    assert error["subtask"] == 0
    assert error["worker"]
    assert "Traceback" in error["traceback"] and "boom" in error["traceback"]
    assert error["attempt"] == 4  # the first try and three retries
    assert_healthy(client)


def test_retries_can_be_set_per_task(client: Client) -> None:
    handle = client.submit("fail", {}, retries=0)
    status = _final(client, handle.id, timeout=10)
    assert status["state"] == "failed"
    assert status["error"]["attempt"] == 1


def test_errors_in_split_and_aggregate_fail_the_task(client: Client) -> None:
    for where in ("split", "aggregate"):
        status = _final(client, client.submit("badcode", {"where": where}).id, timeout=10)
        assert status["state"] == "failed"
        assert status["error"]["message"].startswith(f"{where}: RuntimeError")
        assert "Traceback" in status["error"]["traceback"]
    assert_healthy(client)


def test_a_result_that_is_not_json_fails_cleanly(client: Client) -> None:
    status = _final(client, client.submit("badresult", {}, retries=0).id, timeout=10)
    assert status["state"] == "failed"
    assert "JSON" in status["error"]["message"] or "serial" in status["error"]["message"]
    assert_healthy(client)


def test_crashing_task_code_does_not_kill_the_worker(client: Client) -> None:
    # thread pool: os._exit would kill the worker, so `crash` is only run in the process pool
    # (see test_process_pool.py); here an exception deep in user code is enough
    before = {w["id"] for w in client.workers()}
    _final(client, client.submit("fail", {}, retries=1).id, timeout=10)
    assert {w["id"] for w in client.workers()} == before


@pytest.fixture(scope="module")
def one_slot() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=1, tasks=TEST_TASKS)
    with c:
        yield c


def test_priority_order_with_one_slot(one_slot: LocalCluster) -> None:
    client = one_slot.client
    blocker = client.submit("sleep", {"seconds": 0.5})
    wait_until(lambda: busy_slots(client) == 1)
    low = [client.submit("stamp", {}, priority=0) for i in range(3)]
    high = [client.submit("stamp", {}, priority=5) for i in range(3)]
    mid = client.submit("stamp", {}, priority=2)
    blocker.wait(timeout=20)
    # `stamp` returns the time its subtask ran: with one slot, that is the dispatch order
    ran_at = {h.id: h.result(timeout=20) for h in [*low, *high, mid]}
    order = sorted(ran_at, key=ran_at.__getitem__)
    assert order == [h.id for h in [*high, mid, *low]]


def test_fair_share_between_equal_priorities(one_slot: LocalCluster) -> None:
    client = one_slot.client
    big = client.submit("sleep", {"seconds": 0.05, "parts": 40})
    wait_until(lambda: client.get(big.id).status()["progress"]["subtasks_done"] >= 1)
    small = client.submit("sleep", {"seconds": 0.05, "parts": 2})
    small.wait(timeout=20)
    # round-robin: the small task is not stuck behind the 40 parts of the big one
    assert big.status()["state"] == "running"
    assert big.status()["progress"]["subtasks_done"] < 20
    big.cancel()


def test_run_submits_and_answers_with_the_result_in_one_round_trip(client: Client) -> None:
    assert client.run("primes", {"limit": 10_000}) == 1229
    # the HTTP of it: the POST answers with the finished task when given `wait`
    raw = httpx.post(f"{client.url}/api/v1/tasks", params={"wait": 10},
                     json={"type": "noop", "params": {"value": 7}}, timeout=30)
    assert raw.status_code == 201
    assert (raw.json()["state"], raw.json()["result"]) == ("succeeded", 7)
    with pytest.raises(TaskFailed) as failed:
        client.run("fail", {"times": 99}, retries=0)
    assert failed.value.state == "failed"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still running"):
        client.run("sleep", {"seconds": 5, "parts": 1}, wait=0.3)
    assert time.monotonic() - started < 3.0


def test_async_run_answers_with_the_result(cluster: LocalCluster) -> None:
    import asyncio

    from herder import AsyncClient

    async def main() -> None:
        async with AsyncClient(cluster.url) as client:
            assert await client.run("noop", {"value": 3}) == 3
            with pytest.raises(TaskFailed):
                await client.run("fail", {"times": 99}, retries=0)

    asyncio.run(main())


def test_a_slow_aggregate_is_listed_as_aggregating(client: Client) -> None:
    handle = client.submit("slowaggregate", {"seconds": 1.5})

    def listed_as_aggregating() -> bool:
        # the filter reads the stored state: stored once the aggregate has run a while
        return any(t["id"] == handle.id for t in client.list_tasks(state="aggregating"))

    wait_until(listed_as_aggregating, timeout=5)
    assert handle.status()["state"] == "aggregating"
    assert handle.result(timeout=10) == "aggregated"
    assert not any(t["id"] == handle.id for t in client.list_tasks(state="aggregating"))


def test_aggregates_read_the_store_when_results_are_over_the_memory_budget() -> None:
    # 40 bytes: the first results are kept, then the task's are dropped and read back
    with LocalCluster(workers=1, slots=2, tasks=TEST_TASKS,
                      extra_master_args=["--results-in-memory", "40"]) as client:
        items = [{"i": i, "pad": "x" * 5} for i in range(20)]
        assert client.run("echo", {"items": items}, wait=30) == items
        assert client.run("primes", {"limit": 10_000}) == 1229


@pytest.fixture(scope="module")
def two_single_slots() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=1, tasks=TEST_TASKS)
    with c:
        yield c


def test_work_pipelined_behind_an_attempt_that_overran_is_taken_back(
    two_single_slots: LocalCluster,
) -> None:
    client = two_single_slots.client
    # Many quick attempts make `uneven` a short type: the master pipelines it, up to 16
    # attempts per slot sent ahead to each worker.
    assert client.submit("uneven", {"seconds": [0.0] * 60}).result(timeout=30) == 60
    # Then one long part and many quick ones: the worker that runs the long part was sent
    # quick ones to run after it. Taken back once the long one overruns, they run on the
    # other worker, long before the long part ends.
    long_part = 5.0
    handle = client.submit("uneven", {"seconds": [long_part] + [0.0] * 30})
    started = time.monotonic()

    def quick_parts_done() -> bool:
        return handle.status()["progress"]["subtasks_done"] >= 30

    wait_until(quick_parts_done, timeout=long_part / 2, what="the 30 quick parts")
    assert time.monotonic() - started < long_part / 2
    assert handle.status()["state"] == "running"  # the long part still runs
    assert handle.result(timeout=long_part + 20) == 31
    # the type's run times are no longer taken as short: nothing is pipelined behind them
    # (a speculative copy of the long part, cancelled when it ended, is let go a moment later)
    wait_until(
        lambda: sum(w["busy"] for w in client.workers()) == 0, timeout=5,
        what="every slot free",
    )


def _commits(client: Client) -> tuple[float, float]:
    """(results stored, transactions that stored them) so far, from /metrics."""
    text = httpx.get(f"{client.url}/metrics").text
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("herder_results_per_commit")
    }
    return samples["herder_results_per_commit_sum"], samples["herder_results_per_commit_count"]


def test_results_of_workers_with_work_sent_ahead_share_their_commits(
    two_single_slots: LocalCluster,
) -> None:
    client = two_single_slots.client
    # 5 ms parts: once known, 10 per slot are sent ahead (50 ms of them), so a worker's result
    # waits for its next one, and the two go in one message and one transaction
    assert len(client.submit("whoami", {"parts": 10, "seconds": 0.005}).result(timeout=30)) == 10
    results0, commits0 = _commits(client)
    assert len(client.submit("whoami", {"parts": 100, "seconds": 0.005}).result(timeout=30)) == 100
    results1, commits1 = _commits(client)
    assert results1 - results0 == 100  # each stored once
    assert commits1 - commits0 <= 0.7 * 100  # one by one, it would be about 100
    # a lone result (nothing sent ahead behind it) is committed at once, alone
    client.run("whoami", {"seconds": 0.0}, wait=10)
    results2, commits2 = _commits(client)
    assert (results2 - results1, commits2 - commits1) == (1, 1)


def test_a_restarted_master_numbers_the_next_attempt_of_a_queued_subtask_above_any_unstored(
    tmp_path: Path,
) -> None:
    # The store is written as a master leaves it when killed just after a dispatch whose start
    # it had not stored yet (starts wait to go with their results): the task running, its
    # subtask queued with 0 attempts. Attempt 1 may be running on a worker that will reconnect;
    # the restarted master runs attempt 2, so that the two are never taken for each other.
    db = str(tmp_path / "killed.db")
    store = SqliteStore(db)
    store.migrate()
    now = time.time()
    record = TaskRecord(id="killed-1", type="noop", params={"value": 7}, created_at=now)
    store.insert_tasks([record])
    store.start_tasks([("killed-1", [7], now)])
    store.close()
    with LocalCluster(workers=1, slots=1, db=db) as client:
        handle = client.get("killed-1")
        assert handle.result(timeout=20) == 7
        (sub,) = handle.subtasks()
        assert (sub["state"], sub["attempts"]) == ("succeeded", 2)


def test_tasks_of_a_quick_split_are_stored_split_by_the_time_they_are_acknowledged(
    tmp_path: Path,
) -> None:
    # Once a type's split is known to be quick (it runs on the event loop), a task of it is
    # split before its row is stored, and stored running with its subtasks in the same commit.
    # With no worker to run anything, another connection to the database sees each of them so
    # as soon as the submission is answered. A split that raises still fails its task.
    db = str(tmp_path / "early.db")
    quick = {"type": "badcode", "params": {"where": "aggregate"}}  # its split returns [1]
    with LocalCluster(workers=0, tasks=TEST_TASKS, db=db) as client:
        warm = client.submit_many([quick] * 20)  # its split's first calls are timed on threads
        wait_until(lambda: all(h.status()["state"] == "running" for h in warm), what="split")
        handles = client.submit_many([quick] * 5 + [{"type": "badcode", "params": {}}])
        answered = [h.task for h in handles]
        reader = sqlite3.connect(db)
        try:
            ids = [h.id for h in handles[:5]]
            rows = reader.execute(
                f"SELECT state, started_at IS NOT NULL, subtasks_total FROM tasks "
                f"WHERE id IN ({', '.join('?' * len(ids))})", ids,
            ).fetchall()
            subtasks = reader.execute(
                f"SELECT count(*) FROM subtasks WHERE state = 'queued' "
                f"AND task_id IN ({', '.join('?' * len(ids))})", ids,
            ).fetchone()[0]
        finally:
            reader.close()
        assert rows == [("running", 1, 1)] * 5
        assert subtasks == 5
        assert [t["state"] for t in answered[:5] if t] == ["running"] * 5
        failed = _final(client, handles[5].id, timeout=10)
        assert failed["state"] == "failed"
        assert failed["error"]["message"].startswith("split: RuntimeError: bad split")
        # a quick split into no parts: stored split, aggregated at once (no worker needed)
        echo = {"type": "echo", "params": {"items": [1]}}
        warm = client.submit_many([echo] * 20)
        wait_until(lambda: all(h.status()["state"] == "running" for h in warm), what="split")
        (empty,) = client.submit_many([{"type": "echo", "params": {"items": []}}])
        assert empty.result(timeout=10) == []
        assert_healthy(client)
