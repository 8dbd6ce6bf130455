"""The master's ASGI app, assembled: every route, the worker channel and the dashboard in one
FastAPI app, behind one `Guard` (token, body size) and one set of error handlers.

Imports the web layer's modules, the master's `core`, `dashboard` and `protocol`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from herder.dashboard import STATIC_DIR
from herder.master.core import Master
from herder.master.web import channel, status, submissions, tasks
from herder.master.web.access import (
    DASHBOARD,
    DOCS,
    DOCS_OAUTH_REDIRECT,
    OPENAPI,
    REDOC,
    STATIC,
    Tokens,
)
from herder.master.web.errors import install_error_handlers
from herder.master.web.guard import Guard
from herder.protocol import paths

TITLE = "herder"
VERSION = "0.1.0"


def create_app(master: Master) -> FastAPI:
    """The app serving `master`, which it starts and stops with its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await master.start()
        yield
        await master.stop()

    app = FastAPI(
        # first in the router: the most frequent requests are matched first
        routes=list(submissions.ROUTES),
        # herder's metrics are its own (/metrics); FastAPI's OpenTelemetry hooks would look
        # for a configured provider on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title=TITLE,
        version=VERSION,
        lifespan=lifespan,
        docs_url=DOCS,
        redoc_url=REDOC,
        openapi_url=OPENAPI,
        swagger_ui_oauth2_redirect_url=DOCS_OAUTH_REDIRECT,
    )
    app.state.master = master
    settings = master.settings
    app.add_middleware(Guard, tokens=Tokens.of(settings), max_body=settings.max_body)
    install_error_handlers(app)
    app.include_router(tasks.router)
    app.include_router(status.router)
    app.add_api_websocket_route(paths.WORKER_CHANNEL, channel.worker_channel)
    _mount_dashboard(app)
    app.openapi = _openapi_of(app)  # type: ignore[method-assign]
    return app


def _mount_dashboard(app: FastAPI) -> None:
    if not STATIC_DIR.is_dir():
        return
    app.mount(STATIC, StaticFiles(directory=STATIC_DIR), name="static")

    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.add_api_route(DASHBOARD, index, methods=["GET"], include_in_schema=False)


def _openapi_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI document: FastAPI's for its own routes, and the submission routes'
    operations, which FastAPI does not see (plain Starlette routes)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path, operation in submissions.openapi_operations().items():
                document["paths"].setdefault(path, {})["post"] = operation
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in submissions.openapi_schemas().items():
                schemas.setdefault(name, schema)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi
