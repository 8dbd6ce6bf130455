"""The Celery app of the benchmark: Redis broker and result backend (URL from BENCH_REDIS_URL).

Imports celery and `bench.work` (the peers' virtualenv).
"""

from __future__ import annotations

import os

from celery import Celery

from bench import work

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="bench.noop")
def noop() -> None:
    return work.noop()


@app.task(name="bench.spin")
def spin(loops: int) -> int:
    return work.spin(loops)
