"""The slot pools on their own, without a master: running, failing, cancelling, killing,
abandoning, crashing, and the progress and log lines they hand back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from herder.errors import TaskTypeError
from herder.tasktype import Registry
from herder.worker.execute import AttemptKey, Finished, Job, Throttle, check_result
from herder.worker.procslot import ProcessSlotPool
from herder.worker.slots import (
    DEEP_QUEUE_PER_SLOT,
    QUICK_ATTEMPT,
    QUICK_STREAK,
    LazyCancelFlag,
    NoFreeSlot,
    PoolBase,
    ThreadSlotPool,
)

MODULES = ("tests.tasktypes",)
REGISTRY = Registry.from_modules(MODULES)

pytestmark = pytest.mark.timeout(10)


class Recorder:
    """A PoolListener that remembers everything, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.finished: dict[AttemptKey, Finished] = {}
        self.slot_free_calls = 0
        self._changed = asyncio.Event()

    def on_progress(
        self, key: AttemptKey, done: float, total: float | None, message: str | None
    ) -> None:
        self.events.append(("progress", key, done, total, message))
        self._changed.set()

    def on_log(self, key: AttemptKey, ts: float, level: str, message: str) -> None:
        self.events.append(("log", key, level, message))
        self._changed.set()

    def on_finished(self, finished: Finished) -> None:
        assert finished.key not in self.finished, "an attempt was reported twice"
        self.events.append(("finished", finished.key))
        self.finished[finished.key] = finished
        self._changed.set()

    def on_slot_free(self) -> None:
        self.slot_free_calls += 1
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("condition not reached in time")
            self._changed.clear()
            # Re-check now and then: a condition may also change without an event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.1))

    async def result(self, key: AttemptKey, timeout: float = 5.0) -> Finished:
        await self.until(lambda: key in self.finished, timeout)
        return self.finished[key]


def job(type_: str, part: Any = None, attempt: int = 1, timeout: float | None = None) -> Job:
    deadline = None if timeout is None else time.time() + timeout
    return Job("t1", 0, attempt, type_, part, deadline)


PoolFactory = Callable[[float], PoolBase]


def thread_pool(cancel_grace: float = 2.0) -> PoolBase:
    return ThreadSlotPool(REGISTRY, slots=1, cancel_grace=cancel_grace)


def process_pool(cancel_grace: float = 2.0) -> PoolBase:
    return ProcessSlotPool(MODULES, slots=1, cancel_grace=cancel_grace)


@pytest.fixture(params=["thread", "process"])
def make_pool(request: pytest.FixtureRequest) -> Iterator[PoolFactory]:
    yield thread_pool if request.param == "thread" else process_pool


def run(test: Callable[[PoolBase, Recorder], Coroutine[Any, Any, None]], pool: PoolBase) -> None:
    async def main() -> None:
        recorder = Recorder()
        await pool.open(recorder)
        try:
            await test(pool, recorder)
        finally:
            await pool.close(2.0)

    asyncio.run(main())


