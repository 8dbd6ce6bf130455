"""The client's one HTTP transport, over httpcore's connection pools: `Transport` for `Client`,
`AsyncTransport` for `AsyncClient`, both built from one `TransportConfig` (the masters and the
failover plan of `masters`, the token, the timeout, TLS and proxies). Why httpcore, and what it
costs against the alternatives: docs/decisions.md, "The client's transport".

- TLS: `https://` masters are verified against the system's CA store (OpenSSL's default
  paths, which SSL_CERT_FILE and SSL_CERT_DIR override; certifi's bundle only on a system that
  has none), or against the CA file given (`ca=` or HERDER_CA).
- Proxies: from the environment, as urllib reads it (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY,
  NO_PROXY, in either case), decided once per master.
- Failover: `masters.Attempts`.

A request's bytes are built here from prepared parts (the master's URL pieces and its header
pairs, made once), since this is the way of every call. Imports httpcore, `config`, `jsontext`
and the client's `errors`, `masters` and `plan`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import httpcore

from herder.client.errors import MasterUnreachable
from herder.client.masters import Attempts, Master, Route, parse_urls
from herder.client.plan import Answer, Request
from herder.config import env_ca, env_token, env_url
from herder.jsontext import compact

__all__ = ["AsyncTransport", "Transport", "TransportConfig", "proxy_for", "tls_context"]

#: errors of reaching a master (none of its answers)
UNREACHABLE = (
    httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError,
)
#: ... of which these are raised before any byte of the request went out
_NOT_SENT = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout,
             httpcore.ProxyError)
#: ... and these when the connection broke (rather than went silent)
_BROKEN = (httpcore.ReadError, httpcore.WriteError, httpcore.RemoteProtocolError)
# h11 writes a request's head and its body apart: the body must follow at once, not wait for
# the server's (delayed) ACK of the head as Nagle's algorithm would have it.
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
#: uvicorn closes a connection idle for 5 s; closing ours first keeps a request from crossing
#: the server's close on the wire
_KEEPALIVE_EXPIRY = 4.0
_JSON = (b"Content-Type", b"application/json")
_EMPTY_BODY = [(b"Content-Length", b"0")]


def tls_context(ca: str | None) -> ssl.SSLContext:
    """What verifies the masters' certificates: the CA file `ca`, or the system's store."""
    if ca:
        return ssl.create_default_context(cafile=ca)
    context = ssl.create_default_context()
    found = ssl.get_default_verify_paths()
    if not (found.cafile or found.capath):  # a Python without a system store (macOS' own)
        with contextlib.suppress(ImportError):
            import certifi

            context.load_verify_locations(cafile=certifi.where())
    return context


def proxy_for(url: str) -> httpcore.Proxy | None:
    """The proxy the environment names for `url`, or None to connect directly."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    host = parts.hostname or ""
    if not proxy or urllib.request.proxy_bypass(f"{host}:{parts.port}" if parts.port else host):
        return None
    proxy = proxy if "://" in proxy else "http://" + proxy
    given = urlsplit(proxy)
    if given.username is None:
        return httpcore.Proxy(proxy)
    bare = given._replace(netloc=given.netloc.rpartition("@")[2]).geturl()
    return httpcore.Proxy(bare, auth=(unquote(given.username), unquote(given.password or "")))


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The parts of every request to one master that do not change from call to call."""

    scheme: bytes
    host: bytes
    port: int
    prefix: str
    headers: list[tuple[bytes, bytes]]
    proxy: httpcore.Proxy | None

    @property
    def proxy_key(self) -> object:
        """Masters behind the same proxy share a pool."""
        return None if self.proxy is None else (bytes(self.proxy.url), self.proxy.auth)


class TransportConfig:
    """The configuration both transports share: the masters (`route`, with the one the client
    sticks to), the token, the default timeout, the TLS context and each master's proxy.
    `urls`: a URL, a comma list, a sequence; None or empty: HERDER_URL. `token` None: HERDER_TOKEN.
    `ca` None: HERDER_CA."""

    def __init__(
        self, urls: str | Sequence[str] | None, token: str | None, timeout: float,
        ca: str | None,
    ) -> None:
        self.urls = parse_urls(urls or env_url())
        self.route = Route(self.urls)
        self.token = token if token is not None else env_token()
        self.timeout = timeout
        self._timeouts = self.timeouts(timeout)
        ca = ca if ca is not None else env_ca()
        if ca and not os.path.isfile(ca):
            raise FileNotFoundError(f"the CA file {ca!r} does not exist")
        secure = any(m.scheme == "https" for m in self.route.masters)
        self.ssl_context = tls_context(ca) if secure else None
        common = [(b"Accept", b"application/json"), (b"User-Agent", b"herder-client")]
        if self.token:
            if any(c in self.token for c in "\r\n\0"):
                raise ValueError("the token holds a line break or NUL (read from a file?)")
            common.append((b"Authorization", f"Bearer {self.token}".encode()))
        self.prepared = [self._prepare(m, common) for m in self.route.masters]

    @staticmethod
    def _prepare(master: Master, common: list[tuple[bytes, bytes]]) -> _Prepared:
        return _Prepared(
            master.scheme.encode(), master.host.encode("idna"), master.port, master.prefix,
            [(b"Host", master.authority.encode("idna")), *common], proxy_for(master.url),
        )

    @property
    def url(self) -> str:
        """The URL of the master the client sticks to."""
        return self.route.masters[self.route.current].url

    @staticmethod
    def timeouts(seconds: float, default: float | None = None) -> dict[str, float]:
        quick = seconds if default is None else min(seconds, default)
        return {"connect": quick, "read": seconds, "write": quick, "pool": quick}

    def request(self, index: int, request: Request) -> httpcore.Request:
        """The httpcore request of `request` to the master at `index`."""
        master = self.prepared[index]
        target = master.prefix + request.path
        if request.params:
            target += "?" + urlencode(request.params)
        headers = master.headers
        if request.headers:  # a stream's: they replace those of the same name
            given = [(k.encode(), v.encode()) for k, v in request.headers.items()]
            names = {name.lower() for name, _ in given}
            headers = [h for h in headers if h[0].lower() not in names] + given
        content = b""
        if request.json is not None:
            content = compact(request.json).encode()
            headers = [*headers, _JSON, (b"Content-Length", b"%d" % len(content))]
        elif request.method != "GET":
            headers = headers + _EMPTY_BODY
        timeouts = (self._timeouts if request.timeout is None
                    else self.timeouts(request.timeout, self.timeout))
        return httpcore.Request(
            request.method.encode(),
            httpcore.URL(scheme=master.scheme, host=master.host, port=master.port,
                         target=target.encode()),
            headers=headers, content=content, extensions={"timeout": timeouts},
        )

    def pool_args(self, proxy: httpcore.Proxy | None) -> dict[str, Any]:
        return {"ssl_context": self.ssl_context, "proxy": proxy, "max_connections": 100,
                "max_keepalive_connections": 20, "keepalive_expiry": _KEEPALIVE_EXPIRY,
                "socket_options": _SOCKET_OPTIONS}


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpcore.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    reason = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        reason += (" (the master's certificate is not signed by a CA this client trusts: "
                   "name the CA file with ca= or HERDER_CA)")
    return reason


def _failed(attempts: Attempts, exc: Exception) -> None:
    attempts.failed(_reason(exc), sent=not isinstance(exc, _NOT_SENT),
                    broken=isinstance(exc, _BROKEN))


class Transport:
    """Sends requests to the masters over kept-alive connections (httpcore.ConnectionPool, one
    per proxy). `pool`, when given, carries every request instead (tests, custom networks)."""

    def __init__(
        self, config: TransportConfig, pool: httpcore.ConnectionPool | None = None
    ) -> None:
        self.config = config
        pools: dict[object, httpcore.ConnectionPool] = {}
        self._pools = []
        for master in config.prepared:
            if pool is None and master.proxy_key not in pools:
                pools[master.proxy_key] = httpcore.ConnectionPool(
                    **config.pool_args(master.proxy))
            self._pools.append(pool or pools[master.proxy_key])

    def call(self, request: Request) -> Answer:
        """Send `request`; its answer, read whole. MasterUnreachable when no master answered."""
        response, content = self._send(request, stream=False)
        return Answer(response.status, response.headers, content)

    @contextlib.contextmanager
    def stream(self, request: Request) -> Iterator[tuple[Answer, Iterator[bytes]]]:
        """Open `request`'s answer: its head (with the body read when it is an error) and an
        iterator of its body's bytes as they arrive."""
        response, content = self._send(request, stream=True)
        chunks = self._chunks(response)
        try:
            yield Answer(response.status, response.headers, content), chunks
        finally:
            chunks.close()
            response.close()

    def _chunks(self, response: httpcore.Response) -> Generator[bytes, None, None]:
        try:
            yield from response.iter_stream()
        except UNREACHABLE as exc:
            raise MasterUnreachable(self.config.url, _reason(exc)) from exc

    def _send(self, request: Request, stream: bool) -> tuple[httpcore.Response, bytes]:
        config = self.config
        attempts = config.route.attempts(request.idempotent or request.method == "GET")
        while (index := attempts.next()) is not None:
            try:
                response = self._pools[index].handle_request(config.request(index, request))
                try:
                    content = b"" if stream and response.status < 400 else response.read()
                except BaseException:
                    response.close()
                    raise
            except UNREACHABLE as exc:
                _failed(attempts, exc)
                continue
            if not stream:
                response.close()
            if attempts.answered(response.status):
                return response, content
            if stream:
                response.close()
        raise attempts.error()

    def close(self) -> None:
        for pool in dict.fromkeys(self._pools):
            pool.close()


