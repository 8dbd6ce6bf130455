"""Start a master: open the store, load the task types, run the ASGI app on uvicorn.

Imports `config`, `store`, `tasktype`, `protocol.frames` and the master's `core`, `limits`
and `web`.
"""

from __future__ import annotations

import logging

import uvicorn

from herder.config import MasterSettings
from herder.master.core import Master
from herder.master.limits import check_limits
from herder.master.web import create_app
from herder.protocol.frames import MAX_FRAME_BYTES
from herder.store import open_store
from herder.tasktype import Registry


def build_master(settings: MasterSettings) -> Master:
    check_limits(settings)
    registry = Registry.from_modules(settings.tasks)
    return Master(settings, open_store(settings.db), registry)


def serve(settings: MasterSettings) -> None:
    """Run the master in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(build_master(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
    )
