"""Settings: one frozen object per process kind. The one reader of HERDER_* environment variables
(the CLI passes them in through typer's `envvar`, LocalCluster through arguments).

Plain data, no I/O. Imports only the stdlib.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_PORT = 8700
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


@dataclass(frozen=True, slots=True)
class MasterSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str = "herder.db"
    tasks: tuple[str, ...] = ()
    #: tasks in pending/running/aggregating before submissions get 429
    max_pending: int = 10_000
    #: subtasks a worker may hold beyond its slots
    prefetch: int = 0
    #: attempts of types whose average run time is at most this many seconds are pipelined:
    #: a worker may hold about this many seconds of them per slot (at most 32), so it never
    #: waits a round trip between two short attempts, and hands them back once every slot has
    #: run 4 times this long (0: off). Bounds the priority inversion this allows
    #: (docs/decisions.md).
    pipeline_below: float = 0.05
    #: bytes of result JSON kept in memory for the aggregates of running tasks (past it, an
    #: aggregate reads its results from the store)
    results_in_memory: int = 64 * 2**20
    token: str | None = None
    #: seconds `split` and `aggregate` may run before the task fails
    split_timeout: float = 60.0
    #: how often workers send heartbeats (told to them in `welcome`)
    heartbeat: float = 1.0
    #: seconds without a heartbeat after which a worker is lost
    lease_timeout: float = 5.0
    #: first retry delay; doubles per attempt, with jitter, capped by retry_backoff_max
    retry_backoff: float = 0.1
    retry_backoff_max: float = 30.0
    #: stragglers: a second attempt once a subtask has run `speculate_factor` times the median
    #: of its finished siblings (or `speculate_after` seconds, when set), never before
    #: `speculate_min` seconds; both None: no speculation
    speculate_factor: float | None = 3.0
    speculate_after: float | None = None
    speculate_min: float = 2.0
    #: largest accepted request body, in bytes
    max_body: int = 64 * 1024 * 1024
    #: log lines kept per task; older ones are dropped (and counted)
    max_logs_per_task: int = 10_000
    log_level: str = "info"
    #: names the `Host` header of a request may give (any port); empty: the bound address,
    #: localhost, 127.0.0.1 and ::1; "*": any
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    #: the master's http(s) URL, the same one clients use
    master: str = DEFAULT_URL
    slots: int = 1
    pool: str = "thread"  # "thread" | "process"
    tasks: tuple[str, ...] = ()
    name: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    labels: tuple[str, ...] = ()
    token: str | None = None
    #: seconds running subtasks get to finish after SIGTERM before they are cancelled
    drain_timeout: float = 30.0
    #: seconds a cancelled process-pool subtask gets before its process is killed
    cancel_grace: float = 5.0
    #: reconnect backoff: first delay and cap, in seconds (jittered)
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    log_level: str = "info"
    #: send what subtasks print to stdout/stderr to the master as log lines
    capture_output: bool = False


def env_token() -> str | None:
    return os.environ.get("HERDER_TOKEN") or None


def env_url() -> str:
    """The master's URL, or a comma list of the URLs of several."""
    return os.environ.get("HERDER_URL") or DEFAULT_URL


def env_ca() -> str | None:
    """A CA file to verify https:// masters with, instead of the system's CA store."""
    return os.environ.get("HERDER_CA") or None


def parse_speculate_after(value: str) -> tuple[float | None, float | None]:
    """`3x` -> (factor 3, None); `5s`/`5` -> (None, 5 seconds); `off` -> (None, None)."""
    text = value.strip().lower()
    if text in {"off", "no", "none", "false", "0"}:
        return None, None
    try:
        if text.endswith("x"):
            factor = float(text[:-1])
            if factor <= 0:
                raise ValueError
            return factor, None
        seconds = float(text[:-1]) if text.endswith("s") else float(text)
        if seconds <= 0:
            raise ValueError
        return None, seconds
    except ValueError:
        raise ValueError(
            f"--speculate-after: {value!r} is not a factor like 3x, a duration like 5s, or off"
        ) from None
