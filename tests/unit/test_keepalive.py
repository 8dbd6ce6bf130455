"""The sync client's plain calls over keepalive.KeepAlivePool, against a real HTTP/1.1 server on
loopback: connections are kept and reused, one the server closed while idle is replaced, a GET
on a connection that breaks is sent again, a POST is not, and errors map to the client's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from herder.client import Client, MasterUnreachable, QueueFull
from herder.errors import ClientError
from herder.keepalive import KeepAlivePool
from tests.integration.conftest import wait_until


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.closed = 0
        self.requests: list[tuple[str, str, Any]] = []
        #: answer this many requests, then close the connection after each answer
        self.close_after_answer = False
        #: drop the connection without answering the next this many requests
        self.drop_next = 0
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
        if self.path.startswith("/api/v1/raw/"):  # answers written byte by byte by the test
            name = self.path.removeprefix("/api/v1/raw/")
            self.wfile.write(self.server.raw_answers[name])
            self.close_connection = name in ("until-closed", "garbage", "bad-header", "bad-length")
            return
        status, answer, headers = 200, {"path": self.path, "body": body}, {}
        if self.path.startswith("/api/v1/full"):
            status, answer, headers = 429, {"detail": "queue is full"}, {"Retry-After": "3"}
        elif self.path.startswith("/api/v1/missing"):
            status, answer = 404, {"detail": "task 'x' not found"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if self.server.close_after_answer:
            self.close_connection = True  # closes without saying so in a header

    do_GET = do_POST = _answer


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    thread = threading.Thread(target=s.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield s
    s.release.set()
    s.shutdown()
    s.server_close()


def test_calls_reuse_one_connection(server: _Server) -> None:
    pool = KeepAlivePool(server.url, {"Authorization": "Bearer t"}, timeout=5)
    for i in range(5):
        answer = pool.request("POST", "/api/v1/tasks", {"wait": 1.5}, {"n": i})
        assert answer.status_code == 200
        assert answer.json() == {"path": "/api/v1/tasks?wait=1.5", "body": {"n": i}}
    assert server.connections == 1
    pool.close()


def test_threads_sharing_a_pool_each_get_their_own_answers(server: _Server) -> None:
    pool = KeepAlivePool(server.url, {}, timeout=5)
    errors: list[BaseException] = []

    def calls(n: int) -> None:
        try:
            for i in range(20):
                answer = pool.request("POST", f"/api/v1/t{n}", body={"n": n, "i": i})
                assert answer.json() == {"path": f"/api/v1/t{n}", "body": {"n": n, "i": i}}
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=calls, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert 1 <= server.connections <= 4  # kept and reused: at most one per thread at a time
    pool.close()


def test_query_values_are_encoded_as_the_api_reads_them(server: _Server) -> None:
    pool = KeepAlivePool(server.url + "/", {}, timeout=5)
    answer = pool.request("GET", "/api/v1/tasks", {"follow": True, "state": "a b", "since": 3})
    assert answer.json()["path"] == "/api/v1/tasks?follow=true&state=a+b&since=3"


def test_a_connection_the_server_closed_while_idle_is_replaced(server: _Server) -> None:
    server.close_after_answer = True
    pool = KeepAlivePool(server.url, {}, timeout=5)
    for i in range(3):
        assert pool.request("POST", "/api/v1/tasks", body={}).status_code == 200
        wait_until(lambda i=i: server.closed == i + 1, what="the server closed the connection")
    assert server.connections == 3
    assert [r[0] for r in server.requests] == ["POST"] * 3  # each sent once


def test_a_get_that_breaks_on_a_reused_connection_is_sent_again(server: _Server) -> None:
    pool = KeepAlivePool(server.url, {}, timeout=5)
    assert pool.request("GET", "/api/v1/a").status_code == 200
    server.drop_next = 1
    assert pool.request("GET", "/api/v1/b").json()["path"] == "/api/v1/b"
    assert [r[1] for r in server.requests] == ["/api/v1/a", "/api/v1/b", "/api/v1/b"]


def test_a_post_that_breaks_is_not_sent_again(server: _Server) -> None:
    client = Client(server.url)
    client.health()
    server.drop_next = 1
    with pytest.raises(MasterUnreachable):
        client.submit("noop")
    assert sum(1 for r in server.requests if r[0] == "POST") == 1
    client.close()


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
    with _Server() as s:
        url = s.url  # the port is free again once closed
    with Client(url) as client, pytest.raises(MasterUnreachable):
        client.health()


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(server: _Server) -> None:
    with pytest.raises(ValueError, match=r"'Authorization'.*line breaks"):
        KeepAlivePool(server.url, {"Authorization": "Bearer t0ken\n"}, timeout=5)
    pool = KeepAlivePool(server.url, {}, timeout=5)
    with pytest.raises(ValueError, match="'X-Evil'"):
        pool.request("GET", "/api/v1/a", headers={"X-Evil": "a\r\nX-Injected: 1"})
    assert server.requests == []


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="http://"):
        KeepAlivePool("https://example.test", {}, timeout=1)


def test_answers_in_chunks_without_length_and_in_pieces_are_read(server: _Server) -> None:
    body = json.dumps({"n": list(range(3000))}).encode()  # larger than one read of the socket
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:]))
    server.raw_answers = {
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked + b"0\r\nX-Trailer: 1\r\n\r\n",
        "length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "until-closed": b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body,
    }
    pool = KeepAlivePool(server.url, {}, timeout=5)
    for name in ("chunked", "length", "until-closed", "chunked", "length"):
        answer = pool.request("GET", f"/api/v1/raw/{name}")
        assert (answer.status_code, answer.content) == (200, body), name
    # the one read until closed could not be reused: a new connection after it
    assert server.connections == 2
    pool.close()


def test_an_answer_that_is_not_http_is_unreachable_with_what_was_wrong(server: _Server) -> None:
    server.raw_answers = {
        "garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
        "bad-header": b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
        "bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    }
    with Client(server.url) as client:
        for name, wrong in [
            ("garbage", "not an HTTP/1.x status line"),
            ("bad-header", "not a header line"),
            ("bad-length", "not a content length"),
        ]:
            with pytest.raises(MasterUnreachable, match=wrong):
                client._call(_get(f"/api/v1/raw/{name}"))
        # and the client goes on working
        assert client._call(_get("/api/v1/ok")) == {"path": "/api/v1/ok", "body": None}


def _get(path: str) -> Any:
    from herder.clientplan import _Request

    return _Request("GET", path)
