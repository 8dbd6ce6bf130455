"""herder: a distributed task scheduler for Python.

The public API in one place: the TaskType API (`TaskType`, `Context`, `Registry`), the client
(`Client`, `AsyncClient` and their task handles), `LocalCluster`, and `errors`. Importing herder
does not import the master or the worker; they load only in their own processes.
"""

from herder import errors
from herder.client import AsyncClient, AsyncTaskHandle, Client, TaskHandle
from herder.cluster import LocalCluster
from herder.context import Context
from herder.errors import ClientError, HerderError, TaskFailed
from herder.tasktype import Registry, TaskType

__version__ = "0.1.0"

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
