"""Slots: where attempts run. One small interface (`SlotPool`), the bookkeeping every pool shares
(timeouts, cancel grace, one report per attempt), and the thread pool. The process pool is in
`procslot`.

Every method and every listener callback runs on the event loop thread; pools hop there from
their threads. Imports `worker.execute`, `worker.capture`, `tasktype`, `protocol.frames` and the
stdlib.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from herder.protocol.frames import Outcome
from herder.tasktype import Registry
from herder.worker import capture
from herder.worker.execute import AttemptKey, Finished, Job, run_attempt

log = logging.getLogger(__name__)

#: attempts in a row that must each end within QUICK_ATTEMPT seconds before the slot threads'
#: queue holds DEEP_QUEUE_PER_SLOT waiting attempts per slot instead of one
QUICK_STREAK = 8
QUICK_ATTEMPT = 0.002
DEEP_QUEUE_PER_SLOT = 32


class PoolListener(Protocol):
    """What a pool tells its owner (the agent); always called on the event loop thread."""

    def on_progress(
        self, key: AttemptKey, done: float, total: float | None, message: str | None
    ) -> None: ...

    def on_log(self, key: AttemptKey, ts: float, level: str, message: str) -> None: ...

    def on_finished(self, finished: Finished) -> None:
        """The attempt's one and only report. Its slot may still be busy (abandoned, killed)."""

    def on_slot_free(self) -> None:
        """`free_slots` may have grown."""


class SlotPool(Protocol):
    """Runs attempts, at most `slots` at once, each reported exactly once via `on_finished`."""

    @property
    def free_slots(self) -> int: ...

    @property
    def accepts(self) -> int:
        """How many more attempts `start` takes now: the free slots, plus (thread pool) a queue
        of waiting attempts, which a slot thread starts as soon as it is done."""

    @property
    def abandoned(self) -> int:
        """Slots taken by attempts that were reported but still run (thread pool only)."""

    def running(self) -> list[AttemptKey]:
        """Attempts started and not yet reported (abandoned ones are not listed)."""

    def runs(self, key: AttemptKey) -> bool:
        """Whether `running()` lists `key` (without making the list)."""

    async def open(self, listener: PoolListener) -> None: ...

    def start(self, job: Job) -> None:
        """Run `job` in a free slot, or queue it for the next one; the caller checks
        `accepts` first."""

    def cancel(self, key: AttemptKey, reason: Outcome = "cancelled") -> None:
        """Set the attempt's cancel flag; after the grace period it is killed or abandoned and
        reported with `reason` as its outcome. A no-op for an attempt not running."""

    def waiting(self) -> Collection[AttemptKey]:
        """Attempts started here that wait for a slot thread (thread pool only). A live view,
        cheap to count; iterate over a `list()` of it (the threads take from it)."""

    def busy_for(self) -> float:
        """Seconds every slot has been running the attempt it runs (the shortest of those run
        times); 0.0 while a slot is free."""

    def release_waiting(self, key: AttemptKey, note: str) -> bool:
        """Hand back an attempt that was started here but waits for a slot thread: it is
        reported `released` (with `note`) and never runs. False, doing nothing, for one that
        runs already or is unknown."""

    async def close(self, timeout: float) -> None:
        """Stop every slot; running attempts are dropped unreported."""


class NoFreeSlot(RuntimeError):
    pass


@dataclass(eq=False)
class Running:
    """An attempt a pool has started and not yet reported."""

    job: Job
    #: why it is being stopped; becomes the outcome
    reason: Outcome | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    #: time.monotonic() of start()
    started_at: float = field(default_factory=time.monotonic)


def _all_busy_for(started: list[float], slots: int) -> float:
    """`busy_for` from the start times of the attempts running: 0.0 while a slot is free."""
    if len(started) < slots:
        return 0.0
    return time.monotonic() - max(started)


def _stop_note(reason: Outcome) -> str | None:
    if reason == "timeout":
        return "timed out: the attempt ran past its deadline"
    return None


