"""`primes`: count the primes below `limit`, one range per subtask, with a segmented sieve."""

from __future__ import annotations

import math

import pydantic

from herder.context import Context
from herder.tasktype import TaskType

_SEGMENT = 32_768


class PrimesParams(pydantic.BaseModel):
    limit: int = pydantic.Field(ge=0, le=10**10)
    parts: int = pydantic.Field(default=4, ge=1, le=100_000)


def _base_primes(upto: int) -> list[int]:
    """Primes <= upto, by a plain sieve (upto is at most sqrt(limit))."""
    if upto < 2:
        return []
    sieve = bytearray([1]) * (upto + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(upto) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, upto + 1, p)))
    return [i for i, flag in enumerate(sieve) if flag]


def count_primes(lo: int, hi: int, ctx: Context | None = None) -> int:
    """Primes p with lo <= p < hi."""
    lo = max(lo, 2)
    if hi <= lo:
        return 0
    base = _base_primes(math.isqrt(hi - 1))
    count = 0
    for start in range(lo, hi, _SEGMENT):
        if ctx is not None and ctx.cancelled.is_set():
            return count
        end = min(start + _SEGMENT, hi)
        seg = bytearray([1]) * (end - start)
        for p in base:
            first = max(p * p, (start + p - 1) // p * p)
            if first >= end:
                continue
            seg[first - start :: p] = bytes(len(range(first, end, p)))
        count += seg.count(1)
        if ctx is not None:
            ctx.progress(end - lo, hi - lo)
    return count


class Primes(TaskType):
    name = "primes"
    Params = PrimesParams

    def split(self, params: PrimesParams) -> list[list[int]]:
        step = -(-params.limit // params.parts) if params.limit else 0
        return [
            [i * step, min((i + 1) * step, params.limit)] for i in range(params.parts)
        ]

    def execute(self, ctx: Context, part: list[int]) -> int:
        lo, hi = int(part[0]), int(part[1])
        return count_primes(lo, hi, ctx)

    def aggregate(self, params: PrimesParams, results: list[int]) -> int:
        return sum(results)
