"""Celery 5 with Redis as broker and result backend: `celery worker -c 2` (prefork: 2 pool
processes under the main one). Bulk submission is a `group`; results come back through it.

Imports celery (the peers' virtualenv) and `bench`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bench.procstat import Proc, descends
from bench.systems import base

TIMEOUT = 600


class System(base.System):
    name = "celery"

    def __init__(self) -> None:
        self.dir = base.workdir("celery")
        self.redis = base.Redis(self.dir)
        self.worker: Any = None
        self.app: Any = None

    def version(self) -> str:
        import celery

        return f"{celery.__version__} (Redis {base.Redis.version()})"

    def start(self) -> None:
        self.redis.start()
        os.environ["BENCH_REDIS_URL"] = self.redis.url
        from bench.systems import celery_app

        celery_app.app.conf.update(broker_url=self.redis.url, result_backend=self.redis.url)
        self.app = celery_app
        celery_bin = os.path.join(os.path.dirname(sys.executable), "celery")
        self.worker = base.spawn(
            [celery_bin, "-A", "bench.systems.celery_app", "worker", "-c", "2",
             "-l", "WARNING", "-n", f"bench@{os.getpid()}"],
            log=os.path.join(self.dir, "worker.log"), env={"BENCH_REDIS_URL": self.redis.url},
        )
        base.wait_for(lambda: celery_app.app.control.ping(timeout=0.5), 60, "celery worker",
                      every=0.1)

    def stop(self) -> None:
        base.stop(self.worker, 15.0)
        self.redis.stop()

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        if "redis-server" in proc.text:
            return "master"
        if self.worker is not None and descends(proc, self.worker.pid, procs):
            return "workers"
        return "other"

    def w1(self, n: int) -> None:
        from celery import group

        noop = self.app.noop
        result = group(noop.s() for _ in range(n)).apply_async()
        values = result.get(timeout=TIMEOUT)
        assert len(values) == n

    def w2_once(self) -> None:
        self.app.noop.delay().get(timeout=TIMEOUT)

    def w3(self, parts: int, loops: int) -> int:
        from celery import group

        result = group(self.app.spin.s(loops) for _ in range(parts)).apply_async()
        return sum(result.get(timeout=TIMEOUT))

