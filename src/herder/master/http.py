"""The master's ASGI app: the HTTP API under /api/v1 and the worker WebSocket channel.

Thin: it parses, calls the `Master`, and turns `Rejected` into 4xx answers. Imports the master's
`core` and `sessions`, `protocol` and `model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic_core import to_json
from starlette.websockets import WebSocketDisconnect

from herder.errors import HerderError, ProtocolError
from herder.master.core import Master, Rejected
from herder.master.hotpath import MAX_WAIT, Front, submit_items, submit_one, token_ok
from herder.master.sessions import WorkerSession
from herder.model import TaskState
from herder.protocol import frames
from herder.protocol.api import MAX_BATCH, LookupRequest, SubmitRequest
from herder.protocol.batches import Batches

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0


class TaskJSON(JSONResponse):
    """A JSON answer encoded by pydantic_core, as the submissions' are (hotpath._reply): the
    json module took ~2x as long for the pages of finished tasks that `gather` reads (1 % of
    the master's time on W1). A NaN or an infinity, which no stored task should hold, is
    written as json.dumps writes it (NaN, Infinity) where starlette's encoder refused it."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


async def get_master(request: Request) -> Master:
    # async on purpose: FastAPI runs a plain `def` dependency on a thread pool, a thread hop
    # per request (measured: ~1 ms of a submission's 2 ms)
    master: Master = request.app.state.master
    return master


async def require_token(request: Request) -> None:
    master: Master = request.app.state.master
    token = master.settings.token
    if token is not None and not token_ok(request.headers.get("authorization"), token):
        raise HTTPException(
            401,
            "authorization: a valid 'Bearer' token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


MasterDep = Annotated[Master, Depends(get_master)]
api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)])


def create_app(master: Master) -> Front:
    """The FastAPI app behind the `Front` that answers the two submission endpoints."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await master.start()
        yield
        await master.stop()

    # Bodies over --max-body are refused with 413 before they are read whole.
    app = FastAPI(
        title="herder", version="0.1.0", lifespan=lifespan, max_body_size=master.settings.max_body
    )
    app.state.master = master
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Rejected, _on_rejected)  # type: ignore[arg-type]
    app.include_router(api)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"], dependencies=[Depends(require_token)])
    app.add_api_websocket_route("/api/v1/workers/connect", worker_channel)
    _mount_dashboard(app)
    return Front(app, master)


def _mount_dashboard(app: FastAPI) -> None:
    from herder.dashboard import STATIC_DIR

    if not STATIC_DIR.is_dir():
        return
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)


async def metrics(master: MasterDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(master.stats.exposition(), media_type=CONTENT_TYPE_LATEST)


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(stream: Any) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


def _last_event_id(request: Request, query: int | None) -> int | None:
    header = request.headers.get("last-event-id")
    if header is not None:
        if not header.strip().isdigit():
            raise Rejected(422, f"Last-Event-ID: {header!r} is not an event id")
        return int(header)
    return query


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _describe(exc.errors())}, status_code=422)


async def _on_rejected(request: Request, exc: Rejected) -> JSONResponse:
    headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


async def healthz(master: MasterDep) -> dict[str, Any]:
    return {"status": "ok", "workers": len(master.sessions)}


# The two submission routes are answered by `hotpath.Front` before FastAPI sees them; they are
# declared here for the OpenAPI document, with the same handlers.


@api.post("/tasks", status_code=201)
async def submit(
    body: SubmitRequest,
    master: MasterDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> dict[str, Any]:
    """With `wait`, a long poll as well: the answer comes when the task finishes (or after
    `wait` s), so that a call and its result take one round trip."""
    return await submit_one(master, body, wait)


@api.post("/tasks/batch")
async def submit_batch(
    items: Annotated[list[Any], Body(max_length=MAX_BATCH)], master: MasterDep
) -> list[dict[str, Any]]:
    return await submit_items(master, items)


@api.get("/tasks")
async def list_tasks(
    master: MasterDep,
    state: TaskState | None = None,
    type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
) -> JSONResponse:
    # A Response, not a dict: FastAPI would walk a page of a thousand tasks through pydantic
    # before encoding it (~9 us per task, 1.5 % of the master's time on W1).
    tasks, next_cursor = await master.reads.list_tasks(state, type, limit, cursor)
    return TaskJSON({"tasks": tasks, "next_cursor": next_cursor})


@api.post("/tasks/lookup")
async def lookup(body: LookupRequest, master: MasterDep) -> JSONResponse:
    """Many tasks by id in one request (a read, in a POST for the length of its list): those
    that exist, in the order asked. What `gather` reads the results of thousands of tasks with."""
    return TaskJSON({"tasks": await master.reads.lookup(body.ids, body.finished_only)})


@api.get("/tasks/{task_id}")
async def get_task(
    task_id: str,
    master: MasterDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> JSONResponse:
    """With `wait`, a long poll: the answer comes when the task finishes, or after `wait` s."""
    finished = await master.tasks.wait_finished(task_id, wait) if wait > 0 else None
    return TaskJSON(finished or await _task_or_404(master, task_id))


@api.post("/tasks/{task_id}/cancel", status_code=202)
async def cancel(task_id: str, master: MasterDep) -> dict[str, Any]:
    return await master.tasks.cancel(task_id)


@api.get("/tasks/{task_id}/result")
async def result(task_id: str, master: MasterDep) -> dict[str, Any]:
    task = await _task_or_404(master, task_id)
    if task["state"] != TaskState.SUCCEEDED.value:
        raise Rejected(409, f"task {task_id!r} is {task['state']}; it has no result")
    return {"result": task["result"]}


@api.get("/tasks/{task_id}/logs", response_model=None)
async def logs(
    task_id: str,
    master: MasterDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    follow: bool = False,
) -> dict[str, Any] | StreamingResponse:
    await _task_or_404(master, task_id)
    if follow:
        return _sse(master.streams.follow_logs(task_id, since))
    records = [r.to_json() for r in await master.reads.logs(task_id, since, limit)]
    dropped = await master.reads.logs_dropped(task_id)
    if dropped and records and since < int(records[0]["seq"]) - 1:
        first = int(records[0]["seq"])
        marker = {
            "seq": first - 1, "ts": records[0]["ts"], "level": "WARNING",
            "message": f"{dropped} older log records were dropped",
            "subtask": None, "attempt": None, "worker": None,
        }
        records.insert(0, marker)
    return {"logs": records, "dropped": dropped}


@api.get("/tasks/{task_id}/subtasks")
async def subtasks(task_id: str, master: MasterDep) -> dict[str, Any]:
    await _task_or_404(master, task_id)
    return {"subtasks": await master.reads.subtasks(task_id)}


@api.get("/tasks/{task_id}/events")
async def task_events(
    task_id: str,
    request: Request,
    master: MasterDep,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    last = _last_event_id(request, last_event_id)
    await _task_or_404(master, task_id)
    return _sse(master.streams.task_events(task_id, last))


@api.get("/events")
async def events(
    request: Request,
    master: MasterDep,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
    finished: bool = False,
) -> StreamingResponse:
    """All tasks' events; with `finished=true`, only the final state event of each task."""
    last = _last_event_id(request, last_event_id)
    return _sse(master.streams.all_events(last, finished_only=finished))


