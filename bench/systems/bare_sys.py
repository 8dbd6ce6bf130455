"""Not a scheduler: W3's spins on 2 bare processes that take the next part from a shared
counter (no queue, no message per part, nothing stored): the bound this host allows W3 in this
run, load balancing included. A scheduler's W3 divided by it is the share its own work leaves.

Stdlib only: runs with herder's interpreter, needs no virtualenv of the peers.
"""

from __future__ import annotations

import multiprocessing
import platform
import signal
from typing import Any

from bench import work
from bench.procstat import Proc, descends
from bench.systems import base

_next_part: Any = None  # in each pool process: the shared counter


def _share(counter: Any) -> None:
    global _next_part
    _next_part = counter
    # forked from the trial, whose SIGTERM raises KeyboardInterrupt: Pool.terminate() must
    # simply end these processes (an interrupt in the middle of the pool's queue locks can
    # leave the other one waiting forever)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _spin_parts(parts_and_loops: tuple[int, int]) -> int:
    """Spin part after part, whichever is next, until none is left; their sum."""
    parts, loops = parts_and_loops
    total = 0
    while True:
        with _next_part.get_lock():
            index = _next_part.value
            _next_part.value = index + 1
        if index >= parts:
            return total
        total += work.spin(loops)


class System(base.System):
    name = "bare"
    workloads = ("w3",)

    def __init__(self) -> None:
        self.dir = base.workdir("bare")
        self.pool: Any = None
        self.counter: Any = None

    def version(self) -> str:
        return f"Python {platform.python_version()} multiprocessing"

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.counter = ctx.Value("i", 0)
        self.pool = ctx.Pool(2, initializer=_share, initargs=(self.counter,))
        self.w3(2, 1)  # both processes up

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def classify(self, proc: Proc, procs: dict[int, Proc]) -> str:
        pids = {p.pid for p in self.pool._pool} if self.pool is not None else set()
        return "workers" if any(descends(proc, pid, procs) for pid in pids) else "other"

    def w3(self, parts: int, loops: int) -> int:
        self.counter.value = 0
        return sum(self.pool.map(_spin_parts, [(parts, loops)] * 2, chunksize=1))
