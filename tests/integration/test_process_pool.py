"""The process pool: a subtask that ignores cancellation is killed; a crash is an error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from herder import LocalCluster
from tests.integration.conftest import TEST_TASKS, assert_healthy, busy_slots, wait_until


@pytest.fixture(scope="module")
def proc_cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(
        workers=1,
        slots=2,
        pool="process",
        tasks=TEST_TASKS,
        extra_worker_args=("--cancel-grace", "0.5"),
    )
    with c:
        yield c


def test_examples_run_in_processes(proc_cluster: LocalCluster) -> None:
    client = proc_cluster.client
    assert client.submit("primes", {"limit": 200_000}).result(timeout=30) == 17984


def test_stubborn_subtask_is_killed_after_the_grace(proc_cluster: LocalCluster) -> None:
    client = proc_cluster.client
    handle = client.submit("stubborn", {"seconds": 600, "parts": 2})
    wait_until(lambda: busy_slots(client) == 2)
    started = time.monotonic()
    handle.cancel()
    # killed after --cancel-grace 0.5 s: the slots are free again well before the sleep ends
    wait_until(lambda: busy_slots(client) == 0, timeout=5.0)
    assert time.monotonic() - started < 5.0
    assert client.submit("primes", {"limit": 1000, "parts": 2}).result(timeout=20) == 168


def test_process_that_dies_is_an_error_and_is_replaced(proc_cluster: LocalCluster) -> None:
    client = proc_cluster.client
    handle = client.submit("crash", {}, retries=1)
    status = handle.wait(timeout=20)
    assert status["state"] == "failed"
    assert "died" in status["error"]["message"]
    assert client.submit("noop", {"value": 7}).result(timeout=20) == 7
    assert_healthy(client)
