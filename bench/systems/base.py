"""What every benchmarked system provides, and the little process plumbing they share.

Stdlib only (the peers' virtualenv imports it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.procstat import Proc


class Unavailable(Exception):
    """The system cannot run here (not installed, cannot start): reported as n/a."""


class System:
    """Start/stop plus the building blocks of the workloads; subclasses fill them in."""

    name = "?"
    #: workloads this system runs (W1-split and Start exist for herder only)
    workloads: tuple[str, ...] = ("w1", "w2", "w3")
    #: the system's scratch directory (stores, logs), removed after a trial that went well
    dir: str

    def version(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        """The role of a process of this run: master, workers or other (the caller is client)."""
        raise NotImplementedError

    def w1(self, n: int) -> None:
        """Submit `n` no-op tasks in bulk, the system's way; return once every result is in."""
        raise NotImplementedError

    def w2_once(self) -> None:
        """One no-op task, submitted and its result awaited."""
        raise NotImplementedError

    def w3(self, parts: int, loops: int) -> int:
        """`parts` calls of spin(loops) in parallel, summed."""
        raise NotImplementedError

    def w1_split(self, n: int) -> None:
        raise NotImplementedError

    def seconds_worked(self) -> float | None:
        """The seconds the workers have spent running subtasks so far, as the system itself
        times them, or None where it keeps no such count (W3's occupancy: `bench.report`)."""
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = condition()
            if value:
                return value
        if time.monotonic() > deadline:
            raise Unavailable(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(every)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn(argv: Sequence[str], log: str | None = None, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """A child in its own process group (so that it can be stopped with its children)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, process_group=0,
                                env={**os.environ, **(env or {})})
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0,
         sig: int = signal.SIGTERM) -> None:
    """Signal the child's process group, wait, then SIGKILL the group."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Redis:
    """Debian's redis-server on 127.0.0.1, a free port, no persistence (the peers' broker and
    result store; their idiomatic setup keeps it in memory)."""

    def __init__(self, workdir: str) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            raise Unavailable("redis-server is not installed")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = spawn([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--daemonize", "no",
                           "--dir", self.workdir, "--loglevel", "warning"],
                          log=os.path.join(self.workdir, "redis.log"))
        wait_for(lambda: port_open(self.port), 10, "redis-server")

    def stop(self) -> None:
        stop(self.proc, 5.0)

    @staticmethod
    def version() -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        try:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        except OSError:
            return "?"
        for word in out.split():
            if word.startswith("v="):
                return word[2:]
        return out.strip()


def workdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=f"bench-{prefix}-")
