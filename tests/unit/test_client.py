"""The client against a fake network (`handlerpool`): errors mapped to exceptions, batches,
paging, the wait deadline, and following streams (events and logs) across dropped connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from herder.client import (
    AsyncClient,
    AsyncTaskHandle,
    BatchSubmitError,
    Client,
    Event,
    MasterUnreachable,
    QueueFull,
    StreamUnavailable,
    TaskHandle,
)
from herder.client.plan import LogPager
from herder.client.streams import Stream
from herder.errors import ClientError, TaskFailed
from tests.unit.handlerpool import AsyncHandlerPool, HandlerPool

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Stream, "FIRST", 0.001)
    monkeypatch.setattr(Stream, "CAP", 0.002)


def client(handler: Handler) -> Client:
    return Client("http://master.test", token="s3cret", transport=HandlerPool(handler))


def task(state: str = "running", **extra: Any) -> dict[str, Any]:
    return {"id": "t1", "type": "sleep", "state": state, "progress": {"fraction": 0.5},
            "eta_seconds": None, "error": None, **extra}


def sse(kind: str, data: dict[str, Any], id: int | None = None) -> bytes:
    head = f"event: {kind}\n" + (f"id: {id}\n" if id is not None else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


def stream_response(chunks: list[bytes], drop: bool = False) -> httpx.Response:
    """An event stream of `chunks`; with `drop`, the connection breaks after the last one."""

    def body() -> Iterator[bytes]:
        yield from chunks
        if drop:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


# -- requests and error mapping ----------------------------------------------------------------


def test_submit_sends_the_body_and_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=task("pending"))

    handle = client(handler).submit("sleep", {"seconds": 1}, priority=3, id="t1")
    assert handle.id == "t1" and handle.task is not None and handle.task["state"] == "pending"
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/api/v1/tasks"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert json.loads(request.content) == {"type": "sleep", "params": {"seconds": 1},
                                           "priority": 3, "id": "t1"}
    # fields left at the server's defaults are not sent
    client(handler).submit("sleep")
    assert json.loads(seen[1].content) == {"type": "sleep"}


def test_task_ids_are_quoted_into_one_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json=task(id="a/b?c"))

    client(handler).get("a/b?c")
    assert paths == ["/api/v1/tasks/a%2Fb%3Fc"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, {"detail": "task 'x' not found"}, "task 'x' not found"),
        (409, {"detail": "task 'x' is already cancelled"}, "task 'x' is already cancelled"),
        (422, {"detail": [{"loc": ["body", "params", "limit"], "msg": "not an int"},
                          {"loc": ["body", "type"], "msg": "unknown"}]},
         "params.limit: not an int; type: unknown"),
        (401, "plain text", "plain text"),
    ],
)
def test_error_statuses_raise_client_error(status: int, body: Any, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(ClientError) as caught:
        client(handler).get("x")
    assert caught.value.status == status
    assert caught.value.message == message


def test_429_is_queue_full_with_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"detail": "queue full"}, headers={"Retry-After": "2"})

    with pytest.raises(QueueFull) as caught:
        client(handler).submit("sleep")
    assert caught.value.retry_after == 2.0 and caught.value.status == 429


def test_transport_errors_are_master_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(MasterUnreachable, match=r"cannot reach the master at http://master\.test"):
        client(handler).health()


def test_result_of_a_failed_task_raises_task_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=task("failed", error={"message": "boom"}))

    with pytest.raises(TaskFailed, match="ended failed: boom"):
        client(handler).get("t1").result(timeout=1)


# -- batch and paging --------------------------------------------------------------------------


def test_submit_many_all_accepted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)
        return httpx.Response(200, json=[
            {"status": 201, "task": task(id=f"t{i}"), "detail": None} for i in range(len(items))])

    handles = client(handler).submit_many([{"type": "noop"}, {"type": "noop", "priority": 2}])
    assert [h.id for h in handles] == ["t0", "t1"]


def test_submit_many_partly_refused_names_the_items() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[
            {"status": 201, "task": task(id="ok"), "detail": None},
            {"status": 409, "task": None, "detail": "task 'dup' exists"},
        ])

    with pytest.raises(BatchSubmitError) as caught:
        client(handler).submit_many([{"type": "noop"}, {"type": "noop", "id": "dup"}])
    error = caught.value
    assert error.statuses == [201, 409] and error.status == 409
    assert [h.id if h else None for h in error.handles] == ["ok", None]
    assert "item 1: task 'dup' exists" in str(error)


def test_submit_many_item_without_type() -> None:
    with pytest.raises(ValueError, match="item 1 has no 'type'"):
        client(lambda r: httpx.Response(500)).submit_many([{"type": "a"}, {"params": {}}])


def test_list_tasks_follows_the_cursor_up_to_the_limit() -> None:
    pages = {None: (["a", "b"], "c1"), "c1": (["c", "d"], "c2"), "c2": (["e"], None)}
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        ids, cursor = pages[params.get("cursor")]
        return httpx.Response(200, json={"tasks": [task(id=i) for i in ids][: int(params["limit"])],
                                         "next_cursor": cursor})

    tasks = client(handler).list_tasks(state="running", limit=3)
    assert [t["id"] for t in tasks] == ["a", "b", "c"]
    assert seen[0] == {"state": "running", "limit": "3"}
    assert seen[1] == {"state": "running", "limit": "1", "cursor": "c1"}
    assert len(seen) == 2


def test_logs_pages_until_a_short_page_and_keeps_the_marker_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(LogPager, "PAGE", 3)
    marker = {"seq": 4, "level": "WARNING", "message": "4 older log records were dropped",
              "subtask": None}
    stored: list[dict[str, Any]] = [
        {"seq": n, "level": "INFO", "message": f"line {n}"} for n in range(5, 10)]
    sinces: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        since, limit = int(request.url.params["since"]), int(request.url.params["limit"])
        sinces.append(since)
        kept = [r for r in stored if r["seq"] > since][:limit]
        # like the master: the marker first when records between `since` and the first were lost
        return httpx.Response(200, json={"logs": [marker, *kept] if since < 4 else kept,
                                         "dropped": 4})

    logs = TaskHandle(client(handler), "t1").logs()
    assert [r["seq"] for r in logs] == [4, 5, 6, 7, 8, 9]
    assert sinces == [0, 7]


# -- wait --------------------------------------------------------------------------------------


def test_wait_times_out_while_the_task_runs() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=task("running"))

    with pytest.raises(TimeoutError, match=r"still running after 0\.1 s"):
        TaskHandle(client(handler), "t1").wait(timeout=0.1)
    assert len(calls) >= 2  # it polled more than once before giving up


def test_wait_returns_the_final_task() -> None:
    states = iter(["pending", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=task(next(states)))

    assert TaskHandle(client(handler), "t1").wait(timeout=5)["state"] == "succeeded"


# -- events ------------------------------------------------------------------------------------


def test_events_reconnect_with_last_event_id_and_end_after_the_final_state() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return stream_response([
                sse("snapshot", task("pending")),
                sse("state", {"task_id": "t1", "state": "running"}, id=11),
                sse("progress", {"task_id": "t1", "state": "running",
                                 "progress": {"fraction": 0.25}, "eta_seconds": 3.0}),
                sse("log", {"task_id": "t1", "seq": 1, "message": "hi"}, id=12)[:10],
            ], drop=True)  # the log event is cut off: it must come again, whole, after resuming
        return stream_response([
            sse("snapshot", task("running")),
            b": keep-alive\n\n",
            sse("log", {"task_id": "t1", "seq": 1, "message": "hi"}, id=12),
            sse("state", {"task_id": "t1", "state": "succeeded"}, id=13),
            sse("log", {"task_id": "t1", "seq": 2, "message": "never read"}, id=14),
        ])

    handle = TaskHandle(client(handler), "t1")
    events = list(handle.events())
    assert [(e.kind, e.id) for e in events] == [
        ("snapshot", None), ("state", 11), ("progress", None), ("snapshot", None), ("log", 12),
        ("state", 13)]
    assert events[2].data["progress"] == {"fraction": 0.25}
    assert "last-event-id" not in requests[0].headers
    assert requests[1].headers["last-event-id"] == "11"
    assert requests[1].url.path == "/api/v1/tasks/t1/events"
    assert requests[1].headers["accept"] == "text/event-stream"
    assert handle.task is not None and handle.task["state"] == "running"  # the last snapshot


def test_events_resume_from_the_given_id_and_follow_all_tasks() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return stream_response([sse("state", {"task_id": "x", "state": "running"}, id=8)])

    stream = client(handler).events(last_event_id=7)
    first = next(stream)
    assert first == Event("state", 8, {"task_id": "x", "state": "running"})
    assert requests[0].url.path == "/api/v1/events"
    assert requests[0].headers["last-event-id"] == "7"
    # the all-tasks stream does not end when a connection closes: it reconnects from 8
    second = next(stream)
    assert second.id == 8 and requests[1].headers["last-event-id"] == "8"
    stream.close()


def test_a_snapshot_of_a_finished_task_then_the_end_is_the_end() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return stream_response([sse("snapshot", task("cancelled"))])

    events = list(client(handler).events("t1", last_event_id=99))
    assert [e.kind for e in events] == ["snapshot"] and len(calls) == 1


def test_a_stream_closed_early_is_reopened() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return stream_response([sse("snapshot", task("running"))])  # closed, no error
        return stream_response([sse("state", {"state": "failed"}, id=3)])

    assert [e.kind for e in client(handler).events("t1")] == ["snapshot", "state"]
    assert len(calls) == 2


def test_events_give_up_after_the_retries() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused")

    with pytest.raises(MasterUnreachable, match="connection refused"):
        list(client(handler).events("t1", retries=3))
    assert len(calls) == 4  # the first try and 3 retries


def test_events_retry_503_then_succeed() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503, json={"detail": "starting"})
        return stream_response([sse("state", {"state": "succeeded"}, id=1)])

    assert [e.id for e in client(handler).events("t1")] == [1]


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(404, json={"detail": "task 'nope' not found"}), "not found"),
        (httpx.Response(200, json={"tasks": []}), "expected text/event-stream"),
    ],
)
def test_a_refused_stream_is_stream_unavailable_at_once(response: httpx.Response,
                                                        match: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    with pytest.raises(StreamUnavailable, match=match):
        list(client(handler).events("nope"))
    assert len(calls) == 1


# -- logs follow -------------------------------------------------------------------------------


def test_logs_follow_resumes_with_since_and_ends_when_the_task_has() -> None:
    log_requests: list[httpx.Request] = []
    states = iter(["running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/t1"):
            return httpx.Response(200, json=task(next(states)))
        log_requests.append(request)
        n = len(log_requests)
        if n == 1:
            return stream_response([sse("log", {"seq": 1, "message": "a"}),
                                    sse("log", {"seq": 2, "message": "b"})], drop=True)
        if n == 2:  # sends 2 again (a server may), then closes cleanly though the task runs on
            return stream_response([sse("log", {"seq": 2, "message": "b"}),
                                    sse("log", {"seq": 3, "message": "c"})])
        return stream_response([sse("log", {"seq": 4, "message": "d"})])

    records = list(TaskHandle(client(handler), "t1").logs(follow=True))
    assert [r["message"] for r in records] == ["a", "b", "c", "d"]
    assert [dict(r.url.params) for r in log_requests] == [
        {"since": "0", "follow": "true"}, {"since": "2", "follow": "true"},
        {"since": "3", "follow": "true"}]


# -- the async twin ----------------------------------------------------------------------------


def async_client(handler: Handler) -> AsyncClient:
    return AsyncClient("http://master.test", transport=AsyncHandlerPool(handler))


def async_stream(chunks: list[bytes], drop: bool = False) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if drop:
            raise httpx.ReadError("connection reset")

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def test_async_events_reconnect_and_logs() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, json={"logs": [{"seq": 1, "message": "x"}], "dropped": 0})
        if len(requests) == 1:
            return async_stream([sse("snapshot", task()), sse("log", {"seq": 1}, id=5)],
                                drop=True)
        return async_stream([sse("state", {"state": "succeeded"}, id=6)])

    async def main() -> tuple[list[Event], list[dict[str, Any]]]:
        async with async_client(handler) as c:
            h = AsyncTaskHandle(c, "t1")
            events = [e async for e in h.events()]
            return events, await h.logs()

    events, logs = asyncio.run(main())
    assert [(e.kind, e.id) for e in events] == [("snapshot", None), ("log", 5), ("state", 6)]
    assert requests[1].headers["last-event-id"] == "5"
    assert logs == [{"seq": 1, "message": "x"}]


def test_async_errors_and_follow() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/t1"):
            return httpx.Response(200, json=task("succeeded"))
        if request.url.path.endswith("/logs"):
            return async_stream([sse("log", {"seq": 1, "message": "a"})])
        return httpx.Response(404, json={"detail": "task 'zz' not found"})

    async def main() -> list[dict[str, Any]]:
        async with async_client(handler) as c:
            with pytest.raises(ClientError, match="not found"):
                await c.get("zz")
            return [r async for r in AsyncTaskHandle(c, "t1").logs(follow=True)]

    assert asyncio.run(main()) == [{"seq": 1, "message": "a"}]