@api.get("/stats")
async def stats(master: MasterDep) -> dict[str, Any]:
    return {
        "throughput": master.reads.throughput(),
        "queue_depth": {str(p): n for p, n in master.reads.queue_depth().items()},
        "tasks": master.reads.tasks_by_state(),
    }


@api.get("/workers")
async def workers(master: MasterDep) -> dict[str, Any]:
    return {"workers": master.reads.workers()}


@api.get("/types")
async def types(master: MasterDep) -> dict[str, Any]:
    return {
        "types": [
            {
                "name": t.name,
                "params_schema": t.params_schema(),
                "max_retries": t.max_retries,
                "subtask_timeout": t.subtask_timeout,
                "doc": (t.__doc__ or "").strip() or None,
            }
            for t in master.registry
        ]
    }


async def worker_channel(ws: WebSocket) -> None:
    await serve_worker(ws, ws.app.state.master)


async def serve_worker(ws: WebSocket, master: Master) -> None:
    """One worker connection: hello, then frames until it closes or sends something malformed."""
    token = master.settings.token
    if token is not None and not token_ok(ws.headers.get("authorization"), token):
        await ws.close(code=1008, reason="authorization: a valid worker token is required")
        return
    await ws.accept()
    try:
        hello = frames.decode_hello(await asyncio.wait_for(ws.receive_bytes(), HELLO_TIMEOUT))
        if hello.version != frames.PROTOCOL_VERSION:
            raise ProtocolError(f"hello.version: {hello.version} is not supported")
    except (ProtocolError, KeyError, TimeoutError, WebSocketDisconnect) as exc:
        await _close(ws, f"{exc}" or "no hello")
        return
    session, welcome = master.members.joined(hello)
    session.send(welcome)
    outbox, connection = session.outbox, session.connection
    writer = asyncio.create_task(_write(ws, session, outbox))
    why = "disconnected"
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                raise ProtocolError("frame: expected a binary frame, got text")
            for frame in frames.decode_worker_frames(data):
                await master.on_frame(session, frame)
    except (HerderError, WebSocketDisconnect) as exc:
        why = str(exc) or type(exc).__name__
        log.warning("worker %s: closing: %s", session.name, why)
    finally:
        master.members.disconnected(session, connection, why)
        if session.close_reason is None or session.connection == connection:
            session.close_reason = session.close_reason or why
        outbox.put(None)  # ends this connection's writer, and only this one's
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 2.0)


async def _write(
    ws: WebSocket, session: WorkerSession, outbox: Batches[frames.Outgoing | None]
) -> None:
    """Send what this connection's outbox holds; what piled up meanwhile goes as one message."""
    while True:
        batch = await outbox.take(frames.MAX_FRAMES_PER_MESSAGE)
        closing = None in batch
        ready = [f for f in batch if f is not None]
        try:
            if ready:
                await ws.send_bytes(frames.encode_many(ready))
        except Exception:
            return
        if closing:
            await _close(ws, session.close_reason or "closed")
            return


async def _close(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(Exception):
        # a close reason is limited to 123 bytes by the WebSocket protocol
        await ws.close(code=1008, reason=reason.encode()[:120].decode(errors="ignore"))


async def _task_or_404(master: Master, task_id: str) -> dict[str, Any]:
    task = await master.tasks.get(task_id)
    if task is None:
        raise Rejected(404, f"task {task_id!r} not found")
    return task


def _describe(errors: Any) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"
