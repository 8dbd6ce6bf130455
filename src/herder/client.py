"""The Python client of the HTTP API: `Client` / `TaskHandle` and their async twins.

The logic both twins share lives once, sans I/O, at the top: building requests (`_Request`),
reading responses into values or errors (`_read`), paging task lists (`_Pager`) and the polling
schedule of `wait` (`_Poll`). The two clients only send the requests, with httpx's sync or async
client; each of their methods is a line or two.

Imports httpx, `config` and `errors`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from herder.config import env_token, env_url
from herder.errors import ClientError, HerderError, TaskFailed

__all__ = [
    "FINAL_STATES",
    "AsyncClient",
    "AsyncTaskHandle",
    "BatchSubmitError",
    "Client",
    "MasterUnreachable",
    "QueueFull",
    "TaskHandle",
    "is_final",
]

API = "/api/v1"
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

Task = dict[str, Any]


class MasterUnreachable(HerderError, ConnectionError):
    """The master could not be reached at all (refused, DNS, timeout, broken connection)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the master at {url}: {reason}")
        self.url = url
        self.reason = reason


class QueueFull(ClientError):
    """429: the master's pending queue is full; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


class BatchSubmitError(ClientError):
    """`submit_many`: some items were refused. The others *were* submitted: `handles` has, per
    item, its handle or None, and `details` the refusal message or None."""

    def __init__(
        self, handles: list[Any], statuses: list[int], details: list[str | None]
    ) -> None:
        refused = [(i, s, d) for i, (s, d) in enumerate(zip(statuses, details, strict=True))
                   if s != 201]
        first_i, first_status, first_detail = refused[0]
        summary = f"{len(refused)} of {len(statuses)} tasks refused; item {first_i}: {first_detail}"
        super().__init__(first_status, summary)
        self.handles = handles
        self.statuses = statuses
        self.details = details


def is_final(task: Mapping[str, Any]) -> bool:
    """True when the task JSON is in a state it will never leave."""
    return task.get("state") in FINAL_STATES


def normalize_url(url: str) -> str:
    """`localhost:8700` -> `http://localhost:8700`; no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


# -- sans I/O: requests and responses ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None


def _task_body(
    type: str, params: Mapping[str, Any] | None, priority: int, timeout: float | None,
    id: str | None, retries: int | None = None,
) -> dict[str, Any]:
    body = {
        "type": type,
        "params": dict(params) if params is not None else {},
        "priority": priority,
        "timeout": timeout,
        "id": id,
    }
    if retries is not None:
        body["retries"] = retries
    return body


