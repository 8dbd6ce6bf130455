"""Runs task-type code (`split`, `aggregate`) off the event loop, many calls per thread hop.

Handing each call to a thread costs a wake-up there and back, more than a small `split` itself.
So calls that arrive together run together: one job on the pool runs a batch, and each result
goes back to the loop as soon as its call returns. A slow call must not hold up the calls queued
behind it: when a batch has not moved on for STEAL_AFTER seconds, the loop takes back the calls
it has not started and runs them as a new job on another of the pool's threads. Each call keeps
its own time limit.

Code that is known to be quick runs on the loop itself, with no hop at all: each kind of call
(say `primes.split`) is timed, and once its last INLINE_AFTER runs each took under INLINE_BELOW,
it is called inline. The time limit cannot stop an inline call, so a slow one sends its kind back
to the threads: until its last INLINE_AFTER runs are quick again, and for good when it was slow
over DEMOTE_ABOVE twice within SLOW_AGAIN_WITHIN inline runs. Once is forgiven, because a busy
host takes the core away from the loop for a few ms every few thousand calls, and a quick call
caught then looks slow. (The call's own CPU time would tell, but reading it costs more than a
quick call.) Imports only the stdlib.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

STEAL_AFTER = 0.05
THREADS = 8
#: a kind of call runs inline once its last INLINE_AFTER runs each took under INLINE_BELOW s
INLINE_AFTER = 8
INLINE_BELOW = 0.0005
#: two inline runs longer than this, within SLOW_AGAIN_WITHIN inline runs, send the kind back to
#: the threads for good
DEMOTE_ABOVE = 0.005
SLOW_AGAIN_WITHIN = 100

log = logging.getLogger(__name__)


class _Speed:
    """How long the recent calls of one kind took, and whether it may run inline."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=INLINE_AFTER)
        self.demoted = False
        #: inline runs so far, and the count at the last one over DEMOTE_ABOVE
        self.inline_runs = 0
        self.slow_at = -SLOW_AGAIN_WITHIN

    def inline(self) -> bool:
        return (
            not self.demoted
            and len(self.recent) == INLINE_AFTER
            and max(self.recent) < INLINE_BELOW
        )

_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class _Batch:
    """Calls shared between the loop (which may take back the unstarted ones) and a thread."""

    def __init__(self, calls: list[_Call]) -> None:
        self.calls = calls
        self.next = 0  # index of the next call to start
        self.lock = threading.Lock()

    def take(self) -> _Call | None:
        with self.lock:
            if self.next >= len(self.calls):
                return None
            call = self.calls[self.next]
            self.next += 1
            return call

    def steal(self) -> list[_Call]:
        with self.lock:
            rest = self.calls[self.next :]
            self.next = len(self.calls)
            return rest


class CodeRunner:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._pool = concurrent.futures.ThreadPoolExecutor(
            THREADS, thread_name_prefix="herder-code"
        )
        self._queue: list[_Call] = []
        self._scheduled = False
        self._speeds: dict[str, _Speed] = {}

    def runs_inline(self, kind: str) -> bool:
        speed = self._speeds.get(kind)
        return speed is not None and speed.inline()

    def call_inline(self, kind: str, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` here and now, timed as `kind` (for a kind that `runs_inline`)."""
        speed = self._speeds.get(kind) or self._speeds.setdefault(kind, _Speed())
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            took = time.perf_counter() - started
            speed.recent.append(took)  # a slow run sends the kind to the threads for a while
            speed.inline_runs += 1
            if took > DEMOTE_ABOVE:
                if speed.inline_runs - speed.slow_at <= SLOW_AGAIN_WITHIN:
                    speed.demoted = True
                    log.warning(
                        "%s took %.1f ms on the event loop, the second time within %d runs; it "
                        "runs on threads from now on", kind, took * 1000, SLOW_AGAIN_WITHIN,
                    )
                speed.slow_at = speed.inline_runs

    async def run(
        self, fn: Callable[..., Any], *args: Any, kind: str | None = None, inline: bool = True
    ) -> Any:
        """`fn(*args)` on a thread; TimeoutError after the limit (the call itself goes on).

        With `kind`, calls of that kind are timed and, once known to be quick, run inline
        (unless `inline` is False: for a call whose input is much larger than usual)."""
        speed = None
        if kind is not None:
            speed = self._speeds.get(kind) or self._speeds.setdefault(kind, _Speed())
            if inline and speed.inline():
                return self.call_inline(kind, fn, *args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        call = fn if speed is None else _timed(fn, speed)
        self._queue.append((call, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._submit)
        # A timer rather than asyncio.wait_for: that wraps every call in a task of its own.
        timer = loop.call_later(self.limit, _expire, future, self.limit)
        try:
            return await future
        finally:
            timer.cancel()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self) -> None:
        self._scheduled = False
        calls, self._queue = self._queue, []
        if not calls:
            return
        loop = asyncio.get_running_loop()
        batch = _Batch(calls)
        self._pool.submit(_run, loop, batch)
        loop.call_later(STEAL_AFTER, self._watch, batch, 0)

    def _watch(self, batch: _Batch, seen: int) -> None:
        """Take back the unstarted calls of a batch stuck on one call since the last look."""
        with batch.lock:
            moved, left = batch.next != seen, batch.next < len(batch.calls)
            position = batch.next
        if not left:
            return
        if moved:
            asyncio.get_running_loop().call_later(STEAL_AFTER, self._watch, batch, position)
            return
        self._queue[:0] = batch.steal()
        self._submit()


def _run(loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
    while (call := batch.take()) is not None:
        fn, args, future = call
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # handed to the awaiting coroutine, whatever it is
            outcome = (False, exc)
        loop.call_soon_threadsafe(_settle, future, outcome)


def _timed(fn: Callable[..., Any], speed: _Speed) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            # appended from the pool's thread: deque.append is atomic under the GIL
            speed.recent.append(time.perf_counter() - started)

    return timed


def _expire(future: asyncio.Future[Any], limit: float) -> None:
    if not future.done():  # the call goes on in its thread; its result will be dropped
        future.set_exception(TimeoutError(f"took longer than the limit of {limit} s"))


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # the caller gave up (time limit, shutdown)
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
