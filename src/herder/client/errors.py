"""The errors the client raises beyond `herder.errors`' ClientError and TaskFailed: a master
out of reach, a full queue, a batch partly refused, a stream refused. Imports `errors` only.
"""

from __future__ import annotations

from typing import Any

from herder.errors import ClientError, HerderError

__all__ = ["BatchSubmitError", "MasterUnreachable", "QueueFull", "StreamUnavailable"]


class MasterUnreachable(HerderError, ConnectionError):
    """The master could not be reached at all (refused, DNS, TLS, timeout, broken connection).
    With several masters, `url` names those tried and `reason` what each answered."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the master at {url}: {reason}")
        self.url = url
        self.reason = reason


class QueueFull(ClientError):
    """429: the master's pending queue is full; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


class BatchSubmitError(ClientError):
    """`submit_many`: some items were refused. The others *were* submitted: `handles` has, per
    item, its handle or None, and `details` the refusal message or None."""

    def __init__(
        self, handles: list[Any], statuses: list[int], details: list[str | None]
    ) -> None:
        refused = [(i, s, d) for i, (s, d) in enumerate(zip(statuses, details, strict=True))
                   if s != 201]
        first_i, first_status, first_detail = refused[0]
        summary = f"{len(refused)} of {len(statuses)} tasks refused; item {first_i}: {first_detail}"
        super().__init__(first_status, summary)
        self.handles = handles
        self.statuses = statuses
        self.details = details


class StreamUnavailable(ClientError):
    """The master refused to open an event stream, or answered with something that is not one
    (an older master, an unknown task, a proxy in the way). Retrying will not help; polling may."""
