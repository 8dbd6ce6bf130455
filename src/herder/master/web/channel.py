"""The worker channel: one WebSocket per worker, binary MessagePack frames both ways.

The token was checked before the upgrade (`Guard`). Here: a hello within HELLO_TIMEOUT, then
the worker's frames to the master until it closes or sends something malformed, which closes
that connection with the reason and nothing else; the master's frames go out from the
session's outbox, what piled up meanwhile as one message. Imports the master's `core` and
`sessions`, and `protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from herder.errors import HerderError, ProtocolError
from herder.master.core import Master
from herder.master.sessions import WorkerSession
from herder.master.web.handlers import seat_of
from herder.protocol import frames
from herder.protocol.batches import Batches

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
#: how long a closing connection's writer may take to send what it holds
WRITER_GRACE = 2.0


async def worker_channel(ws: WebSocket) -> None:
    """One worker connection: hello, then frames until it closes or sends something malformed."""
    master = seat_of(ws.scope).master
    if master is None:  # stepped down since the Guard let it through: "try again later"
        await ws.close(code=1013, reason="this master is a standby")
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
    writer = asyncio.create_task(_write(ws, master, session, outbox))
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
            await asyncio.wait_for(writer, WRITER_GRACE)


async def _write(
    ws: WebSocket, master: Master, session: WorkerSession, outbox: Batches[frames.Outgoing | None]
) -> None:
    """Send what this connection's outbox holds; what piled up meanwhile goes in as few messages
    as fit under the worker's limit."""
    while True:
        batch = await outbox.take(frames.MAX_FRAMES_PER_MESSAGE)
        closing = None in batch
        packed = frames.pack_messages([f for f in batch if f is not None])
        for frame, why in packed.refused:
            master.undeliverable(session, frame, why)
        try:
            for message in packed.messages:
                await ws.send_bytes(message)
        except Exception:
            return
        if closing:
            await _close(ws, session.close_reason or "closed")
            return


async def _close(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(Exception):
        # a close reason is limited to 123 bytes by the WebSocket protocol
        await ws.close(code=1008, reason=reason.encode()[:120].decode(errors="ignore"))
