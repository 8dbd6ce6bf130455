"""The two submission endpoints, `POST /tasks` and `POST /tasks/batch`, on every task's way.

They read and validate their body themselves (pydantic straight from the bytes), so that no
framework machinery runs per submission beyond the app's middleware and router: plain ASGI
endpoints on Starlette routes in the app, behind the same `Guard` and error handlers as every
route. Their
operations in the OpenAPI document are written here, from `SubmitRequest`'s schema.
Imports the web layer's `handlers`, `errors` and `responses`, and `protocol`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import pydantic
import pydantic_core
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from herder.master.rejected import Rejected
from herder.master.web import handlers
from herder.master.web.errors import describe_problems
from herder.master.web.responses import json_answer
from herder.protocol import paths
from herder.protocol.answers import BatchItemAnswer, ErrorAnswer, TaskView
from herder.protocol.api import (
    MAX_BATCH,
    MAX_WAIT,
    SubmitRequest,
    batch_adapter,
    submit_adapter,
)


async def submit(scope: Scope, body: bytes) -> Response:
    """With `?wait=`, a long poll as well: the answer comes when the task finishes (or after
    `wait` s), so that a call and its result take one round trip."""
    wait = _wait_of(scope["query_string"])
    try:
        submission = submit_adapter.validate_json(body)
    except pydantic.ValidationError as exc:
        raise Rejected(422, describe_problems(exc.errors(), "body")) from None
    master = handlers.master_of(scope)
    return json_answer(await handlers.submit(master, submission, wait, len(body)), 201)


async def submit_batch(scope: Scope, body: bytes) -> Response:
    """Each item is answered on its own ({status, task, detail}), in the order of the items."""
    items: Sequence[SubmitRequest | Rejected]
    try:
        items = batch_adapter.validate_json(body)
    except pydantic.ValidationError:  # each item is checked on its own, to say which
        items = [_item(i, item) for i, item in enumerate(_batch_items(body))]
    return json_answer(await handlers.submit_batch(handlers.master_of(scope), items, len(body)))


class BodyEndpoint:
    """A plain ASGI endpoint that answers from the request's scope and whole body: the router
    hands it the request as it is, with no Request object made. What it raises is answered by
    the app's error handlers, as any route's."""

    def __init__(self, answer: Callable[[Scope, bytes], Awaitable[Response]]) -> None:
        self.answer = answer
        self.__doc__ = answer.__doc__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.answer(scope, await _read_body(receive))
        await response(scope, receive, send)


ROUTES = [
    Route(paths.TASKS, BodyEndpoint(submit), methods=["POST"], name="submit"),
    Route(paths.TASKS_BATCH, BodyEndpoint(submit_batch), methods=["POST"], name="submit_batch"),
]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _item(index: int, item: Any) -> SubmitRequest | Rejected:
    try:
        return submit_adapter.validate_python(item)
    except pydantic.ValidationError as exc:
        return Rejected(422, f"[{index}] " + describe_problems(exc.errors()))


def _batch_items(body: bytes) -> list[Any]:
    try:
        items = pydantic_core.from_json(body)  # nesting is bounded: deep JSON is a ValueError
    except ValueError as exc:
        raise Rejected(422, f"body: JSON decode error: {exc}") from None
    if not isinstance(items, list):
        raise Rejected(422, "body: Input should be a valid list")
    if len(items) > MAX_BATCH:
        raise Rejected(422, f"body: List should have at most {MAX_BATCH} items")
    return items


def _wait_of(query_string: bytes) -> float:
    wait = 0.0
    if not query_string:
        return wait
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


#: the types the operations below name, by their name in the document's components
_DOCUMENTED: dict[str, Any] = {
    "SubmitRequest": SubmitRequest,
    "TaskView": TaskView,
    "BatchItemAnswer": BatchItemAnswer,
    "ErrorAnswer": ErrorAnswer,
}
_REF = "#/components/schemas/{model}"


def openapi_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schemas the operations refer to, with those they nest, by component name."""
    out: dict[str, dict[str, Any]] = {}
    for name, type_ in _DOCUMENTED.items():
        schema = pydantic.TypeAdapter(type_).json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[name] = schema
    return out


def openapi_operations() -> dict[str, dict[str, Any]]:
    """The two endpoints' "post" operations for the OpenAPI document, by path."""
    request, task, item = _ref("SubmitRequest"), _ref("TaskView"), _ref("BatchItemAnswer")
    wait = {
        "name": "wait", "in": "query", "required": False,
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 0},
        "description": "answer when the task finishes, or after this many seconds",
    }
    return {
        paths.TASKS: _operation(submit, request, task, "201", [wait]),
        paths.TASKS_BATCH: _operation(
            submit_batch,
            {"type": "array", "items": request, "maxItems": MAX_BATCH},
            {"type": "array", "items": item},
            "200",
        ),
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _operation(
    endpoint: Any,
    body: dict[str, Any],
    answer: dict[str, Any],
    status: str,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    error = _ref("ErrorAnswer")
    return {
        "summary": endpoint.__name__.replace("_", " ").capitalize(),
        "operationId": endpoint.__name__,
        "description": endpoint.__doc__,
        "parameters": parameters or [],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            status: {"description": "Successful Response",
                     "content": {"application/json": {"schema": answer}}},
            "422": {"description": "Validation Error",
                    "content": {"application/json": {"schema": error}}},
        },
    }
