"""Server-Sent Event streams: a task's events, all tasks' events, a task's logs as they come.

Each stream subscribes to the hub first, then replays what the journal holds after the client's
last event id, then passes live events on, skipping any it already sent during the replay: so a
follower that reconnects with Last-Event-ID misses nothing still stored and sees nothing twice.
Imports `model` and the master's `events`, `tasks` and `reads`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from herder.master.events import KEEP_ALIVE, Event, Hub, Subscription, event_of
from herder.master.reads import Reads
from herder.master.tasks import Tasks
from herder.model import FINAL_TASK_STATES

KEEP_ALIVE_EVERY = 15.0
REPLAY_PAGE = 1000


class Streams:
    def __init__(self, hub: Hub, tasks: Tasks, reads: Reads) -> None:
        self._hub = hub
        self._tasks = tasks
        self._reads = reads

    async def task_events(self, task_id: str, last_id: int | None) -> AsyncIterator[bytes]:
        """snapshot, then durable events after last_id (all of them when None), then live
        ones."""
        sub = self._hub.subscribe(task_id)
        try:
            snapshot = await self._tasks.get(task_id)
            if snapshot is None:
                return
            yield Event("snapshot", task_id, snapshot).sse()
            sent = last_id or 0
            ended = False
            async for event in self._replay(task_id, sent):
                sent = event.id or sent
                yield event.sse()
                ended = ended or _is_final(event)
            finished = snapshot["state"] in FINAL_TASK_STATES
            if ended or (finished and task_id not in self._tasks.active):
                return
            async for chunk in _live(sub, sent, stop_on_final=True):
                yield chunk
        finally:
            self._hub.unsubscribe(sub)

    async def all_events(
        self, last_id: int | None, finished_only: bool = False
    ) -> AsyncIterator[bytes]:
        """Durable events after last_id (none when None: live only), then live ones. With
        `finished_only`, only the state events of tasks that finished (what a client waiting
        for many tasks needs, at a fraction of the cost of everything)."""
        keep = _is_final if finished_only else None
        sub = self._hub.subscribe(
            None, frozenset({"state"}) if finished_only else None, keep, finals_only=finished_only
        )
        try:
            sent = last_id or 0
            if last_id is not None:
                async for event in self._replay(None, last_id):
                    sent = event.id or sent
                    if keep is None or keep(event):
                        yield event.sse()
            # (what the subscription queues has passed `keep` already)
            async for chunk in _live(sub, sent, stop_on_final=False):
                yield chunk
        finally:
            self._hub.unsubscribe(sub)

    async def follow_logs(self, task_id: str, since: int) -> AsyncIterator[bytes]:
        """`log` events after `since`, until the task has finished and every line was sent."""
        sub = self._hub.subscribe(task_id, frozenset({"log", "state"}))
        try:
            sent = since
            while True:  # page through what is stored
                records = await self._reads.logs(task_id, sent, REPLAY_PAGE)
                for record in records:
                    sent = record.seq
                    yield event_of(record).sse()
                if len(records) < REPLAY_PAGE:
                    break
            if task_id not in self._tasks.active:
                return
            async for chunk in _live(sub, sent, stop_on_final=True, kinds=frozenset({"log"})):
                yield chunk
        finally:
            self._hub.unsubscribe(sub)

    async def _replay(self, task_id: str | None, since: int) -> AsyncIterator[Event]:
        while True:
            records = await self._reads.events(task_id, since, REPLAY_PAGE)
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
