"""HTTP request schemas, sans I/O. Imports pydantic and `jsontext`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from herder import jsontext
from herder.instants import LATEST, parse_instant

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
#: a worker label as a submission names it
LABEL_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
MAX_LABELS = 32
#: the most items a batch submission or a lookup may carry
MAX_BATCH = 10_000
#: the largest sequence number (of an event, a log line) a request may name: SQL's BIGINT
MAX_SEQ = 2**63 - 1
#: a page's cursor (of the task list, of a task's subtasks): ASCII digits, no more than the
#: largest seq has
CURSOR_PATTERN = r"^[0-9]{1,19}$"
#: the subtasks a page of `GET /tasks/{id}/subtasks` holds unless asked, and at most
SUBTASKS_PAGE = 1000
MAX_SUBTASKS_PAGE = 10_000
#: the longest a request may wait for its task to finish (`?wait=`), in seconds
MAX_WAIT = 60.0

#: a task's `not_before`: read as seconds since the epoch (`instants.parse_instant`), documented
#: as the two forms a request may write it in
NotBefore = Annotated[
    float | None,
    pydantic.BeforeValidator(lambda value: None if value is None else parse_instant(value)),
    pydantic.WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": 0, "maximum": LATEST},
            {"type": "string", "format": "date-time"},
            {"type": "null"},
        ],
        "description": "do not start before this time: a UNIX timestamp in seconds or an ISO "
                       "8601 time with a zone; until then the task is `scheduled`",
    }),
]


def strict_params(params: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN nor infinity (pydantic's parser reads `NaN`, `Infinity` and `1e400` as
    floats): params holding one would be stored and answered as text no JSON parser reads."""
    try:
        jsontext.strict(params)
    except ValueError:
        raise ValueError("NaN and infinities are not JSON numbers") from None
    return params


class SubmitRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    type: str = pydantic.Field(min_length=1, max_length=200)
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    priority: int = pydantic.Field(default=0, ge=-1_000_000, le=1_000_000)
    #: seconds from submission until the task is timed out
    timeout: float | None = pydantic.Field(default=None, gt=0, le=365 * 86400)
    id: str | None = pydantic.Field(default=None, pattern=ID_PATTERN)
    #: overrides the type's max_retries for this task
    retries: int | None = pydantic.Field(default=None, ge=0, le=100)
    not_before: NotBefore = None
    #: at most this many of its subtasks run at once
    max_parallel: int | None = pydantic.Field(default=None, ge=1, le=1_000_000)
    #: worker labels its subtasks need (every one of them), beyond its type's
    labels: list[Annotated[str, pydantic.Field(pattern=LABEL_PATTERN)]] = pydantic.Field(
        default_factory=list, max_length=MAX_LABELS
    )

    @pydantic.field_validator("params")
    @classmethod
    def _strict_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        return strict_params(params)


class ScheduleRequest(pydantic.BaseModel):
    """`POST /api/v1/schedules`: what to submit at each firing, and when (exactly one of
    `cron` and `every`; the master checks them and the params, naming the field)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    id: str = pydantic.Field(pattern=ID_PATTERN)
    type: str = pydantic.Field(min_length=1, max_length=200)
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    #: a standard 5-field cron expression, in `timezone`
    cron: str | None = pydantic.Field(default=None, min_length=1, max_length=200)
    #: a period: "2s", "5m", "1h", or seconds
    every: str | None = pydantic.Field(default=None, min_length=1, max_length=40)
    timezone: str = pydantic.Field(default="UTC", min_length=1, max_length=100)
    priority: int = pydantic.Field(default=0, ge=-1_000_000, le=1_000_000)
    timeout: float | None = pydantic.Field(default=None, gt=0, le=365 * 86400)
    #: "skip": no firing while the previous task is unfinished (counted); "allow": fire anyway
    overlap: Literal["skip", "allow"] = "skip"

    @pydantic.field_validator("params")
    @classmethod
    def _strict_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        return strict_params(params)


class LookupRequest(pydantic.BaseModel):
    """`POST /api/v1/tasks/lookup`: many tasks by id, in one request."""

    model_config = pydantic.ConfigDict(extra="forbid")

    ids: list[str] = pydantic.Field(max_length=MAX_BATCH)
    #: only the tasks that are finished (what a client waiting for them needs)
    finished_only: bool = False


submit_adapter: pydantic.TypeAdapter[SubmitRequest] = pydantic.TypeAdapter(SubmitRequest)
#: a whole batch's body validated at once, from its bytes (an item-by-item pass follows only
#: when an item is bad, to name it)
batch_adapter: pydantic.TypeAdapter[list[SubmitRequest]] = pydantic.TypeAdapter(
    Annotated[list[SubmitRequest], pydantic.Field(max_length=MAX_BATCH)]
)
