"""The middleware every request and the worker channel's upgrade pass: origin, token, body size.

A pure ASGI middleware, inside the app (so that every route has it, whatever mounts it) and
outside its exception handling. It refuses a WebSocket upgrade from a web page (one with an
`Origin` header), a request without the token its path's role needs (`access`), and one whose
declared body is over --max-body, before any route runs; a body sent without a length is counted
as it is read, and reading past the limit raises the 413 that the error handlers answer.
Imports the web layer's `access` and `errors`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herder.master.web.access import FROM_A_WEB_PAGE, Tokens, role_needed
from herder.master.web.errors import body_too_large, error_response


class Guard:
    def __init__(self, app: ASGIApp, tokens: Tokens, max_body: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # the lifespan
            await self.app(scope, receive, send)
            return
        authorization = length = origin = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"origin":
                origin = value
        if kind == "websocket" and origin is not None:
            await _refuse(scope, receive, send, 403, FROM_A_WEB_PAGE)
            return
        role = role_needed(scope["path"])
        refusal = None if role is None else self.tokens.refusal(role, authorization)
        if refusal is not None:
            await _refuse(scope, receive, send, refusal.status, refusal.detail)
            return
        if kind == "http":
            if length is None or not length.isdigit():
                receive = _counted(receive, self.max_body)
            elif int(length) > self.max_body:
                await _refuse(scope, receive, send, 413, body_too_large(self.max_body).detail)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, why: str) -> None:
    """Answer `status` before any route runs. A WebSocket is refused before it is accepted, so
    that the client hears why: with an HTTP answer where the server can send one (the ASGI
    denial-response extension), else with a close that gives the reason."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": why})
            return
    await error_response(status, why)(scope, receive, send)


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
