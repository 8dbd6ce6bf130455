"""How the API answers: JSON encoded by `jsontext.to_bytes`, and Server-Sent Event streams.

Answers are encoded here without validation against their types: the handlers' TypedDicts are
checked by mypy, and a page of a thousand tasks is not walked through pydantic on its way out.
Imports starlette and `jsontext` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import Response, StreamingResponse

from herder.jsontext import to_bytes

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class JSONAnswer(Response):
    """Compact UTF-8 JSON. A NaN or an infinity, which no stored task should hold, is written
    as null rather than refused."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return to_bytes(content)


def json_answer(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONAnswer:
    return JSONAnswer(content, status_code=status, headers=headers)


def event_stream(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
