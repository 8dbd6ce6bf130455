"""Huey with Redis: `huey_consumer -w 2 -k process` (2 worker processes). Bulk submission is
`task.map`; results are awaited with blocking gets (Redis BLPOP).

Imports huey (the peers' virtualenv) and `bench`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bench.procstat import Proc, descends
from bench.systems import base

TIMEOUT = 600


class System(base.System):
    name = "huey"

    def __init__(self) -> None:
        self.dir = base.workdir("huey")
        self.redis = base.Redis(self.dir)
        self.consumer: Any = None
        self.app: Any = None

    def version(self) -> str:
        import huey

        return f"{huey.__version__} (Redis {base.Redis.version()})"

    def start(self) -> None:
        self.redis.start()
        os.environ["BENCH_REDIS_URL"] = self.redis.url
        from bench.systems import huey_app

        self.app = huey_app
        consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
        self.consumer = base.spawn(
            [consumer, "bench.systems.huey_app.huey", "-w", "2", "-k", "process", "-q"],
            log=os.path.join(self.dir, "consumer.log"), env={"BENCH_REDIS_URL": self.redis.url},
        )
        # ready once a task goes through
        base.wait_for(lambda: huey_app.noop()(blocking=True, timeout=1) is None, 60,
                      "huey consumer", every=0.1)

    def stop(self) -> None:
        base.stop(self.consumer, 15.0)
        self.redis.stop()

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        if "redis-server" in proc.text:
            return "master"
        if self.consumer is not None and descends(proc, self.consumer.pid, procs):
            return "workers"
        return "other"

    def w1(self, n: int) -> None:
        group = self.app.noop.map([()] * n)
        values = group.get(blocking=True, timeout=TIMEOUT)
        assert len(values) == n

    def w2_once(self) -> None:
        self.app.noop()(blocking=True, timeout=TIMEOUT)

    def w3(self, parts: int, loops: int) -> int:
        group = self.app.spin.map([loops] * parts)
        return sum(group.get(blocking=True, timeout=TIMEOUT))
