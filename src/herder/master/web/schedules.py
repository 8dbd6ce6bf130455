"""The schedule routes: add, list, read one, delete.

Each parses its request with FastAPI and answers with `json_answer`. Imports the web layer's
`handlers` and `responses`, and `protocol`.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from herder.master.web import handlers
from herder.master.web.handlers import MasterDep
from herder.master.web.responses import json_answer
from herder.master.web.strictjson import StrictJSONRoute
from herder.protocol import paths
from herder.protocol.answers import SchedulesAnswer, ScheduleView
from herder.protocol.api import ScheduleRequest

router = APIRouter(route_class=StrictJSONRoute)


@router.post(paths.SCHEDULES, status_code=201, response_model=ScheduleView)
async def add_schedule(body: ScheduleRequest, master: MasterDep) -> Response:
    """A schedule submits a task of `type` with `params` at each time of `cron` (5 fields, in
    `timezone`) or `every` period; 409 if its id is taken, 422 naming a field that is wrong."""
    return json_answer(await handlers.add_schedule(master, body), 201)


@router.get(paths.SCHEDULES, response_model=SchedulesAnswer)
async def list_schedules(master: MasterDep) -> Response:
    return json_answer(handlers.schedules(master))


@router.get(paths.SCHEDULE, response_model=ScheduleView)
async def get_schedule(schedule_id: str, master: MasterDep) -> Response:
    return json_answer(handlers.schedule(master, schedule_id))


@router.delete(paths.SCHEDULE, status_code=204, response_class=Response)
async def delete_schedule(schedule_id: str, master: MasterDep) -> Response:
    """The schedule fires no more; the tasks it fired stay."""
    await handlers.remove_schedule(master, schedule_id)
    return Response(status_code=204)
