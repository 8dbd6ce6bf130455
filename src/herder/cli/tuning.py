"""Interpreter settings for the processes that are herder's own.

`herder master` applies them before it serves. Nothing a library user calls does (`serve`,
`run_worker`, `LocalCluster`): a program that embeds herder owns its process-wide settings.
A setting stays here only while it measures worth it (docs/decisions.md, "Interpreter
settings"). Imports nothing of herder.
"""

from __future__ import annotations

import gc

#: collections of the middle generation between two full collections (Python's default: 10)
FULL_COLLECTION_EVERY = 100


def tune_master_process() -> None:
    """For `herder master`: keep full garbage collections off its busy moments.

    A full collection walks every long-lived object, and under a burst of submissions those
    include the tasks in flight. Full collections come ten times less often; the young
    generations keep the interpreter's thresholds, so short-lived cycles go as soon as before."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
