"""The store's schedules (`store.schedules`) and the one task per firing, and the parts of the
store sharing its transactions, tested on every backend (conftest.py).

Imports `herder.model` and `herder.store`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest

from herder.model import LogRecord, ScheduleRecord, TaskRecord
from herder.store.base import Store

StoreFactory = Callable[[], Store]  # as in conftest.py

_ids = itertools.count()


def a_schedule(**fields: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "id": "nightly", "type": "noop", "params": {"value": 1}, "cron": None, "every": "1s",
        "timezone": "UTC", "priority": 2, "timeout": 30.0, "overlap": "skip",
        "created_at": 1000.0,
    }
    values.update(fields)
    return ScheduleRecord(**values)  # type: ignore[arg-type]


def a_firing(schedule: str, fired_at: float) -> TaskRecord:
    return TaskRecord(
        id=f"f{next(_ids)}", type="noop", params={}, created_at=fired_at + 0.01,
        schedule=schedule, fired_at=fired_at,
    )


def test_a_schedule_round_trips_and_its_id_is_taken_once(store: Store) -> None:
    schedule = a_schedule(cron="0 9 * * 1-5", every=None, timezone="Europe/Berlin")
    assert store.schedules.insert(schedule)
    assert not store.schedules.insert(a_schedule(type="other"))
    assert store.schedules.get("nightly") == schedule
    assert store.schedules.all() == [schedule]
    assert store.schedules.get("nope") is None


def test_a_deleted_schedule_is_gone_and_its_tasks_stay(store: Store) -> None:
    store.schedules.insert(a_schedule())
    task = a_firing("nightly", 1001.0)
    assert store.insert_tasks([task]) == [True]
    assert store.schedules.delete("nightly")
    assert not store.schedules.delete("nightly")
    assert store.schedules.all() == []
    stored = store.get_task(task.id)
    assert stored is not None and (stored.schedule, stored.fired_at) == ("nightly", 1001.0)


def test_the_store_refuses_a_second_task_for_one_firing(store: Store) -> None:
    store.schedules.insert(a_schedule())
    first, again, next_one = a_firing("nightly", 1001.0), a_firing("nightly", 1001.0), \
        a_firing("nightly", 1002.0)
    assert store.insert_tasks([first]) == [True]
    assert store.insert_tasks([again, next_one]) == [False, True]
    assert store.get_task(again.id) is None
    schedule = store.schedules.get("nightly")
    assert schedule is not None
    assert (schedule.last_target_at, schedule.last_task_id) == (1002.0, next_one.id)
    assert schedule.last_run_at == next_one.created_at


def test_an_older_firing_does_not_move_the_schedule_back(store: Store) -> None:
    store.schedules.insert(a_schedule())
    late = a_firing("nightly", 1005.0)
    store.insert_tasks([late, a_firing("nightly", 1003.0)])
    schedule = store.schedules.get("nightly")
    assert schedule is not None and schedule.last_task_id == late.id


def test_two_masters_firing_at_once_make_one_task(store_factory: StoreFactory) -> None:
    stores = [store_factory(), store_factory()]
    stores[0].schedules.insert(a_schedule())
    barrier = threading.Barrier(len(stores))
    made: list[list[bool]] = []

    def fire(store: Store) -> None:
        barrier.wait()
        made.append(store.insert_tasks([a_firing("nightly", 1001.0)]))

    threads = [threading.Thread(target=fire, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(made) == [[False], [True]]
    tasks, _ = stores[0].list_tasks(schedule="nightly")
    assert len(tasks) == 1


def test_a_skipped_firing_is_counted_once(store: Store) -> None:
    store.schedules.insert(a_schedule())
    assert store.schedules.skip_firing("nightly", 1001.0)
    assert not store.schedules.skip_firing("nightly", 1001.0)
    assert not store.schedules.skip_firing("nightly", 1000.5)
    assert store.schedules.skip_firing("nightly", 1002.0)
    schedule = store.schedules.get("nightly")
    assert schedule is not None and (schedule.skipped, schedule.last_target_at) == (2, 1002.0)
    assert not store.schedules.skip_firing("unknown", 1003.0)


def test_the_tasks_of_a_schedule_are_listed_newest_first(store: Store) -> None:
    store.schedules.insert(a_schedule())
    store.schedules.insert(a_schedule(id="other"))
    mine = [a_firing("nightly", 1000.0 + i) for i in range(3)]
    store.insert_tasks([*mine, a_firing("other", 1000.0)])
    store.insert_tasks([TaskRecord(id="plain", type="noop", params={}, created_at=1.0)])
    page, cursor = store.list_tasks(schedule="nightly", limit=2)
    assert [t.id for t in page] == [mine[2].id, mine[1].id]
    rest, end = store.list_tasks(schedule="nightly", cursor=cursor)
    assert [t.id for t in rest] == [mine[0].id] and end is None
    assert store.list_tasks(schedule="nobody")[0] == []


def test_the_parts_write_in_the_stores_transaction(store_factory: StoreFactory) -> None:
    # `schedules` and `logs` share the store's connection: one transaction holds a task, its
    # journal and a schedule, committed together at its end or not at all.
    store, other = store_factory(), store_factory()
    task = a_firing("nightly", 1001.0)
    with store.transaction():
        assert store.schedules.insert(a_schedule())
        assert store.insert_tasks([task]) == [True]
        (line,) = store.logs.append([LogRecord(task.id, 1.0, "INFO", "fired")])
        assert store.schedules.skip_firing("nightly", 1002.0)
        assert (other.get_task(task.id), other.schedules.all(), other.logs.events(None)) == (
            None, [], [])
    assert other.get_task(task.id) == store.get_task(task.id)
    assert other.logs.lines(task.id) == [line]
    schedule = other.schedules.get("nightly")
    assert schedule is not None and (schedule.skipped, schedule.last_task_id) == (1, task.id)

    with pytest.raises(RuntimeError, match="changed my mind"), store.transaction():
        assert store.schedules.delete("nightly")
        assert store.logs.trim(task.id, keep=1) == 0
        store.logs.append([LogRecord(task.id, 2.0, "INFO", "never")])
        store.schedules.insert(a_schedule(id="never"))
        raise RuntimeError("changed my mind")
    for reader in (store, other):
        assert [s.id for s in reader.schedules.all()] == ["nightly"]
        assert reader.logs.lines(task.id) == [line]
