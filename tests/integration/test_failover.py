"""Several masters on one PostgreSQL store, exactly one active (docs/failover.md): real master
and worker processes on loopback, the session's PostgreSQL server (tests/conftest.py).

- two masters: one active, the other a standby that answers 503 naming it; a worker given both
  URLs joins the active one;
- kill -9 the active master mid-task: the standby takes over within --failover-timeout, the
  workers follow and keep the attempt they were running, every result is stored once and the
  task aggregated once;
- SIGSTOP the active master past the failover timeout, SIGCONT it once the standby took over: it
  steps down, the store refuses its late writes (counted), the task ends right;
- a SQLite store refuses a second master.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herder import Client
from herder.cluster import child_env, free_port
from herder.model import SubtaskState, TaskState
from tests.faults.conftest import metric
from tests.faulttypes import ledger_expected, read_ledger
from tests.integration.conftest import wait_until
from tests.pgserver import PostgresServer

FAILOVER = 3.0
#: leases of workers as the fault tests have them (a lost worker noticed within about 2 s)
MASTER_ARGS = ("--failover-timeout", str(FAILOVER), "--lease-timeout", "2", "--heartbeat", "0.2",
               "--speculate-after", "off", "--tasks", "tests.faulttypes")
#: what the test allows a take-over beyond --failover-timeout: the new master's start (imports
#: done, recovery from the store) on a shared machine
START_ROOM = 10.0


class Processes:
    """Masters and workers of one test, killed at the end whatever happened."""

    def __init__(self, tmp_path: Path, db: str) -> None:
        self.tmp_path = tmp_path
        self.db = db
        self.env = child_env(None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.masters: dict[str, subprocess.Popen[bytes]] = {}

    def master(self, name: str, port: int | None = None) -> str:
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "herder", "master", "--port", str(port), "--db", self.db,
                "--advertise-url", url, *MASTER_ARGS]
        self.masters[url] = self._spawn(argv, f"master-{name}")
        return url

    def worker(self, name: str, masters: list[str], slots: int = 2) -> None:
        argv = [sys.executable, "-m", "herder", "worker", "--master", ",".join(masters),
                "--slots", str(slots), "--name", name, "--tasks", "tests.faulttypes"]
        self._spawn(argv, f"worker-{name}")

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp_path / f"{log_name}.log", "ab")  # noqa: SIM115 - the child's
        proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=out, process_group=0)
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait()


@pytest.fixture
def processes(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Processes]:
    procs = Processes(tmp_path, postgres_server.create_database())
    try:
        yield procs
    finally:
        procs.stop()


def health(url: str) -> dict[str, Any] | None:
    """A master's /healthz, or None while it does not answer."""
    try:
        return dict(httpx.get(f"{url}/healthz", timeout=2).json())
    except httpx.HTTPError:
        return None


def role_of(url: str) -> str | None:
    found = health(url)
    return None if found is None else str(found["role"])


def workers_on(url: str) -> int:
    found = health(url)
    return int(found["workers"]) if found else 0


def two_masters(procs: Processes) -> tuple[str, str]:
    """Start `a`, wait until it is active, then `b`, until it stands by: (a's URL, b's URL)."""
    a = procs.master("a")
    wait_until(lambda: role_of(a) == "active", timeout=30, what="master a active")
    b = procs.master("b")
    wait_until(lambda: role_of(b) == "standby", timeout=30, what="master b standing by")
    return a, b


def test_two_masters_one_active_and_the_standby_names_it(processes: Processes) -> None:
    a, b = two_masters(processes)
    active, standby = health(a), health(b)
    assert active is not None and standby is not None
    assert (active["role"], active["active_url"], active["status"]) == ("active", a, "ok")
    assert (standby["role"], standby["active_url"]) == ("standby", a)
    assert active["term"] == standby["term"] >= 1
    assert httpx.get(f"{a}/readyz", timeout=5).status_code == 200
    assert httpx.get(f"{b}/readyz", timeout=5).status_code == 503
    # every other API request on the standby: 503, Retry-After, the active master's URL
    for method, path in (("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks"),
                         ("GET", "/api/v1/workers")):
        answer = httpx.request(method, b + path, json={"type": "ledger"}, timeout=5)
        assert answer.status_code == 503, (method, path)
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["active_url"] == a
        assert a in answer.json()["detail"]
    # a worker given the standby first joins the active master, never the standby
    processes.worker("w1", [b, a])
    wait_until(lambda: workers_on(a) == 1, timeout=30, what="the worker on the active master")
    assert workers_on(b) == 0
    client = Client([b, a])
    assert client.run("ledger", {"parts": 4, "salt": 3}, wait=30) == ledger_expected(3, 4)
    assert metric(b, "herder_master_active") == 0 and metric(a, "herder_master_active") == 1


def store_rows(db: str, task_id: str) -> tuple[Any, list[Any], list[str]]:
    """The task's row, its subtasks' rows and its journal's entries, read from the store."""
    from herder.store.postgres import PostgresStore

    store = PostgresStore(db)
    try:
        return (store.get_task(task_id), store.get_subtasks(task_id),
                [e.message for e in store.logs.events(task_id)])
    finally:
        store.close()


