"""A fake network under the client: links (`herder.client.curl.Link`, `AsyncLink`) whose answers
come from a function, written as an httpx handler (`httpx.Request` in, `httpx.Response` out, as
with httpx.MockTransport). httpx errors the handler raises, before or in the middle of a body,
reach the client as libcurl's failures would (`Unreached`: a connect error before anything was
sent, a read or protocol error on a broken connection)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)

import httpx

from herder.client.curl import Outgoing, Unreached
from herder.client.plan import Answer

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def _unreached(exc: httpx.TransportError) -> Unreached:
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError)
    broken = isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError)
    return Unreached(str(exc) or type(exc).__name__, sent=sent, broken=broken)


def _request(out: Outgoing) -> httpx.Request:
    headers = [tuple(line.split(":", 1)) for line in out.headers]
    return httpx.Request(out.method, out.url, content=out.body,
                         headers=[(k.strip(), v.strip()) for k, v in headers if v.strip()])


def _answer(response: httpx.Response, content: bytes = b"") -> Answer:
    return Answer(response.status_code, response.headers.raw, content)


class HandlerPool:
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler

    def _send(self, out: Outgoing) -> httpx.Response:
        try:
            return self.handler(_request(out))
        except httpx.TransportError as exc:
            raise _unreached(exc) from exc

    def call(self, out: Outgoing) -> Answer:
        response = self._send(out)
        return _answer(response, b"".join(self._body(response)))

    @contextlib.contextmanager
    def stream(self, out: Outgoing) -> Iterator[tuple[Answer, Iterator[bytes]]]:
        response = self._send(out)
        if response.status_code >= 400:
            yield _answer(response, b"".join(self._body(response))), iter(())
        else:
            yield _answer(response), self._body(response)

    @staticmethod
    def _body(response: httpx.Response) -> Iterator[bytes]:
        assert isinstance(response.stream, Iterable)
        try:
            yield from response.stream
        except httpx.TransportError as exc:
            raise _unreached(exc) from exc

    def close(self) -> None:
        pass


class AsyncHandlerPool:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def _send(self, out: Outgoing) -> httpx.Response:
        try:
            response = self.handler(_request(out))
            if inspect.isawaitable(response):
                response = await response
        except httpx.TransportError as exc:
            raise _unreached(exc) from exc
        return response

    async def call(self, out: Outgoing) -> Answer:
        response = await self._send(out)
        return _answer(response, b"".join([chunk async for chunk in self._body(response)]))

    @contextlib.asynccontextmanager
    async def stream(self, out: Outgoing) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        response = await self._send(out)
        if response.status_code >= 400:
            content = b"".join([chunk async for chunk in self._body(response)])
            yield _answer(response, content), self._body(httpx.Response(200))
        else:
            yield _answer(response), self._body(response)

    @staticmethod
    async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            if isinstance(response.stream, AsyncIterable):
                async for chunk in response.stream:
                    yield chunk
            else:
                assert isinstance(response.stream, Iterable)
                for chunk in response.stream:
                    yield chunk
        except httpx.TransportError as exc:
            raise _unreached(exc) from exc

    async def aclose(self) -> None:
        pass
