"""The master's background steps: coroutines started and not awaited, whose failures are logged.

Imports the stdlib only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

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
        if not task.cancelled() and task.exception() is not None:
            log.error("background step failed", exc_info=task.exception())

    def __len__(self) -> int:
        """How many are still running."""
        return len(self._running)
