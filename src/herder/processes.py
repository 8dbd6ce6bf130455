"""`ProcessGroup`: the child processes of a `LocalCluster`, one master and workers by index.

It starts each child from the command it is given and keeps that command, so that a killed
child starts again as the same process (same port and store, same worker name); it signals,
waits for and reaps them, and stops them in order: workers first (so that they can hand their
subtasks back to a live master), then the master; SIGTERM, then SIGKILL after a deadline. What
the commands say and when the cluster is ready are `cluster`'s business.

Every child holds a `Lifeline` to this process: when it dies, even by SIGKILL, the children stop
by themselves (`herder.lifeline`).

Imports `errors`, `forked` and `lifeline`; never `cli`, `client`, `master` or `worker`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from herder.errors import HerderError
from herder.forked import ForkedProcess, ForkStarter
from herder.lifeline import Lifeline

#: a child process of the cluster: a new interpreter, or a fork of this one (`fork=`)
ChildProcess = subprocess.Popen[bytes] | ForkedProcess


class ClusterError(HerderError):
    """The local cluster did not start: a process exited or it was not ready in time."""


def terminate(processes: Iterable[ChildProcess], timeout: float) -> None:
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


def kill(processes: Iterable[ChildProcess]) -> None:
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


@dataclass(frozen=True, slots=True)
class Command:
    """How to start one child: its name in messages, its argv and the variables added to the
    group's environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


class ProcessGroup:
    """The master and the workers a `LocalCluster` started, by index.

    `output` is a file the children's stdout and stderr are appended to (None: ours); `fork`
    starts the first master and workers as forks of this process (`herder.forked`), else each
    child is a new interpreter.
    """

    def __init__(self, output: str | None = None, fork: ForkStarter | None = None) -> None:
        self._env: dict[str, str] = {}
        self._output = output
        self._fork = fork
        self._out: IO[bytes] | None = None
        self._lifeline: Lifeline | None = None
        self._master_command: Command | None = None
        self._worker_commands: list[Command] = []
        self.master: ChildProcess | None = None
        #: one per worker ever started, by index; a stopped worker's process stays until restarted
        self.workers: list[ChildProcess] = []

    def start(
        self, env: Mapping[str, str], master: Command, workers: Sequence[Command]
    ) -> None:
        """Start the master and, at once, the workers, all with the environment `env`. Both
        spend most of their start importing, which then happens side by side; a worker retries
        (quietly) until the master answers."""
        if self.master is not None:
            raise ClusterError("the cluster is already started")
        self._lifeline = Lifeline()
        self._env = {**env, **self._lifeline.child_env()}
        if self._output is not None:
            self._out = open(self._output, "ab")  # noqa: SIM115 - closed in stop()
        if self._fork is not None:
            self._fork.preload_master()
        self._master_command = master
        self.master = self._spawn(master, may_fork=True)
        if self._fork is not None:
            self._fork.preload_worker()  # while the master starts
        self._worker_commands = list(workers)
        self.workers = [self._spawn(w, may_fork=True) for w in workers]

    def _spawn(self, command: Command, may_fork: bool = False) -> ChildProcess:
        """A child running `command`: with `may_fork` and a ForkStarter, a fork of this process
        when its argv is `python -m herder ...` (not behind a command prefix), else a new one."""
        if self._lifeline is None:
            raise ClusterError("the cluster is stopped")
        argv, env = list(command.argv), {**self._env, **command.env}
        herder_cli = [sys.executable, "-m", "herder"]
        if may_fork and self._fork is not None and argv[:3] == herder_cli:
            out = self._out.fileno() if self._out is not None else None
            return self._fork.start(argv[3:], env, out, close_fds=[self._lifeline.write_fd])
        # Own process groups: a Ctrl-C in the terminal reaches only us, and we stop the
        # children in order (workers, then master) instead of all at once.
        return subprocess.Popen(
            argv, env=env, process_group=0,
            stdout=self._out, stderr=self._out, pass_fds=[self._lifeline.read_fd],
        )  # fmt: skip

    # -- the master ----------------------------------------------------------------------------

    @property
    def master_pid(self) -> int | None:
        """The running master's pid, or None."""
        p = self.master
        return p.pid if p is not None and p.poll() is None else None

    def _started_master(self) -> ChildProcess:
        if self.master is None:
            raise ClusterError("the cluster is not started")
        return self.master

    def kill_master(self) -> None:
        """SIGKILL the master and reap it (no shutdown code runs: a crash)."""
        kill([self._started_master()])

    def start_master(self) -> None:
        """Start the master again with the same command (after kill_master or a crash); it does
        not wait for it to answer (`LocalCluster.wait_ready(workers=0)`)."""
        if self._started_master().poll() is None:
            raise ClusterError("the master is running")
        assert self._master_command is not None
        self.master = self._spawn(self._master_command)

    # -- workers -------------------------------------------------------------------------------

    @property
    def worker_pids(self) -> list[int | None]:
        """Each worker's pid by index, None for one that is not running."""
        return [p.pid if p.poll() is None else None for p in self.workers]

    def add_worker(self, command: Command) -> int:
        """Start one more worker; return its index."""
        self._started_master()
        self._worker_commands.append(command)
        self.workers.append(self._spawn(command))
        return len(self.workers) - 1

    def _worker(self, index: int) -> ChildProcess:
        self._started_master()
        if not 0 <= index < len(self.workers):
            raise IndexError(f"no worker {index} (there are {len(self.workers)})")
        return self.workers[index]

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` and reap it; its attempts stay leased to it on the master."""
        kill([self._worker(index)])

    def stop_worker(self, index: int) -> None:
        """SIGTERM worker `index`: it drains (a second call makes it exit at once)."""
        proc = self._worker(index)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def wait_worker(self, index: int, timeout: float) -> int | None:
        """Wait up to `timeout` s for worker `index` to exit; its exit code, or None."""
        proc = self._worker(index)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        return proc.poll()

    def start_worker(self, index: int) -> None:
        """Start worker `index` again with the same command (hence the same name and identity)."""
        if self._worker(index).poll() is None:
            raise ClusterError(f"{self._worker_commands[index].name} is running")
        self.workers[index] = self._spawn(self._worker_commands[index])

    # -- all of them ---------------------------------------------------------------------------

    def exited(self, master_only: bool = False) -> list[tuple[str, int]]:
        """(name, exit code) of each process that has exited (with `master_only`, of the
        master only)."""
        named = [(self._master_command, self.master)]
        if not master_only:
            named += zip(self._worker_commands, self.workers, strict=True)
        return [(command.name, code) for command, p in named
                if command is not None and p is not None and (code := p.poll()) is not None]

    def stop(self, timeout: float) -> None:
        """Stop the workers (they hand back their work), then the master. Idempotent."""
        terminate(self.workers, timeout)
        if self.master is not None:
            terminate([self.master], timeout)
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def kill(self) -> None:
        """SIGKILL every child now, for a second Ctrl-C."""
        kill([*self.workers, *([self.master] if self.master is not None else [])])
