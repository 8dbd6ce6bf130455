"""Glue between the client's transport and libcurl (through pycurl): libcurl writes the requests,
reads the answers and keeps the connections; this module hands it prepared requests and takes
back answers, chunks and failures.

- `CurlLink` sends from blocking code: a plain call on an easy handle of the master's (one per
  thread at a time, kept with its connection); a stream on a `CurlMulti` of its own, driven
  with `perform`/`select` so that its chunks come out as they arrive.
- `curl_aio.AsyncCurlLink` sends from asyncio: one `CurlMulti` driven by the event loop.

Both links take an `Outgoing` (one request, made ready by `transport`) and raise `Unreached` when
libcurl fails, saying whether the request may have been sent. A request that must not go twice
(`Outgoing.resend` false) gives libcurl its body through a read callback and no seek callback,
so that libcurl cannot rewind it to send it again on another connection by itself.
Imports pycurl and the client's `plan`.
"""

from __future__ import annotations

import contextlib
import io
import select
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pycurl

from herder.client.plan import Answer

__all__ = ["AsyncLink", "CurlLink", "Easy", "Link", "Outgoing", "Target", "Unreached"]

_WEIRD_SERVER_REPLY = 8  # CURLE_WEIRD_SERVER_REPLY, which pycurl does not name
#: libcurl's failures that happen before any byte of the request went out
_NOT_SENT = frozenset({
    pycurl.E_COULDNT_RESOLVE_PROXY, pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT,
    pycurl.E_SSL_CONNECT_ERROR, pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT_BADFILE,
    pycurl.E_SSL_CERTPROBLEM, pycurl.E_SSL_CIPHER,
})
#: ... and those of a connection that broke (rather than went silent)
_BROKEN = frozenset({
    pycurl.E_GOT_NOTHING, pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR, pycurl.E_PARTIAL_FILE,
    pycurl.E_SEND_FAIL_REWIND, _WEIRD_SERVER_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL,
})
#: uvicorn closes a connection idle for 5 s; dropping ours first keeps a request from crossing
#: the server's close on the wire
_MAX_IDLE_SECONDS = 4
#: idle easy handles (each with its connection) kept per master
KEEP = 20


class Unreached(Exception):
    """libcurl could not complete the exchange: `reason`, whether the request may have reached
    the master (`sent`) and whether its connection broke (`broken`, rather than went silent)."""

    def __init__(self, reason: str, *, sent: bool, broken: bool) -> None:
        super().__init__(reason)
        self.reason, self.sent, self.broken = reason, sent, broken


def unreached(exc: pycurl.error, handle: Any = None) -> Unreached:
    """The `Unreached` of libcurl's error `exc` (of `handle`'s transfer, when known)."""
    code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else str(exc)
    return failure(code, message, handle)


def failure(code: int, message: str, handle: Any = None) -> Unreached:
    if code == pycurl.E_OPERATION_TIMEDOUT:
        started = handle is not None and handle.getinfo(pycurl.PRETRANSFER_TIME_T) > 0
        return Unreached(f"no answer in time ({message})", sent=started, broken=False)
    if code == pycurl.E_PEER_FAILED_VERIFICATION:
        message = (f"CERTIFICATE_VERIFY_FAILED: {message} (the master's certificate is not "
                   "signed by a CA this client trusts: name the CA file with ca= or HERDER_CA)")
    return Unreached(message or f"libcurl error {code}", sent=code not in _NOT_SENT,
                     broken=code in _BROKEN)


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """One master as libcurl reaches it, prepared once: the URL its paths follow, the header
    lines of every request, the proxy (None: directly) and the CA file and directory."""

    index: int
    base: str
    headers: list[str]
    proxy: str | None
    cainfo: str | None = None
    capath: str | None = None
    #: the header lines of a request with a JSON body
    json_headers: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Outgoing:
    """One request for libcurl: `timeout` is the seconds its answer may take (a stream's: the
    longest silence), `connect_timeout` those of connecting; `resend` true when libcurl may
    send it again by itself (it is idempotent)."""

    target: Target
    method: str
    url: str
    headers: list[str]
    body: bytes | None
    timeout: float
    connect_timeout: float
    resend: bool


class Link(Protocol):
    """What `transport.Transport` sends through (`CurlLink`, or a test's network)."""

    def call(self, out: Outgoing) -> Answer: ...

    def stream(self, out: Outgoing) -> contextlib.AbstractContextManager[
        tuple[Answer, Iterator[bytes]]]: ...

    def close(self) -> None: ...


class AsyncLink(Protocol):
    """What `transport.AsyncTransport` sends through (`AsyncCurlLink`, or a test's network)."""

    async def call(self, out: Outgoing) -> Answer: ...

    def stream(self, out: Outgoing) -> contextlib.AbstractAsyncContextManager[
        tuple[Answer, AsyncIterator[bytes]]]: ...

    async def aclose(self) -> None: ...


