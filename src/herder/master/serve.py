"""Start a master: open the store, load the task types, run the ASGI app on uvicorn.

Imports `config`, `store`, `tasktype` and the master's `core` and `web`.
"""

from __future__ import annotations

import gc
import logging
import sys

import uvicorn

from herder.config import MasterSettings
from herder.master.core import Master
from herder.master.web import create_app
from herder.store.base import open_store
from herder.tasktype import Registry

#: collections of the youngest generations as Python's defaults; the oldest one only after 100
#: of the middle one's (default 10): see settle_garbage_collector
GC_THRESHOLDS = (700, 10, 100)


def build_master(settings: MasterSettings) -> Master:
    registry = Registry.from_modules(settings.tasks)
    return Master(settings, open_store(settings.db), registry)


def serve(settings: MasterSettings) -> None:
    """Run the master in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # split and aggregate run on threads; at Python's default 5 ms switch interval each hand-off
    # to and from them can wait that long for the GIL while the event loop is busy.
    sys.setswitchinterval(0.0005)
    app = create_app(build_master(settings))
    settle_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        ws_max_size=16 * 1024 * 1024,
        ws_per_message_deflate=False,
    )


def settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector's full collections off the master's busy moments.

    A full collection walks every object that lives long; under a burst of submissions those
    are the tasks in flight too, and each one took 70-120 ms of the event loop (four per 10,000
    W1 tasks: ~40 us per task, a tenth of the master's CPU, measured with gc.callbacks). What
    exists once the master is built (modules, classes, the app, the registry: ~60,000 objects)
    is frozen out of every collection (`gc.freeze`; refcounting still frees it), and the full
    collections come after 100 collections of the middle generation instead of 10. The young
    generations are collected as usual, so short-lived cycles are freed as soon as before.
    No collection first: it found nothing to free at this point and took ~60 ms of the start."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
