"""The Python client of the HTTP API: `Client` / `TaskHandle` and their async twins.

Both twins follow the same sans-I/O plans (`herder.clientplan`: requests, answers, paging,
polling, streams, waiting for many tasks); they only send the requests, with httpx's sync or
async client, and read the bytes. Each of their methods is a line or two.

Imports httpx and `clientplan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Coroutine, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, overload

import httpx

from herder.clientplan import (
    _STREAM_TIMEOUT,
    API,
    FINAL_STATES,
    STREAM_RETRIES,
    BatchSubmitError,
    Event,
    Log,
    MasterUnreachable,
    QueueFull,
    StreamUnavailable,
    T,
    Task,
    _Base,
    _batch_body,
    _batch_outcome,
    _BulkWait,
    _cancel_request,
    _EventStream,
    _first_wait,
    _LogPager,
    _LogStream,
    _Lookup,
    _Pager,
    _Poll,
    _raise_unless_succeeded,
    _read,
    _Request,
    _result_of,
    _result_request,
    _Retry,
    _status_request,
    _Stream,
    _submit_request,
    _subtasks_request,
    _task_body,
    _timeout_of,
    _unreachable,
    is_final,
    normalize_url,
)
from herder.errors import HerderError
from herder.keepalive import TRANSPORT_ERRORS, KeepAlivePool

__all__ = [
    "FINAL_STATES",
    "STREAM_RETRIES",
    "AsyncClient",
    "AsyncTaskHandle",
    "BatchSubmitError",
    "Client",
    "Event",
    "MasterUnreachable",
    "QueueFull",
    "StreamUnavailable",
    "TaskHandle",
    "is_final",
    "normalize_url",
]


# -- synchronous -------------------------------------------------------------------------------


class Client(_Base):
    """Talks to one master. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token)
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )
        # plain calls over http.client (keepalive.py: ~2 ms less per call); streams over httpx
        self._plain: KeepAlivePool | None = None
        if transport is None and self.url.startswith("http://"):
            self._plain = KeepAlivePool(self.url, self._headers(), timeout)

    def _call(self, request: _Request) -> Any:
        if self._plain is not None:
            try:
                answer = self._plain.request(
                    request.method, request.path, request.params, request.json,
                    request.headers, request.timeout,
                )
            except TRANSPORT_ERRORS as exc:
                raise _unreachable(self.url, exc) from exc
            return _read(answer)
        try:
            response = self._http.request(
                request.method, request.path, params=request.params, json=request.json,
                timeout=_timeout_of(request),
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        return _read(response)

    def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        id: str | None = None,
        retries: int | None = None,
    ) -> TaskHandle:
        body = _task_body(type, params, priority, timeout, id, retries)
        task = self._call(_submit_request(body))
        return TaskHandle(self, task["id"], task)

    def run(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        id: str | None = None,
        retries: int | None = None,
        *,
        wait: float | None = None,
    ) -> Any:
        """Submit a task and return its result: one round trip when it finishes within a long
        poll (`POST /tasks?wait=`). TaskFailed if it does not succeed; TimeoutError when it is
        still unfinished after `wait` seconds (it goes on; find it with `list_tasks`)."""
        started = time.monotonic()
        body = _task_body(type, params, priority, timeout, id, retries)
        task = self._call(_submit_request(body, _first_wait(wait)))
        handle = TaskHandle(self, task["id"], task)
        if not is_final(task):
            left = None if wait is None else max(0.0, wait - (time.monotonic() - started))
            task = handle.wait(left)
        return handle.result(timeout=0)

    def submit_many(self, items: Sequence[Mapping[str, Any]]) -> list[TaskHandle]:
        """Submit in one request; each item is a dict of `submit`'s arguments.

        Raises BatchSubmitError if any item was refused (the others were submitted) and
        QueueFull if the whole batch did not fit.
        """
        answer = self._call(_Request("POST", f"{API}/tasks/batch", json=_batch_body(items)))
        tasks, statuses, details = _batch_outcome(answer)
        handles = [TaskHandle(self, t["id"], t) if t else None for t in tasks]
        if any(s != 201 for s in statuses):
            raise BatchSubmitError(handles, statuses, details)
        return [h for h in handles if h is not None]

    def get(self, task_id: str) -> TaskHandle:
        task = self._call(_status_request(task_id))
        return TaskHandle(self, task["id"], task)

    def list_tasks(
        self, state: str | None = None, type: str | None = None, limit: int = 100
    ) -> list[Task]:
        pager = _Pager(state, type, limit)
        while (request := pager.next_request()) is not None:
            pager.feed(self._call(request))
        return pager.tasks

    def workers(self) -> list[dict[str, Any]]:
        return list(self._call(_Request("GET", f"{API}/workers"))["workers"])

    def types(self) -> list[dict[str, Any]]:
        return list(self._call(_Request("GET", f"{API}/types"))["types"])

    def health(self) -> dict[str, Any]:
        return dict(self._call(_Request("GET", "/healthz")))

    def stats(self) -> dict[str, Any]:
        return dict(self._call(_Request("GET", f"{API}/stats")))

    def events(
        self, task_id: str | None = None, last_event_id: int | str | None = None,
        *, retries: int = STREAM_RETRIES,
    ) -> Generator[Event, None, None]:
        """Follow the events of one task (or, without `task_id`, of all tasks) as they happen.

        A task's stream starts with a `snapshot` of the task and ends after its final `state`
        event; the all-tasks stream does not end. A dropped connection is reopened with
        Last-Event-ID, so no durable event (a log line, a final state) is missed or repeated;
        the states on the way (pending, running, aggregating) are live only, and a task's
        reopened stream starts with a new snapshot. After `retries` failed
        reconnections in a row the last error is raised (MasterUnreachable, ClientError).
        StreamUnavailable if the master refuses the stream (unknown task, older master).
        """
        return self._follow(_EventStream(task_id, last_event_id, retries))

    # -- waiting for many tasks --

    def as_completed(
        self, handles: Iterable[TaskHandle], timeout: float | None = None
    ) -> Generator[TaskHandle, None, None]:
        """Yield each handle once its task is finished (in whatever state), in the order they
        finish, waiting over one event stream for all of them. A handle whose task's final JSON
        was read on the way has it in `task`; for the others `task` may still be stale.
        TimeoutError once `timeout` seconds have passed with tasks still unfinished."""
        return self._as_completed(_BulkWait(handles, timeout))

    def gather(self, handles: Iterable[TaskHandle], timeout: float | None = None) -> list[Any]:
        """Wait for every task; return their results in the order of `handles`. TaskFailed for
        the first task found to have ended other than succeeded; TimeoutError after `timeout`
        seconds. Results are read in bulk (pages of the finished-task lists)."""
        wait = _BulkWait(handles, timeout)
        finished = self._long_polls(wait) if wait.few() else self._as_completed(wait)
        for handle in finished:
            if wait.states[handle.id] != "succeeded":
                _raise_unless_succeeded(wait.tasks.get(handle.id) or handle.status())
        self._look_up(wait.results_lookup(), wait)
        return wait.results()

    def _as_completed(self, wait: _BulkWait[TaskHandle]) -> Generator[TaskHandle, None, None]:
        yield from wait.take()
        if len(wait.pending) == 1:  # one task: its long poll is all it takes
            yield from self._long_polls(wait)
            return
        try:
            yield from self._completions(wait)
        except StreamUnavailable:
            while wait.pending:  # a master without event streams: poll, in bulk
                self._look_up(wait.lookup(), wait)
                yield from wait.take()
                if wait.pending:
                    wait.raise_if_expired()
                    time.sleep(wait.next_poll())
            wait.raise_if_expired()

    def _long_polls(self, wait: _BulkWait[TaskHandle]) -> Generator[TaskHandle, None, None]:
        yield from wait.take()
        while (request := wait.long_poll()) is not None:
            wait.polled(self._call(request))
            yield from wait.take()

    def _look_up(self, lookup: _Lookup, wait: _BulkWait[TaskHandle]) -> None:
        while (request := lookup.next_request()) is not None:
            lookup.feed(self._call(request))
        wait.looked_up(lookup)

    def _completions(self, wait: _BulkWait[TaskHandle]) -> Generator[TaskHandle, None, None]:
        stream = wait.stream
        while wait.pending:
            try:
                r = stream.request()
                with self._http.stream(r.method, r.path, params=r.params, headers=r.headers,
                                       timeout=wait.stream_timeout()) as response:
                    if response.status_code >= 400:
                        response.read()
                    stream.opened(response)
                    self._look_up(wait.lookup(), wait)  # subscribed: what finished before?
                    yield from wait.take()
                    for chunk in response.iter_bytes():
                        if wait.on_events(stream.feed(chunk)):
                            self._look_up(wait.lookup(), wait)
                        yield from wait.take()
                        if not wait.pending:
                            return
                        wait.raise_if_expired()
                error: HerderError = MasterUnreachable(self.url, "the event stream ended")
            except _Retry as exc:
                error = exc.error or MasterUnreachable(self.url, "the event stream ended")
            except httpx.TransportError as exc:
                wait.raise_if_expired()
                error = _unreachable(self.url, exc)
            except MasterUnreachable as exc:
                error = exc
            time.sleep(wait.capped(stream.failed(error)))
            wait.raise_if_expired()

    def _logs(self, task_id: str, since: int) -> list[dict[str, Any]]:
        pager = _LogPager(task_id, since)
        while (request := pager.next_request()) is not None:
            pager.feed(self._call(request))
        return pager.logs

    def _follow(self, stream: _Stream[T]) -> Generator[T, None, None]:
        while not stream.done:
            try:
                yield from self._connect(stream)
                continue
            except _Retry as exc:
                error = exc.error or MasterUnreachable(self.url, "the stream kept closing early")
            except httpx.TransportError as exc:
                error = _unreachable(self.url, exc)
            except MasterUnreachable as exc:  # from end_request
                error = exc
            time.sleep(stream.failed(error))

    def _connect(self, stream: _Stream[T]) -> Generator[T, None, None]:
        r = stream.request()
        with self._http.stream(r.method, r.path, params=r.params, headers=r.headers,
                               timeout=_STREAM_TIMEOUT) as response:
            if response.status_code >= 400:
                response.read()
            stream.opened(response)
            for chunk in response.iter_bytes():
                yield from stream.feed(chunk)
                if stream.done:
                    return
            yield from stream.close()
        if not stream.done:
            end = stream.end_request()
            stream.ended(None if end is None else self._call(end))

    def close(self) -> None:
        self._http.close()
        if self._plain is not None:
            self._plain.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TaskHandle:
    """One submitted task. `task` is the last task JSON this handle saw (it may be stale)."""

    def __init__(self, client: Client, task_id: str, task: Task | None = None) -> None:
        self.client = client
        self.id = task_id
        self.task = task

    def status(self) -> Task:
        self.task = self.client._call(_status_request(self.id))
        return self.task

    def wait(self, timeout: float | None = None) -> Task:
        """Poll until the task is finished; return its JSON. TimeoutError after `timeout` s."""
        poll = _Poll(self.id, timeout)
        task: Task | None = None
        while task is None or not is_final(task):
            task = self.client._call(_status_request(self.id, poll.next_wait(task)))
            self.task = task
        return task

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then return the result; TaskFailed if the task did not succeed."""
        task = self.task if self.task is not None and is_final(self.task) else self.wait(timeout)
        held, value = _result_of(task)
        return value if held else self.client._call(_result_request(self.id))["result"]

    def cancel(self) -> Task:
        self.task = self.client._call(_cancel_request(self.id))
        return self.task

    @overload
    def logs(self, since: int = 0, follow: Literal[False] = False) -> list[dict[str, Any]]: ...

    @overload
    def logs(self, since: int = 0, *, follow: Literal[True]) -> Generator[Log, None, None]: ...

    def logs(
        self, since: int = 0, follow: bool = False
    ) -> list[Log] | Generator[Log, None, None]:
        """The stored log records after seq `since`, oldest first (a WARNING marker record
        stands for records dropped by the per-task bound). With `follow=True`, an iterator that
        also yields new records as they arrive, until the task is finished."""
        if follow:
            return self.client._follow(_LogStream(self.id, since, STREAM_RETRIES))
        return self.client._logs(self.id, since)

    def events(self, last_event_id: int | str | None = None) -> Generator[Event, None, None]:
        """`Client.events` of this task; each snapshot also refreshes `task`."""
        for event in self.client.events(self.id, last_event_id):
            if event.kind == "snapshot":
                self.task = event.data
            yield event

    def subtasks(self) -> list[dict[str, Any]]:
        """Each subtask's state, attempts, worker, times and last progress message."""
        return list(self.client._call(_subtasks_request(self.id))["subtasks"])

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"


