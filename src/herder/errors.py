"""Errors shared by every layer. Imports nothing from herder."""

from __future__ import annotations


class HerderError(Exception):
    """Base class of every error herder raises on purpose."""


class UnknownTaskType(HerderError):
    """A task names a type that no loaded module registered."""


class InvalidParams(HerderError):
    """A task's params do not validate against its type's Params model."""


class TaskTypeError(HerderError):
    """A module given with --tasks could not be loaded or defines a broken task type."""


class ProtocolError(HerderError):
    """A worker-channel frame is malformed, unknown or too large."""


class ClientError(HerderError):
    """An HTTP call made by the client was answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class TaskFailed(HerderError):
    """`TaskHandle.result()` on a task that ended in a state other than succeeded."""

    def __init__(self, task_id: str, state: str, error: object) -> None:
        detail = ""
        if isinstance(error, dict) and error.get("message"):
            detail = f": {error['message']}"
        super().__init__(f"task {task_id} ended {state}{detail}")
        self.task_id = task_id
        self.state = state
        self.error = error


class Deposed(HerderError):
    """A master's store write was refused: its term of leadership is no longer the current one
    (another master took over). The master steps down."""
