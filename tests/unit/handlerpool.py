"""A fake network under the client: httpcore pools whose answers come from a function, written
as an httpx handler (`httpx.Request` in, `httpx.Response` out, as with httpx.MockTransport).
httpx errors the handler raises, before or in the middle of a body, reach the client as
httpcore's errors of the same name, as a real connection's would."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator

import httpcore
import httpx

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def _core_error(exc: httpx.TransportError) -> Exception:
    return getattr(httpcore, type(exc).__name__, httpcore.NetworkError)(str(exc))


def _request(request: httpcore.Request, content: bytes) -> httpx.Request:
    return httpx.Request(request.method.decode(), bytes(request.url).decode(),
                         headers=request.headers, content=content)


class HandlerPool(httpcore.ConnectionPool):
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        super().__init__()
        self.handler = handler

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        assert isinstance(request.stream, Iterable)
        try:
            response = self.handler(_request(request, b"".join(request.stream)))
        except httpx.TransportError as exc:
            raise _core_error(exc) from exc
        return httpcore.Response(response.status_code, headers=response.headers.raw,
                                 content=self._body(response))

    @staticmethod
    def _body(response: httpx.Response) -> Iterator[bytes]:
        assert isinstance(response.stream, Iterable)
        try:
            yield from response.stream
        except httpx.TransportError as exc:
            raise _core_error(exc) from exc


class AsyncHandlerPool(httpcore.AsyncConnectionPool):
    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        assert isinstance(request.stream, AsyncIterable)
        content = b"".join([chunk async for chunk in request.stream])
        try:
            response = self.handler(_request(request, content))
            if inspect.isawaitable(response):
                response = await response
        except httpx.TransportError as exc:
            raise _core_error(exc) from exc
        return httpcore.Response(response.status_code, headers=response.headers.raw,
                                 content=self._body(response))

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
            raise _core_error(exc) from exc
