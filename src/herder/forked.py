"""Children made with `os.fork()` instead of a new interpreter: how `herder up` starts fast.

A new interpreter spends about a second importing the master (FastAPI, uvicorn, pydantic) and
half a second importing a worker, and `herder up --workers 2` starts three of them at once on
what may be two cores. A parent that imported all of that once and then forks its children
hands each one a warm interpreter: the time to the first finished task halves (the "Start"
figure of docs/benchmarks.md).

`ForkedProcess` runs `herder <args>` (the CLI) in the child and offers the part of
`subprocess.Popen` that `LocalCluster` uses. Forking is only safe in a parent with no other
threads and no event loop, which is what `herder up` is when it starts its cluster; everything
else (tests, restarts of single processes) starts children with `subprocess.Popen`.
Imports `cli` in the child only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence

#: how often `wait` looks at a child that has not exited yet
_WAIT_POLL = 0.01


def preload_master() -> None:
    """Import what the master imports, so that a forked master finds it loaded (uvicorn's
    protocols and the store are imported only when the master starts: here too)."""
    import uvicorn.lifespan.on
    import uvicorn.loops.uvloop
    import uvicorn.protocols.http.httptools_impl
    import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401

    import herder.examples
    import herder.master.serve
    import herder.store.sqlite  # noqa: F401


def preload_worker() -> None:
    """Import what a worker imports (done while a forked master starts: it overlaps)."""
    import herder.worker  # noqa: F401


class ForkedProcess:
    """`herder <args>` in a forked child: in its own process group, with `env` as its whole
    environment and its stdout and stderr on `output_fd` (None: ours)."""

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str], output_fd: int | None = None
    ) -> None:
        self.args = list(args)
        self.returncode: int | None = None
        # Buffered output would be written twice, by the parent and by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its coverage is in the tests' children
            os._exit(_run_child(self.args, env, output_fd))
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


def _run_child(args: list[str], env: Mapping[str, str], output_fd: int | None) -> int:
    code = 1
    try:
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
        from herder.cli import app

        try:
            app(args=args, prog_name="herder")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code
