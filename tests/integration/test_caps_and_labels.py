"""Concurrency caps and labels with real processes: a type's max_running across two workers, a
task's max_parallel, a task that waits for a worker with its labels, and all of it across a
master restart. How many subtasks ran at once is read twice: sampled from the master while it
runs, and afterwards from when each subtask's code ran (its result: [start, end])."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from herder import Client, LocalCluster
from tests.captypes import most_at_once
from tests.integration.conftest import wait_until

FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=4, tasks=("tests.captypes",))
    with c:
        yield c


def intervals(client: Client, task_id: str) -> list[list[float]]:
    result = client.get(task_id).result(timeout=60)
    assert isinstance(result, list)
    return result


def held_by_cap(client: Client) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{client.url}/metrics", timeout=10).text
    pattern = r'^herder_subtasks_held_by_cap\{cap="([^"]+)",type="([^"]+)"\} (\S+)$'
    return {(t, c): float(v) for c, t, v in re.findall(pattern, text, re.MULTILINE)}


def test_a_type_capped_at_two_never_runs_more_and_other_work_takes_the_other_slots(
    cluster: LocalCluster,
) -> None:
    client = cluster.client
    capped = [client.submit("cappednap", {"parts": 6, "seconds": 0.3}) for _ in range(2)]
    other = client.submit("nap", {"parts": 12, "seconds": 0.3})
    seen: dict[str, Any] = {"most": 0, "other_most": 0, "why": set(), "metric": 0.0}

    def sample() -> bool:
        # one list: one moment of the master's state
        tasks = client.list_tasks(type="cappednap", limit=10)
        seen["most"] = max(seen["most"], sum(t["progress"]["subtasks_running"] for t in tasks))
        seen["why"] |= {t["waiting_for"] for t in tasks}
        seen["other_most"] = max(
            seen["other_most"], other.status()["progress"]["subtasks_running"]
        )
        held = held_by_cap(client).get(("cappednap", "max_running"), 0)
        seen["metric"] = max(seen["metric"], held)
        return all(t["state"] in FINAL for t in tasks) and len(tasks) == 2

    wait_until(sample, timeout=60, what="the capped tasks to finish")
    assert seen["most"] == 2  # the cap, reached and never passed
    assert "held by max_running of type cappednap (2)" in seen["why"]
    assert seen["metric"] > 0
    # what ran: never more than two at once, on 8 slots
    ran = [span for h in capped for span in intervals(client, h.id)]
    assert len(ran) == 12 and most_at_once(ran) <= 2
    # the other task was not held behind them: it used more than the slots the cap left idle
    assert seen["other_most"] > 2
    assert len(intervals(client, other.id)) == 12


def test_max_parallel_one_runs_a_split_task_one_subtask_at_a_time(cluster: LocalCluster) -> None:
    client = cluster.client
    handle = client.submit("nap", {"parts": 5, "seconds": 0.1}, max_parallel=1)
    assert handle.status()["max_parallel"] == 1
    most = 0

    def sample() -> bool:
        nonlocal most
        task = handle.status()
        most = max(most, task["progress"]["subtasks_running"])
        return task["state"] in FINAL

    wait_until(sample, timeout=60)
    assert most == 1
    assert most_at_once(intervals(client, handle.id)) == 1


def test_a_task_waits_for_a_worker_with_its_labels_then_runs_there(cluster: LocalCluster) -> None:
    client = cluster.client
    by_type = client.submit("gpunap", {"parts": 2})
    by_submission = client.submit("nap", {"parts": 2}, labels=["gpu"])
    assert by_submission.status()["labels"] == ["gpu"]
    for handle in (by_type, by_submission):
        wait_until(
            lambda h=handle: h.status()["waiting_for"] == "no connected worker has the labels gpu",
            what="the reason it waits",
        )
    plain = client.submit("nap", {"parts": 2})
    plain.wait(60)  # the others ran meanwhile
    assert {by_type.status()["state"], by_submission.status()["state"]} == {"running"}
    cluster.add_worker("gpu-worker", extra_args=["--label", "gpu"])
    cluster.wait_ready(workers=3)
    for handle in (by_type, by_submission):
        assert handle.wait(60)["state"] == "succeeded"
        assert {s["worker"] for s in handle.subtasks()} == {"gpu-worker"}


def test_labels_and_max_parallel_hold_across_a_master_restart(cluster: LocalCluster) -> None:
    client = cluster.client
    handle = client.submit("nap", {"parts": 4, "seconds": 0.1}, max_parallel=1, labels=["ssd"])
    reason = "no connected worker has the labels ssd"
    wait_until(lambda: handle.status()["waiting_for"] == reason)
    cluster.processes.kill_master()
    cluster.processes.start_master()
    cluster.wait_ready(workers=0)
    cluster.wait_ready(workers=2)
    task = wait_until(lambda: (t := handle.status())["waiting_for"] == reason and t)
    assert (task["state"], task["max_parallel"], task["labels"]) == ("running", 1, ["ssd"])
    cluster.add_worker("ssd-worker", extra_args=["--label", "ssd"])
    assert handle.wait(60)["state"] == "succeeded"
    assert most_at_once(intervals(client, handle.id)) == 1


def test_a_type_cap_holds_across_a_master_restart_while_its_subtasks_run(
    cluster: LocalCluster,
) -> None:
    """What ran when the master stopped is held for its workers, and counts towards the cap."""
    client = cluster.client
    handle = client.submit("cappednap", {"parts": 8, "seconds": 0.5})
    wait_until(
        lambda: sum(s["state"] == "running" for s in handle.subtasks()) == 2,
        what="two subtasks stored running",
    )
    cluster.processes.kill_master()
    cluster.processes.start_master()
    cluster.wait_ready(workers=0)
    assert handle.wait(60)["state"] == "succeeded"
    assert most_at_once(intervals(client, handle.id)) <= 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_parallel", 0), ("max_parallel", "two"), ("labels", ["has space"]), ("labels", "gpu"),
     ("labels", [f"l{i}" for i in range(33)])],
)
def test_a_bad_cap_or_label_is_a_422_naming_the_field(
    cluster: LocalCluster, field: str, value: object
) -> None:
    r = httpx.post(f"{cluster.url}/api/v1/tasks", json={"type": "nap", field: value}, timeout=10)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert cluster.client.health()["status"] == "ok"