def test_runs_an_example(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        assert pool.free_slots == 1
        pool.start(job("primes", [0, 1000]))
        assert pool.free_slots == 0
        assert pool.running() == [("t1", 0, 1)]
        done = await rec.result(("t1", 0, 1))
        assert (done.outcome, done.result, done.error) == ("ok", 168, None)
        await rec.until(lambda: pool.free_slots == 1)
        assert pool.running() == []

    run(test, make_pool(2.0))


def test_exception_is_an_error_with_traceback(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("fail", 5, attempt=2))
        done = await rec.result(("t1", 0, 2))
        assert done.outcome == "error"
        assert done.error == "ValueError: boom attempt 2"
        assert done.traceback is not None and "boom" in done.traceback
        assert "Traceback" in done.traceback
        # The slot lives on.
        await rec.until(lambda: pool.free_slots == 1)
        pool.start(job("fail", 0, attempt=3))
        assert (await rec.result(("t1", 0, 3))).result == 3

    run(test, make_pool(2.0))


def test_result_that_is_not_json_is_an_error(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("badresult"))
        done = await rec.result(("t1", 0, 1))
        assert done.outcome == "error"
        assert done.error is not None and "cannot be sent as JSON" in done.error
        await rec.until(lambda: pool.free_slots == 1)
        pool.start(job("noop", {"a": [1, 2]}, attempt=2))
        assert (await rec.result(("t1", 0, 2))).result == {"a": [1, 2]}

    run(test, make_pool(2.0))


def test_cancel_stops_a_cooperative_task_quickly(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("sleep", 30.0))
        await rec.until(lambda: any(e[0] == "progress" for e in rec.events))
        started = time.monotonic()
        pool.cancel(("t1", 0, 1))
        done = await rec.result(("t1", 0, 1))
        assert done.outcome == "cancelled"
        assert done.error is None
        assert time.monotonic() - started < 1.0
        await rec.until(lambda: pool.free_slots == 1)

    run(test, make_pool(5.0))


def test_own_timeout_ends_as_timeout(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("sleep", 30.0, timeout=0.3))
        done = await rec.result(("t1", 0, 1), timeout=2.0)
        assert done.outcome == "timeout"
        # A cancel after the timeout does not change the report.
        pool.cancel(("t1", 0, 1))
        assert rec.finished[("t1", 0, 1)].outcome == "timeout"

    run(test, make_pool(5.0))


def test_progress_and_logs_reach_the_listener(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        key = ("t1", 0, 1)
        pool.start(job("logs", "p1"))
        assert (await rec.result(key)).result == "p1"
        logs = [(e[2], e[3]) for e in rec.events if e[0] == "log"]
        assert logs == [
            ("INFO", "starting part 'p1'"),
            ("WARNING", "halfway there"),
            ("INFO", "done"),
        ]
        progress = [e for e in rec.events if e[0] == "progress"]
        # Throttled, but the last report always arrives, and before the result.
        assert progress[0] == ("progress", key, 1.0, 3.0, "one")
        assert progress[-1] == ("progress", key, 3.0, 3.0, "three")
        assert rec.events[-1] == ("finished", key)

    run(test, make_pool(2.0))


def test_unknown_type_is_an_error(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("nosuchtype"))
        done = await rec.result(("t1", 0, 1))
        assert done.outcome == "error"
        assert done.error is not None and "unknown task type 'nosuchtype'" in done.error

    run(test, make_pool(2.0))


def test_no_more_than_it_accepts_at_once(make_pool: PoolFactory) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        # a thread pool also queues one attempt per slot, which starts when a slot is done
        queued = pool.slots if isinstance(pool, ThreadSlotPool) else 0
        assert pool.accepts == pool.slots + queued
        keys = [("t1", 0, a) for a in range(1, pool.accepts + 1)]
        for _, _, attempt in keys:
            pool.start(job("sleep", 30.0, attempt=attempt))
        assert pool.free_slots == 0 and pool.accepts == 0
        with pytest.raises(NoFreeSlot):
            pool.start(job("noop", attempt=99))
        with pytest.raises(ValueError, match="already running"):
            pool.start(job("sleep", 30.0))
        for key in keys:
            pool.cancel(key)
        for key in keys:
            assert (await rec.result(key)).outcome == "cancelled"

    run(test, make_pool(2.0))


def test_an_attempt_that_ends_while_another_has_ended_keeps_all_its_log_lines() -> None:
    # The loop is busy (blocked here) while attempt 1 ends at once and attempt 2, on the other
    # slot thread, logs three lines 50 ms apart and ends: the wake-up for attempt 1's end is
    # on its way before attempt 2's later lines. Every line must still reach the listener,
    # before attempt 2's report (once an attempt is reported, its lines are dropped).
    registry = Registry.from_modules((*MODULES, "tests.livetypes"))

    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("primes", [0, 10], attempt=1))
        pool.start(job("chatty", [0, 3, 0.05], attempt=2))
        time.sleep(0.5)  # the loop runs nothing meanwhile; both threads end
        assert (await rec.result(("t1", 0, 2))).result == 3
        lines = [e[3] for e in rec.events if e[0] == "log" and e[1] == ("t1", 0, 2)]
        assert lines == ["part 0 line 0", "part 0 line 1", "part 0 line 2"]
        mine = [e[0] for e in rec.events if e[1] == ("t1", 0, 2)]
        assert mine[-1] == "finished"

    run(test, ThreadSlotPool(registry, slots=2, cancel_grace=5.0))


def test_a_queued_attempt_starts_when_the_slot_is_done_and_one_cancelled_never_runs() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("sleep", 0.2, attempt=1))
        pool.start(job("primes", [0, 1000], attempt=2))  # waits in the queue
        assert (await rec.result(("t1", 0, 2))).result == 168
        assert (await rec.result(("t1", 0, 1))).outcome == "ok"
        pool.start(job("sleep", 0.2, attempt=3))
        pool.start(job("sleep", 30.0, attempt=4))
        pool.cancel(("t1", 0, 4))  # before its turn: reported without running
        done = await rec.result(("t1", 0, 4))
        assert done.outcome == "cancelled" and done.duration < 1.0
        await rec.until(lambda: pool.accepts == 2)

    run(test, ThreadSlotPool(REGISTRY, slots=1, cancel_grace=5.0))


