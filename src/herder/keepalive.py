"""Plain request/answer calls of the synchronous client, over the standard library's http.client.

A `Client` round trip through httpx's sync client cost ~2 ms of the client's CPU and time more
than the same request over a kept-alive `http.client.HTTPConnection` (W2, one task's submit and
result: p50 6.37 ms against 4.15 ms, measured on this machine in one run; docs/benchmarks.md).
For a scheduler whose users submit from loops, that is most of a small task's latency, so the
sync client sends its JSON calls here; streams (SSE), the async client and any caller that passes
its own httpx transport (tests, proxies) keep httpx. Only `http://` URLs: TLS goes through httpx,
whose certificate handling users configure the usual way.

Imports nothing of herder.
"""

from __future__ import annotations

import http.client
import json
import select
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

#: errors of a connection (not of the server's answer), to be reported as "unreachable"
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class Answer:
    """The parts of an HTTP answer the client reads (the same names as httpx.Response's)."""

    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(
        self, status_code: int, reason_phrase: str, headers: dict[str, str], content: bytes
    ) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        #: lower-case names
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class KeepAlivePool:
    """Kept-alive connections to one `http://host:port`, one per thread at a time.

    A connection the server closed while idle (uvicorn closes them after 5 s) is noticed
    before it is used again: its socket reads as ready (at EOF) while no answer is due. When
    the close crosses the request on the wire, a request that could not be sent, or a GET, is
    sent once more on a new connection; a POST that was sent and got no answer is the caller's
    to report (the server may have acted on it), as with httpx.
    """

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"KeepAlivePool: {url!r} is not an http:// URL")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._headers = {**headers, "Connection": "keep-alive"}
        self._timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        target = self._prefix + path
        if params:
            target += "?" + urlencode([(k, _query_value(v)) for k, v in params.items()])
        data = None
        sent_headers = dict(self._headers)
        if headers:
            sent_headers.update(headers)
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            sent_headers["Content-Type"] = "application/json"
        limit = self._timeout if timeout is None else timeout
        conn, reused = self._take()
        while True:
            sent = False
            try:
                _send(conn, method, target, data, sent_headers, limit)
                sent = True
                answer = _receive(conn)
                break
            except TRANSPORT_ERRORS:
                conn.close()
                # The server may have closed a reused connection just as the request went out:
                # what could not be sent goes again on a new connection, and so does a GET.
                if not reused or (sent and method != "GET"):
                    raise
                conn, reused = self._new(), False
        self._give_back(conn, answer)
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn = self._idle.pop()
            if _still_open(conn):
                return conn, True
            conn.close()
        return self._new(), False

    def _new(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _give_back(self, conn: http.client.HTTPConnection, answer: Answer) -> None:
        if answer.headers.get("connection", "").lower() == "close":
            conn.close()
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()


def _send(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    data: bytes | None,
    headers: dict[str, str],
    timeout: float,
) -> None:
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    else:
        conn.timeout = timeout
    conn.request(method, target, body=data, headers=headers)


def _receive(conn: http.client.HTTPConnection) -> Answer:
    response = conn.getresponse()
    content = response.read()
    names = {name.lower(): value for name, value in response.getheaders()}
    return Answer(response.status, response.reason, names, content)


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """False when the server closed the idle connection (its socket is readable: EOF)."""
    sock = conn.sock
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return not poller.poll(0)
    except OSError:
        return False


def _query_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
