"""The master: its parts built and wired together, started and stopped, and the workers' frames
routed to the part that handles each.

The parts, each with one job: `Submissions` take tasks in, `Results` commit the workers'
results, `Aggregation` ends the tasks whose subtasks all succeeded, `Tasks` keeps the active
tasks and ends them, `Membership` keeps the workers and their leases, `Ownership` lets a worker
speak only for its own attempts, `LiveEvents` publishes what
followers see, `Schedules` fires the scheduled tasks, `Reads` answers the API's reads and
`Streams` its live streams. The scheduling
core decides; the `Dispatcher` carries out its decisions; `Records` is the one way to the store.
Everything runs on the event loop. The HTTP layer holds a `Master` and calls its parts.

Imports `config`, `errors`, `protocol.frames`, `store.base`, `tasktype`, the scheduling core and
the master's parts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

from herder import scheduling as sch
from herder.config import MasterSettings
from herder.errors import HerderError
from herder.master.aggregation import Aggregation
from herder.master.background import Background
from herder.master.coderunner import CodeRunner
from herder.master.dispatch import Dispatcher
from herder.master.events import Hub
from herder.master.follow import Streams
from herder.master.live import ActiveTask, KeptResults
from herder.master.liveevents import LiveEvents
from herder.master.membership import Membership
from herder.master.ownership import Ownership
from herder.master.reads import Reads, count_by_state, slots_in_use
from herder.master.records import Records
from herder.master.recovery import Recovery
from herder.master.results import Results
from herder.master.retention import Retention
from herder.master.schedules import Schedules
from herder.master.sessions import WorkerSession
from herder.master.stats import Gauges, Stats
from herder.master.submissions import Submissions
from herder.master.taskcode import TaskCode
from herder.master.tasks import Tasks
from herder.protocol import frames
from herder.store.base import Store
from herder.tasktype import Registry

#: how often running subtasks are checked for stragglers
SPECULATE_EVERY = 0.5

log = logging.getLogger(__name__)


class Master:
    def __init__(
        self,
        settings: MasterSettings,
        store: Store,
        registry: Registry,
        in_office: Callable[[], bool] = lambda: True,
    ) -> None:
        """`in_office`: whether this master may dispatch now (False once its leadership may
        have ended: `master.seat`)."""
        self.settings = settings
        self.registry = registry
        sched = sch.Scheduler(
            sch.SchedulerConfig(
                prefetch=settings.prefetch,
                pipeline_below=settings.pipeline_below,
                retry_backoff=settings.retry_backoff,
                retry_backoff_max=settings.retry_backoff_max,
                max_running={
                    t.name: t.max_running for t in registry if t.max_running is not None
                },
            ),
            seed=int(time.time()),
        )
        self._sched = sched
        active: dict[str, ActiveTask] = {}
        #: the connected workers (and those within their lease), by session id
        self.sessions: dict[str, WorkerSession] = {}
        hub = Hub()
        self.records = Records(store, hub.publish, settings.max_logs_per_task)
        self.stats = Stats(
            Gauges(
                queue_depth=sched.queue_depth,
                workers=self.sessions.__len__,
                slots=partial(slots_in_use, self.sessions, sched),
                tasks_by_state=partial(count_by_state, active),
                held_by_caps=sched.held_by_caps,
            )
        )
        self.background = Background()
        dispatcher = Dispatcher(
            sched, registry, active, self.sessions, self.records, self.stats, in_office
        )
        self._dispatcher = dispatcher
        self.live = LiveEvents(hub, self.records, active, sched, self.stats)
        kept = KeptResults(settings.results_in_memory)
        self.tasks = Tasks(
            settings.max_pending, settings.max_pending_subtasks, sched, active, self.records,
            self.live, kept, dispatcher, self.stats,
        )
        self._code = TaskCode(
            CodeRunner(settings.split_timeout), self.tasks.fail, self.background
        )
        aggregation = Aggregation(
            registry, self.records, self.tasks, self._code, kept, self.live, self.background
        )
        # The loop closes here: a task the core completes is aggregated, and its end (in
        # `tasks`) goes back to the core through the dispatcher.
        dispatcher.complete = aggregation.start
        self.results = Results(
            sched, active, self.records, dispatcher, self.live, kept, self.stats,
            self.tasks.fail, self.background,
        )
        self.submissions = Submissions(
            registry, sched, self.records, self.tasks, self._code, dispatcher, self.live,
            self.background, settings,
        )
        self.schedules = Schedules(self.records, self.submissions, self.tasks)
        self._recovery = Recovery(
            registry, self.records, self.tasks, self.submissions, aggregation, dispatcher,
            settings.lease_timeout,
        )
        ownership = Ownership(sched, self.stats)
        self.members = Membership(
            settings, sched, self.sessions, frozenset(registry.names()), dispatcher, self.stats,
            ownership,
        )
        self.retention = Retention(settings.keep_finished, self.records, self.tasks)
        self.reads = Reads(self.records, self.tasks, self.sessions, sched, self.stats)
        self.streams = Streams(hub, self.tasks, self.reads)
        # bound once: one of them per frame
        self._on_result = self.results.on_result
        self._on_progress = self.live.on_progress
        self._admits = ownership.admits
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Take up the tasks left unfinished in the store, then start the watches."""
        await self._recovery.recover()
        await self.schedules.load()  # after recovery: a previous task still running is known
        self._loops = [
            asyncio.create_task(self.schedules.run()),
            asyncio.create_task(self.members.watch_leases()),
            asyncio.create_task(self.live.publish_progress()),
            asyncio.create_task(self.retention.prune()),
        ]
        cfg = self.settings
        if cfg.speculate_factor is not None or cfg.speculate_after is not None:
            self._loops.append(
                asyncio.create_task(
                    self._dispatcher.speculate(
                        SPECULATE_EVERY, cfg.speculate_factor, cfg.speculate_after,
                        cfg.speculate_min,
                    )
                )
            )

    async def stop(self) -> None:
        for loop_task in self._loops:
            loop_task.cancel()
        self.submissions.close()
        for session in list(self.sessions.values()):
            session.close("master shutting down")
        self._code.shutdown()
        await self.records.close()

    async def on_frame(self, session: WorkerSession, frame: frames.WorkerFrame) -> None:
        """A frame from a worker, to the part that handles its kind; one about an attempt that
        is another worker's goes nowhere (`Ownership`)."""
        session.last_seen = time.monotonic()
        match frame:
            case frames.Heartbeat():
                self.members.heartbeat(session, frame)
            case frames.ProgressFrame():
                if self._admits(session, "progress", frame):
                    self._on_progress(frame)
            case frames.LogFrame():
                if self._admits(session, "log", frame):
                    self.live.on_log(session, frame)
            case frames.ResultFrame():
                if self._admits(session, "result", frame):
                    self._on_result(session, frame)
            case frames.Drain():
                self.members.draining(session)
            case frames.Hello():
                raise HerderError("hello: sent twice on one connection")

    def undeliverable(self, session: WorkerSession, frame: frames.Encodable, why: str) -> None:
        """A frame for `session` that no message can carry: an assign's attempt fails for good
        (its part cannot reach any worker), as if the worker had said so; anything else is
        logged."""
        if isinstance(frame, dict) and frame["t"] == "assign":
            index = frame["index"]
            error = (
                f"PartTooLarge: the part of subtask {index} cannot be sent to a worker: {why} "
                f"(see docs/limits.md)"
            )
            self._on_result(session, frames.ResultFrame(
                task_id=frame["task_id"], index=index, attempt=frame["attempt"],
                outcome="too_large", error=error,
            ))
            return
        kind = frame["t"] if isinstance(frame, dict) else frame.t
        log.error("worker %s: a %s frame is not sent: %s", session.name, kind, why)
