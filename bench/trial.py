"""One trial: start one system, run the workloads on it (each after a warm-up), measure wall time
and CPU per role, stop it, and write the results as JSON. The driver (`bench.run`) runs each
trial in its own process, with the interpreter of the system's virtualenv.

    python -m bench.trial SYSTEM --out FILE --run-id ID [--w1 N] [--w1split N] [--w2 N]
                          [--w3 PARTS --loops L] [--start]

Stdlib only, apart from the system's own module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import statistics
import sys
import time
import traceback
from typing import Any

from bench import work
from bench.procstat import MARKER_ENV, CpuMeter
from bench.systems.base import System, Unavailable

#: spins timed (the fastest kept) before and after W3's window
SPIN_ROUNDS = 10

MODULES = {
    "herder": "bench.systems.herder_sys",
    "celery": "bench.systems.celery_sys",
    "huey": "bench.systems.huey_sys",
    "dask": "bench.systems.dask_sys",
    "ray": "bench.systems.ray_sys",
    "bare": "bench.systems.bare_sys",
}


def load(name: str) -> System:
    try:
        module = importlib.import_module(MODULES[name])
    except ImportError as exc:
        raise Unavailable(f"not installed ({exc.name or exc})") from None
    system: System = module.System()
    return system


def _timed(meter: CpuMeter, fn: Any, *args: Any) -> tuple[float, dict[str, float], Any]:
    meter.start()
    t0 = time.perf_counter()
    value = fn(*args)
    seconds = time.perf_counter() - t0
    return seconds, meter.stop(), value


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run(system: System, args: argparse.Namespace, out: dict[str, Any]) -> None:
    meter = CpuMeter(args.run_id, system.classify)
    if args.w1 and "w1" in system.workloads:
        system.w1(max(50, args.w1 // 20))
        seconds, cpu, _ = _timed(meter, system.w1, args.w1)
        out["w1"] = {"n": args.w1, "seconds": seconds, "cpu": cpu, "processes": meter.detail}
    if args.w1split and "w1split" in system.workloads:
        system.w1_split(max(50, args.w1split // 20))
        seconds, cpu, _ = _timed(meter, system.w1_split, args.w1split)
        out["w1split"] = {"n": args.w1split, "seconds": seconds, "cpu": cpu}
    if args.w2 and "w2" in system.workloads:
        for _ in range(20):
            system.w2_once()
        samples = []
        meter.start()
        for _ in range(args.w2):
            t0 = time.perf_counter()
            system.w2_once()
            samples.append((time.perf_counter() - t0) * 1000)
        cpu = meter.stop()
        out["w2"] = {"n": args.w2, "samples_ms": samples, "cpu": cpu,
                     "p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99),
                     "mean_ms": statistics.fmean(samples)}
    if args.w3 and "w3" in system.workloads:
        system.w3(8, args.loops)
        # What one spin takes alone now, just before and just after the window: the host's
        # speed moves by up to 1.7x between runs (55,678 and 88,216 loops were both 4.9 ms at
        # calibration, a few minutes apart), so the fixed ideal says as much of it as of
        # the system; W3's figures against these timings say what the system did with the host.
        spin_before = work.spin_seconds(args.loops, SPIN_ROUNDS)
        worked_before = system.seconds_worked()
        seconds, cpu, total = _timed(meter, system.w3, args.w3, args.loops)
        worked_after = system.seconds_worked()
        spin_after = work.spin_seconds(args.loops, SPIN_ROUNDS)
        expected = args.w3 * work.spin(args.loops)
        if total != expected:
            raise RuntimeError(f"w3: sum {total} != expected {expected}")
        out["w3"] = {"parts": args.w3, "loops": args.loops, "seconds": seconds, "cpu": cpu,
                     "spin_seconds": (spin_before + spin_after) / 2}
        if worked_before is not None and worked_after is not None:
            out["w3"]["worked"] = worked_after - worked_before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trial")
    parser.add_argument("system", choices=sorted(MODULES))
    parser.add_argument("--out", required=True)
    parser.add_argument("--run-id", default=os.environ.get(MARKER_ENV, ""))
    parser.add_argument("--w1", type=int, default=0)
    parser.add_argument("--w1split", type=int, default=0)
    parser.add_argument("--w2", type=int, default=0)
    parser.add_argument("--w3", type=int, default=0)
    parser.add_argument("--loops", type=int, default=0)
    parser.add_argument("--start", action="store_true", help="herder: measure `herder up`")
    args = parser.parse_args(argv)
    if not args.run_id:
        parser.error(f"--run-id (or {MARKER_ENV}) is required: it marks this trial's processes")
    os.environ[MARKER_ENV] = args.run_id
    # SIGTERM from the driver (timeout, Ctrl-C) unwinds like Ctrl-C: the system is stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    out: dict[str, Any] = {"system": args.system, "python": sys.version.split()[0]}
    system: System | None = None
    try:
        if args.start:
            from bench.systems.herder_sys import measure_start

            out["start"] = {"seconds": measure_start()}
        system = load(args.system)
        out["version"] = system.version()
        system.start()
        run(system, args, out)
    except Unavailable as exc:
        out["unavailable"] = str(exc)
    except BaseException as exc:  # reported, then the system is stopped all the same
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
    finally:
        if system is not None:
            try:
                system.stop()
            except Exception as exc:
                out.setdefault("error", f"stop: {type(exc).__name__}: {exc}")
            # the system's store and logs: kept when something went wrong, to read them
            if "error" in out:
                out["workdir"] = system.dir
            else:
                shutil.rmtree(system.dir, ignore_errors=True)
        with open(args.out, "w") as f:
            json.dump(out, f)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    raise SystemExit(main())
