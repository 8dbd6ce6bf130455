"""`AsyncClient` and `AsyncTaskHandle`: `Client` and `TaskHandle` for asyncio, the same plans
awaited over `transport.AsyncTransport`, with the async twins of their helpers
(`schedules.AsyncSchedules`, `completion.AsyncCompletions`, `following.AsyncFollower`).
Imports `errors` and the client's modules.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, cast, overload

from herder.client.completion import AsyncCompletions
from herder.client.curl import AsyncLink
from herder.client.errors import BatchSubmitError
from herder.client.following import AsyncFollower
from herder.client.plan import (
    HEALTH,
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
    read_answer,
    result_of,
    result_request,
    status_request,
    submit_request,
    task_body,
)
from herder.client.schedules import AsyncSchedules
from herder.client.streams import STREAM_RETRIES, Event, EventStream, LogStream
from herder.client.transport import AsyncTransport, TransportConfig
from herder.protocol.answers import (
    HealthAnswer,
    LogLine,
    StatsAnswer,
    SubtaskView,
    TaskView,
    TypeView,
    WorkerView,
)


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
        #: add, list and remove schedules (`herder schedule ...`)
        self.schedules = AsyncSchedules(self._call)
        self._follower = AsyncFollower(self._transport)
        self._completions = AsyncCompletions(self._transport)

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
        return self._follower.follow(EventStream(task_id, last_event_id, retries))

    def as_completed(
        self, handles: Iterable[AsyncTaskHandle], timeout: float | None = None
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        """`Client.as_completed`, as an async iterator (wrap it in `contextlib.aclosing` to
        close its stream at once when leaving the loop early)."""
        return self._completions.as_completed(handles, timeout)

    async def gather(
        self, handles: Iterable[AsyncTaskHandle], timeout: float | None = None
    ) -> list[Any]:
        """`Client.gather`, awaited."""
        return await self._completions.gather(handles, timeout)

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
            return self.client._follower.follow(LogStream(self.id, since, STREAM_RETRIES))
        return self._stored_logs(since)

    async def _stored_logs(self, since: int) -> list[LogLine]:
        pager = LogPager(self.id, since)
        while (request := pager.next_request()) is not None:
            pager.feed(await self.client._call(request))
        return pager.logs

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
