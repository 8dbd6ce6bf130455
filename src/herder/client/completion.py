"""`Completions` and `AsyncCompletions`: waiting for many tasks at once (`as_completed`,
`gather`) over the transport, as the plan of `bulk.BulkWait` says: a long poll each for a few
tasks, one event stream of all tasks for more, bulk lookups of stored states, and polling for a
master that refuses event streams.

Imports `errors` and the client's `bulk`, `plan`, `streams` and `transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any, Protocol, TypeVar

from herder.client.bulk import BulkWait, HandleLike, Lookup
from herder.client.errors import MasterUnreachable, StreamUnavailable
from herder.client.plan import Request, raise_unless_succeeded, read_answer
from herder.client.streams import Retry
from herder.client.transport import AsyncTransport, Transport
from herder.errors import HerderError
from herder.protocol.answers import TaskView


class Handle(HandleLike, Protocol):
    def status(self) -> TaskView: ...


class AsyncHandle(HandleLike, Protocol):
    async def status(self) -> TaskView: ...


H = TypeVar("H", bound=Handle)
A = TypeVar("A", bound=AsyncHandle)


class Completions:
    """Waits for many tasks over one client's `Transport`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _call(self, request: Request) -> Any:
        return read_answer(self._transport.call(request))

    def _ended(self) -> MasterUnreachable:
        return MasterUnreachable(self._transport.config.url, "the event stream ended")

    def as_completed(
        self, handles: Iterable[H], timeout: float | None = None
    ) -> Generator[H, None, None]:
        """`Client.as_completed`."""
        return self._as_completed(BulkWait(handles, timeout))

    def gather(self, handles: Iterable[H], timeout: float | None = None) -> list[Any]:
        """`Client.gather`."""
        wait = BulkWait(handles, timeout)
        finished = self._long_polls(wait) if wait.few() else self._as_completed(wait)
        for handle in finished:
            if wait.states[handle.id] != "succeeded":
                raise_unless_succeeded(wait.tasks.get(handle.id) or handle.status())
        self._look_up(wait.results_lookup(), wait)
        return wait.results()

    def _as_completed(self, wait: BulkWait[H]) -> Generator[H, None, None]:
        yield from wait.take()
        if len(wait.pending) == 1:  # one task: its long poll is all it takes
            yield from self._long_polls(wait)
            return
        try:
            yield from self._stream(wait)
        except StreamUnavailable:
            while wait.pending:  # a master without event streams: poll, in bulk
                self._look_up(wait.lookup(), wait)
                yield from wait.take()
                if wait.pending:
                    wait.raise_if_expired()
                    time.sleep(wait.next_poll())
            wait.raise_if_expired()

    def _long_polls(self, wait: BulkWait[H]) -> Generator[H, None, None]:
        yield from wait.take()
        while (request := wait.long_poll()) is not None:
            wait.polled(self._call(request))
            yield from wait.take()

    def _look_up(self, lookup: Lookup, wait: BulkWait[H]) -> None:
        while (request := lookup.next_request()) is not None:
            lookup.feed(self._call(request))
        wait.looked_up(lookup)

    def _stream(self, wait: BulkWait[H]) -> Generator[H, None, None]:
        """The pending tasks as they finish, over one event stream of all tasks."""
        stream = wait.stream
        while wait.pending:
            try:
                with self._transport.stream(wait.stream_request()) as (answer, chunks):
                    stream.opened(answer)
                    self._look_up(wait.lookup(), wait)  # subscribed: what finished before?
                    yield from wait.take()
                    for chunk in chunks:
                        if wait.on_events(stream.feed(chunk)):
                            self._look_up(wait.lookup(), wait)
                        yield from wait.take()
                        if not wait.pending:
                            return
                        wait.raise_if_expired()
                error: HerderError = self._ended()
            except Retry as exc:
                error = exc.error or self._ended()
            except MasterUnreachable as exc:
                wait.raise_if_expired()
                error = exc
            time.sleep(wait.capped(stream.failed(error)))
            wait.raise_if_expired()


class AsyncCompletions:
    """The async twin of `Completions`, over an `AsyncTransport`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def _call(self, request: Request) -> Any:
        return read_answer(await self._transport.call(request))

    def _ended(self) -> MasterUnreachable:
        return MasterUnreachable(self._transport.config.url, "the event stream ended")

    def as_completed(
        self, handles: Iterable[A], timeout: float | None = None
    ) -> AsyncGenerator[A, None]:
        return self._as_completed(BulkWait(handles, timeout))

    async def gather(self, handles: Iterable[A], timeout: float | None = None) -> list[Any]:
        wait = BulkWait(handles, timeout)
        plan = self._long_polls(wait) if wait.few() else self._as_completed(wait)
        async with contextlib.aclosing(plan) as finished:
            async for handle in finished:
                if wait.states[handle.id] != "succeeded":
                    raise_unless_succeeded(wait.tasks.get(handle.id) or await handle.status())
        await self._look_up(wait.results_lookup(), wait)
        return wait.results()

    async def _as_completed(self, wait: BulkWait[A]) -> AsyncGenerator[A, None]:
        for handle in wait.take():
            yield handle
        if len(wait.pending) == 1:
            async with contextlib.aclosing(self._long_polls(wait)) as polls:
                async for handle in polls:
                    yield handle
            return
        try:
            async with contextlib.aclosing(self._stream(wait)) as completions:
                async for handle in completions:
                    yield handle
        except StreamUnavailable:
            while wait.pending:
                await self._look_up(wait.lookup(), wait)
                for handle in wait.take():
                    yield handle
                if wait.pending:
                    wait.raise_if_expired()
                    await asyncio.sleep(wait.next_poll())
            wait.raise_if_expired()

    async def _long_polls(self, wait: BulkWait[A]) -> AsyncGenerator[A, None]:
        for handle in wait.take():
            yield handle
        while (request := wait.long_poll()) is not None:
            wait.polled(await self._call(request))
            for handle in wait.take():
                yield handle

    async def _look_up(self, lookup: Lookup, wait: BulkWait[A]) -> None:
        while (request := lookup.next_request()) is not None:
            lookup.feed(await self._call(request))
        wait.looked_up(lookup)

    async def _stream(self, wait: BulkWait[A]) -> AsyncGenerator[A, None]:
        stream = wait.stream
        while wait.pending:
            try:
                async with self._transport.stream(wait.stream_request()) as (answer, chunks):
                    stream.opened(answer)
                    await self._look_up(wait.lookup(), wait)
                    for handle in wait.take():
                        yield handle
                    async for chunk in chunks:
                        if wait.on_events(stream.feed(chunk)):
                            await self._look_up(wait.lookup(), wait)
                        for handle in wait.take():
                            yield handle
                        if not wait.pending:
                            return
                        wait.raise_if_expired()
                error: HerderError = self._ended()
            except Retry as exc:
                error = exc.error or self._ended()
            except MasterUnreachable as exc:
                wait.raise_if_expired()
                error = exc
            await asyncio.sleep(wait.capped(stream.failed(error)))
            wait.raise_if_expired()
