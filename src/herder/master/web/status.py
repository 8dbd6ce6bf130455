"""The routes about the master itself: health, Prometheus metrics, stats, workers, types, and
draining a worker (admin only: `access`).

Imports the web layer's `handlers` and `responses`, and `protocol`.
"""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from herder.master.seat import RETRY_AFTER
from herder.master.web import handlers
from herder.master.web.errors import standby_response
from herder.master.web.handlers import MasterDep, SeatDep
from herder.master.web.responses import json_answer
from herder.protocol import paths
from herder.protocol.answers import (
    HealthAnswer,
    StandbyAnswer,
    StatsAnswer,
    TypesAnswer,
    WorkersAnswer,
)

router = APIRouter()


@router.get(paths.HEALTHZ, response_model=HealthAnswer)
async def healthz(seat: SeatDep) -> Response:
    """200 on every master, active or standby, saying which it is."""
    return json_answer(handlers.health(seat))


@router.get(paths.READYZ, response_model=HealthAnswer,
            responses={503: {"model": StandbyAnswer, "description": "a standby master"}})
async def readyz(seat: SeatDep) -> Response:
    """200 on the active master only (for load balancers); 503 on a standby."""
    if not seat.serving:
        return standby_response(seat.active_url, RETRY_AFTER)
    return json_answer(handlers.health(seat))


@router.get(paths.METRICS, response_class=Response)
async def metrics(seat: SeatDep) -> Response:
    return Response(handlers.metrics(seat), media_type=CONTENT_TYPE_LATEST)


@router.get(paths.STATS, response_model=StatsAnswer)
async def stats(master: MasterDep) -> Response:
    return json_answer(handlers.stats(master))


@router.get(paths.WORKERS, response_model=WorkersAnswer)
async def workers(master: MasterDep) -> Response:
    return json_answer(handlers.workers(master))


@router.post(paths.WORKER_DRAIN, response_model=WorkersAnswer)
async def drain_worker(name: str, master: MasterDep) -> Response:
    """Ask a connected worker (by name, or by id) to finish what it runs, take no more work and
    stop, as on SIGTERM. Answers with the workers asked, now `draining`. Needs the admin token."""
    return json_answer(handlers.drain_worker(master, name))


@router.get(paths.TYPES, response_model=TypesAnswer)
async def types(master: MasterDep) -> Response:
    return json_answer(handlers.types(master))
