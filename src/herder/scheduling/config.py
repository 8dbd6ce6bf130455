"""The scheduler core's settings: prefetch, pipelining of short work, retry backoff, and the
types' concurrency caps.

Imports only the stdlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: a worker hands back the attempts sent ahead to wait for its slots once every slot has run
#: its attempt this many times `pipeline_below` (what is pipelined is about `pipeline_below` of
#: work per slot): they wait behind attempts that overran
OVERRUN_FACTOR = 4.0


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    prefetch: int = 0
    #: pipelining: a worker whose held attempts are all of short types may hold, per slot, up to
    #: this many seconds of attempts of a short type waiting (at least one, at most
    #: PIPELINE_DEPTH), so that it starts the next one the moment one ends instead of a round
    #: trip later. A type is short when its attempts' average run time is at most this many
    #: seconds; 0 turns pipelining off. Priority inversion is bounded by it: work of a higher
    #: priority waits at most about this long per slot.
    pipeline_below: float = 0.0
    retry_backoff: float = 0.1
    retry_backoff_max: float = 30.0
    #: 0..1: a retry waits backoff * (1 - jitter/2 + jitter * random())
    retry_jitter: float = 0.5
    #: per task type, at most this many of its subtasks run at once across the cluster
    #: (TaskType.max_running); types not named have no cap
    max_running: Mapping[str, int] = field(default_factory=dict)

    @property
    def hand_back_after(self) -> float | None:
        """What workers are told (see OVERRUN_FACTOR); None with pipelining off: what waits on
        a worker then is what `prefetch` asked for."""
        return OVERRUN_FACTOR * self.pipeline_below if self.pipeline_below > 0 else None
