"""Real master and worker processes on loopback, started through LocalCluster."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from herder import Client, LocalCluster

TEST_TASKS = ("tests.tasktypes", "tests.livetypes")


def wait_until(
    check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `check` until it returns something truthy and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or check}")
        time.sleep(interval)


def busy_slots(client: Client) -> int:
    return sum(w["busy"] for w in client.workers())


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=2, tasks=TEST_TASKS)
    with c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Client:
    return cluster.client


def assert_healthy(client: Client) -> None:
    assert client.health()["status"] == "ok"
