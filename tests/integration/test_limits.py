"""The size and count limits with real processes: large parts and results never wedge a worker,
a flood of submissions gets only 201 or 429 and the master's memory stays bounded, and the
subtask limits answer 422/429 naming the limit while a runaway split is stopped."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from herder import Client, LocalCluster, TaskHandle
from herder.client.errors import ClientError, QueueFull
from herder.protocol.frames import MAX_VALUE_BYTES
from tests.integration.conftest import TEST_TASKS, assert_healthy, wait_until

MIB = 2**20
LIMIT_TASKS = (*TEST_TASKS, "tests.limittypes")


@pytest.fixture(scope="module")
def one_worker() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=2, tasks=LIMIT_TASKS)
    with c:
        yield c


def test_large_parts_and_results_in_bulk_end_and_never_wedge_the_worker(
    one_worker: LocalCluster,
) -> None:
    client = one_worker.client
    fitting = (
        [{"type": "sized", "params": {"part": MIB, "result": MIB}}] * 20
        + [{"type": "sized", "params": {"result": 9 * MIB}}] * 6
        + [{"type": "sized", "params": {"part": 9 * MIB}}] * 3
    )
    too_large = [
        {"type": "sized", "params": {"part": 20 * MIB}},
        {"type": "sized", "params": {"result": 20 * MIB}},
    ]
    handles = client.submit_many(fitting + too_large)
    ends = [h.wait(timeout=60) for h in handles]
    assert [t["state"] for t in ends[: len(fitting)]] == ["succeeded"] * len(fitting)
    part_error, result_error = (t["error"] for t in ends[len(fitting):])
    assert [t["state"] for t in ends[len(fitting):]] == ["failed", "failed"]
    assert isinstance(part_error, dict) and isinstance(result_error, dict)
    assert str(part_error["message"]).startswith("PartTooLarge:")
    assert str(result_error["message"]).startswith("ResultTooLarge:")
    # retries are not spent on what cannot fit
    assert part_error["attempt"] == 1 and result_error["attempt"] == 1
    # params over --max-params are refused before anything is stored
    with pytest.raises(ClientError) as refused:
        client.submit("sized", {"part": 0, "pad": "x" * (20 * MIB)})
    assert refused.value.status == 413 and "--max-params" in refused.value.message
    # the worker still serves: one connection all along, and a later small task runs
    assert client.run("sized", {"result": 3}, wait=30) == 3
    (worker,) = client.workers()
    assert worker["state"] == "active"
    assert_healthy(client)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_flood_of_submissions_gets_only_201_or_429_and_memory_stays_bounded() -> None:
    cluster = LocalCluster(workers=1, slots=4, tasks=LIMIT_TASKS,
                           extra_master_args=["--max-pending", "20"])
    with cluster:
        pid = cluster.processes.master_pid
        assert pid is not None
        url = cluster.url
        before = _rss_kib(pid)
        statuses: list[int] = []
        accepted: list[str] = []
        lock = threading.Lock()

        def flood() -> None:
            client = Client(url)
            for _ in range(40):
                try:
                    task_id = client.submit("sized", {"part": 1024, "result": 16}).id
                except QueueFull as exc:
                    with lock:
                        statuses.append(exc.status)
                    continue
                with lock:
                    statuses.append(201)
                    accepted.append(task_id)

        threads = [threading.Thread(target=flood) for _ in range(50)]
        for t in threads:
            t.start()
        peak = before
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss_kib(pid))
            threads[0].join(0.05)
        for t in threads:
            t.join()
        assert len(statuses) == 2000
        assert set(statuses) <= {201, 429} and 201 in statuses and 429 in statuses
        client = cluster.client
        ends = [TaskHandle(client, task_id).wait(timeout=60)["state"] for task_id in accepted]
        assert ends == ["succeeded"] * len(accepted)
        # bounded: a queue of at most 20 small tasks, whatever the number of submissions
        assert max(peak, _rss_kib(pid)) - before < 200 * 1024


def test_subtask_limits_answer_naming_the_limit_and_stop_a_runaway_split() -> None:
    with LocalCluster(workers=1, slots=2, tasks=LIMIT_TASKS, extra_master_args=[
        "--max-subtasks-per-task", "50", "--max-pending-subtasks", "100",
    ]) as client:
        runaway = client.submit("runaway", {})
        assert_healthy(client)  # the split runs off the event loop
        task = runaway.wait(timeout=30)
        assert task["state"] == "failed"
        assert "--max-subtasks-per-task of 50" in str(task["error"])
        # once the split runs at submission (known to be quick), too many parts get 422
        refused = None
        for _ in range(30):
            try:
                handle = client.submit("sized", {"parts": 51})
            except ClientError as exc:
                refused = exc
                break
            assert handle.wait(timeout=30)["state"] == "failed"
        assert refused is not None and refused.status == 422
        assert "--max-subtasks-per-task of 50" in refused.message
        # the queue holds at most 100 subtasks of unfinished tasks
        held = [client.submit("sleep", {"seconds": 60, "parts": 50}) for _ in range(2)]
        wait_until(lambda: all(h.status()["progress"]["subtasks_total"] == 50 for h in held))
        with pytest.raises(QueueFull) as full:
            client.submit("sleep", {"seconds": 60})
        assert "--max-pending-subtasks of 100" in full.value.message
        for h in held:
            h.cancel()
        assert client.run("sized", {"result": 2}, wait=30) == 2
        assert_healthy(client)


def test_inconsistent_limits_are_refused_at_start() -> None:
    from herder.config import MasterSettings
    from herder.errors import HerderError
    from herder.master.limits import check_limits

    check_limits(MasterSettings())
    with pytest.raises(HerderError, match="--max-params"):
        check_limits(MasterSettings(max_params=MAX_VALUE_BYTES + 1, max_body=64 * MIB))
    check_limits(MasterSettings(max_body=4096))  # the body then bounds the params too
    with pytest.raises(HerderError, match="--max-pending-subtasks"):
        check_limits(MasterSettings(max_subtasks_per_task=10, max_pending_subtasks=5))
