"""Runs the synchronous store either inline on the event loop or on one dedicated thread.

SQLite in WAL mode answers in microseconds, and handing each call to a thread costs more than the
call itself: the wake-up of the other thread and the fight for the GIL afterwards (measured:
~150 us per hand-off against ~30 us for a batched commit). So a store that says
`runs_inline = True` is called directly. A store whose calls wait on a network (PostgreSQL) runs on
one thread, so the event loop never waits on it.

Either way calls happen in the order they were made, whether or not the caller awaits them: a
fire-and-forget `start_attempts` is always written before a later awaited `record_results` for
the same subtask. Imports `store` only.
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
T = TypeVar("T")

log = logging.getLogger(__name__)

#: seconds from the first write posted to the transaction that makes it (inline stores)
FLUSH_DELAY = 0.02


class StoreThread:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.inline = store.runs_inline
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="herder-store")
        #: writes posted inline and not yet made: they go in one transaction, soon
        self._pending: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self._flush_scheduled = False

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args)` and wait for it (and its commit). Writes posted before it are made
        first, so that it sees them and they are committed no later than it is."""
        if self.inline:
            self.flush()
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Like `call`, for a read that does not depend on the writes posted and not yet made:
        it does not make them first (a flush per read would cost a transaction per read)."""
        if self.inline:
            return fn(*args, **kwargs)
        return await self.call(fn, *args, **kwargs)

    def read_now(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`read` without awaiting, for an inline store only (`inline` is True)."""
        assert self.inline, "read_now needs an inline store"
        return fn(*args, **kwargs)

    async def commit(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Like `call`, for a write that must be committed before the caller goes on (an
        acknowledgement): inline, it shares one transaction with the writes posted before it."""
        if not self.inline:
            return await self.call(fn, *args, **kwargs)
        failure: Exception | None = None
        with self.store.transaction():
            self._run_pending()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # raised after the others' commit, not instead of it
                failure = exc
        if failure is not None:
            raise failure
        return result

    def post(self, fn: Callable[..., object], *args: object) -> None:
        """Make the write `fn(*args)` without waiting for it; errors are logged.

        Inline, posted writes wait FLUSH_DELAY, then all go in one transaction (group commit):
        a thousand subtasks finishing together cost one commit.
        """
        if self.inline:
            self._pending.append((fn, args))
            if not self._flush_scheduled:
                self._flush_scheduled = True
                # A moment later, not at the next turn of the loop: what the same step set off
                # (the dispatch of the subtasks just stored, its frames out to the workers, the
                # answer to a client waiting for its task) goes out first, and more writes share
                # the transaction. They are write-behind anyway: every acknowledgement is a
                # `commit`, which makes the writes posted before it first.
                asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)
            return
        future = self._pool.submit(fn, *args)
        future.add_done_callback(_log_failure)

    def post_item(self, fn: Callable[[list[T]], object], item: T) -> None:
        """Like `post(fn, [item])` for a store method that takes a list, but consecutive items
        for the same method share one call: a thousand tasks finishing together are one
        `finish_tasks` (one executemany), not a thousand. Only consecutive ones, so writes stay
        in the order they were posted."""
        if self.inline and self._pending and self._pending[-1][0] == fn:  # bound methods: ==
            batch = self._pending[-1][1][0]
            batch.append(item)  # type: ignore[attr-defined]
            return
        self.post(fn, [item])

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        with self.store.transaction():
            self._run_pending()

    def _run_pending(self) -> None:
        pending, self._pending = self._pending, []
        for fn, args in pending:
            try:
                fn(*args)
            except Exception:  # one bad write must not undo the others of its batch
                log.exception("store write %s failed", getattr(fn, "__name__", fn))

    def close(self) -> None:
        self.flush()
        self._pool.shutdown(wait=True)
        self.store.close()


def _log_failure(future: concurrent.futures.Future[object]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("store write failed: %s", exc, exc_info=exc)
