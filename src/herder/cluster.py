"""`LocalCluster`: a master and N workers as subprocesses, for tests, notebooks and `herder up`.

It builds the commands `python -m herder master ...` and `python -m herder worker ...` (the
same commands a user runs by hand), has its `ProcessGroup` (`processes`) start them, waits until
/healthz reports every worker connected, and stops them in order (workers, then master). This is
the only code that manages herder processes; `herder up` uses it too.

For fault-injection tests, `cluster.processes` kills (SIGKILL), stops (SIGTERM) and restarts
single processes: `kill_master()` / `start_master()` (same port and store), `kill_worker(i)`,
`stop_worker(i)`, `wait_worker(i, timeout)`, `start_worker(i)` (same name, so the same
identity); `add_worker(...)` and `wait_ready(workers=n)` are the cluster's, which knows the
commands and asks the master. Its workers get a worker token the cluster makes
(`worker_token`), unless one is given. A command prefix (such as `ip netns exec NS`) runs a child
inside a network namespace.

Imports `client`, `config` and `processes`; never `cli`, `master` or `worker`: they run in the
child processes, and a forked child runs what the caller's `ForkStarter` hands in.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from herder.config import env_token
from herder.errors import ClientError
from herder.forked import ForkStarter

# ClusterError is re-exported: it is what `start` raises
from herder.processes import ClusterError as ClusterError
from herder.processes import Command, ProcessGroup

if TYPE_CHECKING:
    # Imported where used: `herder up` forks its master before it needs a client, and importing
    # httpx before the fork would delay the master's start.
    from herder.client import Client

READY_TIMEOUT = 20.0
_POLL = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the master binds it right after)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def connect_host(host: str) -> str:
    """The address to reach a server bound to `host` from this machine, as a URL host part."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass  # a host name
    return host


#: the environment variables of the roles' tokens (docs/security.md)
TOKEN_ENV = ("HERDER_TOKEN", "HERDER_WORKER_TOKEN", "HERDER_ADMIN_TOKEN")


def child_env(
    token: str | None, worker_token: str | None = None, admin_token: str | None = None
) -> dict[str, str]:
    """The environment of the children: ours, with our sys.path in front of PYTHONPATH (so that
    a --tasks module importable here is importable there) and the tokens, which go through the
    environment rather than argv so that `ps` does not show them."""
    env = dict(os.environ)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("HERDER_TOKEN_FILE", None)
    for name, value in zip(TOKEN_ENV, (token, worker_token, admin_token), strict=True):
        env.pop(name, None)
        if value:
            env[name] = value
    return env


@dataclass(slots=True)
class WorkerSpec:
    """What one worker's command is built from (`LocalCluster.worker_argv`)."""

    name: str
    #: variables added to the worker's environment
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    #: argv in front of the command, e.g. ("ip", "netns", "exec", "ns1"); None: the cluster's
    prefix: tuple[str, ...] | None = None
    #: the master URL as this worker reaches it; None: the cluster's url
    master_url: str | None = None