def test_an_attempt_waiting_for_a_slot_thread_is_handed_back_and_never_runs() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        assert pool.busy_for() == 0.0  # a slot is free
        pool.start(job("stubborn", 0.5, attempt=1))
        pool.start(job("primes", [0, 1000], attempt=2))  # waits behind it
        await rec.until(lambda: any(e[0] == "progress" for e in rec.events))  # 1 runs
        assert list(pool.waiting()) == [("t1", 0, 2)]
        await rec.until(lambda: pool.busy_for() >= 0.1)  # how long the slot has run attempt 1
        assert pool.busy_for() < 0.5
        assert pool.release_waiting(("t1", 0, 2), "taken back")
        handed = await rec.result(("t1", 0, 2))
        assert (handed.outcome, handed.error, handed.result) == ("released", "taken back", None)
        assert pool.accepts == 1 and not pool.waiting()  # its place is free at once
        # the one that runs goes on: asking for it does nothing
        assert not pool.release_waiting(("t1", 0, 1), "taken back")
        assert not pool.release_waiting(("t1", 0, 99), "taken back")  # unknown
        assert (await rec.result(("t1", 0, 1))).outcome == "ok"
        # the thread skipped the one handed back: the next one runs, and nothing twice
        pool.start(job("primes", [0, 100], attempt=3))
        assert (await rec.result(("t1", 0, 3))).result == 25
        assert [e[1] for e in rec.events if e[0] == "finished"] == [
            ("t1", 0, 2), ("t1", 0, 1), ("t1", 0, 3)
        ]

    run(test, ThreadSlotPool(REGISTRY, slots=1, cancel_grace=5.0))


def test_process_pool_has_nothing_waiting_to_hand_back() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("sleep", 0.3, attempt=1))
        assert not pool.waiting()
        assert not pool.release_waiting(("t1", 0, 1), "taken back")
        await rec.until(lambda: pool.busy_for() >= 0.1)
        assert (await rec.result(("t1", 0, 1))).outcome == "ok"
        assert pool.busy_for() == 0.0

    run(test, process_pool())


def test_after_a_row_of_quick_attempts_more_wait_per_slot_until_a_slow_one() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        assert pool.accepts == 2  # one slot, one waiting
        for attempt in range(1, QUICK_STREAK + 1):
            pool.start(job("noop", attempt, attempt=attempt))
            await rec.result(("t1", 0, attempt))
        await rec.until(lambda: pool.accepts == 1 + DEEP_QUEUE_PER_SLOT)
        # a row of them queued at once: each runs and is reported once, in order, even though
        # the loop takes the results of many at a time
        keys = [("t1", 0, a) for a in range(100, 100 + pool.accepts)]
        for _, _, attempt in keys:
            pool.start(job("noop", attempt, attempt=attempt))
        assert pool.accepts == 0
        for key in keys:
            assert (await rec.result(key)).result == key[2]
        assert [e[1] for e in rec.events if e[0] == "finished"][-len(keys) :] == keys
        # one slow attempt: back to one waiting attempt per slot
        pool.start(job("sleep", QUICK_ATTEMPT * 5, attempt=500))
        assert (await rec.result(("t1", 0, 500))).outcome == "ok"
        await rec.until(lambda: pool.accepts == 2)

    run(test, ThreadSlotPool(REGISTRY, slots=1, cancel_grace=5.0))


def test_process_pool_kills_a_stubborn_task_and_respawns() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        key = ("t1", 0, 1)
        pool.start(job("stubborn", 60.0))
        started = time.monotonic()
        pool.cancel(key)
        done = await rec.result(key, timeout=2.0)
        assert done.outcome == "cancelled"
        assert done.error is not None and "killed" in done.error
        assert time.monotonic() - started < 1.5
        await rec.until(lambda: pool.free_slots == 1)
        pool.start(job("primes", [0, 1000], attempt=2))
        assert (await rec.result(("t1", 0, 2))).result == 168

    run(test, process_pool(0.3))


def test_process_pool_kills_a_stubborn_task_at_its_timeout() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("stubborn", 60.0, timeout=0.2))
        done = await rec.result(("t1", 0, 1), timeout=2.0)
        assert done.outcome == "timeout"
        assert done.error is not None and "killed" in done.error

    run(test, process_pool(0.3))


