"""The client's transport against real HTTP/1.1 servers on loopback: connections kept and
reused, one the server closed while idle replaced, a GET on a connection that breaks sent
again and a POST not, errors mapped to the client's; a list of masters (a dead one skipped, a
503 passed by, the one that answered kept, a request that may have arrived sent again only
when that is harmless); and proxies taken from the environment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from herder.client import Client, MasterUnreachable, QueueFull
from herder.client.plan import Request
from herder.errors import ClientError
from tests.integration.conftest import wait_until

TASK = {"id": "t1", "type": "noop", "state": "succeeded", "result": 1}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.closed = 0
        #: (method, target as sent, JSON body) of each request
        self.requests: list[tuple[str, str, Any]] = []
        #: close the connection after each answer, without saying so in a header
        self.close_after_answer = False
        #: drop the connection without answering the next this many requests
        self.drop_next = 0
        #: answer every request with this status (503: a master that is not the active one)
        self.status: int | None = None
        self.release = threading.Event()
        self.release.set()
        #: what GET /api/v1/raw/NAME answers, as is
        self.raw_answers: dict[str, bytes] = {}

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)  # the socket is closed when this returns
        self.closed += 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (the timeout test) is expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posts(self) -> int:
        return sum(1 for r in self.requests if r[0] == "POST")

    def gets(self) -> int:
        return sum(1 for r in self.requests if r[0] == "GET")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, body))
        if self.server.drop_next:
            self.server.drop_next -= 1
            self.close_connection = True
            return
        self.server.release.wait(10)
        path = self.path.split("://", 1)[-1].partition("/")[2]  # absolute-form from a proxy too
        if path.startswith("api/v1/raw/"):  # answers written byte by byte by the test
            name = path.removeprefix("api/v1/raw/")
            self.wfile.write(self.server.raw_answers[name])
            self.close_connection = name in ("until-closed", "garbage")
            return
        status, answer, headers = 200, {"path": self.path, "body": body}, {}
        if self.server.status is not None:
            status, answer = self.server.status, {"detail": f"answered {self.server.status}"}
        elif path.startswith("api/v1/full"):
            status, answer, headers = 429, {"detail": "queue is full"}, {"Retry-After": "3"}
        elif path.startswith("api/v1/missing"):
            status, answer = 404, {"detail": "task 'x' not found"}
        elif path.startswith("api/v1/tasks"):
            status, answer = (201 if self.command == "POST" else 200), {**TASK, "seen": body}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if self.server.close_after_answer:
            self.close_connection = True

    do_GET = do_POST = _answer


def _serve() -> _Server:
    s = _Server()
    threading.Thread(target=s.serve_forever, args=(0.02,), daemon=True).start()
    return s


def _stop(s: _Server) -> None:
    s.release.set()
    s.shutdown()
    s.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _serve()
    yield s
    _stop(s)


@pytest.fixture
def other() -> Iterator[_Server]:
    s = _serve()
    yield s
    _stop(s)


def _dead_url() -> str:
    with _Server() as s:
        return s.url  # the port is free again once closed: connections are refused


def _get(path: str) -> Request:
    return Request("GET", path)


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- one master ----------------------------------------------------------------------------------


def test_calls_reuse_one_connection(server: _Server) -> None:
    with Client(server.url, token="t") as client:
        for i in range(5):
            handle = client.submit("noop", {"n": i})
            assert handle.task is not None and handle.task["seen"] == {
                "type": "noop", "params": {"n": i}}
        assert client.run("noop") == 1
    assert server.connections == 1
    assert server.requests[-1][1] == "/api/v1/tasks?wait=10.0"


def test_threads_sharing_a_client_each_get_their_own_answers(server: _Server) -> None:
    errors: list[BaseException] = []
    client = Client(server.url)

    def calls(n: int) -> None:
        try:
            for i in range(20):
                answer = client._call(Request("POST", f"/api/v1/t{n}", json={"n": n, "i": i}))
                assert answer == {"path": f"/api/v1/t{n}", "body": {"n": n, "i": i}}
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=calls, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    client.close()
    assert not errors
    assert 1 <= server.connections <= 4  # kept and reused: at most one per thread at a time


def test_query_values_are_encoded_as_the_api_reads_them(server: _Server) -> None:
    with Client(server.url + "/") as client:
        client.list_tasks(state="a b", limit=3)
    assert server.requests[0][1] == "/api/v1/tasks?state=a+b&limit=3"


def test_a_connection_the_server_closed_while_idle_is_replaced(server: _Server) -> None:
    server.close_after_answer = True
    with Client(server.url) as client:
        for i in range(3):
            client.submit("noop")
            wait_until(lambda i=i: server.closed == i + 1, what="the server closed the connection")
    assert server.connections == 3
    assert server.posts() == 3  # each sent once


def test_a_get_that_breaks_on_a_reused_connection_is_sent_again(server: _Server) -> None:
    with Client(server.url) as client:
        assert client._call(_get("/api/v1/a"))["path"] == "/api/v1/a"
        server.drop_next = 1
        assert client._call(_get("/api/v1/b"))["path"] == "/api/v1/b"
    assert [r[1] for r in server.requests] == ["/api/v1/a", "/api/v1/b", "/api/v1/b"]


def test_a_post_that_breaks_is_not_sent_again(server: _Server) -> None:
    with Client(server.url) as client:
        client.health()
        server.drop_next = 1
        with pytest.raises(MasterUnreachable):
            client.submit("noop")
    assert server.posts() == 1


def test_errors_of_the_server_are_the_clients(server: _Server) -> None:
    with Client(server.url) as client:
        with pytest.raises(QueueFull) as full:
            client._call(_get("/api/v1/full"))
        assert full.value.retry_after == 3.0
        with pytest.raises(ClientError) as missing:
            client._call(_get("/api/v1/missing"))
        assert missing.value.status == 404 and "not found" in str(missing.value)


def test_no_answer_in_time_is_unreachable(server: _Server) -> None:
    server.release.clear()
    with (
        Client(server.url, timeout=0.2) as client,
        pytest.raises(MasterUnreachable, match="no answer in time"),
    ):
        client.health()
    server.release.set()


def test_nobody_listening_is_unreachable() -> None:
    url = _dead_url()
    with Client(url) as client, pytest.raises(MasterUnreachable, match=f"at {url}: "):
        client.health()


def test_a_token_with_a_line_break_is_refused_before_anything_is_sent(server: _Server) -> None:
    with pytest.raises(ValueError, match="line break"):
        Client(server.url, token="t0ken\n")
    assert server.requests == []


def test_only_http_and_https_urls() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        Client("ftp://example.test")


def test_answers_in_chunks_without_length_and_in_pieces_are_read(server: _Server) -> None:
    body = json.dumps({"n": list(range(3000))}).encode()  # larger than one read of the socket
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:]))
    server.raw_answers = {
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked + b"0\r\nX-Trailer: 1\r\n\r\n",
        "length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "until-closed": b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body,
    }
    with Client(server.url) as client:
        for name in ("chunked", "length", "until-closed", "chunked", "length"):
            assert client._call(_get(f"/api/v1/raw/{name}")) == {"n": list(range(3000))}, name
    # the one read until closed could not be reused: a new connection after it
    assert server.connections == 2


def test_an_answer_that_is_not_http_is_unreachable(server: _Server) -> None:
    server.raw_answers = {"garbage": b"SSH-2.0-OpenSSH\r\n\r\n"}
    with Client(server.url) as client:
        with pytest.raises(MasterUnreachable):
            client._call(_get("/api/v1/raw/garbage"))
        # and the client goes on working
        assert client._call(_get("/api/v1/ok")) == {"path": "/api/v1/ok", "body": None}


# -- several masters -----------------------------------------------------------------------------


def test_a_dead_master_is_passed_by_and_the_live_one_kept(server: _Server) -> None:
    dead = _dead_url()
    with Client([dead, server.url]) as client:
        assert client.url == dead  # none has answered yet: the first
        assert client.health()["path"] == "/healthz"
        assert client.url == server.url
        client.get("t1")
    assert [r[1] for r in server.requests] == ["/healthz", "/api/v1/tasks/t1"]


def test_a_503_moves_on_and_the_master_that_answered_is_kept(
    server: _Server, other: _Server
) -> None:
    server.status = 503
    with Client(f"{server.url},{other.url}") as client:
        assert client.urls == [server.url, other.url]
        for _ in range(3):
            client.submit("noop")
        assert client.url == other.url
    assert server.posts() == 1 and other.posts() == 3
    # and when every master still answers 503 once the client's patience (its timeout) is
    # over, that is the answer
    other.status = 503
    with Client([server.url, other.url], timeout=0.5) as client, pytest.raises(
        ClientError
    ) as caught:
        client.health()
    assert caught.value.status == 503
    assert server.gets() >= 2 and other.gets() >= 2  # it went round them more than once


def test_a_request_waits_out_a_failover_while_no_master_is_active(
    server: _Server, other: _Server
) -> None:
    server.status = other.status = 503  # a takeover under way: both stand by
    became_active = threading.Timer(0.3, setattr, (other, "status", None))
    became_active.start()
    try:
        with Client([server.url, other.url], timeout=10) as client:
            # no id, yet safe: a 503 is the answer of a master that read nothing
            assert client.submit("noop").id == "t1"
            assert client.url == other.url
    finally:
        became_active.cancel()
    assert server.posts() >= 2 and other.posts() >= 2  # round after round until one took it


def test_a_single_master_fails_at_once(server: _Server) -> None:
    server.status = 503
    with Client(server.url, timeout=10) as client, pytest.raises(ClientError) as caught:
        client.health()
    assert caught.value.status == 503 and server.gets() == 1


def test_every_master_unreachable_names_each(server: _Server) -> None:
    dead = [_dead_url(), _dead_url()]
    with Client(dead, timeout=0.5) as client, pytest.raises(MasterUnreachable) as caught:
        client.health()
    assert all(f"{url}: " in str(caught.value) for url in dead)


def test_a_request_that_may_have_arrived_goes_elsewhere_only_if_harmless(
    server: _Server, other: _Server
) -> None:
    with Client([server.url, other.url]) as client:
        server.drop_next = 2  # the connection breaks after each request was sent (and retried)
        with pytest.raises(MasterUnreachable):
            client.submit("noop")  # no id: a second copy could run twice
        assert server.posts() == 1 and other.posts() == 0
        server.drop_next = 2
        handle = client.submit("noop", id="once")  # the master refuses a second copy
        assert handle.task is not None and other.posts() == 1
        assert client.url == other.url
    assert [r[2] for r in other.requests] == [{"type": "noop", "id": "once"}]


def test_a_get_after_a_broken_connection_goes_to_the_next_master(
    server: _Server, other: _Server
) -> None:
    server.drop_next = 2  # once, and once more on a new connection
    with Client([server.url, other.url]) as client:
        assert client.get("t1").id == "t1"
    assert [r[1] for r in server.requests] == ["/api/v1/tasks/t1"] * 2
    assert [r[1] for r in other.requests] == ["/api/v1/tasks/t1"]


def test_herder_url_may_list_several_masters(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _dead_url()
    monkeypatch.setenv("HERDER_URL", f" {dead} , {server.url.removeprefix('http://')} ")
    with Client() as client:
        assert client.urls == [dead, server.url]
        client.health()
        assert client.url == server.url


# -- proxies -------------------------------------------------------------------------------------


def test_the_proxy_of_the_environment_is_used(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `server` plays the proxy: it answers the requests it is sent in absolute form
    monkeypatch.setenv("http_proxy", server.url)
    with Client("http://master.test:8700") as client:
        client.health()
        client.get("t1")
    assert [r[1] for r in server.requests] == [
        "http://master.test:8700/healthz", "http://master.test:8700/api/v1/tasks/t1"]


def test_no_proxy_hosts_are_reached_directly(
    server: _Server, other: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", other.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    with Client(server.url) as client:
        client.health()
    assert [r[1] for r in server.requests] == ["/healthz"] and other.requests == []
    monkeypatch.setenv("ALL_PROXY", other.url)
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    with Client(server.url) as client:
        client.health()
    assert [r[1] for r in other.requests] == [f"{server.url}/healthz"]


def test_the_async_client_fails_over_by_the_same_rules(server: _Server, other: _Server) -> None:
    import asyncio

    from herder.client import AsyncClient

    async def main() -> None:
        async with AsyncClient([_dead_url(), server.url, other.url]) as client:
            await client.health()
            assert client.url == server.url
            server.drop_next = 1
            with pytest.raises(MasterUnreachable):
                await client.submit("noop")  # no id: not sent again
            server.status = 503
            assert (await client.submit("noop", id="x")).id == "t1"
            assert client.url == other.url

    asyncio.run(main())
    assert server.posts() == 2 and other.posts() == 1