# -- asynchronous: the same, awaited -----------------------------------------------------------


class AsyncClient(_Base):
    """The async twin of `Client`, over httpx.AsyncClient. Use `async with`, or `aclose()`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )

    async def _call(self, request: _Request) -> Any:
        try:
            response = await self._http.request(
                request.method, request.path, params=request.params, json=request.json,
                timeout=_timeout_of(request),
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        return _read(response)

    async def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        id: str | None = None,
        retries: int | None = None,
    ) -> AsyncTaskHandle:
        body = _task_body(type, params, priority, timeout, id, retries)
        task = await self._call(_submit_request(body))
        return AsyncTaskHandle(self, task["id"], task)

    async def run(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        id: str | None = None,
        retries: int | None = None,
        *,
        wait: float | None = None,
    ) -> Any:
        """The async twin of `Client.run`."""
        started = time.monotonic()
        body = _task_body(type, params, priority, timeout, id, retries)
        task = await self._call(_submit_request(body, _first_wait(wait)))
        handle = AsyncTaskHandle(self, task["id"], task)
        if not is_final(task):
            left = None if wait is None else max(0.0, wait - (time.monotonic() - started))
            task = await handle.wait(left)
        return await handle.result(timeout=0)

    async def submit_many(self, items: Sequence[Mapping[str, Any]]) -> list[AsyncTaskHandle]:
        answer = await self._call(_Request("POST", f"{API}/tasks/batch", json=_batch_body(items)))
        tasks, statuses, details = _batch_outcome(answer)
        handles = [AsyncTaskHandle(self, t["id"], t) if t else None for t in tasks]
        if any(s != 201 for s in statuses):
            raise BatchSubmitError(handles, statuses, details)
        return [h for h in handles if h is not None]

    async def get(self, task_id: str) -> AsyncTaskHandle:
        task = await self._call(_status_request(task_id))
        return AsyncTaskHandle(self, task["id"], task)

    async def list_tasks(
        self, state: str | None = None, type: str | None = None, limit: int = 100
    ) -> list[Task]:
        pager = _Pager(state, type, limit)
        while (request := pager.next_request()) is not None:
            pager.feed(await self._call(request))
        return pager.tasks

    async def workers(self) -> list[dict[str, Any]]:
        return list((await self._call(_Request("GET", f"{API}/workers")))["workers"])

    async def types(self) -> list[dict[str, Any]]:
        return list((await self._call(_Request("GET", f"{API}/types")))["types"])

    async def health(self) -> dict[str, Any]:
        return dict(await self._call(_Request("GET", "/healthz")))

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call(_Request("GET", f"{API}/stats")))

    def events(
        self, task_id: str | None = None, last_event_id: int | str | None = None,
        *, retries: int = STREAM_RETRIES,
    ) -> AsyncGenerator[Event, None]:
        """`Client.events`, as an async iterator. Leaving the loop early does not close the
        connection until the iterator is collected: wrap it in `contextlib.aclosing`."""
        return self._follow(_EventStream(task_id, last_event_id, retries))

    # -- waiting for many tasks --

    def as_completed(
        self, handles: Iterable[AsyncTaskHandle], timeout: float | None = None
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        """`Client.as_completed`, as an async iterator (wrap it in `contextlib.aclosing` to
        close its stream at once when leaving the loop early)."""
        return self._as_completed(_BulkWait(handles, timeout))

    async def gather(
        self, handles: Iterable[AsyncTaskHandle], timeout: float | None = None
    ) -> list[Any]:
        """`Client.gather`, awaited."""
        wait = _BulkWait(handles, timeout)
        plan = self._long_polls(wait) if wait.few() else self._as_completed(wait)
        async with contextlib.aclosing(plan) as finished:
            async for handle in finished:
                if wait.states[handle.id] != "succeeded":
                    _raise_unless_succeeded(wait.tasks.get(handle.id) or await handle.status())
        await self._look_up(wait.results_lookup(), wait)
        return wait.results()

    async def _as_completed(
        self, wait: _BulkWait[AsyncTaskHandle]
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
        self, wait: _BulkWait[AsyncTaskHandle]
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        for handle in wait.take():
            yield handle
        while (request := wait.long_poll()) is not None:
            wait.polled(await self._call(request))
            for handle in wait.take():
                yield handle

    async def _look_up(self, lookup: _Lookup, wait: _BulkWait[AsyncTaskHandle]) -> None:
        while (request := lookup.next_request()) is not None:
            lookup.feed(await self._call(request))
        wait.looked_up(lookup)

    async def _completions(
        self, wait: _BulkWait[AsyncTaskHandle]
    ) -> AsyncGenerator[AsyncTaskHandle, None]:
        stream = wait.stream
        while wait.pending:
            try:
                r = stream.request()
                async with self._http.stream(r.method, r.path, params=r.params,
                                             headers=r.headers,
                                             timeout=wait.stream_timeout()) as response:
                    if response.status_code >= 400:
                        await response.aread()
                    stream.opened(response)
                    await self._look_up(wait.lookup(), wait)
                    for handle in wait.take():
                        yield handle
                    async for chunk in response.aiter_bytes():
                        if wait.on_events(stream.feed(chunk)):
                            await self._look_up(wait.lookup(), wait)
                        for handle in wait.take():
                            yield handle
                        if not wait.pending:
                            return
                        wait.raise_if_expired()
                error: HerderError = MasterUnreachable(self.url, "the event stream ended")
            except _Retry as exc:
                error = exc.error or MasterUnreachable(self.url, "the event stream ended")
            except httpx.TransportError as exc:
                wait.raise_if_expired()
                error = _unreachable(self.url, exc)
            except MasterUnreachable as exc:
                error = exc
            await asyncio.sleep(wait.capped(stream.failed(error)))
            wait.raise_if_expired()

    async def _logs(self, task_id: str, since: int) -> list[dict[str, Any]]:
        pager = _LogPager(task_id, since)
        while (request := pager.next_request()) is not None:
            pager.feed(await self._call(request))
        return pager.logs

    async def _follow(self, stream: _Stream[T]) -> AsyncGenerator[T, None]:
        while not stream.done:
            try:
                async for item in self._connect(stream):
                    yield item
                continue
            except _Retry as exc:
                error = exc.error or MasterUnreachable(self.url, "the stream kept closing early")
            except httpx.TransportError as exc:
                error = _unreachable(self.url, exc)
            except MasterUnreachable as exc:
                error = exc
            await asyncio.sleep(stream.failed(error))

    async def _connect(self, stream: _Stream[T]) -> AsyncGenerator[T, None]:
        r = stream.request()
        async with self._http.stream(r.method, r.path, params=r.params, headers=r.headers,
                                     timeout=_STREAM_TIMEOUT) as response:
            if response.status_code >= 400:
                await response.aread()
            stream.opened(response)
            async for chunk in response.aiter_bytes():
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
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncTaskHandle:
    """The async twin of `TaskHandle`."""

    def __init__(self, client: AsyncClient, task_id: str, task: Task | None = None) -> None:
        self.client = client
        self.id = task_id
        self.task = task

    async def status(self) -> Task:
        self.task = await self.client._call(_status_request(self.id))
        return self.task

    async def wait(self, timeout: float | None = None) -> Task:
        poll = _Poll(self.id, timeout)
        task: Task | None = None
        while task is None or not is_final(task):
            task = await self.client._call(_status_request(self.id, poll.next_wait(task)))
            self.task = task
        return task

    async def result(self, timeout: float | None = None) -> Any:
        if self.task is not None and is_final(self.task):
            task = self.task
        else:
            task = await self.wait(timeout)
        held, value = _result_of(task)
        return value if held else (await self.client._call(_result_request(self.id)))["result"]

    async def cancel(self) -> Task:
        self.task = await self.client._call(_cancel_request(self.id))
        return self.task

    @overload
    def logs(
        self, since: int = 0, follow: Literal[False] = False
    ) -> Coroutine[Any, Any, list[dict[str, Any]]]: ...

    @overload
    def logs(self, since: int = 0, *, follow: Literal[True]) -> AsyncGenerator[Log, None]: ...

    def logs(
        self, since: int = 0, follow: bool = False
    ) -> Coroutine[Any, Any, list[Log]] | AsyncGenerator[Log, None]:
        """`await handle.logs(since)`, or `async for record in handle.logs(since, follow=True)`."""
        if follow:
            return self.client._follow(_LogStream(self.id, since, STREAM_RETRIES))
        return self.client._logs(self.id, since)

    async def events(
        self, last_event_id: int | str | None = None
    ) -> AsyncGenerator[Event, None]:
        async for event in self.client.events(self.id, last_event_id):
            if event.kind == "snapshot":
                self.task = event.data
            yield event

    async def subtasks(self) -> list[dict[str, Any]]:
        return list((await self.client._call(_subtasks_request(self.id)))["subtasks"])

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.id!r})"
