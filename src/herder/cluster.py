"""`LocalCluster`: a master and N workers as subprocesses, for tests, notebooks and `herder up`.

It runs `python -m herder master ...` and `python -m herder worker ...` (the same commands a user
runs by hand), waits until /healthz reports every worker connected, and stops them in order:
workers first (so that they can hand their subtasks back to a live master), then the master;
SIGTERM, then SIGKILL after a deadline. This is the only code that manages herder processes;
`herder up` uses it too.

Imports `client` and `config`; never `master` or `worker` (they run in the child processes).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from types import TracebackType

from herder.client import Client, MasterUnreachable
from herder.config import env_token
from herder.errors import ClientError, HerderError

READY_TIMEOUT = 20.0
_POLL = 0.05


class ClusterError(HerderError):
    """The local cluster did not start: a process exited or it was not ready in time."""


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


def child_env(token: str | None) -> dict[str, str]:
    """The environment of the children: ours, with our sys.path in front of PYTHONPATH (so that
    a --tasks module importable here is importable there) and the token, which goes through the
    environment rather than argv so that `ps` does not show it."""
    env = dict(os.environ)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("HERDER_TOKEN", None)
    if token:
        env["HERDER_TOKEN"] = token
    return env


def terminate(processes: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM each live process, wait up to `timeout` s for all, then SIGKILL the rest."""
    alive = [p for p in processes if p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    kill(alive)


def kill(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


class LocalCluster:
    """A master and `workers` worker processes on this machine.

    `with LocalCluster(workers=2, tasks=["mymod"]) as client: client.submit(...)`. Without `port`
    (or with 0) a free port is used; without `db` a SQLite file in a temporary directory that is
    removed on stop. Process output goes to this process's stdout/stderr.
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
        self.extra_master_args = tuple(extra_master_args)
        self.extra_worker_args = tuple(extra_worker_args)
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.master_process: subprocess.Popen[bytes] | None = None
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self._client: Client | None = None
        self._tmpdir: str | None = None

    # -- properties ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise ClusterError("the cluster is not started")
        return f"http://{connect_host(self.host)}:{self.port}"

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

    def master_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "herder", "master",
            "--host", self.host, "--port", str(self.port), "--db", str(self.db),
            *self._common_args(), *self.extra_master_args,
        ]  # fmt: skip

    def worker_argv(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "herder", "worker",
            "--master", self.url, "--slots", str(self.slots), "--pool", self.pool,
            "--name", f"local-{index + 1}",
            *self._common_args(), *self.extra_worker_args,
        ]  # fmt: skip

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> Client:
        """Start everything and wait until all workers are connected; return a client."""
        if self.master_process is not None:
            raise ClusterError("the cluster is already started")
        if not self.port:  # None or 0: any free port
            self.port = free_port(self.host if self.host not in ("", "0.0.0.0", "::") else
                                  "127.0.0.1")
        if self.db is None:
            self._tmpdir = tempfile.mkdtemp(prefix="herder-")
            self.db = os.path.join(self._tmpdir, "herder.db")
        env = child_env(self.token)
        atexit.register(self.stop)
        try:
            # Own process groups: a Ctrl-C in the terminal reaches only us, and we stop the
            # children in order (workers, then master) instead of all at once.
            deadline = time.monotonic() + self.ready_timeout
            self.master_process = subprocess.Popen(self.master_argv(), env=env, process_group=0)
            self._client = Client(self.url, self.token)
            # Workers start once the master answers: they connect at once instead of logging
            # refused connections and backing off while it boots.
            self._wait_ready(deadline, workers=0)
            self.worker_processes = [
                subprocess.Popen(self.worker_argv(i), env=env, process_group=0)
                for i in range(self.workers)
            ]
            self._wait_ready(deadline, workers=self.workers)
        except BaseException:
            self.stop()
            raise
        return self._client

    def _wait_ready(self, deadline: float, workers: int) -> None:
        """Until /healthz reports `workers` connected workers; ClusterError past `deadline`."""
        connected = None
        while time.monotonic() < deadline:
            self._raise_if_exited()
            with contextlib.suppress(MasterUnreachable, ClientError):
                connected = self.client.health().get("workers")
                if isinstance(connected, int) and connected >= workers:
                    return
            time.sleep(_POLL)
        raise ClusterError(
            f"not ready after {self.ready_timeout} s: master at {self.url} "
            + ("did not answer /healthz" if connected is None
               else f"reports {connected} of {workers} workers")
        )

    def exited(self) -> list[tuple[str, int]]:
        """(name, exit code) of each process that has exited."""
        named = [("master", self.master_process)] + [
            (f"worker local-{i + 1}", p) for i, p in enumerate(self.worker_processes)
        ]
        return [(name, code) for name, p in named
                if p is not None and (code := p.poll()) is not None]

    def _raise_if_exited(self) -> None:
        if gone := self.exited():
            name, code = gone[0]
            raise ClusterError(f"{name} exited with code {code} during start (see its output)")

    def stop(self, timeout: float | None = None) -> None:
        """Stop workers (they hand back their work), then the master. Idempotent."""
        timeout = self.stop_timeout if timeout is None else timeout
        atexit.unregister(self.stop)
        if self._client is not None:
            self._client.close()
            self._client = None
        terminate(self.worker_processes, timeout)
        if self.master_process is not None:
            terminate([self.master_process], timeout)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def kill(self) -> None:
        """Stop everything now (SIGKILL), for a second Ctrl-C."""
        kill([*self.worker_processes, *([self.master_process] if self.master_process else [])])
        self.stop(timeout=0)

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.master_process is None else f"url={self.url}"
        return f"LocalCluster(workers={self.workers}, slots={self.slots}, {state})"
