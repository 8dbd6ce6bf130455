"""`ForkedProcess`: a program handed in, run in a forked child, with the Popen API LocalCluster
uses.

The children run the real `herder` CLI, as `herder up` hands it in; `herder up`'s own test
(integration/test_cli.py) runs a whole forked cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from herder.cli import app
from herder.forked import ForkedProcess


def run_cli(args: Sequence[str]) -> int:
    app(args=list(args), prog_name="herder")
    return 0


def test_a_child_runs_the_cli_with_its_env_and_output(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        child = ForkedProcess(run_cli, ["--help"], {**os.environ, "COLUMNS": "200"}, f.fileno())
        assert child.wait(timeout=30) == 0
    assert child.poll() == 0
    assert "Usage: herder" in out.read_text()


def test_its_exit_code_is_the_cli_s(tmp_path: Path) -> None:
    with open(tmp_path / "out.txt", "wb") as f:
        child = ForkedProcess(run_cli, ["no-such-command"], dict(os.environ), f.fileno())
        assert child.wait(timeout=30) == 2  # click's usage error
    assert "No such command" in (tmp_path / "out.txt").read_text()


def test_wait_times_out_and_signals_reach_the_child(tmp_path: Path) -> None:
    # a worker whose master never answers runs until it is stopped
    args = ["worker", "--master", "http://127.0.0.1:9", "--log-level", "error"]
    with open(tmp_path / "out.txt", "wb") as f:
        child = ForkedProcess(run_cli, args, dict(os.environ), f.fileno())
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.3)
        assert child.poll() is None
        assert os.getpgid(child.pid) == child.pid  # its own process group, as Popen's
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
        child.send_signal(signal.SIGTERM)  # a signal to an exited child is a no-op
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)


def test_the_program_s_return_value_is_the_exit_code(tmp_path: Path) -> None:
    def program(args: Sequence[str]) -> int:
        print("ran", *args)
        return 7

    with open(tmp_path / "out.txt", "wb") as f:
        child = ForkedProcess(program, ["a", "b"], dict(os.environ), f.fileno())
        assert child.wait(timeout=30) == 7
    assert (tmp_path / "out.txt").read_text() == "ran a b\n"
