"""Ray: a local cluster started by `ray.init(num_cpus=2)` (GCS, raylet, and two worker
processes), the driver in the benchmark process. Bulk submission is a list of `.remote()`
calls, collection one `ray.get` of the list.

Imports ray (the peers' virtualenv) and `bench`.
"""

from __future__ import annotations

import os
from typing import Any

from bench import work
from bench.procstat import Proc
from bench.systems import base

_remote: dict[str, Any] = {}


class System(base.System):
    name = "ray"

    def __init__(self) -> None:
        self.dir = base.workdir("ray")
        self.ray: Any = None

    def version(self) -> str:
        import ray

        return str(ray.__version__)

    def start(self) -> None:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.ray = ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=512 * 1024 * 1024, _temp_dir=self.dir,
                 configure_logging=False)
        _remote["noop"] = ray.remote(work.noop)
        _remote["spin"] = ray.remote(work.spin)
        ray.get([_remote["noop"].remote() for _ in range(4)])

    def stop(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        if proc.name in ("raylet", "gcs_server"):
            return "master"
        if "Agent" in proc.cmdline:  # ray::DashboardAgent, ray::RuntimeEnvAgent
            return "other"
        if proc.cmdline.startswith("ray::") or "default_worker.py" in proc.cmdline:
            return "workers"
        return "other"

    def w1(self, n: int) -> None:
        noop = _remote["noop"]
        values = self.ray.get([noop.remote() for _ in range(n)])
        assert len(values) == n

    def w2_once(self) -> None:
        self.ray.get(_remote["noop"].remote())

    def w3(self, parts: int, loops: int) -> int:
        spin = _remote["spin"]
        return int(sum(self.ray.get([spin.remote(loops) for _ in range(parts)])))