def check_done_once(db: str, task_id: str, parts: int, salt: int) -> None:
    """The task succeeded with the right result, each subtask's result stored, the task's end
    journaled once (aggregated once)."""
    wait_until(lambda: store_rows(db, task_id)[2], what="the task's end journaled")
    record, subtasks, events = store_rows(db, task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == ledger_expected(salt, parts)
    assert [s.state for s in subtasks] == [SubtaskState.SUCCEEDED] * parts
    assert sum(s.result for s in subtasks) == ledger_expected(salt, parts)["sum"]
    assert events == ["succeeded"]


def test_kill_9_the_active_master_mid_task(processes: Processes, tmp_path: Path) -> None:
    a, b = two_masters(processes)
    for name in ("w1", "w2"):
        processes.worker(name, [a, b])
    wait_until(lambda: workers_on(a) == 2, timeout=30, what="both workers on a")
    ledger = tmp_path / "ledger.txt"
    parts, salt = 120, 21
    client = Client([a, b])
    handle = client.submit("ledger", {"parts": parts, "seconds": 0.05, "first_seconds": 12,
                                      "salt": salt, "ledger": str(ledger)})
    wait_until(lambda: handle.status()["progress"]["subtasks_done"] >= 20, timeout=30,
               what="20 subtasks done")
    (long_run,) = [row for row in read_ledger(str(ledger)) if row[1] == 0]
    finished = {s["index"] for s in handle.subtasks() if s["state"] == "succeeded"}

    processes.masters[a].kill()
    killed = time.monotonic()
    wait_until(lambda: role_of(b) == "active", timeout=FAILOVER + START_ROOM,
               what="b active after a's kill")
    took_over = time.monotonic() - killed
    wait_until(lambda: workers_on(b) == 2, timeout=30, what="both workers on b")

    assert handle.wait(timeout=60)["state"] == "succeeded"
    assert handle.result(timeout=5) == ledger_expected(salt, parts)
    check_done_once(processes.db, handle.id, parts, salt)
    runs = Counter(index for task_id, index, _, _ in read_ledger(str(ledger))
                   if task_id == handle.id)
    print(f"\nb active {took_over:.2f} s after the kill; {len(finished)} subtasks done before")
    assert set(runs) == set(range(parts))
    # the long subtask ran on, on its worker, through the failover: once, attempt 1
    assert runs[0] == 1 and long_run[2] == 1
    assert {i: runs[i] for i in finished} == dict.fromkeys(finished, 1)


def test_sigstop_the_active_master_past_the_failover_timeout(
    processes: Processes, tmp_path: Path,
) -> None:
    a, b = two_masters(processes)
    for name in ("w1", "w2"):
        processes.worker(name, [a, b])
    wait_until(lambda: workers_on(a) == 2, timeout=30, what="both workers on a")
    term_a = health(a)["term"]  # type: ignore[index]
    ledger = tmp_path / "ledger.txt"
    parts, salt = 400, 5
    client = Client([a, b])
    handle = client.submit("ledger", {"parts": parts, "seconds": 0.02, "first_seconds": 8,
                                      "salt": salt, "ledger": str(ledger)})
    wait_until(lambda: handle.status()["progress"]["subtasks_done"] >= 20, timeout=30,
               what="20 subtasks done")

    os.kill(processes.masters[a].pid, signal.SIGSTOP)
    wait_until(lambda: role_of(b) == "active", timeout=FAILOVER + START_ROOM,
               what="b active while a is paused")
    assert health(b)["term"] > term_a  # type: ignore[index]
    wait_until(lambda: workers_on(b) == 2, timeout=30, what="both workers on b")
    os.kill(processes.masters[a].pid, signal.SIGCONT)

    wait_until(lambda: role_of(a) == "standby", timeout=15, what="a stepped down")
    assert health(a)["active_url"] == b  # type: ignore[index]
    assert httpx.get(f"{a}/readyz", timeout=5).status_code == 503
    assert metric(a, "herder_fenced_writes_total") >= 1
    assert metric(b, "herder_fenced_writes_total") == 0
    assert handle.wait(timeout=60)["state"] == "succeeded"
    assert handle.result(timeout=5) == ledger_expected(salt, parts)
    check_done_once(processes.db, handle.id, parts, salt)


def test_sqlite_refuses_a_second_master(tmp_path: Path) -> None:
    db = str(tmp_path / "one.db")
    procs = Processes(tmp_path, db)
    try:
        first = procs.master("first")
        wait_until(lambda: role_of(first) == "active", timeout=30, what="the first master")
        port = free_port()
        second = subprocess.run(
            [sys.executable, "-m", "herder", "master", "--port", str(port), "--db", db],
            env=procs.env, capture_output=True, text=True, timeout=60,
        )
        assert second.returncode != 0
        assert "another master is running on the SQLite store" in second.stderr
        assert db in second.stderr
        assert role_of(first) == "active"  # the first one goes on
    finally:
        procs.stop()
