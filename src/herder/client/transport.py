"""The client's one HTTP transport, over libcurl (`curl`): `Transport` for `Client`,
`AsyncTransport` for `AsyncClient`, both built from one `TransportConfig` (the masters and the
failover plan of `masters`, the token, the timeout, TLS and proxies). Why libcurl, and what it
costs against the alternatives: docs/decisions.md, "The client's transport".

- TLS: `https://` masters are verified against the system's CA store (OpenSSL's default
  paths, which SSL_CERT_FILE and SSL_CERT_DIR override; certifi's bundle only on a system that
  has none), or against the CA file given (`ca=` or HERDER_CA).
- Proxies: from the environment, as urllib reads it (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY,
  NO_PROXY, in either case), decided once per master.
- Failover: `masters.Attempts`.

Each master's URL and header lines are made once; a request adds its path and body. Imports
`config`, `jsontext` and the client's `curl`, `curl_aio`, `errors`, `masters` and `plan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from urllib.parse import urlencode, urlsplit

from herder.client.curl import (
    AsyncLink,
    CurlLink,
    Link,
    Outgoing,
    Target,
    Unreached,
)
from herder.client.curl_aio import AsyncCurlLink
from herder.client.errors import MasterUnreachable
from herder.client.masters import Attempts, Master, Route, parse_urls
from herder.client.plan import Answer, Request
from herder.config import env_ca, env_token, env_url
from herder.jsontext import compact

__all__ = ["AsyncTransport", "Transport", "TransportConfig", "ca_paths", "proxy_for"]


def ca_paths(ca: str | None) -> tuple[str | None, str | None]:
    """The CA file and directory that verify the masters' certificates: the file `ca`, or the
    system's store as Python's ssl finds it (libcurl's own default may be another system's)."""
    if ca:
        return ca, None
    found = ssl.get_default_verify_paths()
    cafile = found.cafile if found.cafile and os.path.isfile(found.cafile) else None
    capath = found.capath if found.capath and os.path.isdir(found.capath) else None
    if not (cafile or capath):  # a Python without a system store (macOS' own)
        with contextlib.suppress(ImportError):
            import certifi

            cafile = certifi.where()
    return cafile, capath


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment names for `url`, or None to connect directly."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    host = parts.hostname or ""
    if not proxy or urllib.request.proxy_bypass(f"{host}:{parts.port}" if parts.port else host):
        return None
    return proxy if "://" in proxy else "http://" + proxy


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
        # several masters: a request waits out a failover for as long as any answer may take
        self.route = Route(self.urls, patience=timeout)
        self.token = token if token is not None else env_token()
        self.timeout = timeout
        ca = ca if ca is not None else env_ca()
        if ca and not os.path.isfile(ca):
            raise FileNotFoundError(f"the CA file {ca!r} does not exist")
        secure = any(m.scheme == "https" for m in self.route.masters)
        cafile, capath = ca_paths(ca) if secure else (None, None)
        # "Expect:" keeps libcurl from holding a large body back for a "100 Continue"
        common = ["Accept: application/json", "User-Agent: herder-client", "Expect:"]
        if self.token:
            if any(c in self.token for c in "\r\n\0"):
                raise ValueError("the token holds a line break or NUL (read from a file?)")
            common.append(f"Authorization: Bearer {self.token}")
        self.targets = [self._target(i, m, common, cafile, capath)
                        for i, m in enumerate(self.route.masters)]

    @staticmethod
    def _target(
        index: int, master: Master, common: list[str], cafile: str | None, capath: str | None,
    ) -> Target:
        authority = master.authority.encode("idna").decode("ascii")
        return Target(index, f"{master.scheme}://{authority}{master.prefix}", common,
                      proxy_for(master.url), cafile, capath,
                      [*common, "Content-Type: application/json"])

    @property
    def url(self) -> str:
        """The URL of the master the client sticks to."""
        return self.route.masters[self.route.current].url

    def outgoing(self, index: int, request: Request) -> Outgoing:
        """`request`, ready for libcurl to send to the master at `index`."""
        target = self.targets[index]
        url = target.base + request.path
        if request.params:
            url += "?" + _query(tuple(request.params.items()))
        body = None
        headers = target.headers
        if request.json is not None:
            body = compact(request.json).encode()
            headers = target.json_headers
        elif request.method != "GET":  # the master takes a state change only as JSON
            body = b""
            headers = target.json_headers
        if request.headers:  # a stream's: they replace those of the same name
            names = {name.lower() + ":" for name in request.headers}
            headers = [h for h in headers if h[: h.find(":") + 1].lower() not in names]
            headers += [f"{name}: {value}" for name, value in request.headers.items()]
        timeout = self.timeout if request.timeout is None else request.timeout
        return Outgoing(target, request.method, url, headers, body, timeout,
                        min(timeout, self.timeout),
                        request.idempotent or request.method == "GET")


def _failed(attempts: Attempts, exc: Unreached) -> None:
    attempts.failed(exc.reason, sent=exc.sent, broken=exc.broken)


class Transport:
    """Sends requests to the masters over kept-alive connections (`curl.CurlLink`). `link`,
    when given, carries every request instead (tests, custom networks)."""

    def __init__(self, config: TransportConfig, link: Link | None = None) -> None:
        self.config = config
        self._link: Link = link if link is not None else CurlLink()

    def call(self, request: Request) -> Answer:
        """Send `request`; its answer, read whole. MasterUnreachable when no master answered."""
        config = self.config
        attempts = config.route.attempts(request.idempotent or request.method == "GET")
        call = self._link.call
        while (index := attempts.next()) is not None:
            if attempts.pause:
                time.sleep(attempts.pause)
            try:
                answer = call(config.outgoing(index, request))
            except Unreached as exc:
                _failed(attempts, exc)
                continue
            if attempts.answered(answer.status_code):
                return answer
        raise attempts.error()

    @contextlib.contextmanager
    def stream(self, request: Request) -> Iterator[tuple[Answer, Iterator[bytes]]]:
        """Open `request`'s answer: its head (with the body read when it is an error) and an
        iterator of its body's bytes as they arrive."""
        config = self.config
        attempts = config.route.attempts(request.idempotent or request.method == "GET")
        while (index := attempts.next()) is not None:
            if attempts.pause:
                time.sleep(attempts.pause)
            with contextlib.ExitStack() as opened:
                try:
                    answer, chunks = opened.enter_context(
                        self._link.stream(config.outgoing(index, request)))
                except Unreached as exc:
                    _failed(attempts, exc)
                    continue
                if attempts.answered(answer.status_code):
                    yield answer, self._chunks(chunks)
                    return
        raise attempts.error()

    def _chunks(self, chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
        try:
            yield from chunks
        except Unreached as exc:
            raise MasterUnreachable(self.config.url, exc.reason) from None

    def close(self) -> None:
        self._link.close()


class AsyncTransport:
    """`Transport` for asyncio (`curl_aio.AsyncCurlLink`)."""

    def __init__(self, config: TransportConfig, link: AsyncLink | None = None) -> None:
        self.config = config
        self._link: AsyncLink = link if link is not None else AsyncCurlLink()

    async def call(self, request: Request) -> Answer:
        config = self.config
        attempts = config.route.attempts(request.idempotent or request.method == "GET")
        while (index := attempts.next()) is not None:
            if attempts.pause:
                await asyncio.sleep(attempts.pause)
            try:
                answer = await self._link.call(config.outgoing(index, request))
            except Unreached as exc:
                _failed(attempts, exc)
                continue
            if attempts.answered(answer.status_code):
                return answer
        raise attempts.error()

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        config = self.config
        attempts = config.route.attempts(request.idempotent or request.method == "GET")
        while (index := attempts.next()) is not None:
            if attempts.pause:
                await asyncio.sleep(attempts.pause)
            async with contextlib.AsyncExitStack() as opened:
                try:
                    answer, chunks = await opened.enter_async_context(
                        self._link.stream(config.outgoing(index, request)))
                except Unreached as exc:
                    _failed(attempts, exc)
                    continue
                if attempts.answered(answer.status_code):
                    yield answer, self._chunks(chunks)
                    return
        raise attempts.error()

    async def _chunks(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in chunks:
                yield chunk
        except Unreached as exc:
            raise MasterUnreachable(self.config.url, exc.reason) from None

    async def aclose(self) -> None:
        await self._link.aclose()


@functools.lru_cache(maxsize=256)
def _query(params: tuple[tuple[str, object], ...]) -> str:
    """A query string, made once per set of parameters: most calls repeat theirs (`?wait=`)."""
    return urlencode(params)
