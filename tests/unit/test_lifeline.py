"""The child's side of the lifeline when there is none to watch (the watch itself, with real
processes, is in tests/integration/test_orphans.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from herder.lifeline import LIFELINE_ENV, Lifeline, watch_parent


def test_no_lifeline_no_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIFELINE_ENV, raising=False)
    assert watch_parent() is False


@pytest.mark.parametrize("value", ["not-a-number", "regular-file"])
def test_a_lifeline_that_is_no_pipe_is_named_and_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path,
    value: str,
) -> None:
    with (tmp_path / "f").open("w") as f:
        named = str(f.fileno()) if value == "regular-file" else value
        monkeypatch.setenv(LIFELINE_ENV, named)
        with caplog.at_level(logging.WARNING, "herder.lifeline"):
            assert watch_parent() is False
    assert f"{LIFELINE_ENV}={named} is not an open pipe" in caplog.text
    assert LIFELINE_ENV not in os.environ  # not handed on to our children


def test_close_closes_both_ends_once() -> None:
    lifeline = Lifeline()
    lifeline.close()
    for fd in (lifeline.read_fd, lifeline.write_fd):
        with pytest.raises(OSError):
            os.fstat(fd)
    lifeline.close()  # a second close does not raise (nor close what reused the numbers)
