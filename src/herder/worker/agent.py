"""The worker's agent: one WebSocket to the master, the frames on it, and the bookkeeping of the
attempts this worker holds (waiting for a slot, running, finished but not yet acknowledged).

It connects and reconnects (jittered exponential backoff) forever, keeps running attempts across
reconnects, re-sends unacknowledged results after each welcome, and drains on request. Where the
attempts run is the `SlotPool`'s business (`slots`, `procslot`).

Imports `protocol.frames`, `tasktype`, `config`, `worker.*` and websockets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from herder.config import WorkerSettings
from herder.errors import ProtocolError, TaskTypeError
from herder.protocol.batches import Batches
from herder.protocol.frames import (
    MAX_FRAME_BYTES,
    MAX_FRAMES_PER_MESSAGE,
    Ack,
    Assign,
    AttemptRef,
    Cancel,
    Drain,
    Heartbeat,
    Hello,
    LogFrame,
    MasterFrame,
    ProgressFrame,
    Welcome,
    WorkerOutgoing,
    decode_master_frames,
    encode,
    encode_many,
    result_map,
)
from herder.tasktype import Registry
from herder.worker.execute import AttemptKey, Finished, Job, truncate
from herder.worker.procslot import ProcessSlotPool
from herder.worker.slots import SlotPool, ThreadSlotPool

log = logging.getLogger(__name__)

CHANNEL_PATH = "/api/v1/workers/connect"
#: seconds the master has to answer a hello with a welcome
WELCOME_TIMEOUT = 10.0
#: seconds a drain waits for the master to acknowledge the last results
ACK_WAIT = 2.0
#: progress and log frames waiting to be sent beyond this are dropped (results never are)
OUTBOX_LIMIT = 10_000
#: a result of a worker whose slots have attempts waiting may wait this long for the next ones
#: to end, and go in one message with them (Agent._result_hold)...
RESULT_HOLD = 0.03
#: ...but not for less than this: quicker attempts already end many to a wake-up of the loop
RESULT_HOLD_MIN = 0.002
#: seconds pool.close() may take at the end of a drain, and after a second signal
CLOSE_TIMEOUT = 5.0
ABORT_CLOSE_TIMEOUT = 0.5


def channel_url(master: str) -> str:
    """The worker channel's ws(s):// URL for the master's http(s):// URL."""
    parts = urllib.parse.urlsplit(master)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"master: expected an http:// or https:// URL, got {master!r}")
    path = parts.path.rstrip("/") + CHANNEL_PATH
    return urllib.parse.urlunsplit((schemes[parts.scheme], parts.netloc, path, "", ""))


#: before its first connection, a worker retries this often, this many times (then backs off)
STARTUP_RETRY = 0.01
STARTUP_RETRIES = 500


class Backoff:
    """Jittered exponential delays between `first` and `cap`."""

    def __init__(self, first: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.first = max(0.0, first)
        self.cap = max(self.first, cap)
        self._rng = rng
        self._tries = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2.0**self._tries)
        self._tries = min(self._tries + 1, 64)
        # Jitter within the upper half, so that workers cut off together do not return together.
        return max(self.first, ceiling * (0.5 + 0.5 * self._rng()))

    def reset(self) -> None:
        self._tries = 0


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


def _key(ref: AttemptRef) -> AttemptKey:
    return (ref.task_id, ref.index, ref.attempt)


def _ref(key: AttemptKey) -> AttemptRef:
    return AttemptRef(task_id=key[0], index=key[1], attempt=key[2])


def _decode(raw: str | bytes) -> list[MasterFrame]:
    if isinstance(raw, str):
        raise ProtocolError("frame: expected a binary frame, got text")
    return decode_master_frames(raw)


