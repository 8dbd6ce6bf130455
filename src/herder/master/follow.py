"""Server-Sent Event streams: a task's events, all tasks' events, a task's logs as they come.

Each stream subscribes to the hub first, then replays what the journal holds after the client's
last event id, then passes live events on, skipping any it already sent during the replay: so a
follower that reconnects with Last-Event-ID misses nothing still stored and sees nothing twice.
Imports the master's `core` and `events`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from herder.master import reads
from herder.master.core import Master
from herder.master.events import KEEP_ALIVE, Event, Subscription
from herder.master.journal import event_of
from herder.model import FINAL_TASK_STATES

KEEP_ALIVE_EVERY = 15.0
REPLAY_PAGE = 1000


async def task_events(master: Master, task_id: str, last_id: int | None) -> AsyncIterator[bytes]:
    """snapshot, then durable events after last_id (all of them when None), then live ones."""
    sub = master.hub.subscribe(task_id)
    try:
        snapshot = await master.get(task_id)
        if snapshot is None:
            return
        yield Event("snapshot", task_id, snapshot).sse()
        sent = last_id or 0
        ended = False
        async for event in _replay(master, task_id, sent):
            sent = event.id or sent
            yield event.sse()
            ended = ended or _is_final(event)
        if ended or (snapshot["state"] in FINAL_TASK_STATES and task_id not in master.active):
            return
        async for chunk in _live(sub, sent, stop_on_final=True):
            yield chunk
    finally:
        master.hub.unsubscribe(sub)


async def all_events(
    master: Master, last_id: int | None, finished_only: bool = False
) -> AsyncIterator[bytes]:
    """Durable events after last_id (none when None: live only), then live ones. With
    `finished_only`, only the state events of tasks that finished (what a client waiting for
    many tasks needs, at a fraction of the cost of everything)."""
    keep = _is_final if finished_only else None
    sub = master.hub.subscribe(
        None, frozenset({"state"}) if finished_only else None, keep, finals_only=finished_only
    )
    try:
        sent = last_id or 0
        if last_id is not None:
            async for event in _replay(master, None, last_id):
                sent = event.id or sent
                if keep is None or keep(event):
                    yield event.sse()
        # (what the subscription queues has passed `keep` already)
        async for chunk in _live(sub, sent, stop_on_final=False):
            yield chunk
    finally:
        master.hub.unsubscribe(sub)


async def follow_logs(master: Master, task_id: str, since: int) -> AsyncIterator[bytes]:
    """`log` events after `since`, until the task has finished and every line was sent."""
    sub = master.hub.subscribe(task_id, frozenset({"log", "state"}))
    try:
        sent = since
        while True:  # page through what is stored
            records = await reads.logs(master, task_id, sent, REPLAY_PAGE)
            for record in records:
                sent = record.seq
                yield event_of(record).sse()
            if len(records) < REPLAY_PAGE:
                break
        if task_id not in master.active:
            return
        async for chunk in _live(sub, sent, stop_on_final=True, kinds=frozenset({"log"})):
            yield chunk
    finally:
        master.hub.unsubscribe(sub)


async def _replay(master: Master, task_id: str | None, since: int) -> AsyncIterator[Event]:
    while True:
        records = await reads.events(master, task_id, since, REPLAY_PAGE)
        for record in records:
            since = record.seq
            yield event_of(record)
        if len(records) < REPLAY_PAGE:
            return


async def _live(
    sub: Subscription,
    sent: int,
    stop_on_final: bool,
    kinds: frozenset[str] | None = None,
) -> AsyncIterator[bytes]:
    """Pass live events on; what piled up while the client was being written to goes as one
    chunk (one write for many events when thousands of tasks a second finish)."""
    while True:
        if sub.overflowed and sub.queue.empty():
            return  # fell behind: end, so the client reconnects and replays from the store
        try:
            events = [await asyncio.wait_for(sub.queue.get(), KEEP_ALIVE_EVERY)]
        except TimeoutError:
            yield KEEP_ALIVE
            continue
        while not sub.queue.empty():
            events.append(sub.queue.get_nowait())
        chunk: list[bytes] = []
        final = False
        for event in events:
            if event.id is not None:
                if event.id <= sent:
                    continue  # already sent during the replay
                sent = event.id
            if kinds is None or event.kind in kinds:
                chunk.append(event.sse())
            if stop_on_final and _is_final(event):
                final = True
                break
        if chunk:
            yield b"".join(chunk)
        if final:
            return


def _is_final(event: Event) -> bool:
    return event.kind == "state" and event.data.get("state") in FINAL_TASK_STATES
