"""What the master answers a request it refuses: `Rejected`, with the HTTP status to answer with.

Raised by the parts that take submissions and end tasks, turned into 4xx answers by `http`.
Imports `errors` only.
"""

from __future__ import annotations

from herder.errors import HerderError


class Rejected(HerderError):
    """A request the master refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
