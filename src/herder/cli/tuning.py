"""Interpreter settings for the processes that are herder's own.

`herder master` and `herder worker` apply them before they serve. Nothing a library user calls
does (`serve`, `run_worker`, `LocalCluster`): a program that embeds herder owns its process-wide
settings. Why each one is kept: docs/decisions.md, "Interpreter settings". Imports nothing of
herder.
"""

from __future__ import annotations

import gc
import sys

#: seconds between forced GIL hand-offs (Python's default is 0.005): the event loop and the
#: threads that run split, aggregate and subtasks hand the GIL back and forth for every item,
#: and at the default each hand-off can wait that long while the loop is busy
SWITCH_INTERVAL = 0.0005

#: collections of the youngest generations as Python's defaults; of the oldest one only after
#: 100 of the middle one's (default 10)
GC_THRESHOLDS = (700, 10, 100)


def tune_master_process() -> None:
    """For `herder master`, once its code is imported."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    settle_garbage_collector()


def tune_worker_process() -> None:
    """For `herder worker`."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def settle_garbage_collector() -> None:
    """Keep full collections off the master's busy moments.

    A full collection walks every long-lived object, and under a burst of submissions those
    include the tasks in flight. What exists now (modules, classes, functions) is frozen out of
    every collection (refcounting still frees it), and full collections come ten times less
    often. The young generations are collected as usual, so short-lived cycles go as soon as
    before. No collection before the freeze: at this point it finds nothing worth its time."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
