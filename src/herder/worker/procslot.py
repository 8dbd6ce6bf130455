"""The process pool: each slot is a long-lived child process that runs one attempt at a time.

A child imports the --tasks modules and builds its own Registry. The parent talks to it over a
Pipe (jobs down; ready/progress/log/done up) and cancels through a multiprocessing Event. A child
that ignores its cancel past the grace period is killed with SIGKILL; a child that dies, whatever
the cause, is replaced by a fresh one. Pickle only ever crosses this pipe between the worker and
its own children; nothing from the network is unpickled.

A child captures the `logging` records (and, with `capture_output`, the stdout/stderr) of its
attempts and sends them up as log lines, as the thread pool does (`worker.capture`).

Imports `worker.slots`, `worker.execute`, `worker.capture`, `tasktype` and the stdlib.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from herder.errors import TaskTypeError
from herder.tasktype import BUILTIN_MODULE, Registry
from herder.worker import capture
from herder.worker.execute import Finished, Job, run_attempt
from herder.worker.slots import PoolBase, PoolListener, Running

log = logging.getLogger(__name__)

#: seconds a fresh child may take to import its modules before the pool gives up at start
START_TIMEOUT = 60.0
#: cap of the delay between restarts of a child that keeps dying before it is ready
RESPAWN_MAX_DELAY = 5.0


# -- the child side ------------------------------------------------------------------------------


class _PipeEmitter:
    """Sends a running attempt's progress and log lines up the pipe."""

    def __init__(self, conn: multiprocessing.connection.Connection, job: Job) -> None:
        self._conn = conn
        self._key = job.key
        # Task code may report from its own threads; a Connection is not thread-safe.
        self._lock = threading.Lock()

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        with self._lock:
            self._conn.send(("progress", self._key, done, total, message))

    def log(self, ts: float, level: str, message: str) -> None:
        with self._lock:
            self._conn.send(("log", self._key, ts, level, message))


