"""Retries on a broken machine: `flakyon` fails on the worker started with HERDER_TEST_FAIL=1
only. A retry goes to the other worker, `retries` in the submission overrides the type's
max_retries (0 for `flakyon`), and the broken worker ends up deprioritised in /api/v1/workers."""

from __future__ import annotations

from pathlib import Path

from tests.faults.conftest import cluster_metric, fault_cluster, wait_until, worker_named
from tests.faulttypes import FAIL_ENV


def test_a_worker_that_fails_everything_is_retried_around_and_deprioritised(
    tmp_path: Path,
) -> None:
    with fault_cluster(tmp_path, workers=1, slots=2) as cluster:
        client = cluster.client
        good = cluster.worker_specs[0].name
        cluster.add_worker(name="broken", env={FAIL_ENV: "1"})
        cluster.wait_ready(workers=2)
        retries_before = cluster_metric(cluster, "herder_retries_total")

        # Two subtasks at once: each idle worker takes one (the least loaded gets the next), so
        # the broken one fails one per task. One retry (the type allows none) is enough, as
        # the retry goes to the worker that did not fail it, which has a free slot.
        rounds = 0
        while True:
            rounds += 1
            handle = client.submit("flakyon", {"parts": 2, "seconds": 0.1}, retries=1)
            status = handle.wait(timeout=30)
            assert status["state"] == "succeeded", status.get("error")
            assert handle.result(timeout=5) == [0, 1]
            subtasks = handle.subtasks()
            assert all(s["worker"] == good for s in subtasks)
            entry = worker_named(client, "broken")
            assert entry is not None
            if entry.get("deprioritised"):
                break
            assert rounds < 12, f"not deprioritised after {rounds} tasks: {entry}"

        retried = cluster_metric(cluster, "herder_retries_total") - retries_before
        bad, fine = worker_named(client, "broken"), worker_named(client, good)
        assert bad is not None and fine is not None
        print(
            f"\nbroken deprioritised after {rounds} tasks, {retried:.0f} retries; "
            f"failure rates: broken {bad['failure_rate']}, {good} {fine['failure_rate']}"
        )
        assert retried >= 1
        assert bad["failure_rate"] >= 0.8
        assert not fine["deprioritised"] and (fine["failure_rate"] or 0.0) == 0.0

        # Deprioritised: while the good worker has free slots, work goes there even though the
        # broken one is idle and less loaded, so tasks with no retries at all succeed.
        for _ in range(3):
            wait_until(lambda: all(w["busy"] == 0 for w in client.workers()), what="idle")
            assert client.submit("flakyon", {"parts": 2}).result(timeout=20) == [0, 1]
