"""The scheduler core under faults: leases across reconnects, held subtasks after a restart,
stragglers, worker health, and slots taken by abandoned attempts. Pure: no I/O, time passed in."""

from __future__ import annotations

from herder.scheduling import (
    AttemptEnded,
    AttemptFailed,
    AttemptSucceeded,
    CancelAttempt,
    CompleteTask,
    Dispatch,
    ReleaseHeld,
    Requeue,
    Scheduler,
    SchedulerConfig,
    Stale,
    TaskReady,
    WorkerCapacity,
    WorkerDisconnected,
    WorkerJoined,
    WorkerLeft,
    WorkerReconnected,
)


def make() -> Scheduler:
    return Scheduler(SchedulerConfig(retry_backoff=0.0, retry_jitter=0.0), seed=1)


def join(s: Scheduler, worker_id: str, slots: int = 1) -> None:
    s.handle(WorkerJoined(worker_id, slots, frozenset({"t"}), uid=worker_id), 0.0)


def ready(s: Scheduler, task_id: str, n: int, now: float = 0.0, **kw: object) -> None:
    s.handle(TaskReady(task_id, "t", 0, list(range(n)), **kw), now)  # type: ignore[arg-type]


def test_a_disconnected_worker_keeps_its_attempts_but_gets_no_new_work() -> None:
    s = make()
    join(s, "w1", slots=2)
    ready(s, "a", 3)
    first = s.dispatch(1.0)
    assert len(first) == 2
    s.handle(WorkerDisconnected("w1"), 2.0)
    assert s.dispatch(2.0) == []  # no credit while disconnected
    assert all(s.is_current(d.task_id, d.index, d.attempt) for d in first)  # still leased
    s.handle(WorkerReconnected("w1"), 3.0)
    d = first[0]
    assert s.handle(AttemptSucceeded(d.task_id, d.index, d.attempt), 3.0) == []
    assert [x.index for x in s.dispatch(3.0)] == [2]


def test_a_lost_worker_s_attempts_run_again_with_a_higher_attempt_number() -> None:
    s = make()
    join(s, "w1")
    join(s, "w2")
    ready(s, "a", 2)
    d1, d2 = s.dispatch(0.0)
    out = s.handle(WorkerLeft(d1.worker_id), 1.0)
    assert out == [Requeue("a", d1.index, 1, d1.worker_id, "worker lost")]
    # the late result of the lost attempt is stale; the subtask runs again as attempt 2
    assert s.handle(AttemptSucceeded("a", d1.index, 1), 1.0) == [Stale("a", d1.index, 1)]
    s.handle(AttemptSucceeded("a", d2.index, 1), 1.0)
    (again,) = s.dispatch(1.0)
    assert (again.index, again.attempt, again.worker_id) == (d1.index, 2, d2.worker_id)


def test_held_subtasks_wait_to_be_claimed_then_are_queued() -> None:
    s = make()
    join(s, "w1", slots=4)
    # after a restart: subtask 0 done (not listed), 1 and 2 were running (held), 3 was queued
    ready(s, "a", 0)  # an empty task completes at once
    s.handle(
        TaskReady("b", "t", 0, [1, 2, 3], attempts_made={1: 1, 2: 2}, held={1: "w1", 2: "w1"}),
        0.0,
    )
    assert [(d.index, d.attempt) for d in s.dispatch(0.0)] == [(3, 1)]
    # the worker that ran subtask 1 (attempt 1) claims it back; an old attempt of 2 is refused
    assert s.adopt("w1", "b", 1, 1, now=0.5)
    assert not s.adopt("w1", "b", 2, 1, now=0.5)
    assert s.dispatch(0.5) == []
    s.handle(ReleaseHeld("b"), 5.0)
    (rerun,) = s.dispatch(5.0)
    assert (rerun.index, rerun.attempt) == (2, 3)  # numbers keep growing across the restart


def test_a_result_held_by_a_worker_across_a_restart_completes_the_task() -> None:
    s = make()
    join(s, "w1")
    s.handle(TaskReady("b", "t", 0, [0], attempts_made={0: 1}, held={0: "w1"}), 0.0)
    assert s.adopt("w1", "b", 0, 1, now=0.1)
    assert s.handle(AttemptSucceeded("b", 0, 1), 0.2) == [CompleteTask("b")]
    assert s.handle(ReleaseHeld("b"), 5.0) == []
    assert s.dispatch(5.0) == []


