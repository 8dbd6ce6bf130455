"""kill -9 a worker in the middle of a `primes` task: the task still gives the right count, and
the master declares the worker lost within the lease timeout + 1 s of the kill."""

from __future__ import annotations

import time
from pathlib import Path

from tests.faults.conftest import (
    LEASE,
    busy,
    count_primes_below,
    fault_cluster,
    is_gone,
    wait_until,
    worker_named,
)

LIMIT = 40_000_000
PARTS = 24


def test_kill_9_worker_mid_task(tmp_path: Path) -> None:
    expected = count_primes_below(LIMIT)
    with fault_cluster(tmp_path, workers=2, slots=2) as cluster:
        client = cluster.client
        victim = cluster.worker_specs[0].name

        # The same task without a fault, for the time a worker's death costs.
        started = time.monotonic()
        assert client.submit("primes", {"limit": LIMIT, "parts": PARTS}).result(60) == expected
        baseline = time.monotonic() - started

        started = time.monotonic()
        handle = client.submit("primes", {"limit": LIMIT, "parts": PARTS})
        wait_until(
            lambda: busy(client, victim) > 0 and handle.status()["progress"]["subtasks_done"] >= 2,
            what=f"{victim} running subtasks",
        )
        cluster.processes.kill_worker(0)
        killed = time.monotonic()
        # Read after the kill, not before it: the parts run in step on both workers, so the
        # victim's first ones may end (and its next ones start) between a read and the kill.
        # Its attempts stay `running` in the store until its lease runs out.
        held = [
            s["index"]
            for s in handle.subtasks()
            if s["state"] == "running" and s["worker"] == victim
        ]
        wait_until(
            lambda: is_gone(worker_named(client, victim)),
            timeout=LEASE + 10,
            interval=0.01,
            what=f"{victim} declared lost",
        )
        detected = time.monotonic() - killed

        assert handle.result(timeout=60) == expected
        elapsed = time.monotonic() - started
        rerun = [s["index"] for s in handle.subtasks() if s["attempts"] > 1]
        print(
            f"\nlost worker detected {detected:.2f} s after kill -9 (lease {LEASE} s); "
            f"task {elapsed:.2f} s vs {baseline:.2f} s without the fault "
            f"(+{elapsed - baseline:.2f} s); held by the victim at the kill: {held}; "
            f"re-run: {rerun}"
        )
        assert detected <= LEASE + 1.0
        # What the victim held was run again (a second attempt) elsewhere; a result it sent
        # just before the kill may have been stored after `held` was read, not all of them.
        assert not held or set(held) & set(rerun)
        assert all(s["state"] == "succeeded" for s in handle.subtasks())
