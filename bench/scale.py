"""The scale workload (herder only): dispatch throughput with Q subtasks queued and C worker
connections, for Q = 1k / 10k / 100k; the master's CPU per dispatch and its memory.

The workers are simulated: a few processes, each holding many WebSocket connections that speak
herder's worker protocol (hello with uid/slots/types; every assign answered at once with an ok
result frame; heartbeats; acks ignored), so that the master, not the workers, is what is
measured. The queue is held near Q: the tasks are `bench_split` of PART no-op subtasks, and a
top-up thread submits more as results go back. Over a window in the steady state this measures
subtasks completed per second and the master's CPU per subtask (one dispatch, its result, and
the task's share of submit/split/aggregate).

    python -m bench.scale --out FILE --run-id ID [--queued 1000,10000,100000]
                          [--connections 500] [--procs 4] [--window 4]

Imports herder, websockets, msgpack and `bench` (herder's virtualenv).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import msgpack
import websockets

from bench.procstat import MARKER_ENV, own_cpu, rss_mib
from bench.procstat import _stat as proc_stat
from bench.systems.base import workdir
from herder import Client, LocalCluster
from herder.protocol import paths

PART = 100  # subtasks per top-up task
BATCH = 10_000


# -- the simulated workers (child processes) ----------------------------------------------------


def _sim_main(url: str, token: str, conns: int, prefix: str, done: Synchronized[int],
              connected: Synchronized[int]) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(_sim(url, token, conns, prefix, done, connected))


async def _sim(url: str, token: str, conns: int, prefix: str, done: Synchronized[int],
               connected: Synchronized[int]) -> None:
    ws_url = url.replace("http://", "ws://") + paths.WORKER_CHANNEL
    await asyncio.gather(*(_connection(ws_url, token, f"{prefix}-{i}", done, connected)
                           for i in range(conns)))


async def _connection(ws_url: str, token: str, name: str, done: Synchronized[int],
                      connected: Synchronized[int]) -> None:
    hello = {"t": "hello", "version": 1, "name": name, "slots": 1, "types": ["bench_split"],
             "uid": uuid.uuid4().hex}
    for _ in range(50):  # connecting 500 at once may meet a full accept backlog: retry
        try:
            ws = await websockets.connect(
                ws_url, compression=None, max_size=2**24, open_timeout=30,
                additional_headers={"Authorization": f"Bearer {token}"})
            break
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            await asyncio.sleep(0.1)
    else:
        return
    beat: asyncio.Task[None] | None = None
    try:
        await ws.send(msgpack.packb(hello))
        async for raw in ws:
            obj = msgpack.unpackb(raw if isinstance(raw, bytes) else raw.encode())
            frames = obj if isinstance(obj, list) else [obj]
            results = []
            for f in frames:
                kind = f.get("t")
                if kind == "assign":
                    results.append({"t": "result", "task_id": f["task_id"], "index": f["index"],
                                    "attempt": f["attempt"], "outcome": "ok", "result": None,
                                    "duration": 0.0})
                elif kind == "welcome" and beat is None:
                    connected.value += 1
                    beat = asyncio.create_task(_beat(ws, float(f.get("heartbeat", 1.0))))
            if results:
                await ws.send(msgpack.packb(results if len(results) > 1 else results[0]))
                done.value += len(results)
    except websockets.ConnectionClosed:
        pass
    finally:
        if beat is not None:
            beat.cancel()


async def _beat(ws: Any, interval: float) -> None:
    frame = msgpack.packb({"t": "heartbeat"})
    while True:
        await asyncio.sleep(interval)
        await ws.send(frame)


class Sims:
    """`procs` processes holding `conns` connections in all, with the master's worker token."""

    def __init__(self, url: str, token: str, conns: int, procs: int) -> None:
        ctx = mp.get_context("spawn")
        self.done = [ctx.Value("q", 0, lock=False) for _ in range(procs)]
        self.connected = [ctx.Value("q", 0, lock=False) for _ in range(procs)]
        shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
        self.procs = [
            ctx.Process(target=_sim_main, daemon=True,
                        args=(url, token, shares[i], f"sim{i}", self.done[i], self.connected[i]))
            for i in range(procs)
        ]
        for p in self.procs:
            p.start()

    def completed(self) -> int:
        return sum(v.value for v in self.done)

    def n_connected(self) -> int:
        return sum(v.value for v in self.connected)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def stop(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


# -- the measurement -----------------------------------------------------------------------------


def _cpu(pids: Sequence[int]) -> float:
    return sum(s[2] for pid in pids if (s := proc_stat(pid)) is not None)


def _queued(client: Client) -> int:
    return sum(int(n) for n in client.stats()["queue_depth"].values())


def _submit(client: Client, tasks: int) -> None:
    for start in range(0, tasks, BATCH):
        n = min(BATCH, tasks - start)
        client.submit_many([{"type": "bench_split", "params": {"parts": PART}}] * n)


class TopUp(threading.Thread):
    """Keeps about `queued` subtasks waiting: submits PART-subtask tasks as results come back."""

    def __init__(self, client: Client, sims: Sims, queued: int, in_flight: int,
                 submitted: int) -> None:
        super().__init__(daemon=True)
        self.client, self.sims = client, sims
        self.target = queued + in_flight
        self.submitted = submitted
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(0.02):
                missing = self.target - (self.submitted - self.sims.completed())
                if missing >= PART:
                    tasks = missing // PART
                    _submit(self.client, tasks)
                    self.submitted += tasks * PART
        except BaseException as exc:
            self.error = exc


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"scale: {what} not reached after {timeout:.0f} s")
        time.sleep(0.05)


