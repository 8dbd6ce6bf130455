"""The interpreter settings of `herder master` (herder.cli.tuning)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from herder.cli.tuning import FULL_COLLECTION_EVERY, tune_master_process


@pytest.fixture
def restored_gc() -> Iterator[tuple[int, int, int]]:
    thresholds = gc.get_threshold()
    yield thresholds
    gc.set_threshold(*thresholds)


def test_full_collections_come_rarely_and_young_ones_as_python_makes_them(
    restored_gc: tuple[int, int, int],
) -> None:
    tune_master_process()
    assert gc.get_threshold() == (*restored_gc[:2], FULL_COLLECTION_EVERY)
    assert restored_gc[2] < FULL_COLLECTION_EVERY


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_afterwards_are_still_collected() -> None:
    tune_master_process()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    collected: list[str] = []
    weakref.finalize(a, collected.append, "a")
    del a, b
    gc.collect(0)  # the youngest generation, collected as usual
    assert collected == ["a"]
