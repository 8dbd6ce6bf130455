"""The lifeline: a pipe from a parent to the master and workers it starts, so that they stop when
the parent dies, however it dies (kill -9 included), instead of running on as orphans.

The parent (`LocalCluster`, hence `herder up`) keeps the pipe's only write end and hands the read
end to each child, naming it in HERDER_LIFELINE_FD. A child watches its end from a thread: a read
returns end-of-file only once no process holds the write end, which the kernel ensures when the
parent exits. The child then stops itself as SIGTERM stops it (the master closes its port, a
worker drains), hurries with a second SIGTERM, and SIGKILLs itself if that did not end it either.
A pipe rather than Linux's parent-death signal: it is portable, and it follows the parent process,
not the thread that happened to start the child (README, "herder up").

Imports nothing of herder.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: the environment variable naming the read end in a child
LIFELINE_ENV = "HERDER_LIFELINE_FD"

#: what a child does once its parent is gone: (seconds after the parent's death, signal to self).
#: A worker drains for the first few seconds, then cancels its running subtasks.
STOP_STEPS: tuple[tuple[float, signal.Signals], ...] = (
    (0.0, signal.SIGTERM),
    (2.0, signal.SIGTERM),
    (6.0, signal.SIGKILL),
)


class Lifeline:
    """The parent's side: the pipe. Close it after the children have stopped."""

    def __init__(self) -> None:
        # os.pipe's ends are not inherited across exec; a forked child must close `write_fd`.
        self.read_fd, self.write_fd = os.pipe()
        self.closed = False

    def child_env(self) -> dict[str, str]:
        """What to add to a child's environment (the read end must reach it too: pass_fds)."""
        return {LIFELINE_ENV: str(self.read_fd)}

    def close(self) -> None:
        """Close both ends, once: a second close could hit a descriptor reused since."""
        if not self.closed:
            self.closed = True
            os.close(self.read_fd)
            os.close(self.write_fd)


def watch_parent(steps: Sequence[tuple[float, signal.Signals]] = STOP_STEPS) -> bool:
    """In a child: if HERDER_LIFELINE_FD names a pipe, watch it from a daemon thread and stop
    this process by `steps` once the parent is gone. The variable is removed, so that this
    process's own children (a process pool, a task's subprocess) do not take it for theirs.
    True if a watch started."""
    value = os.environ.pop(LIFELINE_ENV, None)
    if value is None:
        return False
    try:
        fd = int(value)
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (ValueError, OSError):
        is_pipe = False
    if not is_pipe:  # e.g. a wrapper such as sudo closed it on the way
        log.warning("%s=%s is not an open pipe: this process will outlive its parent",
                    LIFELINE_ENV, value)
        return False
    threading.Thread(
        target=_watch, args=(fd, tuple(steps)), name="herder-lifeline", daemon=True
    ).start()
    return True


def _watch(fd: int, steps: tuple[tuple[float, signal.Signals], ...]) -> None:
    while os.read(fd, 1):  # nothing is ever written: only end-of-file returns
        pass
    log.warning("the parent process is gone: stopping")
    gone_at = time.monotonic()
    for after, sig in steps:
        time.sleep(max(0.0, gone_at + after - time.monotonic()))
        os.kill(os.getpid(), sig)