def test_a_straggler_gets_a_second_attempt_elsewhere_and_the_first_result_wins() -> None:
    s = make()
    join(s, "w1", slots=2)
    join(s, "w2", slots=2)
    ready(s, "a", 4)
    ds = s.dispatch(0.0)
    slow = next(d for d in ds if d.index == 0)
    for d in ds:
        if d.index != 0:
            s.handle(AttemptSucceeded("a", d.index, d.attempt), 1.0)  # siblings: 1 s each
    assert s.speculate(2.5, factor=3.0, after=None, floor=2.0) == []  # 2.5 s < 3 x median
    (spec,) = s.speculate(3.5, factor=3.0, after=None, floor=2.0)
    assert (spec.index, spec.attempt) == (0, 2) and spec.worker_id != slow.worker_id
    assert s.speculate(10.0, factor=3.0, after=None, floor=2.0) == []  # only one extra
    out = s.handle(AttemptSucceeded("a", 0, 2), 4.0)
    assert CancelAttempt(slow.worker_id, "a", 0, 1, "another attempt won") in out
    assert CompleteTask("a") in out
    assert s.handle(AttemptSucceeded("a", 0, 1), 4.5) == [Stale("a", 0, 1)]  # loser's late result
    assert s.worker_load(slow.worker_id)[0] == 0


def test_no_speculation_for_types_that_opt_out_or_without_idle_slots() -> None:
    s = make()
    join(s, "w1")
    join(s, "w2")
    ready(s, "a", 1, speculative=False)
    s.dispatch(0.0)
    assert s.speculate(100.0, factor=None, after=5.0, floor=2.0) == []
    s2 = make()
    join(s2, "w1")
    join(s2, "w2")
    ready(s2, "b", 3)
    s2.dispatch(0.0)  # both slots busy, one subtask queued
    assert s2.speculate(100.0, factor=None, after=5.0, floor=2.0) == []


def _train(s: Scheduler) -> None:
    """Run a warm-up task where every attempt on "bad" fails and every one on "good" succeeds."""
    ready(s, "warmup", 30, max_retries=100)
    for step in range(40):
        for d in s.dispatch(float(step)):
            event = AttemptFailed if d.worker_id == "bad" else AttemptSucceeded
            s.handle(event(d.task_id, d.index, d.attempt), float(step))


def test_a_worker_that_fails_everything_is_deprioritised() -> None:
    s = make()
    join(s, "bad")  # joined first: without its record it would be chosen first
    join(s, "good")
    _train(s)
    rate, deprioritised = s.worker_health("bad")
    assert rate is not None and rate >= 0.8 and deprioritised
    assert s.worker_health("good") == (0.0, False)
    ready(s, "next", 1)
    (d,) = s.dispatch(100.0)
    assert d.worker_id == "good"


def test_a_deprioritised_worker_is_not_starved() -> None:
    s = make()
    join(s, "bad")
    join(s, "good")
    _train(s)
    ready(s, "next", 2)
    assert {d.worker_id for d in s.dispatch(100.0)} == {"good", "bad"}


def test_a_rejoined_worker_starts_with_a_clean_record() -> None:
    s = make()
    join(s, "bad")
    join(s, "good")
    _train(s)
    s.handle(WorkerLeft("bad"), 100.0)
    join(s, "bad")
    assert s.worker_health("bad") == (None, False)


def test_slots_taken_by_abandoned_attempts_are_not_free() -> None:
    s = make()
    join(s, "w1", slots=2)
    ready(s, "a", 4)
    ds = s.dispatch(0.0)
    assert len(ds) == 2
    # one cancelled attempt was abandoned: reported (so no longer held), but its thread runs on
    s.handle(AttemptEnded("a", ds[0].index, ds[0].attempt), 1.0)
    s.handle(WorkerCapacity("w1", 1), 1.0)
    assert s.dispatch(1.0) == []  # 2 slots = 1 held + 1 abandoned
    s.handle(WorkerCapacity("w1", 0), 2.0)  # the thread ended at last
    (again,) = s.dispatch(2.0)
    assert (again.index, again.attempt) == (ds[0].index, 2)


def test_dispatch_reports_how_long_a_subtask_waited() -> None:
    s = make()
    ready(s, "a", 1, now=10.0)
    join(s, "w1")
    (d,) = s.dispatch(12.5)
    assert isinstance(d, Dispatch) and d.waited == 2.5
