"""Schedules on a real master and workers: the HTTP routes, firings as ordinary tasks that name
their schedule, overlap skipped and counted, and exactly one task per firing across master
restarts, with one run catching up the firings missed while no master ran."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import httpx
import pytest

from herder import Client, LocalCluster
from herder.errors import ClientError
from herder.protocol import paths
from tests.integration.conftest import TEST_TASKS, assert_healthy, wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=4, tasks=TEST_TASKS)
    with c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Client:
    return cluster.client


@pytest.fixture
def http(cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=10) as h:
        yield h


def fired(client: Client, schedule: str) -> list[dict[str, object]]:
    """The tasks the schedule fired, oldest firing first."""
    tasks = client.list_tasks(schedule=schedule, limit=1000)
    return sorted(tasks, key=lambda t: float(t["fired_at"] or 0))  # type: ignore[arg-type]


def test_a_schedule_is_added_listed_read_and_deleted(client: Client, http: httpx.Client) -> None:
    view = client.schedules.add("crud", "echo", {"items": [1]}, every="1h", priority=3)
    assert (view["id"], view["every"], view["priority"], view["overlap"]) == (
        "crud", "1h", 3, "skip"
    )
    assert view["next_run_at"] == pytest.approx(view["created_at"] + 3600)
    assert (view["last_run_at"], view["last_task_id"], view["skipped"]) == (None, None, 0)
    with pytest.raises(ClientError) as taken:
        client.schedules.add("crud", "echo", {"items": [2]}, cron="0 9 * * *")
    assert taken.value.status == 409 and "crud" in str(taken.value)
    assert [s["id"] for s in client.schedules.list()] == ["crud"]
    answer = http.get(paths.SCHEDULE.format(schedule_id="crud"))
    assert answer.status_code == 200 and answer.json()["type"] == "echo"
    client.schedules.remove("crud")
    assert client.schedules.list() == []
    assert http.get(paths.SCHEDULE.format(schedule_id="crud")).status_code == 404
    with pytest.raises(ClientError) as gone:
        client.schedules.remove("crud")
    assert gone.value.status == 404 and "crud" in str(gone.value)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"type": "nosuchtype", "every": "1s"}, "type"),
        ({"type": "echo", "params": {"items": "x"}, "every": "1s"}, "params.items"),
        ({"type": "echo", "params": {"items": []}, "cron": "0 9 * *"}, "cron"),
        ({"type": "echo", "params": {"items": []}, "cron": "99 * * * *"}, "cron"),
        ({"type": "echo", "params": {"items": []}, "every": "often"}, "every"),
        ({"type": "echo", "params": {"items": []}, "every": "1s", "timezone": "Mars/Base"},
         "timezone"),
        ({"type": "echo", "params": {"items": []}, "every": "1s", "cron": "* * * * *"}, "cron"),
        ({"type": "echo", "params": {"items": []}}, "cron"),
        ({"type": "echo", "params": {"items": []}, "every": "1s", "overlap": "maybe"}, "overlap"),
    ],
)
def test_a_bad_schedule_gets_a_422_naming_its_field(
    client: Client, http: httpx.Client, fields: dict[str, object], named: str
) -> None:
    answer = http.post(paths.SCHEDULES, json={"id": "bad", **fields})
    assert answer.status_code == 422, answer.text
    assert named in str(answer.json()["detail"])
    assert client.schedules.list() == []
    assert_healthy(client)


def test_each_firing_is_an_ordinary_task_naming_its_schedule(client: Client) -> None:
    view = client.schedules.add("tick", "echo", {"items": [1, 2]}, every="1s", overlap="allow")
    try:
        tasks = wait_until(lambda: [t for t in fired(client, "tick") if t["state"] == "succeeded"]
                           [2:] and fired(client, "tick"), what="three firings of tick")
    finally:
        client.schedules.remove("tick")
    assert all(t["schedule"] == "tick" and t["result"] == [1, 2] for t in tasks)
    # on the schedule's grid, one task per firing, none left out
    steps = [float(t["fired_at"]) - view["created_at"] for t in tasks]  # type: ignore[arg-type]
    assert steps == pytest.approx([float(n) for n in range(1, len(tasks) + 1)])
    submitted = [t for t in client.list_tasks(type="echo", limit=1000) if t["schedule"] is None]
    assert not [t for t in submitted if t["params"] == {"items": [1, 2]}]


def test_overlap_skip_lets_firings_go_while_the_last_task_runs(client: Client) -> None:
    client.schedules.add("slow", "stubborn", {"seconds": 4}, every="1s")
    try:
        view = wait_until(
            lambda: next(s for s in client.schedules.list() if s["id"] == "slow")["skipped"] >= 2
            and next(s for s in client.schedules.list() if s["id"] == "slow"),
            what="two skipped firings",
        )
        tasks = fired(client, "slow")
    finally:
        client.schedules.remove("slow")
    assert len(tasks) == 1 and tasks[0]["state"] == "running"
    assert view["last_task_id"] == tasks[0]["id"]


def test_a_master_restart_neither_doubles_nor_misses_a_firing(
    cluster: LocalCluster, client: Client
) -> None:
    view = client.schedules.add("restart", "echo", {"items": [0]}, every="1s", overlap="allow")
    wait_until(lambda: len(fired(client, "restart")) >= 2, what="two firings")
    cluster.processes.kill_master()
    down_at = time.time()
    wait_until(lambda: time.time() > down_at + 3.5, what="three firings missed")
    cluster.processes.start_master()
    cluster.wait_ready(workers=0)
    up_at = time.time()
    try:
        wait_until(lambda: [t for t in fired(client, "restart")
                            if float(t["fired_at"]) > up_at + 1.5],  # type: ignore[arg-type]
                   what="firings after the restart")
        tasks = fired(client, "restart")
    finally:
        client.schedules.remove("restart")
    times = [float(t["fired_at"]) for t in tasks]  # type: ignore[arg-type]
    assert len(set(times)) == len(times), "a firing was made twice"
    steps = [round(t - view["created_at"], 6) for t in times]
    assert all(s == int(s) for s in steps), steps
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    # every gap is one period but the one across the downtime: one run caught up the firings
    # missed (one run each would leave no gap), and none was missed while a master ran
    assert sorted(gaps)[:-1] == [1.0] * (len(gaps) - 1), gaps
    assert sorted(gaps)[-1] >= 3.0, gaps
    assert [t for t in times if t > up_at], "no firing after the restart"
