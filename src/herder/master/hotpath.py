"""The two submission endpoints, answered in front of FastAPI.

`POST /api/v1/tasks` and `POST /api/v1/tasks/batch` are on the way of every task. Through
FastAPI's middleware, router, dependency solving and response validation a submission took
~0.73 ms of the server's time against ~0.35 ms answered by a plain ASGI callable (measured on
this machine with uvicorn and a keep-alive `http.client`; docs/benchmarks.md). `Front` answers
those two here and hands every other request, the lifespan and the WebSockets to the FastAPI app,
which still declares both routes (for the OpenAPI document) with handlers that call the same
`submit_one` / `submit_items` below. Bad input gets the same answers either way: 401 without the
token, 413 over --max-body, 422 naming the field, 409, 429 with Retry-After.

Imports the master's `core`, `protocol.api` and `tasktype`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import pydantic
from pydantic_core import to_json

from herder.master.core import Master, Rejected, Submission
from herder.protocol.api import MAX_BATCH, SubmitRequest, batch_adapter, submit_adapter
from herder.tasktype import describe_validation_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the longest a submission may wait for its task to finish (`?wait=`), in seconds
MAX_WAIT = 60.0
SUBMIT_PATH = "/api/v1/tasks"
BATCH_PATH = "/api/v1/tasks/batch"

_JSON = [(b"content-type", b"application/json")]


async def submit_one(master: Master, body: SubmitRequest, wait: float) -> dict[str, Any]:
    """Submit one task; with `wait` > 0 answer when it finishes (or after `wait` s), so that a
    call and its result take one round trip. Raises Rejected."""
    if wait > 0:
        return await master.submissions.submit_and_wait(submission(body), wait)
    (answer,) = await master.submissions.submit_many([submission(body)])
    if isinstance(answer, Rejected):
        raise answer
    return answer


async def submit_items(master: Master, items: list[Any]) -> list[dict[str, Any]]:
    """Submit a batch; each answer is {status, task, detail}, in the order of `items`."""
    subs: list[Submission | Rejected] = []
    for i, item in enumerate(items):
        try:
            subs.append(submission(submit_adapter.validate_python(item)))
        except pydantic.ValidationError as exc:
            subs.append(Rejected(422, f"[{i}] " + describe_validation_error(exc)))
    return await _submit_batch(master, subs)


async def submit_requests(master: Master, requests: list[SubmitRequest]) -> list[dict[str, Any]]:
    """`submit_items` for items that are valid requests already."""
    return await _submit_batch(master, [submission(request) for request in requests])


async def _submit_batch(
    master: Master, subs: list[Submission | Rejected]
) -> list[dict[str, Any]]:
    answers = iter(
        await master.submissions.submit_many([s for s in subs if isinstance(s, Submission)])
    )
    out: list[dict[str, Any]] = []
    for s in subs:
        answer = s if isinstance(s, Rejected) else next(answers)
        if isinstance(answer, Rejected):
            out.append({"status": answer.status, "task": None, "detail": answer.message})
        else:
            out.append({"status": 201, "task": answer, "detail": None})
    return out


def submission(body: SubmitRequest) -> Submission:
    return Submission(
        type=body.type,
        params=body.params,
        priority=body.priority,
        timeout=body.timeout,
        id=body.id,
        retries=body.retries,
    )


def token_ok(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return secrets.compare_digest(header[7:].encode(), token.encode())


class Front:
    """ASGI app: the two submission endpoints here, everything else to `app`."""

    def __init__(self, app: ASGIApp, master: Master) -> None:
        self.app = app
        self.master = master

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path in (SUBMIT_PATH, BATCH_PATH):
                try:
                    status, answer = await self._answer(scope, receive, path == BATCH_PATH)
                except Rejected as exc:
                    await _reply(send, exc.status, {"detail": exc.message}, exc.retry_after)
                    return
                await _reply(send, status, answer)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, batch: bool) -> tuple[int, Any]:
        headers = dict(scope["headers"])
        token = self.master.settings.token
        if token is not None:
            header = headers.get(b"authorization", b"").decode("latin-1")
            if not token_ok(header, token):
                raise Rejected(401, "authorization: a valid 'Bearer' token is required")
        body = await _read_body(receive, headers, self.master.settings.max_body)
        if batch:
            try:
                valid = batch_adapter.validate_json(body)
            except pydantic.ValidationError:  # each item is checked on its own, to say which
                return 200, await submit_items(self.master, _batch_items(body))
            return 200, await submit_requests(self.master, valid)
        wait = _wait_of(scope["query_string"])
        try:
            request = submit_adapter.validate_json(body)
        except pydantic.ValidationError as exc:
            raise Rejected(422, describe_validation_error(exc, "body")) from None
        return 201, await submit_one(self.master, request, wait)


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"request body too large: over --max-body of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejected(400, "request body: the client went away before sending it all")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"request body too large: over --max-body of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _batch_items(body: bytes) -> list[Any]:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(422, f"body: JSON decode error: {exc}") from None
    if not isinstance(items, list):
        raise Rejected(422, "body: Input should be a valid list")
    if len(items) > MAX_BATCH:
        raise Rejected(422, f"body: List should have at most {MAX_BATCH} items")
    return items


def _wait_of(query_string: bytes) -> float:
    wait = 0.0
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name != "wait":
            continue
        try:
            wait = float(value)
        except ValueError:
            raise Rejected(422, f"query.wait: {value!r} is not a number") from None
        if not 0 <= wait <= MAX_WAIT:
            raise Rejected(422, f"query.wait: must be from 0 to {MAX_WAIT:g} seconds")
    return wait


async def _reply(send: Send, status: int, answer: Any, retry_after: float | None = None) -> None:
    data = to_json(answer)  # compact UTF-8 JSON, about twice as fast as the json module's
    headers = [*_JSON, (b"content-length", str(len(data)).encode())]
    if retry_after:
        headers.append((b"retry-after", str(int(retry_after)).encode()))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