class PoolBase:
    """What every pool shares: the running map, timeout and grace timers, the single report."""

    def __init__(self, slots: int, cancel_grace: float) -> None:
        if slots < 1:
            raise ValueError("slots: must be at least 1")
        self.slots = slots
        self.cancel_grace = cancel_grace
        self._runs: dict[AttemptKey, Running] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: PoolListener | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "open() the pool first"
        return self._loop

    @property
    def listener(self) -> PoolListener:
        assert self._listener is not None, "open() the pool first"
        return self._listener

    async def open(self, listener: PoolListener) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = listener

    def running(self) -> list[AttemptKey]:
        return list(self._runs)

    def runs(self, key: AttemptKey) -> bool:
        return key in self._runs

    @property
    def free_slots(self) -> int:
        raise NotImplementedError

    @property
    def accepts(self) -> int:
        return self.free_slots

    @property
    def abandoned(self) -> int:
        return 0

    def start(self, job: Job) -> None:
        if job.key in self._runs:
            raise ValueError(f"attempt {job.key} is already running")
        if self.accepts <= 0:
            raise NoFreeSlot(f"no free slot for attempt {job.key}")
        run = Running(job)
        self._runs[job.key] = run
        if job.deadline is not None:
            delay = max(0.0, job.deadline - time.time())
            run.timers.append(self.loop.call_later(delay, self.cancel, job.key, "timeout"))
        self._launch(run)

    def cancel(self, key: AttemptKey, reason: Outcome = "cancelled") -> None:
        run = self._runs.get(key)
        if run is None or run.reason is not None:
            return  # first reason wins: a timeout does not become a cancel, nor the reverse
        run.reason = reason
        self._signal_cancel(run)
        run.timers.append(self.loop.call_later(self.cancel_grace, self._grace_over, key))

    def waiting(self) -> Collection[AttemptKey]:
        return ()  # every attempt started runs in a slot of its own

    def busy_for(self) -> float:
        return _all_busy_for([run.started_at for run in self._runs.values()], self.slots)

    def release_waiting(self, key: AttemptKey, note: str) -> bool:
        return False  # nothing waits

    def _grace_over(self, key: AttemptKey) -> None:
        run = self._runs.get(key)
        if run is not None:
            self._overdue(run)

    def _finish(self, key: AttemptKey, finished: Finished) -> None:
        """Report the attempt once; a stopped attempt reports why it was stopped."""
        run = self._runs.pop(key, None)
        if run is None:
            return
        for timer in run.timers:
            timer.cancel()
        if run.reason is not None and finished.outcome != run.reason:
            finished = Finished(
                key, run.reason, error=_stop_note(run.reason), duration=finished.duration
            )
        self.listener.on_finished(finished)

    def _forward_progress(
        self, key: AttemptKey, done: float, total: float | None, message: str | None
    ) -> None:
        if key in self._runs:  # nothing more is said of an attempt after its report
            self.listener.on_progress(key, done, total, message)

    def _forward_log(self, key: AttemptKey, ts: float, level: str, message: str) -> None:
        if key in self._runs:
            self.listener.on_log(key, ts, level, message)

    # -- what each pool does its own way --------------------------------------------------

    async def close(self, timeout: float) -> None:
        raise NotImplementedError

    def _launch(self, run: Running) -> None:
        raise NotImplementedError

    def _signal_cancel(self, run: Running) -> None:
        raise NotImplementedError

    def _overdue(self, run: Running) -> None:
        """The attempt is still running `cancel_grace` seconds after its cancel."""
        raise NotImplementedError


_EVENT_MADE = threading.Lock()


