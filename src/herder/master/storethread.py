"""Runs the synchronous store on one dedicated thread, so the event loop never waits on disk.

One thread means the store's calls happen in the order they were made, whether or not the caller
awaits them: a fire-and-forget `start_attempt` is always written before a later awaited
`record_result` for the same subtask. Imports `store` only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from herder.store.base import Store

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)


class StoreThread:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="herder-store")

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args)` on the store thread and wait for it (and its commit)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def post(self, fn: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
        """Queue `fn(*args)` on the store thread without waiting; errors are logged."""
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(_log_failure)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.store.close()


def _log_failure(future: concurrent.futures.Future[object]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("store write failed: %s", exc, exc_info=exc)