def _batch_body(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    body = []
    for i, item in enumerate(items):
        if "type" not in item:
            raise ValueError(f"submit_many: item {i} has no 'type'")
        body.append(
            _task_body(
                item["type"], item.get("params"), item.get("priority", 0), item.get("timeout"),
                item.get("id"), item.get("retries"),
            )
        )
    return body


def _task_path(task_id: str, suffix: str = "") -> str:
    # Task ids are user-chosen; quote them so that '/' or '?' cannot reach another route.
    return f"{API}/tasks/{quote(task_id, safe='')}{suffix}"


def _status_request(task_id: str) -> _Request:
    return _Request("GET", _task_path(task_id))


def _result_request(task_id: str) -> _Request:
    return _Request("GET", _task_path(task_id, "/result"))


def _cancel_request(task_id: str) -> _Request:
    return _Request("POST", _task_path(task_id, "/cancel"))


def _logs_request(task_id: str, since: int) -> _Request:
    return _Request("GET", _task_path(task_id, "/logs"), params={"since": since})


def _detail(response: httpx.Response) -> str:
    """The server's `detail`, flattened to one line (FastAPI's 422 gives a list of problems)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail) if detail is not None else response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _read(response: httpx.Response) -> Any:
    """The JSON body of a successful answer, or the matching ClientError."""
    if response.status_code == 429:
        raise QueueFull(_detail(response), _retry_after(response))
    if response.status_code >= 400:
        raise ClientError(response.status_code, _detail(response))
    return response.json()


def _unreachable(url: str, exc: httpx.TransportError) -> MasterUnreachable:
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer in time ({type(exc).__name__})"
    else:
        reason = str(exc) or type(exc).__name__
    return MasterUnreachable(url, reason)


def _batch_outcome(answer: list[dict[str, Any]]) -> tuple[list[Task | None], list[int],
                                                           list[str | None]]:
    tasks = [item.get("task") if item.get("status") == 201 else None for item in answer]
    statuses = [int(item.get("status", 0)) for item in answer]
    details = [item.get("detail") for item in answer]
    return tasks, statuses, details


class _Pager:
    """Follows `next_cursor` until `limit` tasks are collected or the list ends."""

    def __init__(self, state: str | None, type: str | None, limit: int) -> None:
        self._filters = {k: v for k, v in (("state", state), ("type", type)) if v is not None}
        self._limit = limit
        self._cursor: str | None = None
        self._done = limit <= 0
        self.tasks: list[Task] = []

    def next_request(self) -> _Request | None:
        if self._done:
            return None
        params: dict[str, Any] = {**self._filters, "limit": self._limit - len(self.tasks)}
        if self._cursor is not None:
            params["cursor"] = self._cursor
        return _Request("GET", f"{API}/tasks", params=params)

    def feed(self, page: dict[str, Any]) -> None:
        self.tasks.extend(page.get("tasks", [])[: self._limit - len(self.tasks)])
        self._cursor = page.get("next_cursor")
        self._done = self._cursor is None or len(self.tasks) >= self._limit


class _Poll:
    """The schedule of `wait`: a short interval growing from 10 ms to 200 ms, within a deadline.

    Short first intervals keep tiny tasks fast to wait for; the cap keeps a long wait cheap.
    """

    FIRST = 0.01
    CAP = 0.2
    GROWTH = 1.5

    def __init__(self, task_id: str, timeout: float | None) -> None:
        self._task_id = task_id
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._interval = self.FIRST

    def next_delay(self, task: Task) -> float:
        """Seconds to sleep before the next poll; TimeoutError once the deadline has passed."""
        delay = self._interval
        self._interval = min(self.CAP, self._interval * self.GROWTH)
        if self._deadline is None:
            return delay
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"task {self._task_id} is still {task.get('state')} after {self._timeout} s"
            )
        return min(delay, left)


def _raise_unless_succeeded(task: Task) -> None:
    if task.get("state") != "succeeded":
        raise TaskFailed(str(task.get("id")), str(task.get("state")), task.get("error"))


class _Base:
    """URL, headers and request building, shared by both clients."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self.url = normalize_url(url or env_url())
        self.token = token if token is not None else env_token()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "herder-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


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

    def _call(self, request: _Request) -> Any:
        try:
            response = self._http.request(
                request.method, request.path, params=request.params, json=request.json
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
        task = self._call(_Request("POST", f"{API}/tasks", json=body))
        return TaskHandle(self, task["id"], task)

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

    def close(self) -> None:
        self._http.close()

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
        while not is_final(task := self.status()):
            time.sleep(poll.next_delay(task))
        return task

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then return the result; TaskFailed if the task did not succeed."""
        task = self.wait(timeout)
        _raise_unless_succeeded(task)
        return self.client._call(_result_request(self.id))["result"]

    def cancel(self) -> Task:
        self.task = self.client._call(_cancel_request(self.id))
        return self.task

    def logs(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self.client._call(_logs_request(self.id, since))["logs"])

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
                request.method, request.path, params=request.params, json=request.json
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
        task = await self._call(_Request("POST", f"{API}/tasks", json=body))
        return AsyncTaskHandle(self, task["id"], task)

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
        while not is_final(task := await self.status()):
            await asyncio.sleep(poll.next_delay(task))
        return task

    async def result(self, timeout: float | None = None) -> Any:
        task = await self.wait(timeout)
        _raise_unless_succeeded(task)
        return (await self.client._call(_result_request(self.id)))["result"]

    async def cancel(self) -> Task:
        self.task = await self.client._call(_cancel_request(self.id))
        return self.task

    async def logs(self, since: int = 0) -> list[dict[str, Any]]:
        return list((await self.client._call(_logs_request(self.id, since)))["logs"])

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.id!r})"
