"""`as_completed` and `gather` against a fake master (over `handlerpool`): one event stream for
all the tasks, the stored states read once after subscribing (in bulk, by id), results taken
from live events or read in bulk, long polls for a handful, reconnects, timeouts, and the async
twins."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from herder.client import (
    STREAM_RETRIES,
    AsyncClient,
    AsyncTaskHandle,
    Client,
    MasterUnreachable,
    TaskHandle,
)
from herder.client.bulk import BulkWait, Lookup
from herder.client.streams import Stream
from herder.errors import TaskFailed
from tests.unit.handlerpool import AsyncHandlerPool, HandlerPool

FINAL = ("succeeded", "failed", "cancelled", "timed_out")


@pytest.fixture(autouse=True)
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Stream, "FIRST", 0.001)
    monkeypatch.setattr(Stream, "CAP", 0.002)
    monkeypatch.setattr(BulkWait, "POLL_FIRST", 0.001)
    monkeypatch.setattr(BulkWait, "POLL_CAP", 0.002)


def sse(kind: str, data: dict[str, Any], id: int | None = None) -> bytes:
    head = f"event: {kind}\n" + (f"id: {id}\n" if id is not None else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


def state_event(task_id: str, state: str, id: int) -> bytes:
    return sse("state", {"task_id": task_id, "state": state, "ts": 1.0}, id)


Script = Callable[["FakeMaster", int], list[bytes]]


class FakeMaster:
    """Tasks by id (in creation order), the requests it got, and a script that gives each
    connection of the event stream its chunks. A chunk may also be a callable, run when the
    stream reaches it (a task finishing on the master while the client listens)."""

    def __init__(self, n: int, state: str = "pending", page: int = 1000) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        for i in range(n):
            self.add(f"t{i}", state, created_at=1000.0 + i)
        self.requests: list[httpx.Request] = []
        self.streams: list[list[Any]] = []  # per connection: chunks or callables
        self.page = page
        self.refuse_streams = False
        #: the ids of each `POST /tasks/lookup`
        self.looked_up: list[list[str]] = []

    def add(self, task_id: str, state: str, created_at: float = 1000.0) -> None:
        self.tasks[task_id] = {"id": task_id, "type": "noop", "state": state,
                               "created_at": created_at, "result": None, "error": None}

    def finish(self, task_id: str, state: str = "succeeded", result: Any = None) -> None:
        self.tasks[task_id].update(state=state, result=result if result is not None
                                   else f"r-{task_id}")
        if state == "failed":
            self.tasks[task_id]["error"] = {"message": "boom"}

    def finish_all(self) -> None:
        for task_id in self.tasks:
            self.finish(task_id)

    def handles(self, client: Client) -> list[TaskHandle]:
        return [TaskHandle(client, t, dict(task)) for t, task in self.tasks.items()]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def stream_params(self) -> list[dict[str, str]]:
        """The query of each connection of the event stream."""
        return [dict(r.url.params) for r in self.requests if r.url.path == "/api/v1/events"]

    def _chunks(self, connection: int) -> Iterator[bytes]:
        script = self.streams[connection] if connection < len(self.streams) else []
        for item in script:
            if callable(item):
                item()
            else:
                yield item

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/v1/events":
            if self.refuse_streams:
                return httpx.Response(404, json={"detail": "Not Found"})
            connection = sum(1 for r in self.requests if r.url.path == path) - 1
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=self._chunks(connection))
        return self._json(request)

    def _json(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/tasks/lookup":
            self.looked_up.append(json.loads(request.content)["ids"])
            wanted = self.looked_up[-1]
            return httpx.Response(200, json={"tasks": [self.tasks[i] for i in wanted
                                                       if i in self.tasks]})
        if path == "/api/v1/tasks":
            state = request.url.params["state"]
            limit = int(request.url.params.get("limit", 100))
            start = int(request.url.params.get("cursor", 0))
            newest_first = [t for t in reversed(self.tasks.values()) if t["state"] == state]
            page = newest_first[start:start + min(limit, self.page)]
            more = start + len(page) < len(newest_first)
            return httpx.Response(200, json={"tasks": page,
                                             "next_cursor": str(start + len(page)) if more
                                             else None})
        task_id = path.rsplit("/", 1)[1]
        return httpx.Response(200, json=self.tasks[task_id])

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        response = self.handler(request)
        if request.url.path != "/api/v1/events" or response.status_code != 200:
            return response
        connection = sum(1 for r in self.requests if r.url.path == "/api/v1/events") - 1

        async def body() -> AsyncIterator[bytes]:
            for chunk in self._chunks(connection):
                yield chunk

        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=body())


def client_of(master: FakeMaster) -> Client:
    return Client("http://master.test", transport=HandlerPool(master.handler))


def async_client_of(master: FakeMaster) -> AsyncClient:
    return AsyncClient("http://master.test", transport=AsyncHandlerPool(master.ahandler))


# -- the sans-I/O lookup ------------------------------------------------------------------------


def test_lookup_asks_for_exactly_its_ids_in_chunks() -> None:
    ids = [f"t{i:04d}" for i in range(2500)]
    lookup = Lookup(ids + ids[:10])  # twice the same id: asked once
    asked: list[list[str]] = []
    while (request := lookup.next_request()) is not None:
        assert (request.method, request.path) == ("POST", "/api/v1/tasks/lookup")
        chunk = request.json["ids"]
        assert request.json["finished_only"] is True  # a waiting client needs no other
        asked.append(chunk)
        # the master answers those it knows; only the final ones are found
        lookup.feed({"tasks": [{"id": i, "state": "succeeded" if i < "t2000" else "running"}
                               for i in chunk if i != "t0007"]})
    assert [len(c) for c in asked] == [1000, 1000, 500]
    assert [i for chunk in asked for i in chunk] == ids
    assert sorted(lookup.found) == [i for i in ids if i < "t2000" and i != "t0007"]


# -- as_completed ---------------------------------------------------------------------------------


def test_as_completed_waits_on_one_stream_and_reads_what_finished_before_it_opened() -> None:
    master = FakeMaster(30)
    with client_of(master) as c:
        handles = master.handles(c)
        master.finish("t3")  # finished before the stream was opened: no event will tell
        master.streams = [[
            state_event("t0", "running", 1),
            state_event("t0", "succeeded", 2),
            b": keep-alive\n\n",
            *[state_event(f"t{i}", "succeeded", 10 + i) for i in range(29, 3, -1)],
            state_event("t3", "succeeded", 5),  # announced again: yielded once all the same
            *[state_event(f"t{i}", "failed", 50 + i) for i in (1, 2)],
        ]]
        done = [h.id for h in c.as_completed(handles, timeout=10)]
    assert done[0] == "t3"  # found by the lookup made right after subscribing
    assert done[1] == "t0"
    assert sorted(done) == sorted(master.tasks) and len(done) == 30
    assert master.paths().count("/api/v1/events") == 1
    assert master.stream_params() == [{"finished": "true"}]  # only final states, please
    # the lookup read the 30 tasks in one request, not each task on its own
    assert master.paths() == ["/api/v1/events", "/api/v1/tasks/lookup"]
    assert handles[3].task is not None and handles[3].task["state"] == "succeeded"


def test_as_completed_yields_already_finished_handles_without_asking() -> None:
    master = FakeMaster(3, state="succeeded")
    with client_of(master) as c:
        done = [h.id for h in c.as_completed(master.handles(c))]
    assert done == ["t0", "t1", "t2"] and master.requests == []


def test_as_completed_of_few_tasks_looks_them_up_after_subscribing() -> None:
    master = FakeMaster(3)
    with client_of(master) as c:
        handles = master.handles(c)
        master.finish("t1")
        master.streams = [[state_event("t0", "succeeded", 1), state_event("t2", "cancelled", 2)]]
        done = [h.id for h in c.as_completed(handles)]
    assert done == ["t1", "t0", "t2"]
    paths = master.paths()
    assert paths[0] == "/api/v1/events"
    assert paths[1:] == ["/api/v1/tasks/lookup"] and master.looked_up == [["t0", "t1", "t2"]]


def test_as_completed_reconnects_with_last_event_id_and_looks_up_again() -> None:
    master = FakeMaster(20)
    with client_of(master) as c:
        handles = master.handles(c)
        master.streams = [
            [state_event(f"t{i}", "succeeded", 100 + i) for i in range(10)],  # then it closes
            [lambda: master.finish("t10"),  # finished while no stream was open
             *[state_event(f"t{i}", "succeeded", 200 + i) for i in range(11, 20)]],
        ]
        # t10 finishes between the two connections: only the second lookup can find it
        master.streams[0].append(lambda: master.finish("t10"))
        done = [h.id for h in c.as_completed(handles, timeout=10)]
    assert sorted(done) == sorted(master.tasks)
    streams = [r for r in master.requests if r.url.path == "/api/v1/events"]
    assert len(streams) == 2
    assert "last-event-id" not in streams[0].headers
    assert streams[1].headers["last-event-id"] == "109"


def test_a_silent_stream_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BulkWait, "RECHECK", 0.0)
    master = FakeMaster(20)
    with client_of(master) as c:
        handles = master.handles(c)
        # every task finishes, but the master never says so: only keep-alives come
        master.streams = [[master.finish_all,
                           b": keep-alive\n\n"]]
        done = [h.id for h in c.as_completed(handles, timeout=10)]
    assert sorted(done) == sorted(master.tasks)
    assert master.paths().count("/api/v1/events") == 1


def test_as_completed_times_out_naming_what_is_left() -> None:
    master = FakeMaster(20)
    # a stream that stays open, saying nothing but keep-alives (for up to 5 s)
    master.streams = [[lambda: time.sleep(0.01), b": keep-alive\n\n"] * 500]
    started = time.monotonic()
    with client_of(master) as c, pytest.raises(TimeoutError, match="20 of 20 tasks"):
        list(c.as_completed(master.handles(c), timeout=0.2))
    assert time.monotonic() - started < 4.0


def test_a_stream_that_keeps_closing_is_given_up() -> None:
    master = FakeMaster(20)
    master.streams = [[b": keep-alive\n\n"]] * 100  # each connection closes at once
    with client_of(master) as c, pytest.raises(MasterUnreachable, match="stream ended"):
        list(c.as_completed(master.handles(c), timeout=30))
    assert master.paths().count("/api/v1/events") == STREAM_RETRIES + 1


def test_a_master_without_event_streams_is_polled_in_bulk() -> None:
    master = FakeMaster(40)
    master.refuse_streams = True
    finished = 0

    def finish_more(request: httpx.Request) -> httpx.Response:
        nonlocal finished
        if request.url.path != "/api/v1/events":  # time passes: 5 more tasks finish per poll
            for i in range(finished, min(40, finished + 5)):
                master.finish(f"t{i}")
            finished += 5
        return master.handler(request)

    with Client("http://m.test", transport=HandlerPool(finish_more)) as c:
        done = [h.id for h in c.as_completed(master.handles(c), timeout=10)]
    assert sorted(done) == sorted(master.tasks)
    paths = master.paths()
    assert paths[0] == "/api/v1/events" and paths.count("/api/v1/events") == 1
    assert paths[1] == "/api/v1/tasks/lookup"  # 40 to find: in bulk
    assert len(paths) < 40  # fewer requests than tasks


# -- gather -------------------------------------------------------------------------------------


def test_gather_returns_results_in_order_read_in_bulk() -> None:
    master = FakeMaster(40)
    with client_of(master) as c:
        handles = master.handles(c)
        master.streams = [[master.finish_all,
                           *[state_event(f"t{i}", "succeeded", i + 1) for i in range(39, -1, -1)]]]
        results = c.gather(handles, timeout=10)
    assert results == [f"r-t{i}" for i in range(40)]
    assert set(master.paths()) == {"/api/v1/events", "/api/v1/tasks/lookup"}
    after_the_first = [i for ids in master.looked_up[1:] for i in ids]
    assert sorted(after_the_first) == sorted(master.tasks)


def test_gather_takes_results_from_live_final_events_without_reading_them() -> None:
    master = FakeMaster(40)

    def live_final(i: int) -> bytes:
        task = {**master.tasks[f"t{i}"], "state": "succeeded", "result": f"live-{i}"}
        return sse("state", {"task_id": f"t{i}", "state": "succeeded", "ts": 1.0, "task": task},
                   i + 1)

    with client_of(master) as c:
        handles = master.handles(c)
        # 35 finish while the stream is open, with their JSON in the event; 5 without it
        master.streams = [[*[live_final(i) for i in range(35)],
                           master.finish_all,
                           *[state_event(f"t{i}", "succeeded", i + 1) for i in range(35, 40)]]]
        results = c.gather(handles, timeout=10)
    assert results == [f"live-{i}" for i in range(35)] + [f"r-t{i}" for i in range(35, 40)]
    assert all(h.task is not None and h.task["result"] == f"live-{i}"
               for i, h in enumerate(handles[:35]))
    # read: all 40 once after subscribing (nothing had finished then), then only the 5 whose
    # events had no JSON
    assert [len(ids) for ids in master.looked_up] == [40, 5]
    assert master.looked_up[1] == [f"t{i}" for i in range(35, 40)]


def test_gather_raises_task_failed_for_a_failed_task() -> None:
    master = FakeMaster(20)
    with client_of(master) as c:
        handles = master.handles(c)
        master.streams = [[lambda: master.finish("t4", "failed"), state_event("t4", "failed", 1)]]
        with pytest.raises(TaskFailed) as caught:
            c.gather(handles, timeout=10)
    assert caught.value.task_id == "t4" and caught.value.state == "failed"
    assert caught.value.error == {"message": "boom"}


def test_gather_of_a_few_long_polls_each_and_opens_no_stream() -> None:
    master = FakeMaster(2)
    master.finish("t0", result=41)
    master.finish("t1", result=42)
    with client_of(master) as c:
        assert c.gather([TaskHandle(c, "t1"), TaskHandle(c, "t0")]) == [42, 41]
    assert "/api/v1/events" not in master.paths()
    assert all(float(r.url.params["wait"]) > 0 for r in master.requests)


def test_as_completed_of_one_task_is_a_long_poll() -> None:
    master = FakeMaster(1)
    master.finish("t0")
    with client_of(master) as c:
        assert [h.id for h in c.as_completed([TaskHandle(c, "t0")])] == ["t0"]
    assert master.paths() == ["/api/v1/tasks/t0"]
    assert float(master.requests[0].url.params["wait"]) > 0


def test_handles_stay_cheap() -> None:
    master = FakeMaster(0)
    with client_of(master) as c:
        handles = [TaskHandle(c, f"t{i}") for i in range(1000)]
    assert len(handles) == 1000 and master.requests == []


# -- the async twins ------------------------------------------------------------------------------


def test_async_as_completed_and_gather() -> None:
    master = FakeMaster(30)

    async def main() -> tuple[list[str], list[Any]]:
        async with async_client_of(master) as c:
            handles = [AsyncTaskHandle(c, t, dict(task)) for t, task in master.tasks.items()]
            master.finish("t7")
            master.streams = [
                [master.finish_all,
                 *[state_event(f"t{i}", "succeeded", i + 1) for i in range(30) if i != 7]],
                [master.finish_all,
                 *[state_event(f"t{i}", "succeeded", i + 1) for i in range(30) if i != 7]],
            ]
            done = [h.id async for h in c.as_completed(handles, timeout=10)]
            results = await c.gather(handles, timeout=10)
            return done, results

    done, results = asyncio.run(main())
    assert done[0] == "t7" and sorted(done) == sorted(master.tasks)
    assert results == [f"r-t{i}" for i in range(30)]
    # gather's handles that finished by an event had stale JSON: it subscribed, and its
    # lookup found them all finished (in one request) before any event
    assert master.paths().count("/api/v1/events") == 2
    assert master.stream_params() == [{"finished": "true"}] * 2
    assert set(master.paths()) == {"/api/v1/events", "/api/v1/tasks/lookup"}


def test_async_gather_of_a_few_and_a_failure() -> None:
    master = FakeMaster(2)
    master.finish("t0", result=1)
    master.finish("t1", "cancelled")

    async def main() -> None:
        async with async_client_of(master) as c:
            assert await c.gather([AsyncTaskHandle(c, "t0")]) == [1]
            with pytest.raises(TaskFailed, match="cancelled"):
                await c.gather([AsyncTaskHandle(c, "t0"), AsyncTaskHandle(c, "t1")])

    asyncio.run(main())
    assert "/api/v1/events" not in master.paths()
