"""`AsyncClient` and `AsyncTaskHandle`: `Client` and `TaskHandle` for asyncio, the same plans
awaited over `transport.AsyncTransport`. Imports `errors` and the client's modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast, overload

from herder.client.bulk import BulkWait, Lookup
from herder.client.curl import AsyncLink
from herder.client.errors import BatchSubmitError, MasterUnreachable, StreamUnavailable
from herder.client.plan import (
    HEALTH,
    SCHEDULES,
    STATS,
    TYPES,
    WORKERS,
    LogPager,
    Moment,
    Pager,
    Poll,
    Request,
    SubtaskPager,
    batch_body,
    batch_outcome,
    batch_request,
    cancel_request,
    delete_request,
    drain_request,
    first_wait,
    is_final,
    raise_unless_succeeded,
    read_answer,
    result_of,
    result_request,
    schedule_body,
    schedule_request,
    status_request,
    submit_request,
    task_body,
    unschedule_request,
)
from herder.client.streams import STREAM_RETRIES, Event, EventStream, LogStream, Retry, Stream
from herder.client.transport import AsyncTransport, TransportConfig
from herder.errors import HerderError
from herder.protocol.answers import (
    HealthAnswer,
    LogLine,
    ScheduleView,
    StatsAnswer,
    SubtaskView,
    TaskView,
    TypeView,
    WorkerView,
)

T = TypeVar("T")


class AsyncClient:
    """The async twin of `Client` (the same arguments; `transport` a `curl.AsyncLink`).
    Use `async with`, or `aclose()`."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        ca: str | None = None,
        transport: AsyncLink | None = None,
    ) -> None:
        self._config = TransportConfig(url, token, timeout, ca)
        self._transport = AsyncTransport(self._config, transport)
        self.token = self._config.token

    @property
    def url(self) -> str:
        """The URL of the master this client talks to (of several: the one that answered)."""
        return self._config.url

    @property
    def urls(self) -> list[str]:
        return list(self._config.urls)

    async def _call(self, request: Request) -> Any:
        return read_answer(await self._transport.call(request))

    async def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        id: str | None = None,
        retries: int | None = None,
        not_before: Moment | None = None,
        *,
        max_parallel: int | None = None,
        labels: Iterable[str] = (),
    ) -> AsyncTaskHandle:
        body = task_body(
            type, params, priority, timeout, id, retries, not_before,
            max_parallel=max_parallel, labels=labels,
        )
        task = await self._call(submit_request(body))
        return AsyncTaskHandle(self, task["id"], task)

    async def run(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        id: str | None = None,
        retries: int | None = None,
        not_before: Moment | None = None,
        *,
        max_parallel: int | None = None,
        labels: Iterable[str] = (),
        wait: float | None = None,
    ) -> Any:
        """The async twin of `Client.run`."""
        started = time.monotonic()
        body = task_body(
            type, params, priority, timeout, id, retries, not_before,
            max_parallel=max_parallel, labels=labels,
        )
        task = await self._call(submit_request(body, first_wait(wait)))
        handle = AsyncTaskHandle(self, task["id"], task)
        if not is_final(task):
            left = None if wait is None else max(0.0, wait - (time.monotonic() - started))
            task = await handle.wait(left)
        return await handle.result(timeout=0)

    async def submit_many(self, items: Sequence[Mapping[str, Any]]) -> list[AsyncTaskHandle]:
        answer = await self._call(batch_request(batch_body(items)))
        tasks, statuses, details = batch_outcome(answer)
        handles = [AsyncTaskHandle(self, t["id"], t) if t else None for t in tasks]
        if any(s != 201 for s in statuses):
            raise BatchSubmitError(handles, statuses, details)
        return [h for h in handles if h is not None]

    async def get(self, task_id: str) -> AsyncTaskHandle:
        task = await self._call(status_request(task_id))
        return AsyncTaskHandle(self, task["id"], task)

    async def list_tasks(
        self, state: str | None = None, type: str | None = None, limit: int = 100,
        schedule: str | None = None,
    ) -> list[TaskView]:
        """Newest first; `schedule`: the tasks that schedule fired (no other filter with it)."""
        pager = Pager(state, type, limit, schedule)
        while (request := pager.next_request()) is not None:
            pager.feed(await self._call(request))
        return pager.tasks

    async def schedule(
        self,
        id: str,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: str | float | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        timeout: float | None = None,
        overlap: Literal["skip", "allow"] = "skip",
    ) -> ScheduleView:
        """Submit a task of `type` at each time of `cron` (5 fields, in `timezone`) or `every`
        period ("30s", "5m", or seconds); exactly one of them. ClientError 409 if the id is
        taken, 422 naming a field that is wrong."""
        body = schedule_body(id, type, params, cron, every, timezone, priority, timeout, overlap)
        return cast(ScheduleView, await self._call(schedule_request(body)))

    async def schedules(self) -> list[ScheduleView]:
        return list((await self._call(SCHEDULES))["schedules"])

    async def unschedule(self, id: str) -> None:
        """Delete a schedule (the tasks it fired stay); ClientError 404 if there is none."""
        await self._call(unschedule_request(id))

    async def workers(self) -> list[WorkerView]:
        return list((await self._call(WORKERS))["workers"])

    async def drain_worker(self, name: str) -> list[WorkerView]:
        """Ask the connected worker `name` (a name, or an id) to finish what it runs, take no
        more and stop; the workers asked. Needs the admin token; ClientError 404 if none is
        connected."""
        return list((await self._call(drain_request(name)))["workers"])

    async def delete(self, task_id: str) -> None:
        """Delete a finished task now, with its subtasks, results and logs. ClientError 409 if
        it has not finished, 404 if there is no such task."""
        await self._call(delete_request(task_id))

    async def types(self) -> list[TypeView]:
        return list((await self._call(TYPES))["types"])

    async def health(self) -> HealthAnswer:
        return cast(HealthAnswer, await self._call(HEALTH))

    async def stats(self) -> StatsAnswer:
        return cast(StatsAnswer, await self._call(STATS))

    def events(
        self, task_id: str | None = None, last_event_id: int | str | None = None,
        *, retries: int = STREAM_RETRIES,
    ) -> AsyncGenerator[Event, None]:
        """`Client.events`, as an async iterator. Leaving the loop early does not close the
        connection until the iterator is collected: wrap it in `contextlib.aclosing`."""
        return self._follow(EventStream(task_id, last_event_id, retries))

    # -- waiting for many tasks --

    def as_completed(
        self, handles: Iterable[AsyncTaskHandle], timeout: float | None = None
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        """`Client.as_completed`, as an async iterator (wrap it in `contextlib.aclosing` to
        close its stream at once when leaving the loop early)."""
        return self._as_completed(BulkWait(handles, timeout))

    async def gather(
        self, handles: Iterable[AsyncTaskHandle], timeout: float | None = None
    ) -> list[Any]:
        """`Client.gather`, awaited."""
        wait = BulkWait(handles, timeout)
        plan = self._long_polls(wait) if wait.few() else self._as_completed(wait)
        async with contextlib.aclosing(plan) as finished:
            async for handle in finished:
                if wait.states[handle.id] != "succeeded":
                    raise_unless_succeeded(wait.tasks.get(handle.id) or await handle.status())
        await self._look_up(wait.results_lookup(), wait)
        return wait.results()

    async def _as_completed(
        self, wait: BulkWait[AsyncTaskHandle]
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        for handle in wait.take():
            yield handle
        if len(wait.pending) == 1:
            async with contextlib.aclosing(self._long_polls(wait)) as polls:
                async for handle in polls:
                    yield handle
            return
        try:
            async with contextlib.aclosing(self._completions(wait)) as completions:
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

    async def _long_polls(
        self, wait: BulkWait[AsyncTaskHandle]
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        for handle in wait.take():
            yield handle
        while (request := wait.long_poll()) is not None:
            wait.polled(await self._call(request))
            for handle in wait.take():
                yield handle

    async def _look_up(self, lookup: Lookup, wait: BulkWait[AsyncTaskHandle]) -> None:
        while (request := lookup.next_request()) is not None:
            lookup.feed(await self._call(request))
        wait.looked_up(lookup)

    async def _completions(
        self, wait: BulkWait[AsyncTaskHandle]
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
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
                error: HerderError = MasterUnreachable(self.url, "the event stream ended")
            except Retry as exc:
                error = exc.error or MasterUnreachable(self.url, "the event stream ended")
            except MasterUnreachable as exc:
                wait.raise_if_expired()
                error = exc
            await asyncio.sleep(wait.capped(stream.failed(error)))
            wait.raise_if_expired()

    async def _logs(self, task_id: str, since: int) -> list[LogLine]:
        pager = LogPager(task_id, since)
        while (request := pager.next_request()) is not None:
            pager.feed(await self._call(request))
        return pager.logs

    async def _follow(self, stream: Stream[T]) -> AsyncGenerator[T, None]:
        while not stream.done:
            try:
                async with contextlib.aclosing(self._connect(stream)) as items:
                    async for item in items:
                        yield item
                continue
            except Retry as exc:
                error = exc.error or MasterUnreachable(self.url, "the stream kept closing early")
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
            stream.ended(None if end is None else await self._call(end))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"


class AsyncTaskHandle:
    """The async twin of `TaskHandle`."""

    def __init__(self, client: AsyncClient, task_id: str, task: TaskView | None = None) -> None:
        self.client = client
        self.id = task_id
        self.task = task

    async def status(self) -> TaskView:
        task: TaskView = await self.client._call(status_request(self.id))
        self.task = task
        return task

    async def wait(self, timeout: float | None = None) -> TaskView:
        poll = Poll(self.id, timeout)
        task: TaskView | None = None
        while task is None or not is_final(task):
            task = await self.client._call(status_request(self.id, poll.next_wait(task)))
            self.task = task
        return task

    async def result(self, timeout: float | None = None) -> Any:
        if self.task is not None and is_final(self.task):
            task = self.task
        else:
            task = await self.wait(timeout)
        held, value = result_of(task)
        return value if held else (await self.client._call(result_request(self.id)))["result"]

    async def delete(self) -> None:
        """Delete the task, now that it has finished (`Client.delete`)."""
        await self.client.delete(self.id)

    async def cancel(self) -> TaskView:
        task: TaskView = await self.client._call(cancel_request(self.id))
        self.task = task
        return task

    @overload
    def logs(
        self, since: int = 0, follow: Literal[False] = False
    ) -> Coroutine[Any, Any, list[LogLine]]: ...

    @overload
    def logs(self, since: int = 0, *, follow: Literal[True]) -> AsyncGenerator[LogLine, None]: ...

    def logs(
        self, since: int = 0, follow: bool = False
    ) -> Coroutine[Any, Any, list[LogLine]] | AsyncGenerator[LogLine, None]:
        """`await handle.logs(since)`, or `async for record in handle.logs(since, follow=True)`."""
        if follow:
            return self.client._follow(LogStream(self.id, since, STREAM_RETRIES))
        return self.client._logs(self.id, since)

    async def events(
        self, last_event_id: int | str | None = None
    ) -> AsyncGenerator[Event, None]:
        async for event in self.client.events(self.id, last_event_id):
            if event.kind == "snapshot":
                self.task = cast(TaskView, event.data)
            yield event

    async def subtasks(self) -> list[SubtaskView]:
        pager = SubtaskPager(self.id)
        while (request := pager.next_request()) is not None:
            pager.feed(await self.client._call(request))
        return pager.subtasks

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.id!r})"
