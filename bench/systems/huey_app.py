"""The Huey app of the benchmark: RedisHuey on BENCH_REDIS_URL's port.

Imports huey and `bench.work` (the peers' virtualenv).
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from huey import RedisHuey

from bench import work

_url = urlparse(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
huey = RedisHuey("bench", host=_url.hostname or "127.0.0.1", port=_url.port or 6379)


@huey.task()
def noop() -> None:
    return work.noop()


@huey.task()
def spin(loops: int) -> int:
    return work.spin(loops)
