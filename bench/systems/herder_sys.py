"""herder on its durable SQLite store: a `LocalCluster` with 2 worker processes of 1 slot each
(the processes `herder up --workers 2` starts). Bulk submission is `Client.submit_many`,
collection `Client.gather` (one event stream for all). Also the "Start" measurement: `herder up
--workers 2` from launch to its first finished task.

Imports herder and `bench` (herder's virtualenv).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from typing import Any

from bench.procstat import Proc, descends
from bench.systems import base
from herder import Client, LocalCluster
from herder.client import MasterUnreachable

TIMEOUT = 600.0
BATCH = 10_000  # the largest batch POST /tasks/batch takes


class System(base.System):
    name = "herder"
    workloads = ("w1", "w1split", "w2", "w3")

    def __init__(self) -> None:
        self.dir = base.workdir("herder")
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("herder")
        except PackageNotFoundError:
            return "source"

    def start(self) -> None:
        self.cluster = LocalCluster(
            workers=2, slots=1, tasks=["bench.tasks"], log_level="warning",
            db=os.path.join(self.dir, "herder.db"),
            extra_master_args=["--max-pending", "1000000"],
            output=os.path.join(self.dir, "cluster.log"), ready_timeout=60,
        )
        self.client = self.cluster.start()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        assert self.cluster is not None
        master = self.cluster.processes.master_pid
        if master is not None and descends(proc, master, procs):
            return "master"
        for pid in self.cluster.processes.worker_pids:
            if pid is not None and descends(proc, pid, procs):
                return "workers"
        return "other"

    def _client(self) -> Client:
        assert self.client is not None
        return self.client

    def w1(self, n: int) -> None:
        client = self._client()
        handles = []
        for start in range(0, n, BATCH):
            handles += client.submit_many([{"type": "bench_noop"}] * min(BATCH, n - start))
        results = client.gather(handles, timeout=TIMEOUT)
        assert len(results) == n

    def w1_split(self, n: int) -> None:
        client = self._client()
        handle = client.submit("bench_split", {"parts": n})
        (count,) = client.gather([handle], timeout=TIMEOUT)
        assert count == n

    def w2_once(self) -> None:
        # submit and wait in one request (POST /tasks?wait=), as Celery's apply().get() or
        # ray.get(f.remote()) are each system's shortest call-and-answer
        self._client().run("bench_noop", wait=TIMEOUT)

    def w3(self, parts: int, loops: int) -> int:
        client = self._client()
        handle = client.submit("bench_cpu", {"parts": parts, "loops": loops})
        (total,) = client.gather([handle], timeout=TIMEOUT)
        return int(total)

    def seconds_worked(self) -> float:
        # the master's histogram of successful attempts' run times (as the workers time them)
        assert self.cluster is not None
        with urllib.request.urlopen(f"{self.cluster.url}/metrics", timeout=30) as answer:
            metrics = answer.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("herder_subtask_duration_seconds_sum{"))


def measure_start(timeout: float = 60.0) -> float:
    """Seconds from launching `herder up --workers 2` to its first finished task (the built-in
    `noop`, submitted as soon as the master answers)."""
    where = base.workdir("herder-up")
    port = base.free_port()
    t0 = time.perf_counter()
    proc = base.spawn(
        [sys.executable, "-m", "herder", "up", "--workers", "2", "--port", str(port),
         "--db", os.path.join(where, "herder.db"), "--log-level", "warning"],
        log=os.path.join(where, "up.log"),
    )
    try:
        with Client(f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + timeout
            handle: Any = None
            while handle is None:
                try:
                    handle = client.submit("noop")
                except MasterUnreachable:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise base.Unavailable("herder up did not answer") from None
                    time.sleep(0.002)
            client.gather([handle], timeout=timeout)
            seconds = time.perf_counter() - t0
    finally:
        base.stop(proc, 15.0)
    shutil.rmtree(where, ignore_errors=True)  # kept (for its log) only when it failed
    return seconds
