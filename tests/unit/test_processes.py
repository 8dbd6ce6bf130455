"""`ProcessGroup` with plain children (no herder in them): restarts run the same command, exits
are named, and stop and kill leave nothing running."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from herder.processes import ClusterError, Command, ProcessGroup

# a child that waits to be signalled (no handlers: a signal ends it however early it comes)
SLEEPER = "import time; time.sleep(60)"


def sleeper(name: str) -> Command:
    return Command(name, (sys.executable, "-c", SLEEPER))


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    processes = ProcessGroup()
    processes.start(dict(os.environ), sleeper("master"), [sleeper("worker a")])
    yield processes
    processes.kill()
    processes.stop(timeout=0)


def test_a_killed_worker_is_named_and_restarts_as_a_new_process(group: ProcessGroup) -> None:
    (first,) = group.worker_pids
    assert first is not None and group.master_pid is not None
    group.kill_worker(0)
    assert group.worker_pids == [None]
    assert group.exited() == [("worker a", -signal.SIGKILL)]
    assert group.exited(master_only=True) == []
    group.start_worker(0)
    (second,) = group.worker_pids
    assert second is not None and second != first
    assert group.exited() == []


def test_a_running_child_is_not_started_twice(group: ProcessGroup) -> None:
    with pytest.raises(ClusterError, match="worker a is running"):
        group.start_worker(0)
    with pytest.raises(ClusterError, match="the master is running"):
        group.start_master()
    with pytest.raises(IndexError, match="no worker 1"):
        group.kill_worker(1)


def test_stop_worker_sends_sigterm_and_wait_worker_returns_its_code(group: ProcessGroup) -> None:
    index = group.add_worker(sleeper("worker b"))
    assert index == 1
    group.stop_worker(index)
    assert group.wait_worker(index, timeout=30) == -signal.SIGTERM
    assert group.worker_pids[0] is not None  # the other one runs on


def test_a_killed_master_restarts_with_its_command(group: ProcessGroup) -> None:
    first = group.master_pid
    group.kill_master()
    assert group.master_pid is None
    assert group.exited(master_only=True) == [("master", -signal.SIGKILL)]
    group.start_master()
    assert group.master_pid not in (None, first)


def test_stop_ends_every_child_and_a_stopped_group_starts_nothing(group: ProcessGroup) -> None:
    group.stop(timeout=30)
    assert group.master_pid is None and group.worker_pids == [None]
    assert sorted(group.exited()) == [("master", -signal.SIGTERM), ("worker a", -signal.SIGTERM)]
    with pytest.raises(ClusterError, match="stopped"):
        group.start_worker(0)
