"""Children made with `os.fork()` instead of a new interpreter: how `herder up` starts fast.

A new interpreter spends most of its start importing the master (FastAPI, uvicorn, pydantic) or
a worker, and `herder up --workers 2` would start three of them at once on what may be two
cores. A parent that has imported all of that once and then forks hands each child a warm
interpreter instead (docs/decisions.md, "Forked children").

What a child runs is handed in, not imported: a `ForkStarter` carries the program (`run(args)`,
which the CLI makes run `herder <args>`) and what to import before forking a master or a worker.
`ForkedProcess` is one child, with the part of `subprocess.Popen` that `LocalCluster` uses.
Forking is only safe in a parent with no other threads and no event loop, which is what `herder
up` is when it starts its cluster; everything else starts children with `subprocess.Popen`.
Imports nothing of herder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

#: how often `wait` looks at a child that has not exited yet
_WAIT_POLL = 0.01


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class ForkStarter:
    """How to run `herder <args>` in a forked child, and what to import before forking one."""

    #: runs the command line `args` in the child and returns its exit code (SystemExit counts too)
    run: Callable[[Sequence[str]], int]
    #: imports what a master needs, so that a master forked afterwards finds it loaded
    preload_master: Callable[[], None] = _nothing
    #: the same for a worker (the cluster calls it while the forked master starts)
    preload_worker: Callable[[], None] = _nothing

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        output_fd: int | None = None,
        close_fds: Sequence[int] = (),
    ) -> ForkedProcess:
        return ForkedProcess(self.run, args, env, output_fd, close_fds)


class ForkedProcess:
    """`run(args)` in a forked child: in its own process group, with `env` as its whole
    environment, its stdout and stderr on `output_fd` (None: ours), and without the parent's
    descriptors `close_fds` (such as a pipe's end that only the parent may hold)."""

    def __init__(
        self,
        run: Callable[[Sequence[str]], int],
        args: Sequence[str],
        env: Mapping[str, str],
        output_fd: int | None = None,
        close_fds: Sequence[int] = (),
    ) -> None:
        self.args = list(args)
        self.returncode: int | None = None
        # Buffered output would be written twice, by the parent and by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its coverage is in the tests' children
            os._exit(_run_child(run, self.args, env, output_fd, close_fds))
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere; its code is lost
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(_WAIT_POLL)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_child(
    run: Callable[[Sequence[str]], int],
    args: list[str],
    env: Mapping[str, str],
    output_fd: int | None,
    close_fds: Sequence[int],
) -> int:
    code = 1
    try:
        for fd in close_fds:
            os.close(fd)
        os.setpgid(0, 0)  # as Popen(process_group=0): a Ctrl-C reaches only the parent
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if output_fd is not None:
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
        # New streams on the descriptors: the parent's may be anything (pytest's capture, say).
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["herder", *args]
        try:
            code = run(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code