def _head(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The header pairs of the last head in `lines` (a proxy's or a 100's may come first)."""
    start = 0
    for i, line in enumerate(lines):
        if line.startswith(b"HTTP/"):
            start = i + 1
    pairs = []
    for line in lines[start:]:
        name, colon, value = line.partition(b":")
        if colon:
            pairs.append((name.strip(), value.strip()))
    return pairs


class Easy:
    """An easy handle for one master's requests, with the buffers its callbacks fill and the
    options last set (a list or timeout that did not change is not set again)."""

    __slots__ = ("body", "curl", "custom", "fresh", "head", "headers", "timeouts")

    def __init__(self, target: Target) -> None:
        self.curl = curl = pycurl.Curl()
        self.head: list[bytes] = []
        self.body: list[bytes] = []
        self.headers: list[str] | None = None
        self.timeouts = (-1.0, -1.0)
        #: the method set over POST's (DELETE), or None
        self.custom: str | None = None
        self.fresh = False
        curl.setopt(pycurl.NOSIGNAL, 1)
        # a request must not wait for the server's delayed ACK of the one before, as Nagle's
        # algorithm would have it on a kept-alive connection
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.MAXAGE_CONN, _MAX_IDLE_SECONDS)
        # the proxy Python's rules chose, and no other (libcurl reads the environment itself)
        curl.setopt(pycurl.PROXY, target.proxy or "")
        curl.setopt(pycurl.NOPROXY, "")
        if target.cainfo:
            curl.setopt(pycurl.CAINFO, target.cainfo)
        if target.capath:
            curl.setopt(pycurl.CAPATH, target.capath)
        # no header callback: a plain call's answer takes the two headers it reads from libcurl
        # (`answer`), and only a stream, which must see its head end, sets one
        curl.setopt(pycurl.WRITEFUNCTION, self.body.append)

    def prepare(self, out: Outgoing, fresh: bool = False) -> None:
        """Set the options of `out`; `fresh`: on a new connection."""
        curl = self.curl
        if fresh is not self.fresh:
            curl.setopt(pycurl.FRESH_CONNECT, fresh)
            self.fresh = fresh
        curl.setopt(pycurl.URL, out.url)
        if out.headers is not self.headers:
            curl.setopt(pycurl.HTTPHEADER, out.headers)
            self.headers = out.headers
        timeouts = (out.timeout, out.connect_timeout)
        if timeouts != self.timeouts:
            curl.setopt(pycurl.TIMEOUT_MS, max(1, int(out.timeout * 1000)))
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(out.connect_timeout * 1000)))
            self.timeouts = timeouts
        # a method other than GET and POST is a POST's body under another name; the handle
        # keeps it for the next request unless it is taken off
        custom = None if out.method in ("GET", "POST") else out.method
        if custom != self.custom:
            if custom is None:
                curl.unsetopt(pycurl.CUSTOMREQUEST)
            else:
                curl.setopt(pycurl.CUSTOMREQUEST, custom)
            self.custom = custom
        if out.method == "GET":
            curl.setopt(pycurl.HTTPGET, 1)
            return
        body = io.BytesIO(out.body or b"")
        curl.setopt(pycurl.POST, 1)
        curl.setopt(pycurl.POSTFIELDSIZE, len(out.body or b""))
        curl.setopt(pycurl.READFUNCTION, body.read)
        curl.setopt(pycurl.SEEKFUNCTION, _rewinder(body) if out.resend else None)

    def answer(self, content: bytes | None = None) -> Answer:
        """The answer the callbacks collected (`content` instead of the body, when given);
        the buffers are emptied for the next request."""
        status = self.curl.getinfo(pycurl.RESPONSE_CODE)
        body = self.body
        if content is None:
            content = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
        if self.head:
            answer = Answer(status, _head(self.head), content)
            self.head.clear()
            return answer
        return Answer(status, self._read_headers() if status >= 400 else (), content)

    def _read_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers an error answer is read for, as libcurl parsed them."""
        curl, pairs = self.curl, []
        kind = curl.getinfo(pycurl.CONTENT_TYPE)
        if kind:
            pairs.append((b"content-type", kind.encode("latin-1")))
        retry_after = curl.getinfo(pycurl.RETRY_AFTER)
        if retry_after > 0:
            pairs.append((b"retry-after", str(retry_after).encode()))
        return pairs

    def reset(self) -> None:
        self.head.clear()
        self.body.clear()


def socket_closed(fd: int) -> bool:
    """True when the kept connection on socket `fd` has something to read: the server closed it
    (or wrote out of turn), so a request must not go out on it.

    libcurl looks for this itself only on connections idle for a while; a request it may not
    send twice is better sent on a new connection than failed."""
    if fd < 0:
        return False
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _rewinder(body: io.BytesIO) -> Any:
    def seek(offset: int, origin: int) -> int:
        body.seek(offset, origin)
        return pycurl.SEEKFUNC_OK  # type: ignore[no-any-return]

    return seek


class CurlLink:
    """Sends from blocking code. Thread-safe: each call takes an idle easy handle of its master
    (or a new one) and gives it back, so the threads sharing a client share its connections."""

    def __init__(self) -> None:
        self._idle: dict[Target, list[Easy]] = {}
        self._streams: dict[Target, list[_Stream]] = {}

    def call(self, out: Outgoing) -> Answer:
        idle = self._idle.get(out.target)
        try:
            easy = idle.pop() if idle else Easy(out.target)
        except IndexError:  # another thread took the last one
            easy = Easy(out.target)
        easy.prepare(out, not out.resend and socket_closed(easy.curl.getinfo(pycurl.ACTIVESOCKET)))
        try:
            easy.curl.perform()
        except pycurl.error as exc:
            error = unreached(exc, easy.curl)
            easy.reset()
            self._give_back(self._idle, out.target, easy)
            raise error from None
        answer = easy.answer()
        self._give_back(self._idle, out.target, easy)
        return answer

    @contextlib.contextmanager
    def stream(self, out: Outgoing) -> Iterator[tuple[Answer, Iterator[bytes]]]:
        idle = self._streams.get(out.target)
        try:
            stream = idle.pop() if idle else _Stream(out.target)
        except IndexError:
            stream = _Stream(out.target)
        try:
            yield stream.open(out), stream.chunks(out.timeout)
        finally:
            if stream.close():
                self._give_back(self._streams, out.target, stream)

    @staticmethod
    def _give_back(idle: dict[Target, list[Any]], target: Target, item: Any) -> None:
        kept = idle.setdefault(target, [])
        if len(kept) < KEEP:
            kept.append(item)
        else:
            item.curl.close()

    def close(self) -> None:
        for handles in self._idle.values():
            while handles:
                handles.pop().curl.close()
        for streams in self._streams.values():
            while streams:
                stream = streams.pop()
                stream.curl.close()
                stream.multi.close()


class _Stream:
    """A stream from blocking code: an easy handle in a `CurlMulti` of its own (kept, with its
    connection, for the master's next stream), driven until its head is in, then chunk by
    chunk as the caller reads."""

    __slots__ = ("curl", "easy", "error", "head_done", "multi", "running")

    def __init__(self, target: Target) -> None:
        self.easy = Easy(target)
        self.curl = self.easy.curl
        self.multi = pycurl.CurlMulti()
        self.curl.setopt(pycurl.HEADERFUNCTION, self._header)
        self.head_done = self.running = False
        self.error: Unreached | None = None

    def _header(self, line: bytes) -> None:
        self.easy.head.append(line)
        if line == b"\r\n" and head_is_final(self.easy.head):
            self.head_done = True

    def open(self, out: Outgoing) -> Answer:
        """Send `out` and read its answer's head: with the body when it is an error (>= 400)."""
        start_stream(self.easy, out)
        self.head_done, self.error, self.running = False, None, True
        self.multi.add_handle(self.curl)
        if not self._step(out.timeout, lambda: self.head_done) and self.error is not None:
            raise self.error
        if self.curl.getinfo(pycurl.RESPONSE_CODE) < 400:
            return self.easy.answer(b"")
        while self._step(out.timeout, lambda: False):
            pass
        if self.error is not None:
            raise self.error
        return self.easy.answer()

    def chunks(self, timeout: float) -> Iterator[bytes]:
        """The body's chunks as they arrive; Unreached when the connection breaks or is silent
        for `timeout` seconds."""
        body = self.easy.body
        while body or self._step(timeout, lambda: bool(body)):
            arrived = body[:]
            body.clear()
            yield from arrived
        if self.error is not None:
            raise self.error

    def _step(self, timeout: float, ready: Any) -> bool:
        """Let libcurl move the transfer on, waiting on its sockets, until `ready()`: True then,
        False once the transfer has ended (`error` set if it failed, or was silent for
        `timeout` seconds)."""
        multi = self.multi
        deadline = time.monotonic() + timeout
        while self.running:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _, done, failed = multi.info_read()
            if failed:
                self.error = failure(failed[0][1], failed[0][2], self.curl)
            if done or failed:
                self.running = False
                break
            if ready():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                self.error = silent()
                self.running = False
                break
            wanted = multi.timeout()
            multi.select(min(left, 1.0) if wanted < 0 else min(left, wanted / 1000))
        return bool(ready())

    def close(self) -> bool:
        """Take the handle out of its multi; True when it may serve the next stream."""
        self.multi.remove_handle(self.curl)
        self.easy.reset()
        return True


def head_is_final(head: list[bytes]) -> bool:
    """True when the head just ended in `head` is the answer's, not a "100 Continue" (libcurl
    cannot be asked for the status from within its callbacks)."""
    for line in reversed(head):
        if line.startswith(b"HTTP/"):
            parts = line.split(None, 2)
            return len(parts) > 1 and not parts[1].startswith(b"1")
    return True


def silent() -> Unreached:
    return Unreached("no answer in time (the stream was silent)", sent=True, broken=False)


def start_stream(easy: Easy, out: Outgoing) -> None:
    easy.prepare(out)
    easy.curl.setopt(pycurl.TIMEOUT_MS, 0)  # a stream lasts: its silences are timed instead
    easy.timeouts = (-1.0, -1.0)
