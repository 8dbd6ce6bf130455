"""Every error answer of the API: `{"detail": "..."}`, naming the field where there is one.

`error_response` makes them all: the exception handlers below (a `Rejected` from the master,
a request that fails validation, Starlette's own 404/405, a body over --max-body) and the
`Guard`'s refusals. A 401 carries `WWW-Authenticate`, a 429 `Retry-After`. Imports the master's
`core` (for `Rejected`), `protocol.answers` and starlette/fastapi.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from herder.master.rejected import Rejected
from herder.master.web.responses import JSONAnswer, json_answer
from herder.protocol.answers import ErrorAnswer, StandbyAnswer


def error_response(
    status: int,
    detail: str,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONAnswer:
    """The one shape of an error answer, with the headers its status calls for."""
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    if retry_after:
        extra["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return json_answer(ErrorAnswer(detail=detail), status, extra or None)


def standby_response(active_url: str | None, retry_after: float) -> JSONAnswer:
    """503 from a standby master, naming the active one where it is known."""
    where = f"the active master is at {active_url}" if active_url else "no master is active now"
    answer = StandbyAnswer(
        detail=f"this master is a standby: {where}; ask again there", active_url=active_url
    )
    return json_answer(answer, 503, {"Retry-After": str(max(1, math.ceil(retry_after)))})


def body_too_large(limit: int) -> HTTPException:
    """What reading a body past --max-body raises: an HTTPException, which FastAPI passes on
    from a route's body parsing unchanged, to be answered by `error_response`."""
    return HTTPException(413, f"request body too large: over --max-body of {limit} bytes")


def describe_problems(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> str:
    """pydantic's list of problems as one line: `body.priority: Input should be ...; ...`."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in (prefix, *err.get("loc", ())) if p != "")
        why = (err.get("ctx") or {}).get("error") if err.get("type") == "json_invalid" else None
        parts.append(f"{loc}: {err.get('msg')}" + (f" ({why})" if why else ""))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Rejected, _on_rejected)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _on_client_gone)


async def _on_rejected(request: Request, exc: Rejected) -> Response:
    return error_response(exc.status, exc.message, exc.retry_after)


async def _on_invalid(request: Request, exc: RequestValidationError) -> Response:
    return error_response(422, describe_problems(exc.errors()))


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _on_client_gone(request: Request, exc: Exception) -> Response:
    # nobody will read it: answered only so that a client that left is not logged as a crash
    return error_response(400, "request body: the client went away before sending it all")