def _setup_logging(capture_output: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        # What Python prints without any configuration (WARNING and up, to stderr); made explicit
        # because the capture handler would otherwise switch that fallback off. Created before the
        # stream proxies, so that it writes to the real stderr.
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(console)
    capture.install(capture_output)


def child_main(
    conn: multiprocessing.connection.Connection,
    cancelled: Any,
    modules: tuple[str, ...],
    capture_output: bool = False,
) -> None:
    """Entry point of a slot's child process."""
    # Ctrl-C reaches the whole process group; the parent decides what happens to the children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _setup_logging(capture_output)
    try:
        registry = Registry.from_modules(modules)
    except Exception as exc:
        conn.send(("fatal", str(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] != "run":
            return
        job: Job = message[1]
        finished = run_attempt(registry, job, cancelled, _PipeEmitter(conn, job))
        conn.send(("done", finished))


# -- the parent side -----------------------------------------------------------------------------


def default_context() -> BaseContext:
    """forkserver where there is one (a cheap respawn after a kill), else spawn. Never fork: the
    worker has threads and an event loop that a forked child must not inherit."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__, BUILTIN_MODULE])
        return ctx
    return multiprocessing.get_context("spawn")


@dataclass(eq=False)
class _Child:
    """One generation of a slot's process."""

    process: Any  # multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    cancelled: Any  # multiprocessing.synchronize.Event
    #: done when its reader saw it die (the reader is the one thread that joins it)
    dead: asyncio.Future[None]
    ready: bool = False
    #: set before the parent kills it, so that its death is reported as a kill
    killing: bool = False


@dataclass(eq=False)
class _Slot:
    number: int
    child: _Child | None = None
    run: Running | None = None
    #: children that died in a row before they were ready (slows down respawning)
    failures: int = 0


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"exit code {code}, {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


class ProcessSlotPool(PoolBase):
    def __init__(
        self,
        modules: tuple[str, ...],
        slots: int,
        cancel_grace: float,
        mp_context: BaseContext | None = None,
        capture_output: bool = False,
    ) -> None:
        super().__init__(slots, cancel_grace)
        self._modules = tuple(modules)
        self.capture_output = capture_output
        self._mp = mp_context or default_context()
        self._slots = [_Slot(n) for n in range(slots)]
        self._closing = False
        self._fatal: str | None = None
        self._changed = asyncio.Event()

    @property
    def free_slots(self) -> int:
        return sum(1 for s in self._slots if s.run is None and s.child and s.child.ready)

    async def open(self, listener: PoolListener) -> None:
        await super().open(listener)
        for slot in self._slots:
            self._spawn(slot)
        try:
            await asyncio.wait_for(self._all_ready(), START_TIMEOUT)
        except TimeoutError:
            await self.close(1.0)
            raise TaskTypeError(
                f"worker processes did not start within {START_TIMEOUT:.0f}s"
            ) from None
        if self._fatal is not None:
            await self.close(1.0)
            raise TaskTypeError(f"worker process could not start: {self._fatal}")

    async def _all_ready(self) -> None:
        while self._fatal is None and not all(s.child and s.child.ready for s in self._slots):
            self._changed.clear()
            await self._changed.wait()

    def _spawn(self, slot: _Slot) -> None:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        cancelled = self._mp.Event()  # fresh per child: a killed child may have held its lock
        process = self._mp.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(child_conn, cancelled, self._modules, self.capture_output),
            name=f"herder-slot-{slot.number}",
            daemon=True,
        )
        process.start()
        # Close our copy of the child's end, so that its death reads as EOF here.
        child_conn.close()
        child = _Child(process, parent_conn, cancelled, self.loop.create_future())
        slot.child = child
        threading.Thread(
            target=self._read,
            args=(slot, child),
            name=f"herder-slot-{slot.number}-reader",
            daemon=True,
        ).start()

    def _read(self, slot: _Slot, child: _Child) -> None:
        """Reader thread: hands every message, then the child's death, to the event loop."""
        conn, process = child.conn, child.process
        while True:
            ready = multiprocessing.connection.wait([conn, process.sentinel])
            if conn not in ready and not conn.poll():
                break  # the process ended and its pipe is empty
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            self._post(self._on_message, slot, child, message)
        process.join()
        self._post(self._on_death, slot, child, process.exitcode)

    def _post(self, fn: Any, *args: Any) -> None:
        # RuntimeError: the loop is closed, the worker is exiting and nobody waits for this.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_message(self, slot: _Slot, child: _Child, message: tuple[Any, ...]) -> None:
        if slot.child is not child:
            return  # from a generation already replaced
        kind = message[0]
        if kind == "ready":
            child.ready = True
            slot.failures = 0
            self._changed.set()
            self.listener.on_slot_free()
        elif kind == "fatal":
            self._fatal = str(message[1])
            log.error("worker process for slot %d cannot start: %s", slot.number, message[1])
            self._changed.set()
        elif kind == "progress":
            self._forward_progress(message[1], message[2], message[3], message[4])
        elif kind == "log":
            self._forward_log(message[1], message[2], message[3], message[4])
        elif kind == "done":
            finished: Finished = message[1]
            slot.run = None
            self._finish(finished.key, finished)
            self.listener.on_slot_free()

    def _on_death(self, slot: _Slot, child: _Child, exitcode: int | None) -> None:
        if slot.child is not child:
            return
        slot.child = None
        child.conn.close()
        child.dead.set_result(None)
        run, slot.run = slot.run, None
        if run is not None and not self._closing:  # at close, running attempts go unreported
            key = run.job.key
            if child.killing and run.reason is not None:
                error = f"killed: still running {self.cancel_grace:g}s after cancel"
                self._finish(key, Finished(key, run.reason, error=error))
            else:
                error = f"worker process died ({_describe_exit(exitcode)})"
                log.warning("attempt %s: %s", key, error)
                self._finish(key, Finished(key, "error", error=error))
        if self._closing:
            return
        if not child.ready:
            slot.failures += 1
        delay = min(RESPAWN_MAX_DELAY, 0.1 * 2 ** (slot.failures - 1)) if slot.failures else 0.0
        self.loop.call_later(delay, self._respawn, slot)

    def _respawn(self, slot: _Slot) -> None:
        if not self._closing and slot.child is None:
            self._spawn(slot)

    # -- PoolBase ---------------------------------------------------------------------------

    def _launch(self, run: Running) -> None:
        slot = next(s for s in self._slots if s.run is None and s.child and s.child.ready)
        assert slot.child is not None
        slot.run = run
        # Cleared here, between attempts, where no cancel for the previous one can race it.
        slot.child.cancelled.clear()
        try:
            slot.child.conn.send(("run", run.job))
        except OSError as exc:
            # The child died under us; its reader reports the death and the attempt with it.
            log.warning("slot %d: cannot hand over attempt %s: %s", slot.number, run.job.key, exc)

    def _slot_of(self, run: Running) -> _Slot | None:
        return next((s for s in self._slots if s.run is run), None)

    def _signal_cancel(self, run: Running) -> None:
        slot = self._slot_of(run)
        if slot is not None and slot.child is not None:
            slot.child.cancelled.set()

    def _overdue(self, run: Running) -> None:
        slot = self._slot_of(run)
        if slot is None or slot.child is None:
            return
        log.warning(
            "attempt %s still running %.1fs after cancel; killing its process (pid %s)",
            run.job.key,
            self.cancel_grace,
            slot.child.process.pid,
        )
        slot.child.killing = True
        slot.child.process.kill()

    async def close(self, timeout: float) -> None:
        """Ask idle children to exit, kill busy ones, and kill whatever is left at `timeout`."""
        self._closing = True
        children = [s.child for s in self._slots if s.child is not None]
        for slot in self._slots:
            if slot.child is None:
                continue
            if slot.run is None:
                with contextlib.suppress(OSError):
                    slot.child.conn.send(("stop",))
            else:
                slot.child.process.kill()
        for run in self._runs.values():
            for timer in run.timers:
                timer.cancel()
        self._runs.clear()
        if not children:
            return
        dead = [child.dead for child in children]
        _, pending = await asyncio.wait(dead, timeout=timeout)
        if pending:
            for child in children:
                if not child.dead.done():
                    child.process.kill()
            await asyncio.wait(dead, timeout=1.0)
