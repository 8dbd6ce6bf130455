"""The scheduler core by example: feed events with `handle`, ask for `dispatch`, check decisions.

No I/O, no clock: time is a number passed in. Imports herder.scheduling and pytest only.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from herder.scheduling import (
    OVERRUN_FACTOR,
    PIPELINE_DEPTH,
    AttemptEnded,
    AttemptFailed,
    AttemptSucceeded,
    CancelAttempt,
    CompleteTask,
    Dispatch,
    FailTask,
    Requeue,
    RetryLater,
    Scheduler,
    SchedulerConfig,
    Stale,
    TaskEnded,
    TaskReady,
    WorkerDraining,
    WorkerJoined,
    WorkerLeft,
    handle_all,
)

# a jitter of 0 makes every backoff exact, so retry times can be asserted to the digit
EXACT = SchedulerConfig(retry_backoff=1.0, retry_backoff_max=8.0, retry_jitter=0.0)


def make(config: SchedulerConfig = EXACT) -> Scheduler:
    return Scheduler(config, seed=1)


def join(
    s: Scheduler,
    worker_id: str,
    slots: int = 1,
    types: Iterable[str] = ("t",),
    labels: Iterable[str] = (),
) -> None:
    joined = WorkerJoined(worker_id, slots, frozenset(types), frozenset(labels), uid=worker_id)
    assert s.handle(joined, 0.0) == []


def submit(
    s: Scheduler,
    task_id: str,
    n: int,
    priority: int = 0,
    type_: str = "t",
    max_retries: int = 3,
    labels: Iterable[str] = (),
) -> None:
    ev = TaskReady(task_id, type_, priority, list(range(n)), max_retries, frozenset(labels))
    assert s.handle(ev, 0.0) == []


def keys(ds: Iterable[Dispatch]) -> list[tuple[str, int]]:
    """(task, index) of each dispatch, in order."""
    return [(d.task_id, d.index) for d in ds]


def succeed(s: Scheduler, d: Dispatch, now: float = 0.0) -> list[object]:
    return list(s.handle(AttemptSucceeded(d.task_id, d.index, d.attempt), now))


def fail(s: Scheduler, d: Dispatch, now: float = 0.0) -> list[object]:
    return list(s.handle(AttemptFailed(d.task_id, d.index, d.attempt), now))


def one(ds: list[Dispatch]) -> Dispatch:
    assert len(ds) == 1, ds
    return ds[0]


# -- credit and worker choice -------------------------------------------------------------------


def test_nothing_is_dispatched_without_a_worker() -> None:
    s = make()
    submit(s, "a", 3)
    assert s.dispatch(0.0) == []
    assert s.queue_depth() == {0: 3}
    join(s, "w1", slots=2)
    assert keys(s.dispatch(0.0)) == [("a", 0), ("a", 1)]


def test_dispatch_stops_when_credit_is_used_and_resumes_when_freed() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 5)
    first = s.dispatch(0.0)
    assert [(d.worker_id, d.index, d.attempt) for d in first] == [("w1", 0, 1), ("w1", 1, 1)]
    assert s.worker_load("w1") == (2, 2)
    assert s.dispatch(0.0) == []  # no credit left
    assert succeed(s, first[0]) == []
    assert keys(s.dispatch(0.0)) == [("a", 2)]
    assert s.task_counts("a") == (2, 2)


def test_limit_caps_one_dispatch_round() -> None:
    s = make()
    join(s, "w1", slots=4)
    submit(s, "a", 4)
    assert len(s.dispatch(0.0, limit=1)) == 1
    assert len(s.dispatch(0.0, limit=2)) == 2
    assert len(s.dispatch(0.0)) == 1


def test_prefetch_lets_a_worker_hold_slots_plus_prefetch() -> None:
    s = make(SchedulerConfig(prefetch=2))
    join(s, "w1", slots=1)
    submit(s, "a", 10)
    assert len(s.dispatch(0.0)) == 3
    assert s.worker_load("w1") == (3, 1)
    assert s.dispatch(0.0) == []


PIPELINED = SchedulerConfig(pipeline_below=0.05)


def run_for(s: Scheduler, d: Dispatch, seconds: float, now: float = 0.0) -> list[object]:
    return list(s.handle(AttemptSucceeded(d.task_id, d.index, d.attempt, seconds), now))


def test_short_types_are_pipelined_as_deep_as_the_window_allows() -> None:
    s = make(PIPELINED)
    join(s, "w1", slots=2)
    submit(s, "a", 40)
    first = s.dispatch(0.0)
    assert len(first) == 2  # nothing is known of the type yet: no pipelining
    for d in first:
        run_for(s, d, 0.02)
    assert not s.is_short("t")  # two run times are not enough to call it short
    second = s.dispatch(0.0)
    run_for(s, second[0], 0.02)
    assert s.is_short("t")
    assert s.pipeline_depth("t") == 2  # 50 ms of 20 ms attempts waiting per slot
    # the other attempt was dispatched before the type was known to be short: nothing is
    # pipelined behind it, the free slot is filled as usual
    assert len(s.dispatch(0.0)) == 1
    run_for(s, second[1], 0.02)
    # now the worker may hold 2 slots + 2 x 2 pipelined
    assert len(s.dispatch(0.0)) == 5
    assert s.worker_load("w1") == (6, 2)
    assert s.dispatch(0.0) == []


def test_pipelining_depth_is_capped() -> None:
    s = make(PIPELINED)
    join(s, "w1", slots=1)
    submit(s, "a", 100)
    for _ in range(3):
        run_for(s, one(s.dispatch(0.0)), 0.00001)
    assert s.pipeline_depth("t") == PIPELINE_DEPTH
    assert len(s.dispatch(0.0)) == 1 + PIPELINE_DEPTH


def test_a_vanishing_average_run_time_is_capped_too() -> None:
    # a moving average of 0 s run times after a longer one shrinks towards the smallest float;
    # the window divided by it is infinite, which int() refuses
    s = make(PIPELINED)
    join(s, "w1", slots=1)
    submit(s, "a", 100)
    for _ in range(3):
        run_for(s, one(s.dispatch(0.0)), 1e-320)
    assert s.pipeline_depth("t") == PIPELINE_DEPTH
    assert len(s.dispatch(0.0)) == 1 + PIPELINE_DEPTH


def test_a_type_that_runs_long_is_not_pipelined() -> None:
    s = make(PIPELINED)
    join(s, "w1", slots=1)
    submit(s, "a", 10)
    for _ in range(5):
        run_for(s, one(s.dispatch(0.0)), 0.2)
    assert not s.is_short("t")
    assert len(s.dispatch(0.0)) == 1
    assert s.dispatch(0.0) == []


def test_nothing_waits_behind_an_attempt_of_a_long_type() -> None:
    s = make(PIPELINED)
    join(s, "w1", slots=1, types=("t", "slow"))
    submit(s, "short", 10)
    for _ in range(3):
        run_for(s, one(s.dispatch(0.0)), 0.001)
    submit(s, "long", 2, priority=5, type_="slow")
    running = one(s.dispatch(0.0))
    assert running.task_id == "long"  # a type not yet known to be short holds its slot alone
    assert s.dispatch(0.0) == []
    run_for(s, running, 1.0)
    assert keys(s.dispatch(0.0)) == [("long", 1)]


def test_pipelining_is_off_at_zero() -> None:
    s = make(SchedulerConfig(pipeline_below=0.0))
    join(s, "w1", slots=1)
    submit(s, "a", 10)
    for _ in range(5):
        run_for(s, one(s.dispatch(0.0)), 0.0001)
    assert not s.is_short("t")
    assert len(s.dispatch(0.0)) == 1


def _pipelined_on(s: Scheduler, worker: str, at: float) -> list[Dispatch]:
    """Make `t` short (3 quick attempts on `worker`, the only worker so far), then dispatch a
    task of 40 at `at`: one runs, the rest are sent ahead to wait behind it."""
    submit(s, "warm", 3)
    while not s.is_short("t"):
        for d in s.dispatch(0.0):
            run_for(s, d, 0.0001)
    submit(s, "a", 40)
    sent = s.dispatch(at)
    assert len(sent) == 1 + s.config.prefetch + PIPELINE_DEPTH
    assert {d.worker_id for d in sent} == {worker}
    return sent


def test_a_worker_that_hands_back_what_waits_behind_an_overrun_gets_only_its_slots() -> None:
    s = make(SchedulerConfig(pipeline_below=0.05, prefetch=1))
    join(s, "w1", slots=1)
    sent = _pipelined_on(s, "w1", at=10.0)
    # every slot of w1 ran its attempt too long: it hands back the others, which are queued
    # again, first in line
    for d in sent[1:]:
        ended = AttemptEnded(d.task_id, d.index, d.attempt, handed_back=True)
        assert [type(x) for x in s.handle(ended, 10.5)] == [Requeue]
    assert s.worker_load("w1") == (1, 1)
    assert not s.is_short("t")  # the one still running counts as a run time of 0.5 s
    # nothing more than its slot: no pipelining, no prefetch, while that one runs
    assert s.dispatch(10.5) == []
    join(s, "w2", slots=1)
    # w2 gets new attempts of those handed back: its slot and its prefetch, no pipelining
    again = s.dispatch(10.5)
    assert [d.worker_id for d in again] == ["w2", "w2"]
    assert {d.index for d in again} <= {d.index for d in sent[1:]}
    assert {d.attempt for d in again} == {2}
    # once the long one ends, w1 has its slot and its prefetch again
    run_for(s, sent[0], 0.5, now=11.0)
    assert [d.worker_id for d in s.dispatch(11.0)] == ["w1", "w1"]


def test_attempts_handed_back_by_a_draining_worker_change_no_run_time() -> None:
    s = make(PIPELINED)
    join(s, "w1", slots=1)
    sent = _pipelined_on(s, "w1", at=10.0)
    assert s.handle(WorkerDraining("w1"), 10.5) == []
    for d in sent[1:]:
        s.handle(AttemptEnded(d.task_id, d.index, d.attempt, handed_back=True), 10.5)
    assert s.is_short("t")


def test_the_hand_back_limit_follows_the_pipelining_window() -> None:
    assert SchedulerConfig(pipeline_below=0.05).hand_back_after == OVERRUN_FACTOR * 0.05
    # without pipelining what waits is what --prefetch asked for: never handed back
    assert SchedulerConfig(pipeline_below=0.0, prefetch=2).hand_back_after is None


def test_speculation_never_uses_pipeline_credit() -> None:
    s = make(PIPELINED)
    join(s, "w1", slots=1)
    join(s, "w2", slots=1)
    submit(s, "a", 10)
    for d in s.dispatch(0.0):
        run_for(s, d, 0.02)
    run_for(s, s.dispatch(0.0)[0], 0.02)
    assert s.is_short("t")
    # w1 is free: 1 slot + 2 pipelined (20 ms attempts, a 50 ms window); w2 holds an attempt
    # dispatched before the type was known to be short, so nothing waits behind it
    assert [d.worker_id for d in s.dispatch(0.0)] == ["w1", "w1", "w1"]
    # every slot is taken: no second attempt however long the first ones run
    assert s.speculate(100.0, factor=None, after=1.0, floor=0.0) == []


def test_least_loaded_worker_is_chosen_relative_to_its_slots() -> None:
    s = make()
    join(s, "big", slots=4)
    join(s, "small", slots=1)
    submit(s, "a", 5)
    # loads (held/slots): tie at 0 -> the earlier worker; then small (0) < big (1/4);
    # then small is full, big takes the rest
    assert [d.worker_id for d in s.dispatch(0.0)] == ["big", "small", "big", "big", "big"]


def test_idle_worker_is_preferred_over_busy_one() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 1)
    assert one(s.dispatch(0.0)).worker_id == "w1"
    join(s, "w2", slots=2)
    submit(s, "b", 1)
    assert one(s.dispatch(0.0)).worker_id == "w2"


def test_worker_only_gets_the_types_it_registered() -> None:
    s = make()
    join(s, "wa", slots=5, types={"a"})
    join(s, "wb", slots=5, types={"b"})
    submit(s, "ta", 2, type_="a")
    submit(s, "tb", 2, type_="b")
    submit(s, "tc", 2, type_="c")
    ds = s.dispatch(0.0)
    assert sorted((d.task_id, d.worker_id) for d in ds) == [
        ("ta", "wa"),
        ("ta", "wa"),
        ("tb", "wb"),
        ("tb", "wb"),
    ]
    assert s.queue_depth() == {0: 2}  # type c waits for a worker that knows it
    join(s, "wc", types={"c"})
    assert [(d.task_id, d.worker_id) for d in s.dispatch(0.0)] == [("tc", "wc")]


def test_subtasks_go_only_to_workers_whose_labels_match() -> None:
    s = make()
    join(s, "plain", slots=5)
    join(s, "gpu", slots=1, labels={"gpu", "big-mem"})
    submit(s, "a", 3, labels={"gpu"})
    ds = s.dispatch(0.0)
    assert [d.worker_id for d in ds] == ["gpu"]
    assert s.task_counts("a") == (1, 2)
    submit(s, "b", 1)  # no labels: any worker will do
    assert [d.worker_id for d in s.dispatch(0.0)] == ["plain"]


# -- order --------------------------------------------------------------------------------------


def test_strict_priority_between_tasks() -> None:
    s = make()
    join(s, "w1")
    submit(s, "low", 2, priority=0)
    submit(s, "high", 2, priority=5)
    submit(s, "mid", 1, priority=1)
    order: list[tuple[str, int]] = []
    for _ in range(5):
        d = one(s.dispatch(0.0))
        order.append((d.task_id, d.index))
        succeed(s, d)
    assert order == [("high", 0), ("high", 1), ("mid", 0), ("low", 0), ("low", 1)]


def test_higher_priority_arriving_later_goes_first_but_preempts_nothing() -> None:
    s = make()
    join(s, "w1")
    submit(s, "low", 3)
    running = one(s.dispatch(0.0))
    submit(s, "high", 1, priority=9)
    assert s.dispatch(0.0) == []  # the low subtask keeps its slot
    assert s.is_current("low", 0, running.attempt)
    succeed(s, running)
    assert keys(s.dispatch(0.0)) == [("high", 0)]


def test_priority_skips_a_task_no_worker_can_take() -> None:
    s = make()
    join(s, "w1", slots=2, types={"t"})
    submit(s, "exotic", 2, priority=9, type_="x")
    submit(s, "normal", 2, priority=0)
    assert keys(s.dispatch(0.0)) == [("normal", 0), ("normal", 1)]


def test_round_robin_between_equal_priorities_a_huge_task_does_not_starve_a_small_one() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "huge", 10_000)
    submit(s, "small", 2)
    first = s.dispatch(0.0)
    assert keys(first) == [("huge", 0), ("small", 0)]
    for d in first:
        succeed(s, d)
    second = s.dispatch(0.0)
    assert keys(second) == [("huge", 1), ("small", 1)]
    for d in second:
        assert succeed(s, d) == ([CompleteTask("small")] if d.task_id == "small" else [])
    assert keys(s.dispatch(0.0)) == [("huge", 2), ("huge", 3)]


def test_round_robin_cycles_through_three_tasks_in_arrival_order() -> None:
    s = make()
    join(s, "w1", slots=7)
    submit(s, "a", 3)
    submit(s, "b", 3)
    submit(s, "c", 1)
    assert [d.task_id for d in s.dispatch(0.0)] == ["a", "b", "c", "a", "b", "a", "b"]


def test_fifo_inside_a_task() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 5)
    seen = []
    for _ in range(5):
        d = one(s.dispatch(0.0))
        seen.append(d.index)
        succeed(s, d)
    assert seen == [0, 1, 2, 3, 4]


# -- results ------------------------------------------------------------------------------------


def test_complete_task_only_when_the_last_subtask_succeeds() -> None:
    s = make()
    join(s, "w1", slots=3)
    submit(s, "a", 3)
    d0, d1, d2 = s.dispatch(0.0)
    assert succeed(s, d2) == []
    assert succeed(s, d0) == []
    assert s.knows_task("a")
    assert succeed(s, d1) == [CompleteTask("a")]
    assert not s.knows_task("a")  # forgotten: nothing of it is held anywhere
    assert s.worker_load("w1") == (0, 3)


def test_a_task_without_subtasks_completes_at_once() -> None:
    s = make()
    assert s.handle(TaskReady("empty", "t", 0, []), 0.0) == [CompleteTask("empty")]
    assert not s.knows_task("empty")


def test_the_same_task_cannot_be_made_ready_twice() -> None:
    s = make()
    submit(s, "a", 1)
    with pytest.raises(ValueError):
        s.handle(TaskReady("a", "t", 0, [0]), 0.0)


def test_a_result_for_an_attempt_that_is_not_current_is_stale() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 2)
    d0, d1 = s.dispatch(0.0)
    assert s.handle(AttemptSucceeded("a", 0, d0.attempt + 1), 0.0) == [Stale("a", 0, 2)]
    assert s.handle(AttemptFailed("a", 0, 7), 0.0) == [Stale("a", 0, 7)]
    assert s.handle(AttemptEnded("a", 0, 7), 0.0) == [Stale("a", 0, 7)]
    assert s.handle(AttemptSucceeded("nope", 0, 1), 0.0) == [Stale("nope", 0, 1)]
    assert s.handle(AttemptSucceeded("a", 9, 1), 0.0) == [Stale("a", 9, 1)]
    assert s.worker_load("w1") == (2, 2)  # stale messages free no credit
    assert succeed(s, d0) == []
    assert succeed(s, d0) == [Stale("a", 0, d0.attempt)]  # a duplicate result
    assert fail(s, d0) == [Stale("a", 0, d0.attempt)]
    assert succeed(s, d1) == [CompleteTask("a")]
    assert succeed(s, d1) == [Stale("a", 1, d1.attempt)]  # after the task is gone


# -- failures and retries -----------------------------------------------------------------------


def test_failure_is_retried_after_backoff_not_before() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 1)
    d = one(s.dispatch(0.0))
    assert fail(s, d, now=10.0) == [RetryLater("a", 0, 1, 11.0)]
    assert s.next_wakeup() == 11.0
    assert s.task_counts("a") == (0, 1)
    assert s.dispatch(10.999) == []
    assert s.worker_load("w1") == (0, 1)  # idle, and still the subtask waits
    retry = one(s.dispatch(11.0))
    assert (retry.index, retry.attempt) == (0, 2)
    assert s.next_wakeup() is None
    # the backoff doubles per failure: 1, 2, 4 ... capped at retry_backoff_max
    assert fail(s, retry, now=20.0) == [RetryLater("a", 0, 2, 22.0)]


def test_backoff_is_capped_and_jittered_within_bounds() -> None:
    cfg = SchedulerConfig(retry_backoff=1.0, retry_backoff_max=4.0, retry_jitter=0.5)
    s = make(cfg)
    join(s, "w1")
    submit(s, "a", 1, max_retries=20)
    now = 0.0
    for failures in range(1, 10):
        d = one(s.dispatch(now))
        (retry,) = fail(s, d, now)
        assert isinstance(retry, RetryLater)
        base = min(4.0, 2.0 ** (failures - 1))
        assert base * 0.75 <= retry.at - now <= base * 1.25
        now = retry.at


def test_jitter_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[float]:
        s = Scheduler(SchedulerConfig(retry_jitter=1.0), seed=seed)
        join(s, "w1")
        submit(s, "a", 1, max_retries=5)
        out, now = [], 0.0
        for _ in range(4):
            (retry,) = fail(s, one(s.dispatch(now)), now)
            assert isinstance(retry, RetryLater)
            out.append(retry.at)
            now = retry.at
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_task_fails_after_max_retries() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 2, max_retries=2)
    now = 0.0
    for attempt in (1, 2):
        d = one(s.dispatch(now))
        assert (d.index, d.attempt) == (0, attempt)  # a retry goes ahead of index 1
        (retry,) = fail(s, d, now)
        assert isinstance(retry, RetryLater)
        now = retry.at
    d = one(s.dispatch(now))
    assert fail(s, d, now) == [FailTask("a", 0, 3, "w1")]
    assert s.next_wakeup() is None


def test_no_retries_means_the_first_failure_fails_the_task() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 1, max_retries=0)
    assert fail(s, one(s.dispatch(0.0))) == [FailTask("a", 0, 1, "w1")]


def test_failures_made_before_a_restart_count_against_max_retries() -> None:
    s = make()
    join(s, "w1")
    s.handle(TaskReady("a", "t", 0, [0], max_retries=2, failures_made={0: 2}), 0.0)
    assert fail(s, one(s.dispatch(0.0))) == [FailTask("a", 0, 1, "w1")]


def test_a_huge_retry_budget_does_not_overflow_the_backoff() -> None:
    s = make()
    join(s, "w1")
    ev = TaskReady("a", "t", 0, [0], max_retries=10_000, failures_made={0: 1100})
    s.handle(ev, 0.0)
    assert fail(s, one(s.dispatch(0.0)), now=5.0) == [RetryLater("a", 0, 1, 5.0 + 8.0)]


def test_a_retry_prefers_another_worker_even_a_busier_one() -> None:
    s = make()
    join(s, "w1", slots=2)
    join(s, "w2", slots=2)
    submit(s, "a", 1)
    submit(s, "b", 1)
    da, db = s.dispatch(0.0)
    assert (da.worker_id, db.worker_id) == ("w1", "w2")
    (retry,) = fail(s, da, 0.0)
    assert isinstance(retry, RetryLater)
    # w1 is idle now and w2 holds b, yet the retry goes to w2
    d = one(s.dispatch(retry.at))
    assert (d.task_id, d.worker_id, d.attempt) == ("a", "w2", 2)


def test_a_retry_falls_back_to_the_failing_worker_when_it_is_the_only_one() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 1)
    (retry,) = fail(s, one(s.dispatch(0.0)))
    assert isinstance(retry, RetryLater)
    assert one(s.dispatch(retry.at)).worker_id == "w1"


# -- workers coming and going -------------------------------------------------------------------


def test_worker_left_requeues_its_attempts_with_higher_attempt_numbers() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 3)
    d0, _d1 = s.dispatch(0.0)
    assert s.handle(WorkerLeft("w1"), 0.0) == [
        Requeue("a", 0, 1, "w1", "worker lost"),
        Requeue("a", 1, 1, "w1", "worker lost"),
    ]
    assert not s.has_worker("w1")
    assert s.held_by("w1") == []
    assert not s.is_current("a", 0, 1)
    join(s, "w2", slots=3)
    ds = s.dispatch(0.0)
    # the lost ones go ahead of the never-started index 2, with a new attempt number
    assert sorted((d.index, d.attempt) for d in ds[:2]) == [(0, 2), (1, 2)]
    assert (ds[2].index, ds[2].attempt) == (2, 1)
    assert {d.worker_id for d in ds} == {"w2"}
    # the lost worker's late result is fenced off
    assert succeed(s, d0) == [Stale("a", 0, 1)]
    assert s.worker_load("w2") == (3, 3)
    for d in ds[:-1]:
        assert succeed(s, d) == []
    assert succeed(s, ds[-1]) == [CompleteTask("a")]


def test_an_unknown_worker_leaving_is_ignored() -> None:
    s = make()
    assert s.handle(WorkerLeft("ghost"), 0.0) == []
    assert s.handle(WorkerDraining("ghost"), 0.0) == []


def test_rejoining_under_the_same_id_drops_the_old_session() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 1)
    d = one(s.dispatch(0.0))
    decisions = s.handle(WorkerJoined("w1", 1, frozenset({"t"})), 0.0)
    assert decisions == [Requeue("a", 0, 1, "w1", "worker lost")]
    again = one(s.dispatch(0.0))
    assert (again.worker_id, again.attempt) == ("w1", 2)
    assert succeed(s, d) == [Stale("a", 0, 1)]


def test_draining_worker_gets_nothing_new_but_may_finish_and_hand_back() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 4)
    d0, d1 = s.dispatch(0.0)
    assert s.handle(WorkerDraining("w1"), 0.0) == []
    assert succeed(s, d0) == []
    assert s.dispatch(0.0) == []  # w1 has a free slot, but drains
    join(s, "w2")
    d2 = one(s.dispatch(0.0))
    assert (d2.worker_id, d2.index) == ("w2", 2)
    # w1 hands its unfinished attempt back: the subtask is queued again
    assert s.handle(AttemptEnded("a", 1, d1.attempt), 0.0) == [
        Requeue("a", 1, d1.attempt, "w1", "handed back")
    ]
    assert s.worker_load("w1") == (0, 2)
    succeed(s, d2)
    d3 = one(s.dispatch(0.0))
    assert (d3.worker_id, d3.index, d3.attempt) == ("w2", 1, 2)


# -- ending a task ------------------------------------------------------------------------------


def test_task_ended_drops_queued_work_and_cancels_running_attempts() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 5)
    d0, d1 = s.dispatch(0.0)
    assert s.handle(TaskEnded("a", "cancelled"), 0.0) == [
        CancelAttempt("w1", "a", 0, d0.attempt, "cancelled"),
        CancelAttempt("w1", "a", 1, d1.attempt, "cancelled"),
    ]
    assert s.queue_depth() == {}
    assert s.handle(TaskEnded("a"), 0.0) == []  # ending twice does nothing
    # the credit stays taken until the worker answers for each cancelled attempt
    submit(s, "b", 3)
    assert s.worker_load("w1") == (2, 2)
    assert s.dispatch(0.0) == []
    assert s.handle(AttemptEnded("a", 0, d0.attempt), 0.0) == []
    assert keys(s.dispatch(0.0)) == [("b", 0)]
    assert s.knows_task("a")  # still one attempt out
    assert succeed(s, d1) == [Stale("a", 1, d1.attempt)]  # the result is not wanted
    assert not s.knows_task("a")
    assert keys(s.dispatch(0.0)) == [("b", 1)]


def test_a_failure_after_the_task_ended_frees_credit_and_retries_nothing() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 2)
    d = one(s.dispatch(0.0))
    s.handle(TaskEnded("a", "timed out"), 0.0)
    assert fail(s, d) == []
    assert s.next_wakeup() is None
    assert s.worker_load("w1") == (0, 1)
    assert not s.knows_task("a")


def test_a_delayed_retry_of_an_ended_task_is_dropped() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 1)
    (retry,) = fail(s, one(s.dispatch(0.0)))
    assert isinstance(retry, RetryLater)
    s.handle(TaskEnded("a"), 0.0)
    assert s.next_wakeup() is None
    assert s.dispatch(retry.at + 1) == []


def test_losing_a_worker_that_holds_cancelled_attempts_forgets_the_task() -> None:
    s = make()
    join(s, "w1")
    submit(s, "a", 1)
    one(s.dispatch(0.0))
    s.handle(TaskEnded("a"), 0.0)
    assert s.handle(WorkerLeft("w1"), 0.0) == []  # nothing to requeue for an ended task
    assert not s.knows_task("a")


# -- claims of a (re)connecting worker: only its own attempts -----------------------------------


def restarted() -> Scheduler:
    """A fresh core after a restart: the store says index 0 ran its attempt 2 on w1, and index
    1 was queued after 1 attempt."""
    s = make()
    join(s, "w1", slots=2)
    join(s, "w2", slots=2)
    s.handle(TaskReady("a", "t", 0, [0, 1], attempts_made={0: 2, 1: 1}, held={0: "w1"}), 0.0)
    return s


def test_a_held_subtask_goes_back_only_to_its_worker_at_its_attempt() -> None:
    s = restarted()
    assert not s.adopt("w2", "a", 0, 2)  # held for w1
    assert not s.adopt("w1", "a", 0, 1)  # older than the store knows
    assert not s.adopt("w1", "a", 0, 3)  # never handed out
    assert s.holder("a", 0, 2) is None
    assert s.adopt("w1", "a", 0, 2)
    assert s.holder("a", 0, 2) == "w1"
    assert s.held_by("w1") == [("a", 0, 2)]
    assert s.adopt("w1", "a", 0, 2)  # the same claim again is harmless
    assert not s.adopt("w2", "a", 0, 2)  # the same attempt, claimed by another worker
    assert not s.adopt("w2", "a", 0, 3)  # another attempt of index 0 already runs
    assert s.held_by("w2") == []
    # index 0 is taken; only index 1 is dispatched, with an attempt number past the store's
    d = one(s.dispatch(0.0))
    assert (d.index, d.attempt) == (1, 2)
    assert succeed(s, d) == []
    assert s.handle(AttemptSucceeded("a", 0, 2), 0.0) == [CompleteTask("a")]


def test_after_a_restart_only_a_worker_of_the_stored_uid_claims_a_held_subtask() -> None:
    # The sessions are new after a restart: the uid the store keeps tells the worker apart,
    # not its session, nor its name (which the core does not even see).
    s = make()
    s.handle(WorkerJoined("namesake", 2, frozenset({"t"}), uid="u-other"), 0.0)
    s.handle(WorkerJoined("no-uid", 2, frozenset({"t"})), 0.0)
    s.handle(WorkerJoined("back", 2, frozenset({"t"}), uid="u1"), 0.0)
    s.handle(TaskReady("a", "t", 0, [0], attempts_made={0: 2}, held={0: "u1"}), 0.0)
    assert not s.adopt("namesake", "a", 0, 2)
    assert not s.adopt("no-uid", "a", 0, 2)
    assert s.holder("a", 0, 2) is None
    assert s.adopt("back", "a", 0, 2)
    assert s.holder("a", 0, 2) == "back"
    assert not s.adopt("namesake", "a", 0, 2)  # taken: nobody else gets it


def test_a_worker_cannot_claim_a_queued_subtask_or_another_workers_attempt() -> None:
    s = make()
    join(s, "w1")
    join(s, "w2")
    submit(s, "a", 3)
    d0, d1 = s.dispatch(0.0)
    assert s.holder("a", d0.index, d0.attempt) == d0.worker_id
    for attempt in (0, 1, 2, 9):  # index 2 waits in the queue
        assert not s.adopt("w1", "a", 2, attempt)
    other = "w2" if d0.worker_id == "w1" else "w1"
    assert not s.adopt(other, "a", d0.index, d0.attempt)
    assert s.holder("a", d0.index, d0.attempt) == d0.worker_id
    assert s.queue_depth() == {0: 1}
    assert sorted(s.held_by("w1") + s.held_by("w2")) == [("a", 0, 1), ("a", 1, 1)]
    assert s.wanted("a", 2) and s.wanted("a", d0.index)
    succeed(s, d0)
    assert not s.wanted("a", d0.index)
    (d2,) = s.dispatch(0.0)
    assert (d2.index, d2.attempt) == (2, 1)  # it ran as attempt 1 on its worker after all
    succeed(s, d1)
    assert succeed(s, d2) == [CompleteTask("a")]


def test_adopt_rejects_unknown_ended_or_finished_work() -> None:
    s = restarted()
    assert not s.adopt("ghost", "a", 0, 2)
    assert not s.adopt("w1", "nope", 0, 2)
    assert not s.adopt("w1", "a", 7, 2)
    d = next(d for d in s.dispatch(0.0) if d.index == 1)
    succeed(s, d)
    assert not s.adopt("w2", "a", 1, d.attempt)  # index 1 has its result
    s.handle(TaskEnded("a"), 0.0)
    assert not s.adopt("w1", "a", 0, 2)
    assert not s.wanted("a", 0)


def test_handle_all_concatenates_decisions() -> None:
    s = make()
    join(s, "w1", slots=2)
    submit(s, "a", 2)
    d0, d1 = s.dispatch(0.0)
    out = handle_all(
        s, [AttemptSucceeded("a", 0, d0.attempt), AttemptSucceeded("a", 1, d1.attempt)], 0.0
    )
    assert out == [CompleteTask("a")]


# -- speculation and queued work ----------------------------------------------------------------


def test_speculation_never_takes_a_slot_that_queued_work_could_use() -> None:
    """`speculate` promises "only with credit left after normal dispatch": queued subtasks,
    and retries whose time has come, get the idle slot first, whoever calls first."""
    s = make()
    join(s, "w1")
    join(s, "w2")
    submit(s, "slow", 2)
    _, d1 = s.dispatch(0.0)
    succeed(s, d1, now=1.0)  # w2 is idle; slow/0 has run 10 s when the next task arrives
    submit(s, "urgent", 1, priority=5)
    assert s.speculate(10.0, factor=None, after=2.0, floor=0.0) == []
    assert keys(s.dispatch(10.0)) == [("urgent", 0)]


def test_speculation_waits_for_a_retry_that_is_due() -> None:
    s = make()
    join(s, "w1")
    join(s, "w2")
    submit(s, "slow", 1)
    submit(s, "flaky", 1)
    _, d_flaky = s.dispatch(0.0)
    (retry,) = fail(s, d_flaky, now=0.0)
    assert isinstance(retry, RetryLater)
    assert s.speculate(retry.at + 5, factor=None, after=2.0, floor=0.0) == []
    assert keys(s.dispatch(retry.at + 5)) == [("flaky", 0)]
