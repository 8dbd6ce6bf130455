"""`Follower` and `AsyncFollower`: follow one stream (a task's events, all tasks' events, a task's
log) over the transport, reconnecting as its plan (`streams.Stream`) says, until the plan calls
it done or its retries run out. `Client.events` and `TaskHandle.logs(follow=True)` use them.

Imports `errors` and the client's `plan`, `streams` and `transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Generator
from typing import TypeVar

from herder.client.errors import MasterUnreachable
from herder.client.plan import read_answer
from herder.client.streams import Retry, Stream
from herder.client.transport import AsyncTransport, Transport

T = TypeVar("T")


class Follower:
    """Follows streams over one client's `Transport`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def follow(self, stream: Stream[T]) -> Generator[T, None, None]:
        """The stream's items as they arrive, across reconnections."""
        while not stream.done:
            try:
                yield from self._connect(stream)
                continue
            except Retry as exc:
                error = exc.error or MasterUnreachable(
                    self._transport.config.url, "the stream kept closing early"
                )
            except MasterUnreachable as exc:
                error = exc
            time.sleep(stream.failed(error))

    def _connect(self, stream: Stream[T]) -> Generator[T, None, None]:
        with self._transport.stream(stream.request()) as (answer, chunks):
            stream.opened(answer)
            for chunk in chunks:
                yield from stream.feed(chunk)
                if stream.done:
                    return
            yield from stream.close()
        if not stream.done:
            end = stream.end_request()
            stream.ended(None if end is None else read_answer(self._transport.call(end)))


class AsyncFollower:
    """The async twin of `Follower`, over an `AsyncTransport`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def follow(self, stream: Stream[T]) -> AsyncGenerator[T, None]:
        while not stream.done:
            try:
                async with contextlib.aclosing(self._connect(stream)) as items:
                    async for item in items:
                        yield item
                continue
            except Retry as exc:
                error = exc.error or MasterUnreachable(
                    self._transport.config.url, "the stream kept closing early"
                )
            except MasterUnreachable as exc:
                error = exc
            await asyncio.sleep(stream.failed(error))

    async def _connect(self, stream: Stream[T]) -> AsyncGenerator[T, None]:
        async with self._transport.stream(stream.request()) as (answer, chunks):
            stream.opened(answer)
            async for chunk in chunks:
                for item in stream.feed(chunk):
                    yield item
                if stream.done:
                    return
            for item in stream.close():
                yield item
        if not stream.done:
            end = stream.end_request()
            stream.ended(None if end is None else read_answer(await self._transport.call(end)))
