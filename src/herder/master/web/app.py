"""The master's ASGI app, assembled: every route, the worker channel and the dashboard in one
FastAPI app, behind one `Guard` (host, token, body size, content type) and one set of error
handlers.

Imports the web layer's modules, the master's `seat`, `dashboard` and `protocol`.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from herder.dashboard import STATIC_DIR
from herder.master.seat import Seat
from herder.master.web import channel, schedules, status, submissions, tasks
from herder.master.web.access import DASHBOARD, DOCS, OPENAPI, STATIC, Tokens
from herder.master.web.browsers import PAGE_HEADERS, HostCheck, PageHeaders, default_allowed_hosts
from herder.master.web.errors import install_error_handlers
from herder.master.web.guard import Guard
from herder.master.web.openapidoc import openapi_of
from herder.protocol import paths

#: Swagger UI's files (of the swagger-ui-py package), under the dashboard's public static path
SWAGGER_UI = STATIC + "/swagger-ui"
TITLE = "herder"
VERSION = "0.1.0"


def create_app(seat: Seat) -> FastAPI:
    """The app serving the master of `seat`, which it starts and stops with its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await seat.start()
        yield
        await seat.stop()

    app = FastAPI(
        # first in the router: the most frequent requests are matched first
        routes=list(submissions.ROUTES),
        # herder's metrics are its own (/metrics); FastAPI's OpenTelemetry hooks would look
        # for a configured provider on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title=TITLE,
        version=VERSION,
        lifespan=lifespan,
        # /docs is the dashboard's page over Swagger UI's files (`_mount_dashboard`):
        # FastAPI's pages load them from a CDN, with inline script
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI,
    )
    app.state.seat = seat
    settings = seat.settings
    app.add_middleware(
        Guard, tokens=Tokens.of(settings), max_body=settings.max_body,
        hosts=HostCheck(settings.allowed_hosts or default_allowed_hosts(settings.host)),
        seat=seat,
    )
    install_error_handlers(app)
    app.include_router(tasks.router)
    app.include_router(schedules.router)
    app.include_router(status.router)
    app.add_api_websocket_route(paths.WORKER_CHANNEL, channel.worker_channel)
    _mount_dashboard(app)
    app.openapi = openapi_of(app)  # type: ignore[method-assign]
    return app


def _mount_dashboard(app: FastAPI) -> None:
    """The dashboard and /docs (Swagger UI, from the `swagger-ui-py` package's files), each page
    and file with the headers that keep other sites out (`browsers.PAGE_HEADERS`)."""
    if not STATIC_DIR.is_dir():
        return
    swagger_ui = _package_dir("swagger_ui") / "static"
    app.mount(SWAGGER_UI, PageHeaders(StaticFiles(directory=swagger_ui)), name="swagger-ui")
    app.mount(STATIC, PageHeaders(StaticFiles(directory=STATIC_DIR)), name="static")

    def page(name: str) -> Callable[[], Awaitable[FileResponse]]:
        async def answer() -> FileResponse:
            return FileResponse(STATIC_DIR / name, headers=PAGE_HEADERS)

        return answer

    app.add_api_route(DASHBOARD, page("index.html"), methods=["GET"], include_in_schema=False)
    app.add_api_route(DOCS, page("docs.html"), methods=["GET"], include_in_schema=False)


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, found without importing it (swagger_ui's
    import brings jinja2 and yaml, which the master never uses)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))
