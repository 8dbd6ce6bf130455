"""The work the benchmark tasks do, the same for every system: nothing, or a pure-Python loop
whose length is calibrated once per run to take TARGET_SECONDS on this machine.

Stdlib only: the peers' virtualenv imports it.
"""

from __future__ import annotations

import time

TARGET_SECONDS = 0.0049


def noop() -> None:
    return None


def spin(loops: int) -> int:
    """Pure-Python CPU work (it holds the GIL throughout); returns a small checksum."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return acc


def calibrate(target: float = TARGET_SECONDS, rounds: int = 20) -> int:
    """The loop count for which one `spin` call takes `target` seconds here.

    Each estimate is the fastest of `rounds` calls: a slower one was interrupted (another
    process took the core), which is not the cost of the work itself."""
    loops = 10_000
    for _ in range(4):  # converge: timings are not quite linear at small counts
        loops = max(1, round(loops * target / spin_seconds(loops, rounds)))
    return loops


def spin_seconds(loops: int, rounds: int = 20) -> float:
    """The fastest of `rounds` calls of `spin(loops)` here."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        spin(loops)
        best = min(best, time.perf_counter() - t0)
    return best
