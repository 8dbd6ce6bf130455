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
    #: bearer tokens of the three roles (docs/security.md); the worker and admin roles take the
    #: client token where they have none. Kept out of repr, so that no log shows them
    token: str | None = field(default=None, repr=False)
    worker_token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
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
    #: seconds a finished task is kept (by when it finished) before it is deleted with its
    #: subtasks, results and journal (docs/time.md, "Retention"); 0 keeps every task
    keep_finished: float = 7 * 86400.0
    log_level: str = "info"
    # -- TLS (docs/security.md, "TLS") --
    #: PEM certificate (chain) served for https:// and wss://; None: plain http
    tls_cert: str | None = None
    #: PEM private key of tls_cert; None: read from the tls_cert file
    tls_key: str | None = None
    # -- size and count limits: one table in docs/limits.md, checked together at start
    #: largest params of one task, in bytes of JSON (its part must fit in a channel message)
    max_params: int = 15 * 2**20
    #: a split that makes more subtasks fails its task (or gets 422 when it runs at submission)
    max_subtasks_per_task: int = 100_000
    #: subtasks of unfinished tasks before submissions get 429
    max_pending_subtasks: int = 1_000_000

    #: names the `Host` header of a request may give (any port); empty: the bound address,
    #: localhost, 127.0.0.1 and ::1; "*": any
    allowed_hosts: tuple[str, ...] = ()

    # -- several masters on one PostgreSQL store (docs/failover.md) --
    #: the URL other masters, clients and workers reach this one at, shown by standbys as the
    #: active master's; None: http(s)://host:port (the host name when bound to every address)
    advertise_url: str | None = None
    #: seconds within which a standby takes over from an active master that died
    failover_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.failover_timeout > 0:
            raise ValueError(
                f"--failover-timeout: must be a positive number of seconds, not "
                f"{self.failover_timeout}"
            )
        if not self.keep_finished >= 0:
            raise ValueError(
                f"--keep-finished: must be 0 (keep every task) or a positive duration, not "
                f"{self.keep_finished}"
            )
        check_token("--token", self.token)
        check_token("--worker-token", self.worker_token)
        check_token("--admin-token", self.admin_token)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    #: the master's http(s) URL, the same one clients use
    master: str = DEFAULT_URL
    slots: int = 1
    pool: str = "thread"  # "thread" | "process"
    tasks: tuple[str, ...] = ()
    name: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    labels: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
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
    # -- TLS (docs/security.md, "TLS") --
    #: CA file that verifies a wss:// master's certificate; None: the system's CA store
    ca: str | None = None

    def __post_init__(self) -> None:
        check_token("--token", self.token)


#: the shortest token accepted: a guessable token is no lock
MIN_TOKEN_LENGTH = 16


def check_token(option: str, token: str | None) -> None:
    """ValueError naming `option` if `token` is too short to be a secret (without showing it)."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{option}: a token must be at least {MIN_TOKEN_LENGTH} characters, not "
            f"{len(token)} (make one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )


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
