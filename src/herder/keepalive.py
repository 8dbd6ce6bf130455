"""Plain request/answer calls of the synchronous client: HTTP/1.1 over kept-alive sockets.

A `Client` round trip through httpx's sync client cost ~2 ms of the client's CPU and time more
than the same request over a kept-alive `http.client.HTTPConnection` (W2, one task's submit and
result: p50 6.37 ms against 4.15 ms, measured on this machine in one run; docs/benchmarks.md).
http.client itself then cost ~380 us of CPU per call, most of it in parsing the answer's
headers with the `email` package; this module writes each request in one `sendall` and reads
the answer's head by splitting lines: ~130 us, and ~0.4 ms less per W2 round trip (session 7).
It speaks only what a JSON call needs: a request with a `Content-Length` body, an answer with a
`Content-Length` or chunked body, or one that ends when the server closes. Streams (SSE), the
async client and any caller that passes its own httpx transport (tests, proxies) keep httpx.
Only `http://` URLs: TLS goes through httpx, whose certificate handling users configure the
usual way.

Imports nothing of herder.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

#: bytes an answer's status line and headers may take
MAX_HEAD = 64 * 1024
_RECV = 256 * 1024


class BadAnswer(Exception):
    """The server's bytes are not an HTTP/1.1 answer this module reads."""


#: errors of a connection (not of the server's answer), to be reported as "unreachable"
TRANSPORT_ERRORS = (OSError, BadAnswer)


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
        host = self._host if ":" not in self._host else f"[{self._host}]"  # an IPv6 address
        default_port = parts.port is None
        self._fixed_head = _header_lines(
            {
                "Host": host if default_port else f"{host}:{self._port}",
                **headers,
                "Connection": "keep-alive",
            }
        )
        self._timeout = timeout
        self._idle: list[_Connection] = []
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
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed_head}"
        if headers:
            head += _header_lines(headers)
        data = b""
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            head += "Content-Type: application/json\r\n"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(data)}\r\n"
        message = (head + "\r\n").encode("latin-1") + data
        limit = self._timeout if timeout is None else timeout
        conn, reused = self._take()
        while True:
            sent = False
            try:
                conn.sock.settimeout(limit)
                conn.sock.sendall(message)
                sent = True
                answer = conn.receive(method)
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

    def _take(self) -> tuple[_Connection, bool]:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn = self._idle.pop()
            if conn.still_open():
                return conn, True
            conn.close()
        return self._new(), False

    def _new(self) -> _Connection:
        return _Connection(socket.create_connection((self._host, self._port), self._timeout))

    def _give_back(self, conn: _Connection, answer: Answer) -> None:
        if not conn.reusable or answer.headers.get("connection", "").lower() == "close":
            conn.close()
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()


class _Connection:
    """One socket and the bytes read from it that are not part of an answer yet."""

    __slots__ = ("buffer", "reusable", "sock")

    def __init__(self, sock: socket.socket) -> None:
        # a request goes out in one sendall, and nothing waits to be merged with it
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buffer = b""
        #: False once an answer ended with the connection (no length: read until closed)
        self.reusable = True

    def receive(self, method: str) -> Answer:
        """Read one answer to a request made with `method`."""
        end = self.buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise BadAnswer(f"the answer's head is longer than {MAX_HEAD} bytes")
            self.buffer += self._recv()
            end = self.buffer.find(b"\r\n\r\n")
        head = self.buffer[:end].decode("latin-1")
        self.buffer = self.buffer[end + 4 :]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
            raise BadAnswer(f"not an HTTP/1.x status line: {status_line[:100]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise BadAnswer(f"not a header line: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            self.reusable = False
        if method == "HEAD" or status in (204, 304) or status < 200:
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = self._chunked()
        elif "content-length" in headers:
            content = self._exactly(_length(headers["content-length"]))
        else:
            content = self._until_closed()
        return Answer(status, reason, headers, content)

    def still_open(self) -> bool:
        """False when the server closed the idle connection (its socket is readable: EOF)."""
        if self.buffer:
            return False  # bytes no request asked for: the stream is out of step
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> bytes:
        chunk = self.sock.recv(_RECV)
        if not chunk:
            raise ConnectionResetError("the server closed the connection before its answer")
        return chunk

    def _exactly(self, n: int) -> bytes:
        have = len(self.buffer)
        if have < n:  # the pieces joined once: a large answer is not copied per piece
            parts = [self.buffer]
            while have < n:
                parts.append(self._recv())
                have += len(parts[-1])
            self.buffer = b"".join(parts)
        content, self.buffer = self.buffer[:n], self.buffer[n:]
        return content

    def _line(self) -> bytes:
        end = self.buffer.find(b"\r\n")
        while end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise BadAnswer("a chunk's size line is too long")
            self.buffer += self._recv()
            end = self.buffer.find(b"\r\n")
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadAnswer(f"not a chunk size: {size_text[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            if self._exactly(2) != b"\r\n":
                raise BadAnswer("a chunk does not end with CRLF")

    def _until_closed(self) -> bytes:
        self.reusable = False
        parts = [self.buffer]
        self.buffer = b""
        while chunk := self.sock.recv(_RECV):
            parts.append(chunk)
        return b"".join(parts)


def _header_lines(headers: Mapping[str, str]) -> str:
    """`Name: value` lines; ValueError for a name or value that would end its line early (a
    token read from a file with its newline, say), as http.client and httpx refuse them."""
    lines = []
    for name, value in headers.items():
        text = str(value)
        if any(c in name or c in text for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(
                f"header {name!r}: a name must be non-empty without ':', and neither a name "
                "nor a value may hold line breaks"
            )
        lines.append(f"{name}: {text}\r\n")
    return "".join(lines)


def _length(text: str) -> int:
    if not text.isdigit():
        raise BadAnswer(f"not a content length: {text[:20]!r}")
    return int(text)


def _query_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