def measure(queued: int, conns: int, procs: int, window: float, warm: float) -> dict[str, Any]:
    where = workdir("scale")
    cluster = LocalCluster(
        workers=0, tasks=["bench.tasks"], log_level="warning",
        db=os.path.join(where, "herder.db"), output=os.path.join(where, "master.log"),
        extra_master_args=["--max-pending", "1000000"], ready_timeout=60,
    )
    client = cluster.start()
    sims: Sims | None = None
    topup: TopUp | None = None
    ok = False
    try:
        master = cluster.processes.master_pid
        assert master is not None
        t_fill = time.perf_counter()
        _submit(client, queued // PART)
        _wait(lambda: _queued(client) >= queued, 300, f"{queued} queued")
        fill_seconds = time.perf_counter() - t_fill
        sims = Sims(cluster.url, cluster.worker_token, conns, procs)
        _wait(lambda: sims.n_connected() >= conns, 120, f"{conns} connections")
        topup = TopUp(client, sims, queued, conns, submitted=(queued // PART) * PART)
        topup.start()
        time.sleep(warm)  # past the ramp-up: every connection busy, the top-up in its rhythm
        depth0 = _queued(client)
        c0, m0, w0, k0, t0 = (sims.completed(), _cpu([master]), _cpu(sims.pids()), own_cpu(),
                              time.perf_counter())
        time.sleep(window)
        c1, m1, w1, k1, t1 = (sims.completed(), _cpu([master]), _cpu(sims.pids()), own_cpu(),
                              time.perf_counter())
        depth1 = _queued(client)
        rss, peak = rss_mib(master)
        if topup.error is not None:
            raise topup.error
        done = max(1, c1 - c0)
        ok = True
        return {
            "queued": queued, "connections": conns, "window": t1 - t0,
            "completed": c1 - c0, "rate": (c1 - c0) / (t1 - t0),
            "master_us_per_dispatch": (m1 - m0) / done * 1e6,
            "sims_us_per_dispatch": (w1 - w0) / done * 1e6,
            "client_us_per_dispatch": (k1 - k0) / done * 1e6,
            "master_cpu_share": (m1 - m0) / (t1 - t0),
            "queue_depth": [depth0, depth1], "fill_seconds": fill_seconds,
            "master_rss_mib": rss, "master_peak_rss_mib": peak,
        }
    finally:
        if topup is not None:
            topup.stopping.set()
            topup.join(10)
        if sims is not None:
            sims.stop()
        cluster.stop(timeout=5)
        if ok:  # the store and the master's log are kept when something went wrong
            shutil.rmtree(where, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--out", required=True)
    parser.add_argument("--run-id", default=os.environ.get(MARKER_ENV, ""))
    parser.add_argument("--queued", default="1000,10000,100000")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--warm", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.run_id:
        os.environ[MARKER_ENV] = args.run_id
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    out: dict[str, Any] = {"system": "herder", "scale": []}
    try:
        for q in (int(x) for x in args.queued.split(",")):
            out["scale"].append(measure(q, args.connections, args.procs, args.window, args.warm))
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
    finally:
        with open(args.out, "w") as f:
            json.dump(out, f)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
