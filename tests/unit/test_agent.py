"""The worker agent against a small fake master on a loopback WebSocket: the hello/welcome
handshake, assign/result/ack, cancel, the local backlog, reconnects with re-sent results, bad
frames, and the drain."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from herder.config import WorkerSettings
from herder.protocol.frames import (
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
    ResultFrame,
    Welcome,
    WorkerFrame,
    decode_worker_frames,
    encode,
)
from herder.tasktype import Registry
from herder.worker.agent import Agent
from herder.worker.channel import Backoff, channel_url

REGISTRY = Registry.from_modules(["tests.tasktypes"])

pytestmark = pytest.mark.timeout(15)


class FakeMaster:
    """Answers hellos with a welcome and records every frame; the test sends the rest."""

    def __init__(self) -> None:
        self.frames: list[WorkerFrame] = []
        #: the frames of each message, as received
        self.messages: list[list[WorkerFrame]] = []
        self.auth: list[str | None] = []
        self.ws: ServerConnection | None = None
        self.auto_ack = False
        self.keep: Callable[[Hello], list[AttemptRef]] = lambda hello: list(hello.running)
        self.hand_back_after: float | None = None
        self._changed = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.auth.append(ws.request.headers.get("Authorization"))
        try:
            async for raw in ws:
                assert isinstance(raw, bytes)
                batch = decode_worker_frames(raw)
                self.messages.append(batch)
                for frame in batch:
                    await self._on_frame(ws, frame)
        except ConnectionClosed:
            pass

    async def _on_frame(self, ws: ServerConnection, frame: WorkerFrame) -> None:
        self.frames.append(frame)
        self._changed.set()
        if isinstance(frame, Hello):
            self.ws = ws
            welcome = Welcome(
                worker_id="w1", heartbeat=0.05, keep=self.keep(frame),
                hand_back_after=self.hand_back_after,
            )
            await ws.send(encode(welcome))
        elif isinstance(frame, ResultFrame) and self.auto_ack:
            await ws.send(
                encode(Ack(task_id=frame.task_id, index=frame.index, attempt=frame.attempt))
            )

    async def send(self, frame: MasterFrame | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame if isinstance(frame, bytes) else encode(frame))

    async def drop(self) -> None:
        """Close the current connection, as a restarting master would."""
        assert self.ws is not None
        await self.ws.close()

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("condition not reached in time")
            self._changed.clear()
            # Re-check now and then: some conditions are about the agent, not about frames.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))

    async def next(
        self, kind: type[Any], after: int = 0, where: Callable[[Any], bool] = lambda f: True
    ) -> Any:
        """The first frame of `kind` at index >= after that satisfies `where`."""

        def found() -> Any:
            return next((f for f in self.frames[after:] if isinstance(f, kind) and where(f)), None)

        await self.until(lambda: found() is not None)
        return found()

    def results_of(self, attempts: Iterable[int]) -> list[ResultFrame]:
        wanted = set(attempts)
        return [f for f in self.frames if isinstance(f, ResultFrame) and f.attempt in wanted]

    def results(self, key: tuple[str, int, int]) -> list[ResultFrame]:
        return [f for f in self.frames if isinstance(f, ResultFrame) and _key(f) == key]


def _key(f: ResultFrame | AttemptRef) -> tuple[str, int, int]:
    return (f.task_id, f.index, f.attempt)


def assign(type_: str, part: Any = None, attempt: int = 1, **kw: Any) -> Assign:
    return Assign(task_id="t1", index=0, attempt=attempt, type=type_, part=part, **kw)


Scenario = Callable[[FakeMaster, Agent, "asyncio.Task[int]"], Coroutine[Any, Any, None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(port: int, **kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "master": f"http://127.0.0.1:{port}",
        "slots": 1,
        "name": "w-test",
        "token": "s3cret-s3cret-s3cret",
        "reconnect_min": 0.02,
        "reconnect_max": 0.1,
        "drain_timeout": 5.0,
        "cancel_grace": 0.3,
    }
    base.update(kw)
    return WorkerSettings(**base)


def scenario(test: Scenario, **kw: Any) -> None:
    async def main() -> None:
        master = FakeMaster()
        async with serve(master.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            agent = Agent(settings(port, **kw), REGISTRY)
            task = asyncio.create_task(agent.run())
            try:
                await test(master, agent, task)
            finally:
                if not task.done():
                    agent.abort()
                    await asyncio.wait([task], timeout=5)

    asyncio.run(main())


def test_handshake_assign_result_ack_and_heartbeats() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        hello = await master.next(Hello)
        assert (hello.name, hello.slots, hello.pool, hello.running) == ("w-test", 1, "thread", [])
        assert {"primes", "sleep", "fail", "logs"} <= set(hello.types)
        assert master.auth == ["Bearer s3cret-s3cret-s3cret"]
        await master.send(assign("primes", [0, 1000]))
        result = await master.next(ResultFrame)
        assert (result.outcome, result.result) == ("ok", 168)
        assert agent.unacked() == [("t1", 0, 1)]
        await master.send(Ack(task_id="t1", index=0, attempt=1))
        await master.until(lambda: agent.unacked() == [])
        beat = await master.next(Heartbeat, after=master.frames.index(result))
        assert beat.running == []
        assert agent.worker_id == "w1"

    scenario(test)


def test_errors_unknown_types_and_bad_results_are_reported() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("nosuch", attempt=1))
        await master.send(assign("fail", 5, attempt=2))
        await master.send(assign("badresult", attempt=3))
        unknown = await master.next(ResultFrame, where=lambda f: f.attempt == 1)
        assert unknown.outcome == "error"
        assert "unknown task type 'nosuch'" in unknown.error
        failed = await master.next(ResultFrame, where=lambda f: f.attempt == 2)
        assert (failed.outcome, failed.error) == ("error", "ValueError: boom attempt 2")
        assert "boom" in failed.traceback
        bad = await master.next(ResultFrame, where=lambda f: f.attempt == 3)
        assert bad.outcome == "error" and "cannot be sent as JSON" in bad.error
        assert not task.done()

    scenario(test)


def test_progress_and_logs_stream_before_the_result() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("logs", "x"))
        result = await master.next(ResultFrame)
        before = master.frames[: master.frames.index(result)]
        logs = [(f.level, f.message) for f in before if isinstance(f, LogFrame)]
        assert logs == [
            ("INFO", "starting part 'x'"),
            ("WARNING", "halfway there"),
            ("INFO", "done"),
        ]
        progress = [f for f in before if isinstance(f, ProgressFrame)]
        assert (progress[-1].done, progress[-1].total, progress[-1].message) == (3, 3, "three")
        assert all(_key(f) == ("t1", 0, 1) for f in progress)

    scenario(test)


def test_cancel_and_timeout() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("sleep", 30.0, attempt=1))
        await master.next(ProgressFrame)
        await master.send(Cancel(task_id="t1", index=0, attempt=1))
        cancelled = await master.next(ResultFrame, where=lambda f: f.attempt == 1)
        assert cancelled.outcome == "cancelled"
        await master.send(assign("sleep", 30.0, attempt=2, timeout=0.2))
        timed_out = await master.next(ResultFrame, where=lambda f: f.attempt == 2)
        assert timed_out.outcome == "timeout"

    scenario(test)


def test_assigns_beyond_the_slots_wait_and_can_be_cancelled() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        for attempt in (1, 2, 3):
            await master.send(assign("sleep", 30.0, attempt=attempt))
        await master.until(lambda: len(agent.held()) == 3)
        start = len(master.frames)
        beat = await master.next(Heartbeat, after=start)
        assert sorted(_key(r) for r in beat.running) == [("t1", 0, n) for n in (1, 2, 3)]
        # Cancelling a waiting attempt answers at once; the running one is unaffected.
        await master.send(Cancel(task_id="t1", index=0, attempt=3))
        third = await master.next(ResultFrame, where=lambda f: f.attempt == 3)
        assert third.outcome == "cancelled"
        # the slot's thread runs the first; the second waits in its queue (ThreadSlotPool)
        assert agent.pool.running() == [("t1", 0, 1), ("t1", 0, 2)]
        # Cancelling the running one lets the next waiting one start.
        await master.send(Cancel(task_id="t1", index=0, attempt=1))
        await master.next(ResultFrame, where=lambda f: f.attempt == 1)
        await master.until(lambda: agent.pool.running() == [("t1", 0, 2)])

    scenario(test)


def test_attempts_waiting_behind_slots_that_overran_are_handed_back() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("sleep", 0.1, attempt=1))  # quick: nothing is handed back
        assert (await master.next(ResultFrame)).outcome == "ok"
        # 2 runs past 0.3 s; 3 waits in the slot thread's queue, 4 and 5 in the backlog
        for attempt in (2, 3, 4, 5):
            await master.send(assign("sleep", 1.0, attempt=attempt))
        handed = [await master.next(ResultFrame, where=lambda f, a=a: f.attempt == a)
                  for a in (3, 4, 5)]
        assert {f.outcome for f in handed} == {"released"}
        assert all("has run its attempt for over 0.3 s" in (f.error or "") for f in handed)
        running = await master.next(ResultFrame, where=lambda f: f.attempt == 2)
        assert running.outcome == "ok"  # the one that overran runs on to its end
        assert agent.held() == []
        assert sorted(f.attempt for f in master.frames if isinstance(f, ResultFrame)) == [
            1, 2, 3, 4, 5
        ]  # one report each

    async def told(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        master.hand_back_after = 0.3
        await test(master, agent, task)

    scenario(told)


def test_results_of_short_attempts_with_more_waiting_share_a_message() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("sleep", 0.0, attempt=1))  # nothing waits: sent at once
        await master.next(ResultFrame, where=lambda f: f.attempt == 1)
        alone = [m for m in master.messages if any(isinstance(f, ResultFrame) for f in m)]
        assert len(alone) == 1
        # 5 ms attempts, 12 of them queued: a result waits for the next one to end
        for attempt in range(2, 14):
            await master.send(assign("sleep", 0.005, attempt=attempt))
        await master.until(lambda: len(master.results_of(range(2, 14))) == 12)
        results = master.results_of(range(2, 14))
        assert {f.outcome for f in results} == {"ok"}
        per_message = [
            sum(isinstance(f, ResultFrame) for f in m)
            for m in master.messages
            if any(isinstance(f, ResultFrame) and f.attempt >= 2 for f in m)
        ]
        assert max(per_message) >= 2 and len(per_message) < 12
        # the last ones, with nothing left waiting behind them, are not held back
        assert sorted(f.attempt for f in results) == list(range(2, 14))

    scenario(test)


def test_without_a_hand_back_limit_waiting_attempts_wait() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        for attempt in (1, 2):
            await master.send(assign("sleep", 0.6, attempt=attempt))
        second = await master.next(ResultFrame, where=lambda f: f.attempt == 2)
        assert second.outcome == "ok"

    scenario(test)


def test_unacked_results_are_sent_again_after_a_reconnect() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("noop", 42))
        await master.next(ResultFrame)
        await master.drop()
        second_hello = await master.next(Hello, after=1)
        resent = await master.next(ResultFrame, after=master.frames.index(second_hello))
        assert (_key(resent), resent.outcome, resent.result) == (("t1", 0, 1), "ok", 42)
        await master.send(Ack(task_id="t1", index=0, attempt=1))
        await master.until(lambda: agent.unacked() == [])

    scenario(test)


def test_running_attempts_survive_a_reconnect_when_kept() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("sleep", 0.5))
        await master.next(ProgressFrame)
        await master.drop()
        second_hello = await master.next(Hello, after=1)
        assert [_key(r) for r in second_hello.running] == [("t1", 0, 1)]
        result = await master.next(ResultFrame)
        assert result.outcome == "ok"

    scenario(test)


def test_running_attempts_not_kept_are_stopped_without_a_report() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(assign("sleep", 30.0))
        await master.next(ProgressFrame)
        master.keep = lambda hello: []
        await master.drop()
        await master.next(Hello, after=1)
        await master.until(lambda: agent.pool.running() == [] and agent.held() == [])
        await master.send(assign("noop", 1, attempt=2))
        await master.next(ResultFrame, where=lambda f: f.attempt == 2)
        assert master.results(("t1", 0, 1)) == []

    scenario(test)


def test_a_malformed_frame_costs_a_reconnect_only() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        await master.next(Hello)
        await master.send(b"\x93not a map")
        await master.next(Hello, after=1)
        await master.send(assign("noop", "still here"))
        assert (await master.next(ResultFrame)).result == "still here"
        assert not task.done()

    scenario(test)


def test_drain_releases_running_and_new_work_then_exits_0() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        master.auto_ack = True
        await master.next(Hello)
        await master.send(assign("sleep", 30.0, attempt=1))
        await master.next(ProgressFrame)
        agent.stop()
        await master.next(Drain)
        await master.send(assign("noop", attempt=2))
        late = await master.next(ResultFrame, where=lambda f: f.attempt == 2)
        assert late.outcome == "released"
        released = await master.next(ResultFrame, where=lambda f: f.attempt == 1)
        assert released.outcome == "released"
        assert await asyncio.wait_for(task, 5.0) == 0

    scenario(test, drain_timeout=0.2)


def test_drain_lets_running_attempts_finish_within_the_timeout() -> None:
    async def test(master: FakeMaster, agent: Agent, task: asyncio.Task[int]) -> None:
        master.auto_ack = True
        await master.next(Hello)
        await master.send(assign("sleep", 0.3))
        await master.next(ProgressFrame)
        agent.stop()
        result = await master.next(ResultFrame)
        assert result.outcome == "ok"
        assert await asyncio.wait_for(task, 5.0) == 0

    scenario(test)


def test_keeps_trying_until_the_master_is_there() -> None:
    async def main() -> None:
        port = free_port()
        agent = Agent(settings(port), REGISTRY)
        task = asyncio.create_task(agent.run())
        master = FakeMaster()
        try:
            await master.until(lambda: agent.failed_connects >= 2)
            async with serve(master.handler, "127.0.0.1", port):
                hello = await master.next(Hello)
                assert hello.name == "w-test"
                await master.until(lambda: agent.connected)
        finally:
            agent.abort()
            assert await asyncio.wait_for(task, 5.0) == 1

    asyncio.run(main())


def test_channel_url() -> None:
    assert channel_url("http://127.0.0.1:8700") == "ws://127.0.0.1:8700/api/v1/workers/connect"
    assert channel_url("https://h.example/herder/") == (
        "wss://h.example/herder/api/v1/workers/connect"
    )
    with pytest.raises(ValueError, match="master"):
        channel_url("127.0.0.1:8700")


def test_backoff_grows_with_jitter_between_its_bounds() -> None:
    low = Backoff(0.1, 1.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(6)] == [0.1, 0.1, 0.2, 0.4, 0.5, 0.5]
    high = Backoff(0.1, 1.0, rng=lambda: 1.0)
    assert [high.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    high.reset()
    assert high.next() == 0.1