class Outbox:
    """Frames waiting for the writer of one connection, in order."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._frames: Batches[WorkerOutgoing] = Batches()
        self._limit = limit
        self.dropped = 0

    def put(self, frame: WorkerOutgoing, droppable: bool = False) -> None:
        if droppable and len(self._frames) >= self._limit:
            self.dropped += 1
            return
        self._frames.put(frame)

    def put_later(self, frame: WorkerOutgoing, delay: float) -> None:
        self._frames.put_later(frame, delay)

    async def get_batch(self, limit: int) -> list[WorkerOutgoing]:
        """The next frame and whatever else is already waiting, up to `limit`."""
        return await self._frames.take(limit)


class Agent:
    """A worker: connects to the master, runs what it is assigned, reports, drains on stop()."""

    def __init__(
        self, settings: WorkerSettings, registry: Registry, pool: SlotPool | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool if pool is not None else make_pool(settings, registry)
        self.url = channel_url(settings.master)
        #: this process's identity across reconnects (the name may be shared by mistake)
        self.uid = uuid.uuid4().hex
        #: set by the master's welcome; None before the first one
        self.worker_id: str | None = None
        #: attempts assigned and waiting for a free slot, in arrival order
        self._backlog: OrderedDict[AttemptKey, Job] = OrderedDict()
        #: results sent (or to send) and not yet acknowledged, in the order they ended
        self._unacked: dict[AttemptKey, dict[str, Any]] = {}  # result maps
        #: running attempts the master no longer wants (missing from a welcome's keep)
        self._silent: set[AttemptKey] = set()
        self._outbox: Outbox | None = None
        #: the abandoned-slot count the master was last told
        self._told_unavailable = 0
        self._draining = False
        self._aborted = False
        self._stop_requested = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[object] | None = None
        #: connections that got as far as a welcome, and attempts that did not (for tests, logs)
        self.sessions = 0
        self.failed_connects = 0
        self._hello()  # a bad name or slot count is refused here, not on every reconnect

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stop() and the drain that follows; 0 then, 1 after abort()."""
        self._task = asyncio.current_task()
        connection: asyncio.Task[None] | None = None
        try:
            await self.pool.open(self)
            connection = asyncio.create_task(self._connection_loop(), name="herder-worker-channel")
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

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def connected(self) -> bool:
        return self._outbox is not None

    def held(self) -> list[AttemptKey]:
        """Attempts this worker holds for the master: waiting for a slot or running."""
        running = [k for k in self.pool.running() if k not in self._silent]
        return [*self._backlog, *running]

    def unacked(self) -> list[AttemptKey]:
        return list(self._unacked)

    async def _drain(self) -> None:
        self._draining = True
        log.info("worker %s: draining, %d attempt(s) held", self.name, len(self.held()))
        self._send(Drain())
        for key in list(self._backlog):
            del self._backlog[key]
            self._report(Finished(key, "released", error="worker is draining"))
        if not await self._until(lambda: not self.pool.running(), self.settings.drain_timeout):
            for key in self.pool.running():
                self.pool.cancel(key, "released")
            await self._until(lambda: not self.pool.running(), self.settings.cancel_grace + 2.0)
        if not await self._until(lambda: not self._unacked, ACK_WAIT):
            log.warning(
                "worker %s: %d result(s) not acknowledged by the master at exit",
                self.name,
                len(self._unacked),
            )

    async def _until(self, condition: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return condition()
        return True

    # -- the connection ---------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        token = self.settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        while True:
            welcomed_before = self.sessions
            try:
                async with connect(
                    self.url,
                    additional_headers=headers,
                    max_size=MAX_FRAME_BYTES,
                    # frames are small and mostly unique: compressing them costs more CPU
                    # than it saves on a LAN
                    compression=None,
                    open_timeout=WELCOME_TIMEOUT,
                    close_timeout=2.0,
                ) as ws:
                    await self._session(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionClosed, ProtocolError) as exc:
                # Before the first connection, a refused one is the master still starting.
                level = logging.DEBUG if self.sessions == 0 else logging.WARNING
                reason = exc or repr(exc)
                log.log(level, "worker %s: channel to %s: %s", self.name, self.url, reason)
            except Exception:  # a bug here must cost a reconnect, not the worker
                log.exception("worker %s: channel to %s failed", self.name, self.url)
            finally:
                self._outbox = None
            if self.sessions > welcomed_before:
                backoff.reset()
            else:
                self.failed_connects += 1
            if self.sessions == 0 and self.failed_connects <= STARTUP_RETRIES:
                # A worker started with its master (`herder up`) finds it still starting: try
                # again soon, so that it is there within STARTUP_RETRY of the master.
                await asyncio.sleep(STARTUP_RETRY)
            else:
                await asyncio.sleep(backoff.next())

    def _hello(self) -> Hello:
        return Hello(
            name=self.name,
            slots=self.settings.slots,
            types=self.registry.names(),
            labels=list(self.settings.labels),
            pool="process" if self.settings.pool == "process" else "thread",
            uid=self.uid,
            running=[_ref(k) for k in self.held()],
            results=[_ref(k) for k in self.unacked()],
        )

    async def _session(self, ws: ClientConnection) -> None:
        hello = self._hello()
        await ws.send(encode(hello))
        # The master may send its first assigns in the same message as the welcome.
        first, *early = _decode(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT))
        welcome = first
        if not isinstance(welcome, Welcome):
            raise ProtocolError(f"frame {welcome.t!r}: expected 'welcome' first")
        self.sessions += 1
        self.worker_id = welcome.worker_id
        self._apply_keep(hello.running, welcome.keep)
        outbox = Outbox()
        if self._draining:
            outbox.put(Drain())
        for frame in self._unacked.values():
            outbox.put(frame)
        self._outbox = outbox
        log.info("worker %s: connected to %s as %s", self.name, self.url, welcome.worker_id)
        for early_frame in early:
            self._handle(early_frame)
        tasks = [
            asyncio.create_task(self._write(ws, outbox)),
            asyncio.create_task(self._beat(outbox, max(0.05, welcome.heartbeat))),
        ]
        if welcome.hand_back_after is not None:
            tasks.append(asyncio.create_task(self._watch_overruns(welcome.hand_back_after)))
        try:
            await self._read(ws)
        finally:
            self._outbox = None
            if outbox.dropped:
                log.warning(
                    "worker %s: %d progress/log frame(s) dropped: the master did not keep up",
                    self.name,
                    outbox.dropped,
                )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                if isinstance(raw, str):
                    raise ProtocolError("frame: expected a binary frame, got text")
                batch = decode_master_frames(raw)
            except ProtocolError as exc:
                log.error("worker %s: bad frame from master, reconnecting: %s", self.name, exc)
                await ws.close(CloseCode.PROTOCOL_ERROR, truncate(str(exc), 120))
                return
            for frame in batch:
                self._handle(frame)

    async def _write(self, ws: ClientConnection, outbox: Outbox) -> None:
        try:
            while True:
                batch = await outbox.get_batch(MAX_FRAMES_PER_MESSAGE)
                try:
                    data = encode_many(list(batch))
                except Exception:
                    data = b""
                    for frame in batch:  # find and drop the frame that cannot be encoded
                        try:
                            await ws.send(encode(frame))
                        except (TypeError, ValueError):
                            kind = frame["t"] if isinstance(frame, dict) else frame.t
                            log.exception("worker %s: cannot encode a %s frame", self.name, kind)
                if data:
                    await ws.send(data)
        except ConnectionClosed:
            pass  # the reader sees it too and ends the session

    async def _watch_overruns(self, after: float) -> None:
        """Hand back the attempts waiting for a slot once every slot has run its attempt
        `after` seconds: they were sent ahead because their type runs short, and would wait
        behind attempts that overran while other workers may idle (Welcome.hand_back_after)."""
        while True:
            await asyncio.sleep(max(0.02, after / 4))
            if not self._backlog and not self.pool.waiting():
                continue
            busy = self.pool.busy_for()
            if busy < after:
                continue
            note = (
                f"handed back by worker {self.name}: each of its {self.settings.slots} slot(s) "
                f"has run its attempt for over {after:g} s"
            )
            released = len(self._backlog)
            for key in list(self._backlog):
                del self._backlog[key]
                self._report(Finished(key, "released", error=note))
            waiting = list(self.pool.waiting())
            released += sum(self.pool.release_waiting(key, note) for key in waiting)
            log.info("worker %s: %d waiting attempt(s) handed back: every slot busy for %.1f s",
                     self.name, released, busy)

    async def _beat(self, outbox: Outbox, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._told_unavailable = self.pool.abandoned
            outbox.put(self._heartbeat())

    def _send(self, frame: WorkerOutgoing, droppable: bool = False) -> None:
        if self._outbox is not None:
            self._outbox.put(frame, droppable)

    def _apply_keep(self, sent: list[AttemptRef], keep: list[AttemptRef]) -> None:
        """Stop what we said we were running and the master no longer wants, without a report."""
        wanted = {_key(ref) for ref in keep}
        running = set(self.pool.running())
        for key in map(_key, sent):
            if key in wanted:
                continue
            log.info("worker %s: master does not keep attempt %s; stopping it", self.name, key)
            if self._backlog.pop(key, None) is None and key in running:
                self._silent.add(key)
                self.pool.cancel(key, "cancelled")

    # -- frames from the master -------------------------------------------------------------

    def _handle(self, frame: MasterFrame) -> None:
        if isinstance(frame, Assign):
            self._on_assign(frame)
        elif isinstance(frame, Cancel):
            self._on_cancel(frame)
        elif isinstance(frame, Ack):
            if self._unacked.pop(_key(frame), None) is not None:
                self._changed.set()
        else:
            log.warning("worker %s: unexpected %r frame ignored", self.name, frame.t)

    def _on_assign(self, frame: Assign) -> None:
        key = _key(frame)
        if key in self._backlog or key in self._unacked or self.pool.runs(key):
            log.debug("worker %s: attempt %s assigned twice; ignored", self.name, key)
            return
        if self._draining:
            self._report(Finished(key, "released", error="worker is draining"))
            return
        if frame.type not in self.registry:
            known = ", ".join(self.registry.names())
            self._report(
                Finished(
                    key,
                    "error",
                    error=f"unknown task type {frame.type!r} on worker {self.name} "
                    f"(it has: {known})",
                )
            )
            return
        deadline = None if frame.timeout is None else time.time() + frame.timeout
        self._backlog[key] = Job(*key, frame.type, frame.part, deadline)
        self._pump()

    def _on_cancel(self, frame: Cancel) -> None:
        key = _key(frame)
        if self._backlog.pop(key, None) is not None:
            self._report(Finished(key, "cancelled"))
        else:
            self.pool.cancel(key, "cancelled")

    def _pump(self) -> None:
        """Start waiting attempts while there are free slots."""
        while self._backlog and self.pool.accepts > 0:
            key, job = self._backlog.popitem(last=False)
            try:
                self.pool.start(job)
            except Exception as exc:
                log.exception("worker %s: cannot start attempt %s", self.name, key)
                self._report(Finished(key, "error", error=f"worker could not start it: {exc}"))

    def _report(self, finished: Finished) -> None:
        key = finished.key
        self._changed.set()
        if key in self._silent:
            self._silent.discard(key)
            return
        frame = result_map(
            *key, finished.outcome, finished.result, finished.error, finished.traceback,
            finished.duration,
        )
        self._unacked[key] = frame
        self._sync_capacity()  # an abandoned attempt's slot is taken before its report lands
        hold = self._result_hold(finished.duration)
        if hold and self._outbox is not None:
            self._outbox.put_later(frame, hold)
        else:
            self._send(frame)

    def _result_hold(self, duration: float) -> float:
        """How long a result may wait for others to share its message (0.0: not at all).

        Only while the slots have attempts waiting for them, judged to last (by this attempt's
        run time) twice as long as the hold: the master, which sends the next attempts when it
        has the results, is not waited for. And only when another attempt is due to end within
        the hold: with attempts of a few milliseconds (W3), each result had its own message, its
        own commit and its own reply, ~1 ms of the master's CPU per subtask."""
        waiting = len(self._backlog) + len(self.pool.waiting())
        slots = self.settings.slots
        hold = min(RESULT_HOLD, waiting * duration / slots / 2)
        return hold if hold >= max(RESULT_HOLD_MIN, duration / slots) else 0.0

    def _sync_capacity(self) -> None:
        """Tell the master at once when slots taken by abandoned attempts change."""
        if self.pool.abandoned != self._told_unavailable and self._outbox is not None:
            self._told_unavailable = self.pool.abandoned
            self._send(self._heartbeat())

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(
            running=[_ref(k) for k in self.held()], unavailable=self.pool.abandoned
        )

    # -- PoolListener -----------------------------------------------------------------------

    def on_progress(
        self, key: AttemptKey, done: float, total: float | None, message: str | None
    ) -> None:
        if key in self._silent:
            return
        frame = ProgressFrame(
            task_id=key[0], index=key[1], attempt=key[2], done=done, total=total, message=message
        )
        self._send(frame, droppable=True)

    def on_log(self, key: AttemptKey, ts: float, level: str, message: str) -> None:
        if key in self._silent:
            return
        frame = LogFrame(
            task_id=key[0], index=key[1], attempt=key[2], ts=ts, level=level[:20], message=message
        )
        self._send(frame, droppable=True)

    def on_finished(self, finished: Finished) -> None:
        # No pump here: a pool calls on_slot_free once the slot can take work again (at once
        # for a thread that ended, later for an abandoned or killed one), and that pumps.
        self._report(finished)

    def on_slot_free(self) -> None:
        self._changed.set()
        self._sync_capacity()
        self._pump()


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
