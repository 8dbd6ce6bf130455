"""Every 4xx path of the HTTP API names what was wrong; the master stays healthy after each."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from herder import Client, LocalCluster
from herder.client import QueueFull
from herder.config import MasterSettings
from herder.master import build_seat
from herder.master.web import create_app
from herder.protocol import paths
from tests.integration.conftest import TEST_TASKS, assert_healthy, wait_until

with warnings.catch_warnings():  # its advice to install httpx2: herder's client is httpx
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse


@pytest.fixture(scope="module")
def http(cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=10) as h:
        yield h


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"type": "nosuch", "params": {}}, 422, "nosuch"),
        ({"type": "primes", "params": {"limit": "many"}}, 422, "params.limit"),
        ({"type": "primes", "params": {}}, 422, "params.limit"),
        ({"type": "primes", "params": {"limit": 10, "parts": 0}}, 422, "params.parts"),
        ({"params": {}}, 422, "type"),
        ({"type": "noop", "params": [1, 2]}, 422, "params"),
        ({"type": "noop", "priority": "high"}, 422, "priority"),
        ({"type": "noop", "timeout": -1}, 422, "timeout"),
        ({"type": "noop", "id": "has spaces"}, 422, "id"),
        ({"type": "noop", "colour": "red"}, 422, "colour"),
    ],
)
def test_bad_submissions_are_422_naming_the_field(
    http: httpx.Client, client: Client, body: dict[str, object], status: int, needle: str
) -> None:
    before = http.get("/api/v1/tasks", params={"limit": 1000}).json()["tasks"]
    r = http.post("/api/v1/tasks", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    after = http.get("/api/v1/tasks", params={"limit": 1000}).json()["tasks"]
    assert len(after) == len(before)  # nothing stored
    assert_healthy(client)


def test_body_that_is_not_json(http: httpx.Client) -> None:
    r = http.post("/api/v1/tasks", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["detail"]


def test_duplicate_id_is_409(http: httpx.Client) -> None:
    body = {"type": "noop", "params": {"value": 1}, "id": "dup-1"}
    assert http.post("/api/v1/tasks", json=body).status_code == 201
    r = http.post("/api/v1/tasks", json=body)
    assert r.status_code == 409
    assert "dup-1" in r.json()["detail"]


def test_unknown_task_is_404_everywhere(http: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/v1/tasks/nope"),
        ("GET", "/api/v1/tasks/nope/result"),
        ("GET", "/api/v1/tasks/nope/logs"),
        ("POST", "/api/v1/tasks/nope/cancel"),
    ]:
        r = http.request(method, path, headers={"content-type": "application/json"})
        assert r.status_code == 404, (method, path, r.text)
        assert "nope" in r.json()["detail"]


def test_result_before_success_and_cancel_after_finish_are_409(
    http: httpx.Client, client: Client
) -> None:
    handle = client.submit("sleep", {"seconds": 30})
    r = http.get(f"/api/v1/tasks/{handle.id}/result")
    assert r.status_code == 409
    assert "running" in r.json()["detail"] or "pending" in r.json()["detail"]
    handle.cancel()
    r = http.post(f"/api/v1/tasks/{handle.id}/cancel", json=None,
                  headers={"content-type": "application/json"})
    assert r.status_code == 409
    assert "cancelled" in r.json()["detail"]
    r = http.get(f"/api/v1/tasks/{handle.id}/result")
    assert r.status_code == 409


def test_bad_query_parameters_are_422(http: httpx.Client) -> None:
    assert http.get("/api/v1/tasks", params={"state": "sleeping"}).status_code == 422
    assert http.get("/api/v1/tasks", params={"limit": 0}).status_code == 422
    assert http.get("/api/v1/tasks", params={"cursor": "x"}).status_code == 422
    r = http.get("/api/v1/tasks/any/logs", params={"since": -1})
    assert r.status_code == 422 and "since" in r.json()["detail"]


def test_list_filters_and_pages(http: httpx.Client, client: Client) -> None:
    handles = [client.submit("noop", {"value": i}) for i in range(5)]
    for h in handles:
        h.wait(timeout=10)
    page = http.get("/api/v1/tasks", params={"type": "noop", "limit": 2}).json()
    assert len(page["tasks"]) == 2 and page["next_cursor"]
    assert all(t["type"] == "noop" for t in page["tasks"])
    page2 = http.get(
        "/api/v1/tasks", params={"type": "noop", "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert not {t["id"] for t in page["tasks"]} & {t["id"] for t in page2["tasks"]}
    done = http.get("/api/v1/tasks", params={"state": "succeeded", "limit": 1000}).json()
    assert all(t["state"] == "succeeded" for t in done["tasks"])


def test_batch_answers_each_item(http: httpx.Client, client: Client) -> None:
    r = http.post(
        "/api/v1/tasks/batch",
        json=[
            {"type": "noop", "params": {"value": "a"}},
            {"type": "nosuch"},
            {"type": "noop", "params": {"value": "b"}, "id": "batch-dup"},
            {"type": "noop", "params": {"value": "c"}, "id": "batch-dup"},
        ],
    )
    assert r.status_code == 200
    items = r.json()
    assert [i["status"] for i in items] == [201, 422, 201, 409]
    assert "nosuch" in items[1]["detail"]
    assert client.get(items[0]["task"]["id"]).result(timeout=10) == "a"
    assert http.post("/api/v1/tasks/batch", json={"not": "a list"}).status_code == 422


def test_a_batch_with_a_malformed_item_names_it_and_takes_the_others(
    http: httpx.Client, client: Client
) -> None:
    # A batch whose items are all well-formed is checked in one pass over its bytes; one that
    # is not is checked item by item, so that the answer names the bad one.
    r = http.post(
        "/api/v1/tasks/batch",
        json=[
            {"type": "noop", "params": {"value": "x"}},
            {"type": "noop", "priority": "high"},
            {"type": "noop", "params": {"value": "y"}, "colour": "red"},
        ],
    )
    assert r.status_code == 200
    items = r.json()
    assert [i["status"] for i in items] == [201, 422, 422]
    assert items[1]["detail"].startswith("[1] priority:")
    assert items[2]["detail"].startswith("[2] colour:")
    assert client.get(items[0]["task"]["id"]).result(timeout=10) == "x"


def test_types_and_workers(http: httpx.Client) -> None:
    types = {t["name"]: t for t in http.get("/api/v1/types").json()["types"]}
    assert {"noop", "sleep", "primes", "wordcount"} <= set(types)
    assert "limit" in types["primes"]["params_schema"]["properties"]
    workers = http.get("/api/v1/workers").json()["workers"]
    assert len(workers) == 2 and all(w["slots"] == 2 for w in workers)


@pytest.fixture(scope="module")
def tiny_queue() -> Iterator[LocalCluster]:
    c = LocalCluster(
        workers=1,
        slots=1,
        tasks=TEST_TASKS,
        extra_master_args=("--max-pending", "2", "--max-body", "4096"),
    )
    with c:
        yield c


def test_full_queue_is_429_with_retry_after(tiny_queue: LocalCluster) -> None:
    client = tiny_queue.client
    a = client.submit("sleep", {"seconds": 30})
    b = client.submit("sleep", {"seconds": 30})
    with httpx.Client(base_url=tiny_queue.url) as http:
        r = http.post("/api/v1/tasks", json={"type": "noop", "id": "refused"})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert "max-pending" in r.json()["detail"]
        assert http.get("/api/v1/tasks/refused").status_code == 404  # nothing half-stored
        r = http.post("/api/v1/tasks/batch", json=[{"type": "noop"}])
        assert r.status_code == 429
        # herder's own client reads the header as libcurl parsed it
        with pytest.raises(QueueFull) as full:
            client.submit("noop")
        assert full.value.retry_after is not None and full.value.retry_after >= 1
        assert "max-pending" in str(full.value)
        a.cancel()
        r = http.post("/api/v1/tasks", json={"type": "noop", "id": "accepted"})
        assert r.status_code == 201
    b.cancel()
    assert client.get("accepted").result(timeout=10) is None
    assert_healthy(client)


@pytest.fixture(scope="module")
def with_token() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=1, tasks=TEST_TASKS, token="s3cret-s3cret-s3cret")
    with c:
        yield c


def test_token_is_required_except_for_healthz(with_token: LocalCluster) -> None:
    with httpx.Client(base_url=with_token.url) as http:
        assert http.get("/healthz").status_code == 200
        for path in ["/api/v1/tasks", "/api/v1/workers", "/api/v1/types"]:
            r = http.get(path)
            assert r.status_code == 401 and "token" in r.json()["detail"]
        bad = {"Authorization": "Bearer wrong"}
        assert http.post("/api/v1/tasks", json={"type": "noop"}, headers=bad).status_code == 401
    assert with_token.client.submit("noop", {"value": 3}).result(timeout=10) == 3
    wait_until(lambda: len(with_token.client.workers()) == 1)


def test_a_body_over_max_body_is_413(tiny_queue: LocalCluster) -> None:
    with httpx.Client(base_url=tiny_queue.url) as http:
        big = {"type": "noop", "params": {"value": "x" * 10_000}}
        r = http.post("/api/v1/tasks", json=big)
        assert r.status_code == 413
        assert "too large" in r.text.lower()
    assert_healthy(tiny_queue.client)


# The two submission endpoints read their bodies themselves (plain Starlette routes): the same
# inputs must get the same answers as the other endpoints', and the OpenAPI document lists them.


def test_a_streamed_body_over_max_body_is_413(tiny_queue: LocalCluster) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as it arrives
        yield b'{"type": "noop", "params": {"value": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    with httpx.Client(base_url=tiny_queue.url) as http:
        for path in ("/api/v1/tasks", "/api/v1/tasks/batch"):
            r = http.post(path, content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413, r.text
            assert "max-body" in r.json()["detail"]
    assert_healthy(tiny_queue.client)


@pytest.mark.parametrize(("wait", "needle"), [("61", "wait"), ("-1", "wait"), ("soon", "soon")])
def test_a_bad_wait_is_422(http: httpx.Client, wait: str, needle: str) -> None:
    r = http.post("/api/v1/tasks", params={"wait": wait}, json={"type": "noop"})
    assert r.status_code == 422
    assert needle in r.json()["detail"]


def test_bad_batch_bodies_are_422(http: httpx.Client) -> None:
    json_type = {"content-type": "application/json"}
    r = http.post("/api/v1/tasks/batch", content=b"[{", headers=json_type)
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = http.post("/api/v1/tasks/batch", json=[{"type": "noop"}] * 10_001)
    assert r.status_code == 422 and "10000" in r.json()["detail"]


def test_submission_with_wait_answers_the_finished_task(http: httpx.Client) -> None:
    body = {"type": "noop", "params": {"value": 7}}
    r = http.post("/api/v1/tasks", params={"wait": 10}, json=body)
    assert r.status_code == 201
    assert r.json()["state"] == "succeeded" and r.json()["result"] == 7
    # the waiting call was answered from the master's memory: the same JSON as a read
    assert r.json() == http.get(f"/api/v1/tasks/{r.json()['id']}").json()
    again = http.get(f"/api/v1/tasks/{r.json()['id']}", params={"wait": 5})
    assert again.json() == r.json()


@pytest.mark.parametrize(
    ("body", "wait", "state"),
    [
        ({"type": "noop", "params": {"value": 1}}, 10, "succeeded"),
        ({"type": "badcode", "params": {"where": "split"}}, 10, "failed"),
        ({"type": "sleep", "params": {"seconds": 30}}, 0.2, "running"),  # the wait ran out
    ],
)
def test_a_waiting_submission_is_answered_only_once_its_task_is_stored(
    http: httpx.Client, cluster: LocalCluster, body: dict[str, Any], wait: float, state: str
) -> None:
    # A waiting submission is dispatched before its row is committed (one commit fewer on the
    # way): the answer must still come only after that commit. Read the file itself.
    r = http.post("/api/v1/tasks", params={"wait": wait}, json=body)
    assert r.status_code == 201 and r.json()["state"] == state
    with contextlib.closing(sqlite3.connect(f"file:{cluster.db}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT type, params FROM tasks WHERE id = ?", (r.json()["id"],))
        stored_type, params = row.fetchone()
    assert (stored_type, json.loads(params)) == (body["type"], body["params"])
    if state == "running":
        cancel = http.post(f"/api/v1/tasks/{r.json()['id']}/cancel",
                           headers={"content-type": "application/json"})
        assert cancel.status_code == 202, cancel.text


def test_openapi_lists_the_submission_endpoints(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert "post" in paths["/api/v1/tasks"] and "post" in paths["/api/v1/tasks/batch"]
    assert "wait" in {p["name"] for p in paths["/api/v1/tasks"]["post"]["parameters"]}


def test_submissions_need_the_token_too(with_token: LocalCluster) -> None:
    with httpx.Client(base_url=with_token.url) as http:
        for path in ("/api/v1/tasks", "/api/v1/tasks/batch"):
            r = http.post(path, json={"type": "noop"})
            assert r.status_code == 401 and "token" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"


def test_lookup_answers_the_tasks_that_exist_in_the_order_asked(
    http: httpx.Client, client: Client
) -> None:
    done = client.submit("noop", {"value": "done"})
    done.wait(timeout=10)
    running = client.submit("sleep", {"seconds": 30})
    r = http.post("/api/v1/tasks/lookup", json={"ids": [running.id, "no-such", done.id]})
    assert r.status_code == 200
    tasks = r.json()["tasks"]
    assert [t["id"] for t in tasks] == [running.id, done.id]
    assert tasks[0]["state"] in ("pending", "running")
    assert tasks[1]["state"] == "succeeded" and tasks[1]["result"] == "done"
    # what a client waiting for them asks: the finished ones only
    body = {"ids": [running.id, "no-such", done.id], "finished_only": True}
    r = http.post("/api/v1/tasks/lookup", json=body)
    assert [t["id"] for t in r.json()["tasks"]] == [done.id]
    running.cancel()
    r = http.post("/api/v1/tasks/lookup", json={"ids": ["x"] * 10_001})
    assert r.status_code == 422 and "ids" in r.json()["detail"]
    r = http.post("/api/v1/tasks/lookup", json={"ids": "x"})
    assert r.status_code == 422


#: what anyone who reaches the server may read: health, the dashboard, the API's description
PUBLIC = {"/healthz", "/readyz", "/", "/static", "/static/swagger-ui", "/docs", "/openapi.json"}
TOKEN = "s3cret-s3cret-s3cret"
REFUSED: list[dict[str, str]] = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
#: with the token, a stream of events would not end: a bad Last-Event-ID makes it a 422
GRANTED = {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": "none"}
MAX_BODY = 1000


def test_every_route_of_the_app_needs_the_token_and_limits_bodies(tmp_path: Path) -> None:
    # The app itself, in this process: every route it has, however it was added.
    settings = MasterSettings(db=str(tmp_path / "h.db"), token=TOKEN, max_body=MAX_BODY)
    app = create_app(build_seat(settings))
    seen = set()
    with TestClient(app, base_url="http://127.0.0.1") as http:
        for context in iter_route_contexts(app.routes):  # those of included routers too
            route = context.original_route
            assert isinstance(route, Route | WebSocketRoute | Mount), route
            seen.add(route.path)
            if isinstance(route, WebSocketRoute):
                _check_channel(http, route.path)
            elif isinstance(route, Mount):
                _check_http(http, "GET", f"{route.path}/index.html", route.path in PUBLIC)
            else:
                for method in sorted(route.methods or ()):
                    _check_http(http, method, route.path, route.path in PUBLIC)
    routes = {paths.TASKS, paths.TASKS_BATCH, paths.TASK, paths.WORKER_CHANNEL, paths.METRICS}
    assert routes | PUBLIC <= seen


def _check_http(http: TestClient, method: str, template: str, public: bool) -> None:
    path = re.sub(r"\{[^}]+\}", "x", template)
    for headers in REFUSED:
        r = http.request(method, path, headers=headers)
        if public:
            assert r.status_code != 401, (method, path)
            continue
        assert r.status_code == 401, (method, path, headers, r.text)
        assert "token" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    r = http.request(method, path, headers=GRANTED)
    assert r.status_code != 401, (method, path, r.text)
    r = http.request(method, path, headers=GRANTED, content=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413, (method, path, r.text)
    assert method == "HEAD" or "max-body" in r.json()["detail"]


def _check_channel(http: TestClient, path: str) -> None:
    url = "ws://127.0.0.1" + path  # (the test client's own host name is not an allowed host)
    for headers in REFUSED:
        with pytest.raises(WebSocketDenialResponse) as denied, http.websocket_connect(
            url, headers=headers
        ):
            pass
        assert denied.value.status_code == 401
        assert "worker token" in denied.value.json()["detail"]
    with http.websocket_connect(url, headers=GRANTED) as ws:
        ws.close()


def test_the_worker_channel_tells_a_worker_without_the_token_why(
    with_token: LocalCluster,
) -> None:
    url = with_token.url.replace("http://", "ws://") + paths.WORKER_CHANNEL
    for headers in (None, {"Authorization": "Bearer wrong"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 401
        assert "worker token" in json.loads(refused.value.response.body or b"{}")["detail"]
    assert_healthy(with_token.client)


def test_a_worker_with_a_wrong_token_logs_why_it_was_refused(
    with_token: LocalCluster, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERDER_")}
    env["HERDER_TOKEN"] = "not-the-token-at-all"
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "herder", "worker", "--master", with_token.url,
             "--name", "intruder"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: "refused the channel (401): authorization: a valid worker token"
                in log_path.read_text(errors="replace"),
                timeout=20,
            )
            assert worker.poll() is None  # it keeps trying, as after any refused connection
        finally:
            worker.kill()
            worker.wait(10)
    assert "Traceback" not in log_path.read_text(errors="replace")
    assert_healthy(with_token.client)