class LocalCluster:
    """A master and `workers` worker processes on this machine.

    `with LocalCluster(workers=2, tasks=["mymod"]) as client: client.submit(...)`. Without `port`
    (or with 0) a free port is used; without `db` a SQLite file in a temporary directory that is
    removed on stop. Process output goes to this process's stdout/stderr. With `tls_cert` (and
    `tls_key`) the master serves https:// and wss://, which the workers and the client verify
    against the CA file `ca` (None: HERDER_CA, else the system's CA store).
    """

    def __init__(
        self,
        workers: int = 2,
        slots: int = 1,
        tasks: Sequence[str] = (),
        pool: str = "thread",
        port: int | None = None,
        db: str | None = None,
        token: str | None = None,
        extra_master_args: Sequence[str] = (),
        extra_worker_args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        log_level: str | None = None,
        ready_timeout: float = READY_TIMEOUT,
        stop_timeout: float = 10.0,
        command_prefix: Sequence[str] = (),
        output: str | None = None,
        fork: ForkStarter | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        ca: str | None = None,
        worker_token: str | None = None,
        admin_token: str | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError("workers: must be >= 0")
        if isinstance(tasks, str):  # a lone module name, not its characters
            tasks = (tasks,)
        self.workers, self.slots, self.pool = workers, slots, pool
        self.tasks = tuple(tasks)
        self.host = host
        self.port = port
        self.db = db
        self.token = token if token is not None else env_token()
        #: the master's worker channel takes this token only; made here unless given, so that
        #: no one else (another local user, a web page) can join as a worker
        self.worker_token = worker_token or secrets.token_urlsafe(32)
        self.admin_token = admin_token
        self.extra_master_args = tuple(extra_master_args)
        self.extra_worker_args = tuple(extra_worker_args)
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        #: argv put in front of every child's command (a worker's spec may override it)
        self.command_prefix = tuple(command_prefix)
        #: a file the children's stdout and stderr are appended to; None: ours
        self.output = output
        #: start the first master and workers as forks of this process, running what it hands in
        #: (`herder.forked`); only for a parent with no other threads. None: new interpreters
        self.fork = fork
        self.tls_cert, self.tls_key, self.ca = tls_cert, tls_key, ca
        self.worker_specs: list[WorkerSpec] = [
            WorkerSpec(name=f"local-{i + 1}") for i in range(workers)
        ]
        #: the master and worker processes: kill, stop, wait for and restart single ones
        self.processes = ProcessGroup(output, fork)
        self._client: Client | None = None
        self._tmpdir: str | None = None

    # -- properties ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise ClusterError("the cluster is not started")
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{connect_host(self.host)}:{self.port}"

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ClusterError("the cluster is not started")
        return self._client

    # -- argv ----------------------------------------------------------------------------------

    def _common_args(self) -> list[str]:
        args = [a for t in self.tasks for a in ("--tasks", t)]
        if self.log_level:
            args += ["--log-level", self.log_level]
        return args

    def _tls_args(self) -> list[str]:
        args = ["--tls-cert", self.tls_cert] if self.tls_cert else []
        return args + (["--tls-key", self.tls_key] if self.tls_key else [])

    def master_argv(self) -> list[str]:
        return [
            *self.command_prefix, sys.executable, "-m", "herder", "master",
            "--host", self.host, "--port", str(self.port), "--db", str(self.db),
            *self._common_args(), *self._tls_args(), *self.extra_master_args,
        ]  # fmt: skip

    def worker_argv(self, index: int) -> list[str]:
        spec = self.worker_specs[index]
        prefix = self.command_prefix if spec.prefix is None else spec.prefix
        return [
            *prefix, sys.executable, "-m", "herder", "worker",
            "--master", spec.master_url or self.url, "--slots", str(self.slots),
            "--pool", self.pool, "--name", spec.name,
            *(["--ca", self.ca] if self.ca else []),
            *self._common_args(), *self.extra_worker_args, *spec.extra_args,
        ]  # fmt: skip

    def _worker_command(self, index: int) -> Command:
        return Command(f"worker {self.worker_specs[index].name}", tuple(self.worker_argv(index)),
                       self.worker_specs[index].env)

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> Client:
        """Start everything and wait until all workers are connected; return a client."""
        if self.processes.master is not None:
            raise ClusterError("the cluster is already started")
        if not self.port:  # None or 0: any free port
            self.port = free_port(self.host if self.host not in ("", "0.0.0.0", "::") else
                                  "127.0.0.1")
        if self.db is None:
            self._tmpdir = tempfile.mkdtemp(prefix="herder-")
            self.db = os.path.join(self._tmpdir, "herder.db")
        atexit.register(self.stop)
        try:
            deadline = time.monotonic() + self.ready_timeout
            self.processes.start(
                child_env(self.token, self.worker_token, self.admin_token),
                Command("master", tuple(self.master_argv())),
                [self._worker_command(i) for i in range(len(self.worker_specs))],
            )
            # after the forks: a child must not inherit the client's sockets
            from herder.client import Client

            self._client = Client(self.url, self.token, ca=self.ca)
            self._wait_ready(deadline, workers=len(self.worker_specs))
        except BaseException:
            self.stop()
            raise
        return self._client

    def wait_ready(self, workers: int, timeout: float | None = None) -> None:
        """Until /healthz answers and reports at least `workers` workers connected (after
        `processes.start_master()`: `workers=0`). Only the master's exit fails it early (a test
        may have stopped workers on purpose)."""
        timeout = self.ready_timeout if timeout is None else timeout
        self._wait_ready(time.monotonic() + timeout, workers, all_processes=False)

    def add_worker(
        self,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        *,
        prefix: Sequence[str] | None = None,
        master_url: str | None = None,
    ) -> int:
        """Start one more worker; return its index. It does not wait for the connection (use
        `wait_ready(workers=n)`)."""
        if self.processes.master is None:
            raise ClusterError("the cluster is not started")
        index = len(self.worker_specs)
        self.worker_specs.append(
            WorkerSpec(
                name=name or f"local-{index + 1}",
                env=dict(env or {}),
                extra_args=tuple(extra_args),
                prefix=None if prefix is None else tuple(prefix),
                master_url=master_url,
            )
        )
        return self.processes.add_worker(self._worker_command(index))

    def _wait_ready(self, deadline: float, workers: int, all_processes: bool = True) -> None:
        """Until /healthz reports `workers` connected workers; ClusterError past `deadline`, or
        as soon as the master (or, with `all_processes`, any child) exits."""
        from herder.client import MasterUnreachable

        connected = None
        while time.monotonic() < deadline:
            if gone := self.processes.exited(master_only=not all_processes):
                name, code = gone[0]
                during = " during start (see its output)" if all_processes else ""
                raise ClusterError(f"{name} exited with code {code}{during}")
            with contextlib.suppress(MasterUnreachable, ClientError):
                connected = self.client.health().get("workers")
                if isinstance(connected, int) and connected >= workers:
                    return
            time.sleep(_POLL)
        raise ClusterError(
            f"not ready in time: master at {self.url} "
            + ("did not answer /healthz" if connected is None
               else f"reports {connected} of {workers} workers")
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop workers (they hand back their work), then the master. Idempotent."""
        timeout = self.stop_timeout if timeout is None else timeout
        atexit.unregister(self.stop)
        if self._client is not None:
            self._client.close()
            self._client = None
        self.processes.stop(timeout)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def kill(self) -> None:
        """Stop everything now (SIGKILL), for a second Ctrl-C."""
        self.processes.kill()
        self.stop(timeout=0)

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.processes.master is None else f"url={self.url}"
        return f"LocalCluster(workers={self.workers}, slots={self.slots}, {state})"
