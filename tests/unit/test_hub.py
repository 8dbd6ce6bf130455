"""The master's publish/subscribe hub: who gets which live events."""

from __future__ import annotations

from herder.master.events import Event, Hub, Subscription


def state(task_id: str, value: str, seq: int) -> Event:
    return Event("state", task_id, {"task_id": task_id, "state": value}, seq)


def test_each_subscription_queues_only_what_it_wants() -> None:
    hub = Hub()
    everything = hub.subscribe(None)
    one_task = hub.subscribe("a")
    finals = hub.subscribe(
        None, frozenset({"state"}), keep=lambda e: e.data["state"] in ("succeeded", "failed")
    )
    events = [
        state("a", "pending", 1), state("a", "running", 2),
        Event("log", "a", {"message": "hi"}, 3), Event("progress", "b", {}),
        state("b", "running", 4), state("a", "succeeded", 5), state("b", "failed", 6),
    ]
    for event in events:
        hub.publish(event)

    def queued(sub: Subscription) -> list[Event]:
        return [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]

    assert queued(everything) == events
    assert queued(one_task) == [e for e in events if e.task_id == "a"]
    # a client waiting for many tasks: their final states only, nothing else ever queued
    assert queued(finals) == [events[5], events[6]]


def test_updates_are_wanted_while_someone_takes_more_than_final_states() -> None:
    hub = Hub()
    assert not hub.wants_updates
    finals = hub.subscribe(None, frozenset({"state"}), keep=lambda e: False, finals_only=True)
    assert hub.active and not hub.wants_updates  # a client waiting for many tasks
    one_task = hub.subscribe("a")
    assert hub.wants_updates
    hub.unsubscribe(one_task)
    hub.unsubscribe(one_task)  # twice (an overflow dropped it, then its stream ended): once
    assert not hub.wants_updates
    hub.unsubscribe(finals)
    assert not hub.active


def test_a_follower_dropped_for_overflowing_stops_counting() -> None:
    hub = Hub()
    slow = hub.subscribe("a")
    for seq in range(slow.queue.maxsize + 1):
        hub.publish(state("a", "running", seq))
    assert slow.overflowed
    assert not hub.active and not hub.wants_updates
    hub.unsubscribe(slow)  # its stream's own unsubscribe, after the drop
    assert not hub.wants_updates
    assert hub.subscribe("b").queue.empty() and hub.wants_updates
