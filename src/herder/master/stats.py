"""What the master counts: Prometheus metrics, and the throughput history the dashboard draws.

Counters and histograms are updated where things happen; gauges (queue depth, workers, slots) are
read from the master's state when /metrics is scraped, so they cost nothing in between. Each
master has its own CollectorRegistry (no process-wide globals). Imports prometheus-client only.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

HISTORY_SECONDS = 600
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, float("inf"))
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, float("inf"))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 64, 256, 1024, float("inf"))


class Gauges:
    """The moment's figures, read at scrape time."""

    def __init__(
        self,
        queue_depth: Callable[[], dict[int, int]],
        workers: Callable[[], int],
        slots: Callable[[], tuple[int, int]],
        tasks_by_state: Callable[[], dict[str, int]],
        held_by_caps: Callable[[], dict[tuple[str, str], int]] = dict,
    ) -> None:
        self.queue_depth = queue_depth
        self.workers = workers
        self.slots = slots
        self.tasks_by_state = tasks_by_state
        #: ready subtasks a reached cap holds back, by (type, cap)
        self.held_by_caps = held_by_caps


class _GaugeCollector(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self._g = gauges

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "herder_queue_depth",
            "Ready subtasks waiting for a slot, by priority",
            labels=["priority"],
        )
        for priority, n in sorted(self._g.queue_depth().items()):
            depth.add_metric([str(priority)], n)
        yield depth
        yield GaugeMetricFamily(
            "herder_workers_connected", "Workers connected now", value=self._g.workers()
        )
        total, busy = self._g.slots()
        yield GaugeMetricFamily("herder_slots_total", "Slots of connected workers", value=total)
        yield GaugeMetricFamily("herder_slots_busy", "Slots running a subtask now", value=busy)
        unfinished = GaugeMetricFamily(
            "herder_tasks_unfinished", "Tasks not finished, by state", labels=["state"]
        )
        for state, n in sorted(self._g.tasks_by_state().items()):
            unfinished.add_metric([state], n)
        yield unfinished
        held = GaugeMetricFamily(
            "herder_subtasks_held_by_cap",
            "Ready subtasks that a reached concurrency cap holds back, by task type and cap "
            "(max_parallel: the task's own; max_running: its type's)",
            labels=["type", "cap"],
        )
        for (type_name, cap), n in sorted(self._g.held_by_caps().items()):
            held.add_metric([type_name, cap], n)
        yield held


class LoopHistogram(Collector):
    """A histogram observed on the event loop only, by one optional label.

    prometheus_client's Histogram takes a lock for its bucket and one for its sum on every
    observation, and there is one observation per dispatch and one per result
    (docs/decisions.md). Here an observation is a bisect and two additions, and the cumulative
    buckets are made when /metrics is scraped, in the same exposition format.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], label: str | None = None
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(b for b in buckets if b != float("inf"))
        self._les: list[str] = [
            floatToGoString(b) for b in [*self._bounds, float("inf")]  # type: ignore[no-untyped-call]
        ]
        self._label = label
        #: per label value: a count per bucket (the last one for +Inf), then the sum
        self._series: dict[str, list[float]] = {}
        if label is None:  # shown from the start, with zeros, as prometheus_client does
            self._series[""] = [0.0] * (len(self._bounds) + 2)

    def observe(self, value: float, label: str = "") -> None:
        series = self._series.get(label)
        if series is None:
            series = self._series[label] = [0.0] * (len(self._bounds) + 2)
        series[bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            self._name, self._documentation, labels=[self._label] if self._label else None
        )
        for label, series in self._series.items():
            buckets, total = [], 0.0
            for le, count in zip(self._les, series, strict=False):
                total += count
                buckets.append((le, total))
            family.add_metric([label] if self._label else [], buckets, series[-1])
        yield family


class LoopCounter(Collector):
    """A counter incremented on the event loop only, by zero or more labels.

    prometheus_client's Counter takes a lock on every increment (and `labels()` another, with a
    key built each time), and there are two increments per task (docs/decisions.md). Here an
    increment is a dict update, and the samples are made when /metrics is scraped, in the same
    exposition format.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        #: the count per tuple of label values
        self._counts: dict[tuple[str, ...], float] = {}
        if not labels:  # shown from the start, with a zero, as prometheus_client does
            self._counts[()] = 0.0

    def inc(self, *label_values: str, amount: float = 1) -> None:
        self._counts[label_values] = self._counts.get(label_values, 0.0) + amount

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for label_values, count in self._counts.items():
            family.add_metric(list(label_values), count)
        yield family


class Stats:
    def __init__(self, gauges: Gauges) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = LoopCounter(
            "herder_tasks_submitted", "Tasks accepted, by type", ["type"]
        )
        self.finished = LoopCounter(
            "herder_tasks_finished", "Tasks finished, by type and final state", ["type", "state"]
        )
        self.subtask_duration = LoopHistogram(
            "herder_subtask_duration_seconds", "Run time of successful subtask attempts, by type",
            DURATION_BUCKETS, label="type",
        )
        self.dispatch_latency = LoopHistogram(
            "herder_dispatch_latency_seconds", "Time from a subtask being ready to its dispatch",
            LATENCY_BUCKETS,
        )
        self.results_per_commit = LoopHistogram(
            "herder_results_per_commit", "Subtask results stored per transaction (group commit)",
            BATCH_BUCKETS,
        )
        self.retries = LoopCounter("herder_retries", "Failed attempts retried")
        self.lost_workers = LoopCounter(
            "herder_lost_workers", "Workers lost while holding attempts"
        )
        self.stale_messages = LoopCounter(
            "herder_stale_messages",
            "Messages about attempts that were no longer current, dropped",
        )
        self.refused_messages = LoopCounter(
            "herder_refused_worker_messages",
            "Worker messages about attempts the sender does not hold (result, progress, log) "
            "and attempts claimed in a hello that were not the sender's, refused; by kind",
            ["kind"],
        )
        for collector in (
            self.submitted, self.finished, self.retries, self.lost_workers, self.stale_messages,
            self.refused_messages,
            self.subtask_duration, self.dispatch_latency, self.results_per_commit,
        ):
            r.register(collector)
        r.register(_GaugeCollector(gauges))
        self._history: deque[list[int]] = deque(maxlen=HISTORY_SECONDS)

    def task_submitted(self, type_name: str) -> None:
        self.submitted.inc(type_name)

    def task_finished(self, type_name: str, state: str) -> None:
        self.finished.inc(type_name, state)

    def observe_duration(self, type_name: str, seconds: float) -> None:
        self.subtask_duration.observe(seconds, type_name)

    def subtask_finished(self, n: int = 1) -> None:
        second = int(time.time())
        if self._history and self._history[-1][0] == second:
            self._history[-1][1] += n
        else:
            self._history.append([second, n])

    def throughput(self) -> list[list[int]]:
        """[second, subtasks finished in it] for the last HISTORY_SECONDS, zeros filled in."""
        now = int(time.time())
        counts = {second: n for second, n in self._history}
        return [[s, counts.get(s, 0)] for s in range(now - HISTORY_SECONDS + 1, now + 1)]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
