"""Delayed tasks (`not_before`) on real master and worker processes: scheduled until their time,
started no earlier than it and within a second after it, cancelled while they wait, timed from
their start, and kept across a master restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from herder import Client, LocalCluster
from tests.integration.conftest import TEST_TASKS, assert_healthy, wait_until

#: how late a delayed task may start (the issue's promise)
WITHIN = 1.0
#: how far ahead the tests put a task's time: enough for the checks made while it waits
AHEAD = 2.0


@pytest.fixture(scope="module")
def http(cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=10) as h:
        yield h


def started_on_time(task: dict[str, Any]) -> None:
    assert task["state"] == "succeeded", task
    not_before, started_at = task["not_before"], task["started_at"]
    assert not_before <= started_at < not_before + WITHIN, (started_at - not_before)


def test_a_delayed_task_waits_scheduled_then_starts_at_its_time(client: Client) -> None:
    at = datetime.now(UTC) + timedelta(seconds=AHEAD)
    handle = client.submit("noop", {"value": 1}, not_before=at)
    submitted = handle.status()
    assert submitted["state"] == "scheduled"
    assert submitted["not_before"] == pytest.approx(at.timestamp())
    assert submitted["started_at"] is None
    assert handle.id in [t["id"] for t in client.list_tasks(state="scheduled")]
    started_on_time(handle.wait(timeout=AHEAD + 10))


def test_a_unix_timestamp_and_an_iso_text_are_both_times(client: Client) -> None:
    at = time.time() + AHEAD
    by_number = client.submit("noop", not_before=at)
    iso = datetime.fromtimestamp(at, timezone(timedelta(hours=2))).isoformat()
    by_text = client.submit("noop", not_before=iso)
    for handle in (by_number, by_text):
        assert handle.status()["not_before"] == pytest.approx(at, abs=1e-3)
        started_on_time(handle.wait(timeout=AHEAD + 10))


def test_a_time_past_or_now_starts_at_once(client: Client) -> None:
    handle = client.submit("noop", not_before=time.time() - 3600)
    assert handle.status()["state"] != "scheduled"
    assert handle.wait(timeout=10)["state"] == "succeeded"


def test_the_batch_takes_not_before_per_item(client: Client) -> None:
    at = time.time() + AHEAD
    later, now = client.submit_many([{"type": "noop", "not_before": at}, {"type": "noop"}])
    assert later.status()["state"] == "scheduled"
    assert now.wait(timeout=10)["state"] == "succeeded"
    started_on_time(later.wait(timeout=AHEAD + 10))


@pytest.mark.parametrize(
    ("not_before", "needle"),
    [
        ("2026-12-24T18:00:00", "no time zone"),
        ("next tuesday", "not a UNIX timestamp nor an ISO 8601 time"),
        ("NaN", "between 1970 and 9999"),
        (-5, "between 1970 and 9999"),
        (True, "not a bool"),
        ([1], "not list"),
    ],
)
def test_a_bad_time_is_a_422_naming_the_field(
    http: httpx.Client, client: Client, not_before: Any, needle: str
) -> None:
    answer = http.post("/api/v1/tasks", json={"type": "noop", "not_before": not_before})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "not_before" in detail and needle in detail, detail
    batch = http.post("/api/v1/tasks/batch", json=[{"type": "noop", "not_before": not_before}])
    (item,) = batch.json()
    assert item["status"] == 422 and "not_before" in item["detail"], item
    assert_healthy(client)


def test_a_bare_nan_is_a_422(http: httpx.Client) -> None:
    answer = http.post(
        "/api/v1/tasks", content=b'{"type": "noop", "not_before": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422 and "not_before" in answer.json()["detail"], answer.text


def test_the_client_refuses_a_naive_datetime(client: Client) -> None:
    with pytest.raises(ValueError, match="no time zone"):
        client.submit("noop", not_before=datetime.now())


def test_a_task_cancelled_while_scheduled_never_runs(client: Client) -> None:
    at = time.time() + AHEAD
    cancelled = client.submit("noop", not_before=at)
    # released after the cancelled one: once it ran, the cancelled one's time had come
    after = client.submit("noop", not_before=at + 0.2)
    assert cancelled.cancel()["state"] == "cancelled"
    started_on_time(after.wait(timeout=AHEAD + 10))
    task = cancelled.status()
    assert (task["state"], task["started_at"]) == ("cancelled", None)
    assert cancelled.subtasks() == []


def test_the_timeout_counts_from_the_start(client: Client) -> None:
    # a timeout shorter than the wait: counted from the submission, it would end the task
    # before it started
    at = time.time() + AHEAD
    quick = client.submit("noop", not_before=at, timeout=AHEAD / 2)
    assert quick.wait(timeout=AHEAD + 10)["state"] == "succeeded"
    slow = client.submit("stubborn", {"seconds": 2}, not_before=at, timeout=0.5)
    task = slow.wait(timeout=AHEAD + 10)
    assert task["state"] == "timed_out", task
    assert task["finished_at"] >= task["not_before"] + 0.5


def _herder(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERDER_URL": cluster.url}
    return subprocess.run(
        [sys.executable, "-m", "herder", *args], capture_output=True, text=True, timeout=60,
        env=env,
    )


def test_the_cli_submits_with_in_and_at(cluster: LocalCluster, client: Client) -> None:
    before = time.time()
    out = _herder(cluster, "submit", "noop", "--in", "2s")
    assert out.returncode == 0, out.stderr
    by_in = client.get(out.stdout.strip())
    assert by_in.status()["not_before"] >= before + AHEAD
    status = _herder(cluster, "status", by_in.id)
    assert status.returncode == 0 and "scheduled" in status.stdout, status.stdout

    at = datetime.fromtimestamp(round(time.time() + AHEAD), UTC)
    out = _herder(cluster, "submit", "noop", "--at", at.isoformat().replace("+00:00", "Z"))
    assert out.returncode == 0, out.stderr
    by_at = client.get(out.stdout.strip())
    assert by_at.status()["not_before"] == at.timestamp()
    listed = _herder(cluster, "list", "--state", "scheduled")
    assert by_at.id[:12] in listed.stdout, listed.stdout
    for handle in (by_in, by_at):
        started_on_time(handle.wait(timeout=AHEAD + 10))


def test_the_cli_names_a_bad_time(cluster: LocalCluster) -> None:
    out = _herder(cluster, "submit", "noop", "--at", "2026-12-24T18:00:00")
    assert out.returncode != 0 and "no time zone" in out.stderr, out.stderr
    out = _herder(cluster, "submit", "noop", "--in", "soon")
    assert out.returncode != 0 and "not a duration" in out.stderr, out.stderr


def test_a_delayed_task_survives_a_master_restart(tmp_path: Path) -> None:
    cluster = LocalCluster(workers=1, tasks=TEST_TASKS, db=str(tmp_path / "herder.db"))
    with cluster as client:
        # far enough ahead for the master to be killed and started again before it
        handle = client.submit("noop", not_before=time.time() + 3 * AHEAD)
        cluster.processes.kill_master()
        cluster.processes.start_master()
        cluster.wait_ready(workers=0)
        task = wait_until(handle.status, what="the restarted master answers")
        assert task["state"] == "scheduled", task
        started_on_time(handle.wait(timeout=3 * AHEAD + 10))
