"""`Client` and `TaskHandle`: the HTTP API from blocking code.

Each method follows a plan of `plan` or `streams` and sends its requests through
`transport.Transport`; `aio` is the same for asyncio. Schedules are `client.schedules`
(`schedules`); waiting for many tasks is `completion`'s job, following a stream `following`'s.
Imports `errors` and the client's modules.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, cast, overload

from herder.client.completion import Completions
from herder.client.curl import Link
from herder.client.errors import BatchSubmitError
from herder.client.following import Follower
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
from herder.client.schedules import Schedules
from herder.client.streams import STREAM_RETRIES, Event, EventStream, LogStream
from herder.client.transport import Transport, TransportConfig
from herder.protocol.answers import (
    HealthAnswer,
    LogLine,
    StatsAnswer,
    SubtaskView,
    TaskView,
    TypeView,
    WorkerView,
)


class Client:
    """Talks to a master: `url` is its URL, a comma list of several (failover: see
    `herder.client.masters`) or a sequence of them; None reads HERDER_URL. `token` None reads
    HERDER_TOKEN; `ca`, a CA file for https:// masters, None reads HERDER_CA (else the system's
    CA store). `transport`: a `curl.Link` to send through instead of libcurl (a test's network).
    Use it as a context manager, or call `close()`.

    `schedules` adds, lists and removes schedules. `workers()` and `drain_worker()` stay on the
    client: two calls that share nothing but the worker list they answer with."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        ca: str | None = None,
        transport: Link | None = None,
    ) -> None:
        self._config = TransportConfig(url, token, timeout, ca)
        self._transport = Transport(self._config, transport)
        self.token = self._config.token
        #: add, list and remove schedules (`herder schedule ...`)
        self.schedules = Schedules(self._call)
        self._follower = Follower(self._transport)
        self._completions = Completions(self._transport)

    @property
    def url(self) -> str:
        """The URL of the master this client talks to (of several: the one that answered)."""
        return self._config.url

    @property
    def urls(self) -> list[str]:
        return list(self._config.urls)

    def _call(self, request: Request) -> Any:
        return read_answer(self._transport.call(request))

    def submit(
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
    ) -> TaskHandle:
        body = task_body(
            type, params, priority, timeout, id, retries, not_before,
            max_parallel=max_parallel, labels=labels,
        )
        task = self._call(submit_request(body))
        return TaskHandle(self, task["id"], task)

    def run(
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
        """Submit a task and return its result: one round trip when it finishes within a long
        poll (`POST /tasks?wait=`). TaskFailed if it does not succeed; TimeoutError when it is
        still unfinished after `wait` seconds (it goes on; find it with `list_tasks`)."""
        started = time.monotonic()
        body = task_body(
            type, params, priority, timeout, id, retries, not_before,
            max_parallel=max_parallel, labels=labels,
        )
        task = self._call(submit_request(body, first_wait(wait)))
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
        answer = self._call(batch_request(batch_body(items)))
        tasks, statuses, details = batch_outcome(answer)
        handles = [TaskHandle(self, t["id"], t) if t else None for t in tasks]
        if any(s != 201 for s in statuses):
            raise BatchSubmitError(handles, statuses, details)
        return [h for h in handles if h is not None]

    def get(self, task_id: str) -> TaskHandle:
        task = self._call(status_request(task_id))
        return TaskHandle(self, task["id"], task)

    def list_tasks(
        self, state: str | None = None, type: str | None = None, limit: int = 100,
        schedule: str | None = None,
    ) -> list[TaskView]:
        """Newest first; `schedule`: the tasks that schedule fired (no other filter with it)."""
        pager = Pager(state, type, limit, schedule)
        while (request := pager.next_request()) is not None:
            pager.feed(self._call(request))
        return pager.tasks

    def workers(self) -> list[WorkerView]:
        return list(self._call(WORKERS)["workers"])

    def drain_worker(self, name: str) -> list[WorkerView]:
        """Ask the connected worker `name` (a name, or an id) to finish what it runs, take no
        more and stop; the workers asked. Needs the admin token; ClientError 404 if none is
        connected."""
        return list(self._call(drain_request(name))["workers"])

    def delete(self, task_id: str) -> None:
        """Delete a finished task now, with its subtasks, results and logs. ClientError 409 if
        it has not finished, 404 if there is no such task."""
        self._call(delete_request(task_id))

    def types(self) -> list[TypeView]:
        return list(self._call(TYPES)["types"])

    def health(self) -> HealthAnswer:
        return cast(HealthAnswer, self._call(HEALTH))

    def stats(self) -> StatsAnswer:
        return cast(StatsAnswer, self._call(STATS))

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
        return self._follower.follow(EventStream(task_id, last_event_id, retries))

    def as_completed(
        self, handles: Iterable[TaskHandle], timeout: float | None = None
    ) -> Generator[TaskHandle, None, None]:
        """Yield each handle once its task is finished (in whatever state), in the order they
        finish, waiting over one event stream for all of them. A handle whose task's final JSON
        was read on the way has it in `task`; for the others `task` may still be stale.
        TimeoutError once `timeout` seconds have passed with tasks still unfinished."""
        return self._completions.as_completed(handles, timeout)

    def gather(self, handles: Iterable[TaskHandle], timeout: float | None = None) -> list[Any]:
        """Wait for every task; return their results in the order of `handles`. TaskFailed for
        the first task found to have ended other than succeeded; TimeoutError after `timeout`
        seconds. Results are read in bulk (pages of the finished-task lists)."""
        return self._completions.gather(handles, timeout)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


class TaskHandle:
    """One submitted task. `task` is the last task JSON this handle saw (it may be stale)."""

    def __init__(self, client: Client, task_id: str, task: TaskView | None = None) -> None:
        self.client = client
        self.id = task_id
        self.task = task

    def status(self) -> TaskView:
        task: TaskView = self.client._call(status_request(self.id))
        self.task = task
        return task

    def wait(self, timeout: float | None = None) -> TaskView:
        """Poll until the task is finished; return its JSON. TimeoutError after `timeout` s."""
        poll = Poll(self.id, timeout)
        task: TaskView | None = None
        while task is None or not is_final(task):
            task = self.client._call(status_request(self.id, poll.next_wait(task)))
            self.task = task
        return task

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then return the result; TaskFailed if the task did not succeed."""
        task = self.task if self.task is not None and is_final(self.task) else self.wait(timeout)
        held, value = result_of(task)
        return value if held else self.client._call(result_request(self.id))["result"]

    def delete(self) -> None:
        """Delete the task, now that it has finished (`Client.delete`)."""
        self.client.delete(self.id)

    def cancel(self) -> TaskView:
        task: TaskView = self.client._call(cancel_request(self.id))
        self.task = task
        return task

    @overload
    def logs(self, since: int = 0, follow: Literal[False] = False) -> list[LogLine]: ...

    @overload
    def logs(self, since: int = 0, *, follow: Literal[True]) -> Generator[LogLine, None, None]: ...

    def logs(
        self, since: int = 0, follow: bool = False
    ) -> list[LogLine] | Generator[LogLine, None, None]:
        """The stored log records after seq `since`, oldest first (a WARNING marker record
        stands for records dropped by the per-task bound). With `follow=True`, an iterator that
        also yields new records as they arrive, until the task is finished."""
        if follow:
            return self.client._follower.follow(LogStream(self.id, since, STREAM_RETRIES))
        pager = LogPager(self.id, since)
        while (request := pager.next_request()) is not None:
            pager.feed(self.client._call(request))
        return pager.logs

    def events(self, last_event_id: int | str | None = None) -> Generator[Event, None, None]:
        """`Client.events` of this task; each snapshot also refreshes `task`."""
        for event in self.client.events(self.id, last_event_id):
            if event.kind == "snapshot":
                self.task = cast(TaskView, event.data)
            yield event

    def subtasks(self) -> list[SubtaskView]:
        """Each subtask's state, attempts, worker, times and last progress message, in index
        order (read a page at a time)."""
        pager = SubtaskPager(self.id)
        while (request := pager.next_request()) is not None:
            pager.feed(self.client._call(request))
        return pager.subtasks

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"
