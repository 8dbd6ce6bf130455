"""`Schedules` and `AsyncSchedules`: a client's schedules (`client.schedules`), as the
`herder schedule add|list|rm` commands see them. The requests are `plan`'s; each call is sent
through the client's one read path (`Client._call`, `AsyncClient._call`).

Imports `protocol` and the client's `plan`.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, cast

from herder.client.plan import (
    SCHEDULES,
    Request,
    schedule_body,
    schedule_request,
    unschedule_request,
)
from herder.protocol.answers import ScheduleView

Overlap = Literal["skip", "allow"]


class Schedules:
    """Tasks submitted at each time of a cron expression or every so often, each firing once."""

    def __init__(self, call: Callable[[Request], Any]) -> None:
        self._call = call

    def add(
        self,
        id: str,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: str | float | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        timeout: float | None = None,
        overlap: Overlap = "skip",
    ) -> ScheduleView:
        """Submit a task of `type` at each time of `cron` (5 fields, in `timezone`) or `every`
        period ("30s", "5m", or seconds); exactly one of them. ClientError 409 if the id is
        taken, 422 naming a field that is wrong."""
        body = schedule_body(id, type, params, cron, every, timezone, priority, timeout, overlap)
        return cast(ScheduleView, self._call(schedule_request(body)))

    def list(self) -> builtins.list[ScheduleView]:
        """Every schedule, with its next run, last run and last task."""
        return builtins.list(self._call(SCHEDULES)["schedules"])

    def remove(self, id: str) -> None:
        """Delete a schedule (the tasks it fired stay); ClientError 404 if there is none."""
        self._call(unschedule_request(id))


class AsyncSchedules:
    """The async twin of `Schedules`."""

    def __init__(self, call: Callable[[Request], Awaitable[Any]]) -> None:
        self._call = call

    async def add(
        self,
        id: str,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: str | float | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        timeout: float | None = None,
        overlap: Overlap = "skip",
    ) -> ScheduleView:
        """`Schedules.add`, awaited."""
        body = schedule_body(id, type, params, cron, every, timezone, priority, timeout, overlap)
        return cast(ScheduleView, await self._call(schedule_request(body)))

    async def list(self) -> builtins.list[ScheduleView]:
        return builtins.list((await self._call(SCHEDULES))["schedules"])

    async def remove(self, id: str) -> None:
        await self._call(unschedule_request(id))
