"""The Python client of the HTTP API.

`Client` / `TaskHandle` (`sync`) and their asyncio twins `AsyncClient` / `AsyncTaskHandle`
(`aio`) follow the same sans-I/O plans (`plan`: requests, answers, paging, polling; `streams`:
followed event and log streams; `bulk`: waiting for many tasks) and send them through one
transport (`transport`, over libcurl through `curl`, with TLS, proxies and failover between
several masters, `masters`). Their helpers, each a sync and an async twin: `schedules`
(`client.schedules`), `completion` (`as_completed`, `gather`), `following` (followed streams).
Errors: `errors`; the Server-Sent Events parser: `sse`.
"""

from herder.client.aio import AsyncClient, AsyncTaskHandle
from herder.client.errors import BatchSubmitError, MasterUnreachable, QueueFull, StreamUnavailable
from herder.client.masters import normalize_url
from herder.client.plan import FINAL_STATES, is_final
from herder.client.streams import STREAM_RETRIES, Event
from herder.client.sync import Client, TaskHandle

__all__ = [
    "FINAL_STATES",
    "STREAM_RETRIES",
    "AsyncClient",
    "AsyncTaskHandle",
    "BatchSubmitError",
    "Client",
    "Event",
    "MasterUnreachable",
    "QueueFull",
    "StreamUnavailable",
    "TaskHandle",
    "is_final",
    "normalize_url",
]
