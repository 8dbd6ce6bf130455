"""The app's OpenAPI document, made to say what the answers are.

FastAPI's document for its own routes, plus: the submission routes' operations (plain Starlette
routes it does not see), the bearer security scheme on every operation that needs a token, the
error answers (`ErrorAnswer`) each operation can give, and the JSON body every state-changing
operation must be sent with (`browsers`). The conformance test (schemathesis) checks the
answers against it. Imports the web layer's `access` and `submissions`, and `protocol`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from herder.master.web import submissions
from herder.master.web.access import role_needed
from herder.protocol import paths

BEARER = "bearer"
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}
_WHY = {
    "400": "The Host header does not name this master (--allowed-hosts)",
    "401": "A valid bearer token is required",
    "403": "The token is of a role that does not grant this route",
    "404": "No such task (or worker)",
    "409": "The task is not in a state that allows this",
    "413": "The body is over --max-body",
    "415": "The body is not sent as application/json",
    "422": "The request does not validate",
    "429": "The queue is full (Retry-After says when to try again)",
}
#: operations that answer 409 or 429 besides the errors every operation of their kind has
_CONFLICTS = {paths.TASKS, paths.TASK_CANCEL, paths.TASK_RESULT}
#: ... and those of one method on a path whose other methods do not (method, path)
_CONFLICTING_OPERATIONS = {("DELETE", paths.TASK)}
_QUEUE_LIMITED = {paths.TASKS, paths.TASKS_BATCH}
#: what a state-changing operation without a body of its own is sent with
_ANY_JSON_BODY = {
    "required": True,
    "description": "Ignored; sent as application/json, which a cross-site form cannot send",
    "content": {"application/json": {"schema": {}}},
}


def openapi_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    return openapi


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    for path, operation in submissions.openapi_operations().items():
        document["paths"].setdefault(path, {})["post"] = operation
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in submissions.openapi_schemas().items():
        schemas.setdefault(name, schema)
    components["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer"}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            _complete(path, method.upper(), operation)
    return document


def _complete(path: str, method: str, operation: dict[str, Any]) -> None:
    codes = ["400", "422"]
    if role_needed(path) is not None:
        operation["security"] = [{BEARER: []}]
        codes += ["401", "403"]
    if method not in ("GET", "HEAD"):
        codes += ["413", "415"]
        operation.setdefault("requestBody", _ANY_JSON_BODY)
    if "{" in path:  # a task or worker that may not exist
        codes.append("404")
    if path in _CONFLICTS or (method, path) in _CONFLICTING_OPERATIONS:
        codes.append("409")
    if path in _QUEUE_LIMITED:
        codes.append("429")
    responses = operation.setdefault("responses", {})
    for code in sorted(codes):
        responses[code] = {"description": _WHY[code], "content": _ERROR}