def test_process_child_crash_is_an_error_and_respawns() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("crash"))
        done = await rec.result(("t1", 0, 1))
        assert done.outcome == "error"
        assert done.error == "worker process died (exit code 3)"
        await rec.until(lambda: pool.free_slots == 1)
        pool.start(job("noop", 7, attempt=2))
        assert (await rec.result(("t1", 0, 2))).result == 7

    run(test, process_pool(2.0))


def test_thread_pool_abandons_a_stubborn_task_but_keeps_its_slot() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        assert isinstance(pool, ThreadSlotPool)
        key = ("t1", 0, 1)
        pool.start(job("stubborn", 1.0))
        await rec.until(lambda: any(e[0] == "progress" for e in rec.events))  # it runs
        pool.cancel(key)
        done = await rec.result(key, timeout=1.0)
        assert done.outcome == "cancelled"
        assert done.error == "abandoned: still running after cancel grace"
        # Reported, no longer listed as running, but its thread still holds the slot.
        assert pool.running() == []
        assert pool.free_slots == 0
        assert pool.abandoned == 1
        await rec.until(lambda: pool.free_slots == 1, timeout=2.0)
        assert pool.abandoned == 0
        # Its late "done" was not reported a second time.
        assert rec.finished[key].outcome == "cancelled"

    run(test, thread_pool(0.2))


def test_thread_pool_runs_slots_attempts_at_once() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        keys = [("t1", 0, n) for n in (1, 2, 3)]
        for key in keys:
            pool.start(Job(*key, "sleep", 0.2))
        assert pool.free_slots == 0
        assert sorted(pool.running()) == keys
        for key in keys:
            assert (await rec.result(key)).outcome == "ok"

    run(test, ThreadSlotPool(REGISTRY, slots=3, cancel_grace=1.0))


def test_throttle_keeps_one_report_per_interval_and_the_last() -> None:
    throttle = Throttle(interval=0.05)
    assert throttle.offer(10.0, (1.0, None, None)) == (1.0, None, None)
    assert throttle.offer(10.01, (2.0, None, None)) is None
    assert throttle.offer(10.02, (3.0, None, None)) is None
    assert throttle.offer(10.06, (4.0, None, None)) == (4.0, None, None)
    assert throttle.flush() is None
    assert throttle.offer(10.07, (5.0, None, None)) is None
    assert throttle.flush() == (5.0, None, None)
    assert throttle.flush() is None


def test_check_result_normalises_json_and_refuses_the_rest() -> None:
    assert check_result({"a": (1, 2), 3: "x"}) == ("ok", {"a": [1, 2], "3": "x"}, None)
    outcome, value, problem = check_result({"a": object()})
    assert outcome == "error" and value is None
    assert problem is not None and "dict cannot be sent as JSON" in problem
    outcome, value, problem = check_result("x" * (17 * 1024 * 1024))
    assert outcome == "too_large" and value is None
    assert problem is not None and problem.startswith("ResultTooLarge:")
    # plain values skip the conversion and the size check, and go as they are
    for plain in (None, True, 7, -(2**63), 2**64 - 1, 2.5, "", "ok", "h\u00e9llo"):
        assert check_result(plain) == ("ok", plain, None)
    # and what MessagePack cannot carry is still refused, not sent to fail in the frame
    for unpackable in (2**64, -(2**63) - 1, "\ud800"):
        outcome, value, problem = check_result(unpackable)
        assert outcome == "error" and value is None
        assert problem is not None and "cannot be sent" in problem
    outcome, value, problem = check_result("\U0001f600" * (5 * 1024 * 1024))  # 20 MiB UTF-8
    assert outcome == "too_large" and problem is not None and "over the limit" in problem


def test_lazy_cancel_flag_wakes_a_waiter_set_before_or_while_it_waits() -> None:
    flag = LazyCancelFlag()
    assert not flag.is_set()
    assert flag.wait(0.01) is False  # times out, unset
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(flag.wait(10)))
    waiter.start()
    deadline = time.monotonic() + 5
    while flag._event is None and time.monotonic() < deadline:  # the waiter made its Event
        time.sleep(0.001)
    flag.set()
    waiter.join(5)
    assert woke == [True] and flag.is_set()
    early = LazyCancelFlag()
    early.set()
    assert early.wait(10) is True  # set before anyone waited: no Event, no wait
    assert early._event is None


def test_process_pool_refuses_to_start_when_children_cannot_load_the_tasks() -> None:
    async def main() -> None:
        pool = ProcessSlotPool(("tests.no_such_module",), slots=1, cancel_grace=1.0)
        with pytest.raises(TaskTypeError, match=r"tests\.no_such_module"):
            await pool.open(Recorder())
        assert pool.free_slots == 0

    asyncio.run(main())