class AsyncTransport:
    """`Transport` for asyncio (httpcore.AsyncConnectionPool)."""

    def __init__(
        self, config: TransportConfig, pool: httpcore.AsyncConnectionPool | None = None
    ) -> None:
        self.config = config
        pools: dict[object, httpcore.AsyncConnectionPool] = {}
        self._pools = []
        for master in config.prepared:
            if pool is None and master.proxy_key not in pools:
                pools[master.proxy_key] = httpcore.AsyncConnectionPool(
                    **config.pool_args(master.proxy))
            self._pools.append(pool or pools[master.proxy_key])

    async def call(self, request: Request) -> Answer:
        response, content = await self._send(request, stream=False)
        return Answer(response.status, response.headers, content)

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        response, content = await self._send(request, stream=True)
        chunks = self._chunks(response)
        try:
            yield Answer(response.status, response.headers, content), chunks
        finally:
            await chunks.aclose()
            await response.aclose()

    async def _chunks(self, response: httpcore.Response) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.aiter_stream():
                yield chunk
        except UNREACHABLE as exc:
            raise MasterUnreachable(self.config.url, _reason(exc)) from exc

    async def _send(self, request: Request, stream: bool) -> tuple[httpcore.Response, bytes]:
        config = self.config
        attempts = config.route.attempts(request.idempotent or request.method == "GET")
        while (index := attempts.next()) is not None:
            try:
                response = await self._pools[index].handle_async_request(
                    config.request(index, request))
                try:
                    content = b"" if stream and response.status < 400 else await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
            except UNREACHABLE as exc:
                _failed(attempts, exc)
                continue
            if not stream:
                await response.aclose()
            if attempts.answered(response.status):
                return response, content
            if stream:
                await response.aclose()
        raise attempts.error()

    async def aclose(self) -> None:
        for pool in dict.fromkeys(self._pools):
            await pool.aclose()