class LazyCancelFlag:
    """An attempt's cancel flag (`ctx.cancelled`) that makes its `threading.Event` only when
    someone waits on it. Most attempts are never cancelled and never wait (`ctx.sleep` does):
    an Event per attempt (a Condition and its lock) is a real share of a no-op subtask's cost.

    `set` writes the flag before it looks for the Event; `wait` publishes the Event before it
    looks at the flag: under the GIL one of them sees the other, so no wake-up is lost."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        with _EVENT_MADE:  # one Event, whichever thread waits first
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if self._set:
            event.set()
        return event.wait(timeout)


class _ThreadEmitter:
    """Hands a pool thread's progress and log lines to the event loop."""

    def __init__(self, pool: ThreadSlotPool, key: AttemptKey) -> None:
        self._pool = pool
        self._key = key

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        self._pool.to_loop(self._pool._forward_progress, self._key, done, total, message)

    def log(self, ts: float, level: str, message: str) -> None:
        self._pool.to_loop(self._pool._forward_log, self._key, ts, level, message)


class _SlotThreads:
    """`slots` long-lived daemon threads taking attempts from one queue.

    Starting a thread per attempt costs more than a small attempt itself (the start waits for
    the new thread to get the GIL). Daemon threads, because an abandoned attempt must not keep
    the process alive at exit (a ThreadPoolExecutor's threads are joined at exit).
    """

    def __init__(self, count: int, work: Callable[[Job, LazyCancelFlag], None]) -> None:
        self._queue: queue.SimpleQueue[tuple[Job, LazyCancelFlag] | None] = queue.SimpleQueue()
        self._work = work
        self._threads = [
            threading.Thread(target=self._loop, name=f"herder-slot-{i + 1}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job, flag: LazyCancelFlag) -> None:
        self._queue.put((job, flag))

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            self._work(*item)


class ThreadSlotPool(PoolBase):
    """Attempts run on `slots` long-lived threads. A thread cannot be killed: one that ignores
    its cancel is abandoned (reported, not listed as running) but keeps its slot until it really
    ends.

    From open() to close() the attempts' `logging` records (and their stdout/stderr with
    `capture_output`) are captured in this process (`worker.capture`)."""

    def __init__(
        self, registry: Registry, slots: int, cancel_grace: float, capture_output: bool = False
    ) -> None:
        super().__init__(slots, cancel_grace)
        self._registry = registry
        self.capture_output = capture_output
        self._capturing = False
        self._flags: dict[AttemptKey, LazyCancelFlag] = {}
        #: attempts in the slot threads' queue, not yet taken by a thread: whichever pops one
        #: first, a thread (to run it) or the loop (to hand it back), has it (a dict's pop is
        #: atomic)
        self._waiting: dict[AttemptKey, Job] = {}
        #: time.monotonic() at which a thread took each attempt it runs; set and removed by the
        #: threads (an abandoned attempt stays until its thread is done with it)
        self._started: dict[AttemptKey, float] = {}
        self._abandoned: set[AttemptKey] = set()
        self._threads: _SlotThreads | None = None
        #: attempts that ended in a row within QUICK_ATTEMPT
        self._quick = 0
        #: what the slot threads handed to the loop and it has not run yet, in the order they
        #: did (each attempt's log lines and progress before its end); one wake-up of the loop
        #: runs all of it (`_told`: that wake-up is on its way)
        self._from_threads: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._told = False

    async def open(self, listener: PoolListener) -> None:
        await super().open(listener)
        if self._threads is None:
            self._threads = _SlotThreads(self.slots, self._work)
        if not self._capturing:
            capture.install(self.capture_output)
            self._capturing = True

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - len(self._runs) - len(self._abandoned))

    @property
    def accepts(self) -> int:
        # Attempts may wait in the slot threads' queue, so that a thread goes from one attempt
        # to the next without a round trip through the event loop: one per slot, and more
        # while attempts are quick, so that a thread runs a row of them and the loop takes
        # their results at once (one message to the master for many). Not while a thread is
        # stuck on an abandoned attempt: nothing must wait behind it.
        if self._abandoned:
            queue = 0
        elif self._quick >= QUICK_STREAK:
            queue = self.slots * DEEP_QUEUE_PER_SLOT
        else:
            queue = self.slots
        return max(0, self.slots + queue - len(self._runs) - len(self._abandoned))

    @property
    def abandoned(self) -> int:
        """Threads still running after their attempt was reported."""
        return len(self._abandoned)

    def call_in_loop(self, fn: object, *args: object) -> None:
        # RuntimeError: the loop is closed, the worker is exiting and nobody waits for this.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    def to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """From a slot thread: `fn(*args)` on the loop, after all that was handed over before.

        One queue for everything, so that an attempt's end never overtakes its own log lines:
        with the ends in a queue of their own, a wake-up already on its way for another thread's
        end took this attempt's end too, before this attempt's lines (sent as callbacks of their
        own, behind that wake-up), and those were dropped as coming after its report. Appended,
        then told: the loop clears `_told` before it runs what is there, so what is appended
        meanwhile is either run now or told again."""
        self._from_threads.append((fn, args))
        if not self._told:
            self._told = True
            self.call_in_loop(self._take_from_threads)

    def _take_from_threads(self) -> None:
        self._told = False
        while self._from_threads:
            fn, args = self._from_threads.popleft()
            fn(*args)

    def _launch(self, run: Running) -> None:
        flag = LazyCancelFlag()
        self._flags[run.job.key] = flag
        self._waiting[run.job.key] = run.job
        assert self._threads is not None, "open() starts the slot threads"
        # free_slots counts abandoned attempts, so a job never waits here behind a stuck thread
        self._threads.submit(run.job, flag)

    def waiting(self) -> Collection[AttemptKey]:
        # a view, not a copy: counted for every result (Agent._result_hold); list() of it is
        # one step under the GIL, safe against the threads' pops
        return self._waiting.keys()

    def busy_for(self) -> float:
        # list(): one step under the GIL, safe against the threads' writes
        return _all_busy_for(list(self._started.values()), self.slots)

    def release_waiting(self, key: AttemptKey, note: str) -> bool:
        if self._waiting.pop(key, None) is None:
            return False  # a thread took it: it runs
        self._flags.pop(key, None)
        self._finish(key, Finished(key, "released", error=note))
        self.listener.on_slot_free()
        return True

    def _work(self, job: Job, flag: LazyCancelFlag) -> None:
        if self._waiting.pop(job.key, None) is None:
            return  # handed back while it waited: reported by release_waiting, never run
        if flag.is_set():  # cancelled while it waited in the queue: never started
            finished = Finished(job.key, "cancelled")
        else:
            self._started[job.key] = time.monotonic()
            try:
                finished = run_attempt(self._registry, job, flag, _ThreadEmitter(self, job.key))
            finally:
                self._started.pop(job.key, None)
        self.to_loop(self._thread_ended, finished)

    def _thread_ended(self, finished: Finished) -> None:
        key = finished.key
        self._quick = self._quick + 1 if finished.duration < QUICK_ATTEMPT else 0
        self._flags.pop(key, None)
        if key in self._abandoned:
            self._abandoned.discard(key)
            log.info("abandoned attempt %s ended; its slot is free again", key)
        else:
            self._finish(key, finished)
        self.listener.on_slot_free()

    def _signal_cancel(self, run: Running) -> None:
        self._flags[run.job.key].set()

    def _overdue(self, run: Running) -> None:
        key = run.job.key
        assert run.reason is not None
        log.warning(
            "attempt %s still running %.1fs after cancel; abandoning its thread",
            key,
            self.cancel_grace,
        )
        self._abandoned.add(key)
        self._finish(
            key, Finished(key, run.reason, error="abandoned: still running after cancel grace")
        )

    async def close(self, timeout: float) -> None:
        # Threads cannot be stopped; set every flag so that polite ones end, drop the rest.
        for flag in self._flags.values():
            flag.set()
        for run in list(self._runs.values()):
            for timer in run.timers:
                timer.cancel()
        self._runs.clear()
        self._waiting.clear()
        if self._threads is not None:
            self._threads.stop()
            self._threads = None
        if self._capturing:
            capture.uninstall(self.capture_output)
            self._capturing = False
