"""The ids the master gives tasks that were submitted without one. Imports the stdlib only."""

from __future__ import annotations

import os
import random
import secrets
import time


def new_task_id() -> str:
    """32 hex digits like a UUID's, in creation order (the layout of UUIDv7: 48 bits of
    milliseconds, then 80 random bits). New rows land at the end of every index keyed by the
    task id, so a commit writes a few pages instead of one page per row scattered over the tree.

    The random bits make ids unique, not secret (anyone who can reach the API can list them):
    they come from a generator seeded once from the OS, not from a system call per id, which
    lets go of the GIL and, with another thread waiting for it, costs a switch of threads."""
    return f"{time.time_ns() // 1_000_000:012x}{_id_bits(80):020x}"


_id_random = random.Random(secrets.randbits(128))
_id_bits = _id_random.getrandbits
# a forked child must not make the ids its parent makes
os.register_at_fork(after_in_child=lambda: _id_random.seed(secrets.randbits(128)))
