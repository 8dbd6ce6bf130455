"""The routes FastAPI parses the body of read their JSON with pydantic_core's parser.

Starlette's `Request.json` is `json.loads`, which raises RecursionError on deeply nested JSON;
FastAPI answers that with a 400 that does not say why. pydantic_core's parser bounds the
nesting and raises a ValueError, turned here into the JSONDecodeError that FastAPI answers as a
422 naming the problem (the route class of FastAPI's own documentation for a custom body
reader). Imports fastapi and pydantic_core only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        body = await self.body()
        try:
            return pydantic_core.from_json(body)
        except ValueError as exc:
            raise json.JSONDecodeError(str(exc), body.decode("utf-8", "replace"), 0) from None


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
