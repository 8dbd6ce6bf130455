"""Before → after of one change: W1, W1-split and W2 (`bench.w1_quick`) of an earlier commit and
of the working tree, in pairs that alternate which of the two runs first:

    .venv/bin/python -m bench.ab BASE [--reps 6] [--tasks 5000] [--parts 1000] [--rounds 300]
                                      [--slots 1] [--together]

BASE is any commit (`HEAD~1`, a hash); it is checked out in a temporary `git worktree`, and its
herder runs with this tree's `bench.w1_quick` (PYTHONPATH puts its sources first, so the client,
master and workers are all its own). Prints, per workload and figure, the medians with
(min-max) and in how many pairs the working tree did better.

Why alternate: this host's speed drifts within minutes, so the half of a sequence of pairs
that runs in a faster stretch favours whichever system runs there; pairs that always ran the new
code first gave contradictory answers (docs/decisions.md, "Benchmark method").

`--together` runs the two of a pair at the same time instead, each on its own cluster (start
order still alternating): both see the same drift, so their CPU per item compares within a
pair even when the drift is larger than the change (the same code's master CPU per W1 task
moved by a third between pairs run one after the other). Only the CPU figures
mean something then: rates and latencies are those of two systems sharing the cores (use
`--rounds 0`). Imports `bench.w1_quick`'s output only (stdlib).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: a figure, whether more is better, and its unit (a workload has those it measures)
FIGURES = (
    ("rate", True, " /s"), ("p50", False, " ms"), ("p99", False, " ms"),
    ("client", False, " µs"), ("master", False, " µs"), ("workers", False, " µs"),
)


def run_pair(trees: list[Path], args: argparse.Namespace) -> dict[Path, dict[str, Any]]:
    """`bench.w1_quick` against the herder of each tree, in this order, one after the other or
    (`--together`) at the same time; the figures of each."""
    if not args.together:
        return {tree: _figures(tree, _start(tree, args), args) for tree in trees}
    started = [(tree, _start(tree, args)) for tree in trees]
    return {tree: _figures(tree, proc, args) for tree, proc in started}


def _start(tree: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.w1_quick", "--json", "--slots", str(args.slots),
         "--tasks", str(args.tasks), "--parts", str(args.parts), "--rounds", str(args.rounds)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _figures(
    tree: Path, proc: subprocess.Popen[str], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SystemExit(f"bench.ab: w1_quick on {tree} took over {args.timeout} s") from None
    if proc.returncode != 0:
        raise SystemExit(f"bench.ab: w1_quick on {tree} failed:\n{err[-2000:]}")
    figures: dict[str, dict[str, float]] = json.loads(out.strip().splitlines()[-1])
    return figures


def summarize(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """A markdown table of (base, new) pairs of w1_quick's figures."""
    lines = ["| workload | figure | base | working tree | pairs better |", "| --- " * 5 + "|"]
    for workload in pairs[0][0]:
        for figure, more_is_better, unit in FIGURES:
            if figure not in pairs[0][0][workload]:
                continue
            base = [b[workload][figure] for b, _ in pairs]
            new = [n[workload][figure] for _, n in pairs]
            won = [(n > b) if more_is_better else (n < b) for b, n in zip(base, new, strict=True)]
            digits = 2 if unit == " ms" else 0
            lines.append(
                f"| {workload} | {figure}{unit} | {_spread(base, digits)} "
                f"| {_spread(new, digits)} | {sum(won)} of {len(pairs)} |"
            )
    return "\n".join(lines)


def _spread(values: list[float], digits: int = 0) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("base", help="the commit to compare the working tree with")
    parser.add_argument("--reps", type=int, default=6, help="pairs (default 6)")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--parts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300, help="W2 round trips (0: none)")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--together", action="store_true",
                        help="run the two of a pair at the same time (compare their CPU only)")
    args = parser.parse_args(argv)
    where = Path(tempfile.mkdtemp(prefix="herder-ab-")) / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(where), args.base],
                   cwd=ROOT, check=True, capture_output=True)
    try:
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for rep in range(args.reps):
            order = [where, ROOT] if rep % 2 == 0 else [ROOT, where]
            got = run_pair(order, args)
            pairs.append((got[where], got[ROOT]))
            print(f"bench.ab: pair {rep + 1} of {args.reps} ({'base' if rep % 2 == 0 else 'new'} "
                  f"first): W1 {got[where]['W1']['rate']:,.0f} -> {got[ROOT]['W1']['rate']:,.0f} "
                  "tasks/s", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)],
                       cwd=ROOT, capture_output=True)
    print(summarize(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
