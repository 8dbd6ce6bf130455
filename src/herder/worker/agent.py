"""The worker's agent: the lifecycle of one worker process, from start to drain.

It composes the slot pool (where attempts run: `slots`, `procslot`), the attempts' book (what
this worker holds for the master: `worker.attempts`) and the channel (the connection to the
master: `worker.channel`), runs them until stop(), a signal or the master's drain frame, then
drains: it tells the master, hands back what waits, lets what runs finish (or cancels it past
the drain timeout), and waits briefly for the last results to be acknowledged. `run_worker` is
the entry point.

Imports `config`, `errors`, `protocol.frames`, `tasktype` and `worker.*`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from herder.config import WorkerSettings
from herder.errors import TaskTypeError
from herder.protocol.frames import Drain
from herder.tasktype import Registry
from herder.worker.attempts import AttemptBook
from herder.worker.channel import Channel
from herder.worker.execute import AttemptKey
from herder.worker.procslot import ProcessSlotPool
from herder.worker.slots import SlotPool, ThreadSlotPool

log = logging.getLogger(__name__)

#: seconds a drain waits for the master to acknowledge the last results
ACK_WAIT = 2.0
#: seconds pool.close() may take at the end of a drain, and after a second signal
CLOSE_TIMEOUT = 5.0
ABORT_CLOSE_TIMEOUT = 0.5


def make_pool(settings: WorkerSettings, registry: Registry) -> SlotPool:
    if settings.pool == "thread":
        return ThreadSlotPool(
            registry, settings.slots, settings.cancel_grace, settings.capture_output
        )
    if settings.pool == "process":
        return ProcessSlotPool(
            settings.tasks,
            settings.slots,
            settings.cancel_grace,
            capture_output=settings.capture_output,
        )
    raise ValueError(f"pool: must be 'thread' or 'process', not {settings.pool!r}")


class Agent:
    """A worker: connects to the master, runs what it is assigned, reports, drains on stop()."""

    def __init__(
        self, settings: WorkerSettings, registry: Registry, pool: SlotPool | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool if pool is not None else make_pool(settings, registry)
        self.book = AttemptBook(settings, registry, self.pool, self.stop)
        self.channel = Channel(settings, registry.names(), self.book)
        self._aborted = False
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[object] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stop() and the drain that follows; 0 then, 1 after abort()."""
        self._task = asyncio.current_task()
        connection: asyncio.Task[None] | None = None
        try:
            await self.pool.open(self.book)
            connection = asyncio.create_task(self.channel.run(), name="herder-worker-channel")
            await self._stop_requested.wait()
            await self._drain()
            code = 0
        except asyncio.CancelledError:
            if not self._aborted:
                raise
            if self._task is not None:
                self._task.uncancel()
            log.warning("worker %s: stopped at once, abandoning running attempts", self.name)
            code = 1
        finally:
            if connection is not None:
                connection.cancel()
                await asyncio.gather(connection, return_exceptions=True)
            await self.pool.close(ABORT_CLOSE_TIMEOUT if self._aborted else CLOSE_TIMEOUT)
        return code

    def stop(self) -> None:
        """Start a graceful drain; run() returns when it is over."""
        self._stop_requested.set()

    def abort(self) -> None:
        """Stop at once, without waiting for running attempts."""
        self._aborted = True
        self._stop_requested.set()
        if self._task is not None:
            self._task.cancel()

    def on_signal(self, signum: int) -> None:
        if self._stop_requested.is_set():
            log.warning("worker %s: second signal, exiting now", self.name)
            self.abort()
        else:
            log.info(
                "worker %s: %s received, draining (again to exit at once)",
                self.name,
                signal.Signals(signum).name,
            )
            self.stop()

    # -- state --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def connected(self) -> bool:
        return self.channel.connected

    @property
    def worker_id(self) -> str | None:
        """The id the master gave this worker in its last welcome; None before the first."""
        return self.channel.worker_id

    @property
    def failed_connects(self) -> int:
        return self.channel.failed_connects

    def held(self) -> list[AttemptKey]:
        """Attempts this worker holds for the master: waiting for a slot or running."""
        return self.book.held()

    def unacked(self) -> list[AttemptKey]:
        return self.book.unacked()

    # -- draining -----------------------------------------------------------------------------

    async def _drain(self) -> None:
        book = self.book
        book.draining = True
        log.info("worker %s: draining, %d attempt(s) held", self.name, len(book.held()))
        book.send(Drain())
        book.release_backlog("worker is draining")
        if not await self._until(lambda: not self.pool.running(), self.settings.drain_timeout):
            for key in self.pool.running():
                self.pool.cancel(key, "released")
            await self._until(lambda: not self.pool.running(), self.settings.cancel_grace + 2.0)
        if not await self._until(lambda: not book.unacked(), ACK_WAIT):
            log.warning(
                "worker %s: %d result(s) not acknowledged by the master at exit",
                self.name,
                len(book.unacked()),
            )

    async def _until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition` holds, checking it whenever the book changes; False if it
        still does not after `timeout` seconds."""
        changed = self.book.changed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            left = deadline - loop.time()
            if left <= 0:
                return False
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                return condition()
        return True


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """asyncio.run, on uvloop where it is installed (a faster loop: every frame goes through it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _run_with_signals(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, agent.on_signal, sig)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass  # not the main thread (or no signals here): stop() is still there
    try:
        return await agent.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_worker(settings: WorkerSettings) -> int:
    """Run a worker until SIGTERM/SIGINT (drain) or a second one (at once); the exit code."""
    try:
        registry = Registry.from_modules(settings.tasks)
        agent = Agent(settings, registry)
    except (TaskTypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        log.error("worker %s: %s", settings.name, exc)
        return 2
    try:
        return _run_loop(_run_with_signals(agent))
    except TaskTypeError as exc:  # the process pool's children could not load the modules
        log.error("worker %s: %s", settings.name, exc)
        return 2
