"""Dask distributed: `dask scheduler` and `dask worker --nworkers 2 --nthreads 1` (two worker
processes, each under its nanny), the client in the benchmark process. Bulk submission is
`client.map`, collection `client.gather`.

Imports distributed (the peers' virtualenv) and `bench`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bench import work
from bench.procstat import Proc, descends
from bench.systems import base


def noop_i(i: int) -> None:
    return None


class System(base.System):
    name = "dask"

    def __init__(self) -> None:
        self.dir = base.workdir("dask")
        self.scheduler: Any = None
        self.workers_proc: Any = None
        self.client: Any = None

    def version(self) -> str:
        import distributed

        return str(distributed.__version__)

    def start(self) -> None:
        from distributed import Client

        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        port = base.free_port()
        self.scheduler = base.spawn(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            log=os.path.join(self.dir, "scheduler.log"),
        )
        base.wait_for(lambda: base.port_open(port), 60, "dask scheduler", every=0.1)
        address = f"tcp://127.0.0.1:{port}"
        self.workers_proc = base.spawn(
            [dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--local-directory", self.dir],
            log=os.path.join(self.dir, "workers.log"),
        )
        self.client = Client(address, timeout=60)
        self.client.wait_for_workers(2, timeout=60)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        base.stop(self.workers_proc, 15.0)
        base.stop(self.scheduler, 10.0)

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        if self.scheduler is not None and descends(proc, self.scheduler.pid, procs):
            return "master"
        if self.workers_proc is not None and descends(proc, self.workers_proc.pid, procs):
            return "workers"
        return "other"

    def w1(self, n: int) -> None:
        futures = self.client.map(noop_i, range(n), pure=False)
        values = self.client.gather(futures)
        assert len(values) == n

    def w2_once(self) -> None:
        self.client.submit(work.noop, pure=False).result()

    def w3(self, parts: int, loops: int) -> int:
        futures = self.client.map(work.spin, [loops] * parts, pure=False)
        return sum(self.client.gather(futures))
