"""kill -9 the master during a task of 50 subtasks and start it again on the same store (a SQLite
file; a PostgreSQL database on the session's server): the task goes on and succeeds with the
right result, and per the execution ledger no subtask that had finished before the kill ran
again."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.conftest import fault_cluster, wait_until
from tests.faulttypes import ledger_expected, read_ledger
from tests.pgserver import PostgresServer

PARTS = 50
SALT = 50


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store the master is started on, and started again on."""
    if request.param == "sqlite":
        return str(tmp_path / "herder.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


def test_kill_9_master_mid_task_and_restart(tmp_path: Path, ledger: Path, db: str) -> None:
    with fault_cluster(tmp_path, workers=2, slots=2, db=db) as cluster:
        client = cluster.client
        handle = client.submit(
            "ledger", {"parts": PARTS, "seconds": 0.25, "salt": SALT, "ledger": str(ledger)}
        )
        wait_until(
            lambda: handle.status()["progress"]["subtasks_done"] >= 15,
            timeout=30,
            what="15 subtasks done",
        )
        finished = {s["index"] for s in handle.subtasks() if s["state"] == "succeeded"}
        cluster.processes.kill_master()
        down = time.monotonic()
        cluster.processes.start_master()
        cluster.wait_ready(workers=0)
        restarted = time.monotonic() - down
        # Workers reconnect by themselves, with backoff.
        cluster.wait_ready(workers=2, timeout=15)
        reconnected = time.monotonic() - down

        status = handle.wait(timeout=60)
        assert status["state"] == "succeeded", status.get("error")
        assert handle.result(timeout=5) == ledger_expected(SALT, PARTS)

        runs = Counter(
            index for task_id, index, _, _ in read_ledger(str(ledger)) if task_id == handle.id
        )
        print(
            f"\nmaster back in {restarted:.2f} s, workers reconnected after {reconnected:.2f} s; "
            f"{len(finished)} subtasks finished before the kill; "
            f"executions {sum(runs.values())} for {PARTS} subtasks; "
            f"run more than once: {sorted(i for i, n in runs.items() if n > 1)}"
        )
        assert len(finished) >= 15
        assert set(runs) == set(range(PARTS))
        assert {i: runs[i] for i in finished} == dict.fromkeys(finished, 1)
