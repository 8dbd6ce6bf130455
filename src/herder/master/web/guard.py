"""The middleware every request and the worker channel's upgrade pass: host, origin, token, the
master's role, body size, then content type.

A pure ASGI middleware, inside the app (so that every route has it, whatever mounts it) and
outside its exception handling. It refuses a request whose `Host` is not the master's
(`browsers`), a WebSocket upgrade from a web page (one with an `Origin` header), one without a
token that grants its path's role (`access`), one that only the active master answers when this
master is a standby (503 naming the active one: `seat`), one whose declared body is over
--max-body, and a state-changing one not sent as JSON (`browsers`), before any route runs; a
body sent without a length is counted as it is read, and reading past the limit raises the 413
that the error handlers answer. Imports the master's `seat` and the web layer's `access`,
`browsers` and `errors`.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herder.master.seat import RETRY_AFTER, Seat
from herder.master.web.access import FROM_A_WEB_PAGE, Tokens, role_needed, standby_serves
from herder.master.web.browsers import HostCheck, content_type_refusal
from herder.master.web.errors import body_too_large, error_response, standby_response


class Guard:
    def __init__(
        self, app: ASGIApp, tokens: Tokens, max_body: int, hosts: HostCheck, seat: Seat
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body = max_body
        self.hosts = hosts
        self.seat = seat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # the lifespan
            await self.app(scope, receive, send)
            return
        authorization, length, origin, host, content_type = _read_headers(scope["headers"])
        wrong_host = self.hosts.refusal(host)
        if wrong_host is not None:
            await _refuse(scope, receive, send, 400, wrong_host)
            return
        if kind == "websocket" and origin is not None:
            await _refuse(scope, receive, send, 403, FROM_A_WEB_PAGE)
            return
        role = role_needed(scope["path"])
        refusal = None if role is None else self.tokens.refusal(role, authorization)
        if refusal is not None:
            await _refuse(scope, receive, send, refusal.status, refusal.detail)
            return
        if not self.seat.serving and not standby_serves(scope["path"]):
            answer = standby_response(self.seat.active_url, RETRY_AFTER)
            await _answer(scope, receive, send, answer, "standby master")
            return
        if kind == "http":
            refused = self._body_refusal(scope["method"], length, content_type)
            if refused is not None:
                await _refuse(scope, receive, send, *refused)
                return
            if length is None or not length.isdigit():
                receive = _counted(receive, self.max_body)
        await self.app(scope, receive, send)

    def _body_refusal(
        self, method: str, length: bytes | None, content_type: bytes | None
    ) -> tuple[int, str] | None:
        """(status, why) for a body declared over --max-body or not sent as JSON."""
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, str(body_too_large(self.max_body).detail)
        not_json = content_type_refusal(method, content_type)
        return None if not_json is None else (415, not_json)


_Header = bytes | None


def _read_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[_Header, _Header, _Header, _Header, _Header]:
    """The request's Authorization, Content-Length, Origin, Host and Content-Type (the first of
    each, but the last Content-Length), None where absent."""
    authorization = length = origin = host = content_type = None
    for name, value in headers:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"content-length":
            length = value
        elif name == b"origin":
            origin = value
        elif name == b"host" and host is None:
            host = value
        elif name == b"content-type" and content_type is None:
            content_type = value
    return authorization, length, origin, host, content_type


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, why: str) -> None:
    """Answer `status` before any route runs."""
    await _answer(scope, receive, send, error_response(status, why), why)


async def _answer(scope: Scope, receive: Receive, send: Send, answer: Response, why: str) -> None:
    """Send `answer` before any route runs. A WebSocket is refused before it is accepted, so
    that the client hears why: with the HTTP answer where the server can send one (the ASGI
    denial-response extension), else with a close that gives the reason."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": why})
            return
    await answer(scope, receive, send)


def _counted(receive: Receive, limit: int) -> Receive:
    """`receive` that counts the body's bytes and raises the 413 once they pass `limit`."""
    size = 0

    async def receive_counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise body_too_large(limit)
        return message

    return receive_counted
