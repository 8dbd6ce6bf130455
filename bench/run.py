"""The benchmark driver: herder and its peers, side by side, interleaved, repeated.

    python -m bench [--quick] [--repeats 3] [--systems herder,celery,huey,dask,ray,bare]
                    [--no-scale]

Each (system, repeat) is one trial: a child process (`bench.trial`, or `bench.scale` for the
scale workload) run with the interpreter of the system's virtualenv — herder's `.venv`, the
peers' `bench/.venv-peers` — that starts the system, runs the workloads, stops it and writes
JSON. `bare` is no system but W3's bound on this host in this run: its spins on 2 processes
that share a counter (`bench/systems/bare_sys.py`). Repeats are interleaved (each repeat runs
every system, starting one further along the list) so that a slow minute of the machine does
not fall on one system only. Every trial is
bounded in time; at its end, whatever happens, every process it started is stopped (found by
the marker in their environment). The summary — medians with min-max — is printed as markdown
and written to bench/results/latest.md and latest.json (latest-quick.* for --quick).

Imports `bench` only (stdlib); run it with herder's interpreter.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from bench import report, work
from bench.procstat import MARKER_ENV, kill_marked

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS_PYTHON = os.path.join(HERE, ".venv-peers", "bin", "python")
RESULTS = os.path.join(HERE, "results")
SYSTEMS = ("herder", "celery", "huey", "dask", "ray", "bare")
#: run with herder's interpreter (stdlib or herder only)
OWN_PYTHON = ("herder", "bare")
#: the spin's calibration is redone until a check of it is within this share of 4.9 ms, at most
#: CALIBRATIONS times
CALIBRATION_TOLERANCE = 0.03
CALIBRATIONS = 6
IMPORTS = {"celery": "celery, redis", "huey": "huey, redis", "dask": "distributed",
           "ray": "ray"}

FULL: dict[str, Any] = {"w1": 10_000, "w1split": 10_000, "w2": 300, "w3": 400,
        "scale_queued": "1000,10000,100000", "scale_connections": 500, "scale_procs": 4,
        "scale_window": 4.0, "trial_timeout": 900}
QUICK: dict[str, Any] = {"w1": 1_000, "w1split": 2_000, "w2": 50, "w3": 40,
         "scale_queued": "1000,10000", "scale_connections": 100, "scale_procs": 2,
         "scale_window": 1.0, "trial_timeout": 120}


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 1024 / 1024
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg()}


def peer_problem(system: str) -> str | None:
    """Why a peer cannot run here, or None."""
    if not os.path.exists(PEERS_PYTHON):
        return "peers venv missing (run `make bench`)"
    if system in ("celery", "huey") and not (os.path.exists("/usr/bin/redis-server")
                                             or _which("redis-server")):
        return "redis-server not installed"
    probe = subprocess.run([PEERS_PYTHON, "-c", f"import {IMPORTS[system]}"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"not installed ({last[:60]})"
    return None


def _which(name: str) -> str | None:
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


class Runner:
    """Runs trials one at a time; `current` is stopped on Ctrl-C or a timeout."""

    def __init__(self, logdir: str, timeout: float) -> None:
        self.logdir = logdir
        self.timeout = timeout
        self.current: tuple[subprocess.Popen[bytes], str] | None = None

    def run(self, label: str, module: str, python: str, args: list[str]) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        out = os.path.join(self.logdir, f"{label}.json")
        log = os.path.join(self.logdir, f"{label}.log")
        env = {**os.environ, MARKER_ENV: run_id,
               "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "src")]),
               "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        t0 = time.monotonic()
        with open(log, "wb") as logf:
            proc = subprocess.Popen([python, "-m", module, "--out", out, "--run-id", run_id,
                                     *args], cwd=ROOT, env=env, stdout=logf,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            self.current = (proc, run_id)
            try:
                proc.wait(self.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                self.stop_current()
        result: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError), open(out) as f:
            result = json.load(f)
        if timed_out:
            result["error"] = f"timed out after {self.timeout:.0f} s"
        elif not result:
            result = {"error": f"no result (exit code {proc.returncode}); see {log}"}
        result["trial_seconds"] = time.monotonic() - t0
        result["log"] = log
        result["run_id"] = run_id
        return result

    def stop_current(self) -> None:
        if self.current is None:
            return
        proc, run_id = self.current
        self.current = None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        kill_marked(run_id)  # whatever the trial left behind, wherever it went


def trial_args(system: str, sizes: dict[str, Any], loops: int, start: bool) -> list[str]:
    args = [system, "--w1", str(sizes["w1"]), "--w2", str(sizes["w2"]),
            "--w3", str(sizes["w3"]), "--loops", str(loops)]
    if system == "herder":
        args += ["--w1split", str(sizes["w1split"])]
        if start:
            args.append("--start")
    return args


def plan(systems: list[str], repeats: int, scale: bool) -> list[tuple[int, str]]:
    """(repeat, system) in the order to run: each repeat rotates the list by one."""
    kinds = [*systems, *(["herder-scale"] if scale else [])]
    order = []
    for r in range(repeats):
        k = r % len(kinds)
        order += [(r, s) for s in kinds[k:] + kinds[:k]]
    return order


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    systems = doc["systems"]
    parts = [
        f"# herder benchmark — {doc['when']}{' (quick)' if doc['quick'] else ''}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {m['loadavg_at_start'][0]:.2f}, at end "
        f"{m.get('loadavg_at_end', [0])[0]:.2f}. {doc['repeats']} repeat(s), medians with "
        "(min-max). `spin` calibrated to "
        f"{doc['loops']:,} loops = {doc['spin_ms']:.2f} ms here.",
        "",
        report.main_table(doc["summary"], systems, doc["sizes"]),
        "",
    ]
    if doc.get("scale") is not None:
        parts += ["Scale (herder; simulated workers, 1 slot each, that answer at once):", "",
                  report.scale_table(doc["scale"]), ""]
    parts += ["Targets of issue 5:", "", report.targets_table(doc["summary"], doc["scale"] or {}),
              ""]
    bound = report.w3_bound(doc["summary"])
    if bound:
        parts += [bound, ""]
    problems = [(s, p) for s in systems for p in doc["summary"].get(s, {}).get("problems", [])]
    if problems:
        parts += ["Problems:", ""] + [f"- {report.TITLES[s]}: {str(p).splitlines()[0]}"
                                      for s, p in problems] + [""]
    return "\n".join(parts)


def compile_herder() -> None:
    """Byte-compile herder's sources, as pip did the peers' packages when it installed them.
    herder is installed editable, so its bytecode is written on first import, or never where
    PYTHONDONTWRITEBYTECODE is set (as in the shells of this project's machines): then every
    process of a trial compiled ~60 modules at its start (~0.1 s of `herder up`'s)."""
    spec = importlib.util.find_spec("herder")
    for where in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(where, quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="herder (and W3's bound) alone, small sizes, one repeat "
                        "(under a minute)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--systems", help="comma-separated, of " + ",".join(SYSTEMS))
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--out", default=RESULTS, help="directory of latest.md / latest.json")
    args = parser.parse_args(argv)
    # Ctrl-C, and SIGTERM alike, stop the current trial with all its processes (even when
    # started with SIGINT ignored, as a shell does for a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    compile_herder()
    systems = (args.systems.split(",") if args.systems else
               ["herder", "bare"] if args.quick else list(SYSTEMS))
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"--systems: unknown system {s!r}")
    # The host's speed moves within seconds: a count calibrated in a fast moment and checked in
    # a slow one (7.05 ms for 4.9 once) is calibrated again, up to CALIBRATIONS times, and the
    # count whose check came closest to 4.9 ms is kept. Every system runs the same count, but
    # W3's ideal is the issue's 0.975 s: a spin 7 % too long (5.24 ms, accepted once within the
    # earlier 10 %) took 7 % off every system's efficiency and its bound's.
    tries: list[tuple[float, int, float]] = []
    for _ in range(CALIBRATIONS):
        loops = work.calibrate()
        spin_ms = work.spin_seconds(loops) * 1000
        tries.append((abs(spin_ms / (work.TARGET_SECONDS * 1000) - 1), loops, spin_ms))
        if tries[-1][0] <= CALIBRATION_TOLERANCE:
            break
        print(f"bench: spin calibrated to {spin_ms:.2f} ms, not 4.9: again", flush=True)
    _, loops, spin_ms = min(tries)
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"bench: spin calibrated to {loops:,} loops = {spin_ms:.2f} ms; "
          f"{repeats} repeat(s) of {', '.join(systems)}", flush=True)
    unavailable = {s: p for s in systems if s not in OWN_PYTHON and (p := peer_problem(s))}
    for s, p in unavailable.items():
        print(f"bench: {s}: n/a: {p}", flush=True)
    logdir = tempfile.mkdtemp(prefix="herder-bench-")
    runner = Runner(logdir, sizes["trial_timeout"])
    trials: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for s, p in unavailable.items():
        trials[s].append({"system": s, "unavailable": p})
    scale_runs: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"when": when, "quick": args.quick, "repeats": repeats,
                           "systems": systems, "sizes": sizes, "loops": loops,
                           "spin_ms": spin_ms, "machine": machine(), "logs": logdir}
    try:
        for r, s in plan([s for s in systems if s not in unavailable], repeats,
                         "herder" in systems and not args.no_scale):
            label = f"{s}-{r + 1}"
            print(f"bench: [{label}] ...", end=" ", flush=True)
            if s == "herder-scale":
                result = runner.run(label, "bench.scale", sys.executable, [
                    "--queued", sizes["scale_queued"],
                    "--connections", str(sizes["scale_connections"]),
                    "--procs", str(sizes["scale_procs"]),
                    "--window", str(sizes["scale_window"])])
                scale_runs.append(result)
            else:
                python = sys.executable if s in OWN_PYTHON else PEERS_PYTHON
                result = runner.run(label, "bench.trial", python,
                                    trial_args(s, sizes, loops, start=True))
                trials[s].append(result)
            status = result.get("error") or result.get("unavailable") or "ok"
            print(f"{result['trial_seconds']:.0f} s, {str(status).splitlines()[0][:100]}",
                  flush=True)
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping the current trial", flush=True)
        runner.stop_current()
        return 130
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    doc["summary"] = report.summarize(trials)
    doc["scale"] = report.summarize_scale(scale_runs) if scale_runs else None
    doc["trials"] = trials
    doc["scale_runs"] = scale_runs
    text = render(doc)
    print("\n" + text)
    # a quick run does not replace the full run's record
    name = "latest-quick" if args.quick else "latest"
    write(os.path.join(args.out, f"{name}.md"), text)
    write(os.path.join(args.out, f"{name}.json"), json.dumps(doc, indent=1, default=str))
    print(f"bench: wrote {os.path.join(args.out, name)}.md and .json; trial logs in {logdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
