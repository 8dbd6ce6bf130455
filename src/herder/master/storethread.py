"""Runs the synchronous store either inline on the event loop or on one dedicated thread.

SQLite in WAL mode answers in microseconds, and handing each call to a thread costs more than the
call itself: the wake-up of the other thread and the fight for the GIL afterwards
(docs/decisions.md). So a store that says `runs_inline = True` is called directly. A store whose
calls wait on a network (PostgreSQL) runs on one thread, so the event loop never waits on it:
every call, read or write, awaited or posted, goes to that one thread, so the store is never
called from two threads at once.

Either way calls happen in the order they were made, whether or not the caller awaits them: a
fire-and-forget `start_attempts` is always written before a later awaited `record_results` for
the same subtask. On the thread, items given to `post_item` while the thread is busy join the
call still waiting for it, when it is the last one made and of the same method: a thousand tasks
finishing together are a few calls, not a thousand round trips to the database. Other writes
are not grouped into one transaction there (inline ones are: `FLUSH_DELAY`).

Part of the store's facade (`records`): nothing else in the master calls it. Imports `store`
only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from herder.errors import Deposed
from herder.store.base import Store

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

log = logging.getLogger(__name__)

#: seconds from the first write posted to the transaction that makes it (inline stores)
FLUSH_DELAY = 0.02


class StoreThread:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.inline = store.runs_inline
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="herder-store")
        #: writes posted inline and not yet made: they go in one transaction, soon; a `write`'s
        #: future is told when that transaction has committed
        self._pending: list[_Write] = []
        #: the flush FLUSH_DELAY after the first write pending (None: no write pending)
        self._flush_timer: asyncio.TimerHandle | None = None
        #: on the thread, the call made last if it is a `post_item` batch that has not started:
        #: items for the same method join it
        self._open_batch: _ThreadBatch | None = None

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args)` and wait for it (and its commit). Writes posted before it are made
        first, so that it sees them and they are committed no later than it is."""
        if self.inline:
            self.flush()
            return fn(*args, **kwargs)
        return await asyncio.wrap_future(self._submit(functools.partial(fn, *args, **kwargs)))

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
        with self._committing() as made:
            made += self._run_pending()
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
            self._pend(_Write(fn, args))
            return
        self._submit(functools.partial(fn, *args)).add_done_callback(_log_failure)

    def write(self, fn: Callable[..., R], *args: object) -> asyncio.Future[R]:
        """Post the write `fn(*args)`; the future gets its value once it is committed (or its
        exception). Unlike `commit`, it forces no transaction of its own: inline, it goes in the
        next one, whichever comes first, a `commit` or the flush FLUSH_DELAY later. So a step
        can go on (dispatch a task) and acknowledge it when its row is known to be stored."""
        if not self.inline:
            return asyncio.wrap_future(self._submit(functools.partial(fn, *args)))
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pend(_Write(fn, args, future))
        return future

    def _pend(self, write: _Write) -> None:
        self._pending.append(write)
        if self._flush_timer is None:
            # A moment later, not at the next turn of the loop: what the same step set off (the
            # dispatch of the subtasks just stored, its frames out to the workers, the answer to
            # a client waiting for its task) goes out first, and more writes share the
            # transaction. They are write-behind anyway: every acknowledgement is a `commit` or
            # waits for a `write`'s future, and those make the writes posted before them first.
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def post_item(self, fn: Callable[[list[T]], object], item: T) -> None:
        """Like `post(fn, [item])` for a store method that takes a list, but consecutive items
        for the same method share one call: a thousand tasks finishing together are one
        `finish_tasks` (one executemany), not a thousand. Only consecutive ones, so writes stay
        in the order they were posted. On the thread, items join the last call made while it
        has not started (the thread is busy with the ones before it)."""
        if not self.inline:
            batch = self._open_batch
            if batch is not None and batch.fn == fn and batch.add(item):
                return
            batch = _ThreadBatch(fn, [item])
            self._submit(batch.run).add_done_callback(_log_failure)
            self._open_batch = batch  # (after _submit, which closes the one before)
            return
        last = self._pending[-1] if self._pending else None
        if last is not None and last.fn == fn and last.future is None:  # bound methods: ==
            batch_items = last.args[0]
            batch_items.append(item)
            return
        self.post(fn, [item])

    def _submit(self, fn: Callable[[], R]) -> concurrent.futures.Future[R]:
        """Run `fn` on the thread after every call made before it. No item joins a batch made
        before this call any more: it would be written after it."""
        self._open_batch = None
        return self._pool.submit(fn)

    def flush(self) -> None:
        if not self._pending:
            return
        with self._committing() as made:
            made += self._run_pending()

    def _run_pending(self) -> list[tuple[asyncio.Future[Any], object]]:
        """Make the pending writes; the `write`s' futures and values, to be told once the
        transaction commits."""
        pending, self._pending = self._pending, []
        # Their flush is this one: a timer left armed would flush the writes posted next
        # sooner than FLUSH_DELAY after them, in a transaction of their own (a request and its
        # answer would pay one more commit).
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        made: list[tuple[asyncio.Future[Any], object]] = []
        for write in pending:
            try:
                value = write.fn(*write.args)
            except Exception as exc:  # one bad write must not undo the others of its batch
                if write.future is None:
                    log.exception("store write %s failed", getattr(write.fn, "__name__", write.fn))
                elif not write.future.done():
                    write.future.set_exception(exc)
                continue
            if write.future is not None:
                made.append((write.future, value))
        return made

    @contextlib.contextmanager
    def _committing(self) -> Iterator[list[tuple[asyncio.Future[Any], object]]]:
        """A transaction; the futures put in the list yielded get their values after it commits,
        or its failure."""
        made: list[tuple[asyncio.Future[Any], object]] = []
        try:
            with self._store.transaction():
                yield made
        except Exception as exc:
            for future, _ in made:
                if not future.done():
                    future.set_exception(exc)
            raise
        for future, value in made:
            if not future.done():  # a caller that gave up waiting cancelled it
                future.set_result(value)

    def close(self) -> None:
        self.flush()
        self._pool.shutdown(wait=True)
        self._store.close()


class _ThreadBatch:
    """The items of consecutive `post_item`s of one method, in one call on the store's thread;
    items join it until the thread takes it."""

    def __init__(self, fn: Callable[[list[Any]], object], items: list[Any]) -> None:
        self.fn = fn
        self._items = items
        self._taken = False
        self._lock = threading.Lock()  # between the loop, adding, and the thread, taking

    def add(self, item: object) -> bool:
        """False once the thread has taken the batch: the caller makes a new one."""
        with self._lock:
            if self._taken:
                return False
            self._items.append(item)
            return True

    def run(self) -> object:
        with self._lock:
            self._taken = True
        return self.fn(self._items)


@dataclass
class _Write:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any] | None = None


def _log_failure(future: concurrent.futures.Future[object]) -> None:
    exc = future.exception()
    if isinstance(exc, Deposed):  # expected of a master that lost its lease: counted, one line
        log.warning("%s", exc)
    elif exc is not None:
        log.error("store write failed: %s", exc, exc_info=exc)
