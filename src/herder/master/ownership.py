"""Each worker owns its attempts: a result, progress report or log line about an attempt counts
only from the worker the attempt was given to (its session, which outlives its connections),
and a hello claims back only attempts that were that worker's.

Anything else is refused: counted in herder_refused_worker_messages_total by kind, and logged
with the sender at most once per REFUSALS_LOG_EVERY seconds per sender (with the number refused
meanwhile), so that a flood of forged frames does not flood the log as well. A frame about an
attempt that is no longer current is not refused here: its handler drops it as stale. Imports
the scheduling core, `protocol.frames` and the master's `sessions` and `stats`.
"""

from __future__ import annotations

import logging
import time

from herder import scheduling as sch
from herder.master.sessions import WorkerSession
from herder.master.stats import Stats
from herder.protocol import frames

log = logging.getLogger(__name__)

#: seconds between two log lines about one sender's refused messages
REFUSALS_LOG_EVERY = 60.0


class Ownership:
    def __init__(self, sched: sch.Scheduler, stats: Stats) -> None:
        self._holder = sched.holder
        self._refused = stats.refused_messages

    def admits(self, session: WorkerSession, kind: str, ref: frames.AttemptRef) -> bool:
        """May `session` speak for the attempt `ref` names? Yes when it holds it, or when the
        attempt is no longer current (stale, its handler's to drop); otherwise it is refused."""
        holder = self._holder(ref.task_id, ref.index, ref.attempt)
        if holder is None or holder == session.id:
            return True
        self.refuse(session, kind, [ref])
        return False

    def refuse(self, session: WorkerSession, kind: str, refs: list[frames.AttemptRef]) -> None:
        """Count the messages of `kind` about `refs` that `session` may not send, and say so
        unless it was said for this sender a moment ago."""
        self._refused.inc(kind, amount=len(refs))
        session.refused_unlogged += len(refs)
        now = time.monotonic()
        if session.refusals_logged_at and now - session.refusals_logged_at < REFUSALS_LOG_EVERY:
            return
        first = refs[0]
        log.warning(
            "worker %s (%s): refused %d message(s) about attempts it does not hold, "
            "e.g. a %s about %s[%d] attempt %d",
            session.name, session.id, session.refused_unlogged, kind, first.task_id,
            first.index, first.attempt,
        )
        session.refusals_logged_at = now
        session.refused_unlogged = 0
