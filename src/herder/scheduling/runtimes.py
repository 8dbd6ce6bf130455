"""How long each task type's attempts run, and so whether (and how deep) they are pipelined.

A type is short once PIPELINE_SAMPLES of its run times are known and their moving average is at
most `SchedulerConfig.pipeline_below`; a worker may then hold about that many seconds of its
attempts per slot beyond its slots (`depth`). Imports only the stdlib.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: a type is short (its attempts may be pipelined) once this many of its run times are known
PIPELINE_SAMPLES = 3
#: at most this many pipelined attempts per slot, however short the type
PIPELINE_DEPTH = 32
#: weight of the newest run time in a type's moving average
RUNTIME_WEIGHT = 0.2


@dataclass(slots=True)
class Runtime:
    """A type's recent run time: an exponentially weighted moving average of its attempts."""

    average: float = 0.0
    samples: int = 0

    def add(self, seconds: float) -> None:
        self.samples += 1
        if self.samples == 1:
            self.average = seconds
        else:
            self.average += RUNTIME_WEIGHT * (seconds - self.average)


class Runtimes:
    """The run time of every type seen, and what pipelining it allows."""

    def __init__(self, pipeline_below: float) -> None:
        self._below = pipeline_below
        self._by_type: dict[str, Runtime] = {}

    def add(self, type_name: str, seconds: float) -> None:
        """An attempt of this type ran `seconds`."""
        self._get(type_name).add(seconds)

    def at_least(self, type_name: str, seconds: float) -> None:
        """An attempt of this type has run `seconds` and is still running: count the type as
        that long until later run times pull its average back down."""
        runtime = self._get(type_name)
        runtime.average = max(runtime.average, seconds)

    def is_short(self, type_name: str) -> bool:
        """Are attempts of this type pipelined?"""
        if self._below <= 0:
            return False
        runtime = self._by_type.get(type_name)
        return (
            runtime is not None
            and runtime.samples >= PIPELINE_SAMPLES
            and runtime.average <= self._below
        )

    def depth(self, type_name: str) -> int:
        """Attempts of this type a worker may hold per slot beyond its slots (0: none)."""
        if not self.is_short(type_name):
            return 0
        average = self._by_type[type_name].average
        if average <= 0:
            return PIPELINE_DEPTH
        # min() before int(): a tiny average (moving averages of 0 s run times shrink towards
        # the smallest float) makes the quotient infinite
        return max(1, int(min(PIPELINE_DEPTH, self._below / average)))

    def deepest(self, type_names: Iterable[str]) -> int:
        """The deepest pipelining of any of these types."""
        return max((self.depth(t) for t in type_names), default=0)

    def _get(self, type_name: str) -> Runtime:
        runtime = self._by_type.get(type_name)
        if runtime is None:  # (not setdefault: that would make a Runtime on every call)
            runtime = self._by_type[type_name] = Runtime()
        return runtime
