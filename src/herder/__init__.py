"""herder: a distributed task scheduler for Python.

The public API in one place: the TaskType API (`TaskType`, `Context`, `Registry`), the client
(`Client`, `AsyncClient` and their task handles), `LocalCluster`, and `errors`. Importing herder
does not import the master or the worker; they load only in their own processes.

The client and LocalCluster are imported on first use (module `__getattr__`): a worker process
imports `herder` for the TaskType API and should not pay for the client's HTTP library, which
it never uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herder import errors
from herder.context import Context
from herder.errors import ClientError, HerderError, TaskFailed
from herder.tasktype import Registry, TaskType

if TYPE_CHECKING:
    from herder.client import AsyncClient, AsyncTaskHandle, Client, TaskHandle
    from herder.cluster import LocalCluster

__version__ = "0.1.0"

_LAZY = {
    "AsyncClient": "herder.client",
    "AsyncTaskHandle": "herder.client",
    "Client": "herder.client",
    "TaskHandle": "herder.client",
    "LocalCluster": "herder.cluster",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'herder' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "AsyncTaskHandle",
    "Client",
    "ClientError",
    "Context",
    "HerderError",
    "LocalCluster",
    "Registry",
    "TaskFailed",
    "TaskHandle",
    "TaskType",
    "__version__",
    "errors",
]
