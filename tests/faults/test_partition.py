"""A network partition between the master and one worker, with Linux network namespaces.

The master and worker `near` run in namespace A, worker `far` in namespace B, joined by a veth
pair; this test reaches the master through a forwarder into A. While `far` runs subtasks, the
link is cut silently (blackhole routes: nothing is refused, packets just vanish). The master
declares `far` lost after the lease and re-runs its subtasks on `near`. `far` meanwhile finishes
its subtasks and holds the results; when the link comes back, those late results are discarded
and counted (herder_stale_messages_total), and the task's result is right.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herder import LocalCluster
from herder.cluster import free_port
from tests.faults.conftest import (
    FAST_LEASE,
    FAULT_TASKS,
    LEASE,
    busy,
    cluster_metric,
    is_gone,
    wait_until,
    worker_named,
)
from tests.faults.netns import Forwarder, NetnsUnavailable, Pair
from tests.faulttypes import ledger_expected, read_ledger

PARTS = 8
SALT = 3


@pytest.fixture
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.skip(
            f"network namespaces need root (ip netns add); this test runs as uid {os.geteuid()}"
        )
    try:
        made = Pair.create()
    except NetnsUnavailable as exc:
        pytest.skip(f"the kernel refuses network namespaces here: {exc}")
    try:
        yield made
    finally:
        made.heal()
        made.delete()


def _recorded_attempts(db: Path, task_id: str) -> dict[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT idx, result_attempt FROM subtasks WHERE task_id = ? AND result IS NOT NULL",
            (task_id,),
        ).fetchall()
    return {int(i): int(a) for i, a in rows}


def test_partitioned_worker_is_replaced_and_its_late_results_dropped(
    tmp_path: Path, ledger: Path, pair: Pair
) -> None:
    port = free_port()
    forwarder = Forwarder(pair.a, port)
    db = tmp_path / "herder.db"
    cluster = LocalCluster(
        workers=0,
        slots=2,
        tasks=FAULT_TASKS,
        db=str(db),
        port=port,
        host="0.0.0.0",
        token=secrets.token_hex(16),
        # the far worker names the master by A's address
        extra_master_args=[*FAST_LEASE, "--allowed-hosts", f"127.0.0.1,localhost,{pair.a_addr}"],
        command_prefix=pair.exec_prefix(pair.a),
    )
    try:
        with cluster as client:
            cluster.add_worker(name="near")  # in A, through A's own loopback
            cluster.add_worker(
                name="far",
                prefix=pair.exec_prefix(pair.b),
                master_url=f"http://{pair.a_addr}:{port}",
            )
            cluster.wait_ready(workers=2)
            stale_before = cluster_metric(cluster, "herder_stale_messages_total")

            handle = client.submit(
                "ledger", {"parts": PARTS, "seconds": 1.5, "salt": SALT, "ledger": str(ledger)}
            )
            wait_until(lambda: busy(client, "far") == 2, what="far running two subtasks")
            held = {
                s["index"]
                for s in handle.subtasks()
                if s["state"] == "running" and s["worker"] == "far"
            }
            pair.partition()
            cut = time.monotonic()

            wait_until(
                lambda: is_gone(worker_named(client, "far")),
                timeout=LEASE + 10,
                interval=0.01,
                what="far declared lost",
            )
            detected = time.monotonic() - cut
            # Its subtasks run again on `near`, and finish there, while `far` is still cut off
            # holding results of its own.
            wait_until(
                lambda: all(
                    s["state"] == "succeeded" and s["worker"] == "near"
                    for s in handle.subtasks()
                    if s["index"] in held
                ),
                timeout=30,
                what="far's subtasks re-run on near",
            )
            assert pair.cut and cluster_metric(cluster, "herder_stale_messages_total") == (
                stale_before
            )
            pair.heal()
            healed = time.monotonic()

            wait_until(
                lambda: cluster_metric(cluster, "herder_stale_messages_total") > stale_before,
                timeout=40,
                interval=0.1,
                what="far's late results discarded and counted",
            )
            late = time.monotonic() - healed
            stale = cluster_metric(cluster, "herder_stale_messages_total") - stale_before

            status = handle.wait(timeout=60)
            assert status["state"] == "succeeded", status.get("error")
            assert handle.result(timeout=5) == ledger_expected(SALT, PARTS)
            recorded = _recorded_attempts(db, handle.id)
            executions = [(i, a) for t, i, a, _ in read_ledger(str(ledger)) if t == handle.id]
            back = wait_until(
                lambda: (
                    (w := worker_named(client, "far")) is not None and w.get("state") == "active"
                ),
                timeout=30,
                what="far back after the heal",
            )
            print(
                f"\nfar held {sorted(held)} at the cut; declared lost {detected:.2f} s after "
                f"(lease {LEASE} s); late results counted {late:.2f} s after the heal "
                f"(+{stale:.0f} stale); far back: {bool(back)} "
                f"{time.monotonic() - healed:.2f} s after the heal; recorded attempts "
                f"{recorded}; executions {sorted(executions)}"
            )
            assert detected <= LEASE + 1.0
            assert held
            # The results recorded for far's subtasks are those of the second attempts.
            assert all(recorded[i] >= 2 for i in held)
            assert sorted(recorded) == list(range(PARTS))
            assert all((i, 1) in executions for i in held)  # far really ran them
    finally:
        cluster.stop()
        forwarder.close()
