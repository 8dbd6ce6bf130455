"""Where things are on the master's HTTP server: the API prefix and every path, written once.

The server mounts its routes at these paths, the client and the worker request them, and the
dashboard (JavaScript, which cannot import this) uses the same relative paths under `api/v1/`.
Path templates take their parameters with `str.format` (`TASK.format(task_id=...)`).
Imports nothing.
"""

from __future__ import annotations

API_PREFIX = "/api/v1"

#: `POST` a submission, `GET` a page of tasks
TASKS = f"{API_PREFIX}/tasks"
TASKS_BATCH = f"{API_PREFIX}/tasks/batch"
TASKS_LOOKUP = f"{API_PREFIX}/tasks/lookup"
TASK = f"{API_PREFIX}/tasks/{{task_id}}"
TASK_CANCEL = f"{API_PREFIX}/tasks/{{task_id}}/cancel"
TASK_RESULT = f"{API_PREFIX}/tasks/{{task_id}}/result"
TASK_LOGS = f"{API_PREFIX}/tasks/{{task_id}}/logs"
TASK_SUBTASKS = f"{API_PREFIX}/tasks/{{task_id}}/subtasks"
TASK_EVENTS = f"{API_PREFIX}/tasks/{{task_id}}/events"
EVENTS = f"{API_PREFIX}/events"
#: `POST` a schedule, `GET` them all
SCHEDULES = f"{API_PREFIX}/schedules"
SCHEDULE = f"{API_PREFIX}/schedules/{{schedule_id}}"
STATS = f"{API_PREFIX}/stats"
WORKERS = f"{API_PREFIX}/workers"
TYPES = f"{API_PREFIX}/types"
#: the worker channel's WebSocket
WORKER_CHANNEL = f"{API_PREFIX}/workers/connect"
#: `POST`: a worker (by name or id) finishes what it runs, takes no more, and stops (admin only)
WORKER_DRAIN = f"{API_PREFIX}/workers/{{name}}/drain"

#: outside the API: no token needed for health and readiness, the rest as the API
HEALTHZ = "/healthz"
#: 200 on the active master only, 503 on a standby (for load balancers: docs/failover.md)
READYZ = "/readyz"
METRICS = "/metrics"
