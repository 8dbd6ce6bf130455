"""SIGTERM on a worker in the middle of a task drains it: it takes no new work, its running
subtasks finish (a long --drain-timeout) or are handed back (a short one), the task succeeds, and
nothing counts as a failure."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.faults.conftest import busy, cluster_metric, fault_cluster, wait_until, worker_named
from tests.faulttypes import ledger_expected, read_ledger

PARTS = 12
SALT = 6


def test_sigterm_drains_a_worker_mid_task(tmp_path: Path, ledger: Path) -> None:
    with fault_cluster(tmp_path, workers=1, slots=2) as cluster:
        client = cluster.client
        finisher = cluster.add_worker(name="finisher", extra_args=("--drain-timeout", "30"))
        handback = cluster.add_worker(
            name="handback", extra_args=("--drain-timeout", "0.3", "--cancel-grace", "0.5")
        )
        cluster.wait_ready(workers=3)
        retries_before = cluster_metric(cluster, "herder_retries_total")

        handle = client.submit(
            "ledger", {"parts": PARTS, "seconds": 1.0, "salt": SALT, "ledger": str(ledger)}
        )
        wait_until(
            lambda: busy(client, "finisher") == 2 and busy(client, "handback") == 2,
            what="both drained workers busy",
        )
        running = handle.subtasks()
        held = {
            name: {s["index"] for s in running if s["state"] == "running" and s["worker"] == name}
            for name in ("finisher", "handback")
        }
        cluster.processes.stop_worker(finisher)
        cluster.processes.stop_worker(handback)
        stopped = time.monotonic()

        # No new work for a draining worker; the one with the short timeout hands back at once.
        assert cluster.processes.wait_worker(handback, 10) == 0
        handed_back = time.monotonic() - stopped
        assert cluster.processes.wait_worker(finisher, 30) == 0
        finished = time.monotonic() - stopped

        status = handle.wait(timeout=60)
        assert status["state"] == "succeeded" and status["error"] is None
        assert handle.result(timeout=5) == ledger_expected(SALT, PARTS)
        assert cluster_metric(cluster, "herder_retries_total") == retries_before
        per_index = Counter(i for t, i, _, _ in read_ledger(str(ledger)) if t == handle.id)
        subtasks = {s["index"]: s for s in handle.subtasks()}
        print(
            f"\nheld at SIGTERM: {held}; handback exited after {handed_back:.2f} s, "
            f"finisher after {finished:.2f} s; executions per subtask: {dict(per_index)}"
        )
        assert handed_back < 5
        # The finisher's subtasks ran to the end there, once; the handed-back ones ran again.
        for i in held["finisher"]:
            assert per_index[i] == 1 and subtasks[i]["worker"] == "finisher"
        for i in held["handback"]:
            assert per_index[i] == 2 and subtasks[i]["worker"] != "handback"
        assert all(s["error"] is None for s in subtasks.values())
        # Gone from the pool of workers, not lost.
        for name in ("finisher", "handback"):
            assert (worker_named(client, name) or {}).get("state") in (None, "draining")
