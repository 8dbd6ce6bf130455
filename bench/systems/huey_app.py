"""The Huey app of the benchmark: RedisHuey on BENCH_REDIS_URL's port.

Imports huey and `bench.work` (the peers' virtualenv).
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from huey import RedisHuey

from bench import work

_url = urlparse(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
# store_none: a no-op returns None, which Huey would otherwise not store (nor could it be
# awaited); notify_result: a waiting client is woken by BLPOP instead of polling with backoff.
huey = RedisHuey("bench", host=_url.hostname or "127.0.0.1", port=_url.port or 6379,
                 store_none=True, notify_result=True)


@huey.task()
def noop() -> None:
    return work.noop()


@huey.task()
def spin(loops: int) -> int:
    return work.spin(loops)
