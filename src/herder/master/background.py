"""The master's background steps: coroutines started and not awaited, whose failures are logged.

Imports `errors`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from herder.errors import Deposed

log = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        #: held until done: the event loop keeps only weak references to its tasks
        self._running: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` in the background; its failure is logged."""
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, Deposed):  # a master that lost its lease: counted, one line
            log.warning("%s", exc)
        else:
            log.error("background step failed", exc_info=exc)

    def __len__(self) -> int:
        """How many are still running."""
        return len(self._running)
