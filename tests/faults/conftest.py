"""Shared pieces of the fault-injection tests: a cluster with short leases, polling with
deadlines, the /metrics reader, the workers list, and an independent prime counter (the oracle).

The tests run real master and worker processes (LocalCluster) and inject real faults: SIGKILL,
SIGTERM, a network partition. They synchronise by polling conditions with deadlines.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from herder import Client, LocalCluster

# polling with a deadline: one helper for the integration and the fault tests
from tests.integration.conftest import wait_until as wait_until

FAULT_TASKS = ("tests.faulttypes",)
#: lease 2 s, heartbeats every 0.2 s: a lost worker is noticed within about 2 s
LEASE = 2.0
FAST_LEASE = ("--lease-timeout", str(LEASE), "--heartbeat", "0.2")


def metrics_text(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return response.text


def metric(url: str, name: str, token: str | None = None) -> float:
    """The sum of every sample of metric `name` (all label values); 0 if it is absent."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$")
    total = 0.0
    for line in metrics_text(url, token).splitlines():
        if m := pattern.match(line):
            total += float(m.group(2))
    return total


def cluster_metric(cluster: LocalCluster, name: str) -> float:
    return metric(cluster.url, name, cluster.token)


def worker_named(client: Client, name: str) -> dict[str, Any] | None:
    """The entry of /api/v1/workers for the worker called `name`, or None."""
    for w in client.workers():
        if w.get("name") == name:
            return w
    return None


def busy(client: Client, name: str) -> int:
    w = worker_named(client, name)
    return int(w["busy"]) if w else 0


def is_gone(entry: dict[str, Any] | None) -> bool:
    """A worker the master has declared lost: no longer listed, or listed as lost."""
    return entry is None or entry.get("state") == "lost"


def count_primes_below(limit: int) -> int:
    """Primes p < limit, by a plain sieve written here (not herder's segmented one)."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(limit - 1) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit, p)))
    return sieve.count(1)


@contextlib.contextmanager
def fault_cluster(
    tmp_path: Path,
    workers: int = 2,
    slots: int = 2,
    master_args: Sequence[str] = FAST_LEASE,
    worker_args: Sequence[str] = (),
    db: str | None = None,
    **kwargs: Any,
) -> Iterator[LocalCluster]:
    """A started cluster with the fault task types, its store `db` or a SQLite file in
    `tmp_path` (so that it survives a master restart), short leases; stopped at the end
    whatever happened."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(
        workers=workers,
        slots=slots,
        tasks=FAULT_TASKS,
        db=db or str(tmp_path / "herder.db"),
        extra_master_args=master_args,
        extra_worker_args=worker_args,
        **kwargs,
    )
    with cluster:
        yield cluster


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"
