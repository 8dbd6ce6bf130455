"""The interpreter settings of `herder master` and `herder worker` (herder.cli.tuning)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from herder.cli.tuning import GC_THRESHOLDS, settle_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_what_exists_is_left_out_of_collections_and_full_ones_come_rarely() -> None:
    settle_garbage_collector()
    assert gc.get_freeze_count() > 1000  # the modules, classes and functions loaded so far
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[2] > 10 and GC_THRESHOLDS[:2] == (700, 10)


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_afterwards_are_still_collected() -> None:
    settle_garbage_collector()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    collected: list[str] = []
    weakref.finalize(a, collected.append, "a")
    del a, b
    gc.collect(0)  # the youngest generation, collected as usual
    assert collected == ["a"]
