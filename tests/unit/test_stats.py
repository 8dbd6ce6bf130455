"""The master's own histogram and counter expose what prometheus_client's would, for the same
observations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from herder.master.stats import DURATION_BUCKETS, LoopCounter, LoopHistogram

values = st.floats(min_value=0, max_value=4000, allow_nan=False)


def _lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    # prometheus_client's own histogram also says when each series was created
    return [line for line in text.splitlines() if "_created" not in line]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), values), max_size=40))
def test_the_exposition_equals_prometheus_clients(observations: list[tuple[str, float]]) -> None:
    # bucket bounds themselves, where "less than or equal" matters, are drawn often
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Histogram("h_seconds", "doc", ["type"], buckets=DURATION_BUCKETS,
                       registry=theirs_registry)
    ours = LoopHistogram("h_seconds", "doc", DURATION_BUCKETS, label="type")
    ours_registry.register(ours)
    for label, value in observations:
        theirs.labels(label).observe(value)
        ours.observe(value, label)
    assert _lines(ours_registry) == _lines(theirs_registry)


@given(st.lists(st.sampled_from([0.0, *DURATION_BUCKETS[:-1]]) | values, max_size=20))
def test_an_unlabelled_histogram_too(observations: list[float]) -> None:
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Histogram("h_seconds", "doc", buckets=DURATION_BUCKETS, registry=theirs_registry)
    ours = LoopHistogram("h_seconds", "doc", DURATION_BUCKETS)
    ours_registry.register(ours)
    for value in observations:
        theirs.observe(value)
        ours.observe(value)
    assert _lines(ours_registry) == _lines(theirs_registry)


@given(st.lists(st.tuples(st.sampled_from(["noop", "sleep"]), st.sampled_from(["a", "b"])),
                max_size=30))
def test_a_counter_exposes_what_prometheus_clients_does(incs: list[tuple[str, str]]) -> None:
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Counter("tasks", "doc", ["type", "state"], registry=theirs_registry)
    theirs_plain = Counter("retries", "doc", registry=theirs_registry)
    ours, ours_plain = LoopCounter("tasks", "doc", ["type", "state"]), LoopCounter("retries", "doc")
    ours_registry.register(ours)
    ours_registry.register(ours_plain)
    for type_name, state in incs:
        theirs.labels(type_name, state).inc()
        ours.inc(type_name, state)
        if state == "b":
            theirs_plain.inc()
            ours_plain.inc()
    # (the unlabelled one is shown, at zero, before any increment)
    assert _lines(ours_registry) == _lines(theirs_registry)
