"""CPU time and memory of the processes of one benchmark run, read from /proc.

Every process a run starts carries the run's marker in its environment (`MARKER_ENV`), so that
the run can find all of them — children and grandchildren, including those a peer re-parents
or daemonises — to account for their CPU and to stop every one at the end. CPU is
utime + stime + cutime + cstime of /proc/PID/stat (a child that exited and was reaped is in
its parent's c-fields). A window's CPU is the sum at its end less the sum at its start, per role
(client, master, workers, other), where a process first seen at the end started during it.

Stdlib only: the peers' virtualenv imports it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MARKER_ENV = "HERDER_BENCH_RUN"
TICK = os.sysconf("SC_CLK_TCK")
ROLES = ("client", "master", "workers", "other")


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    name: str  # comm, as in /proc/PID/stat
    cmdline: str
    cpu: float  # seconds, own + reaped children

    @property
    def text(self) -> str:
        return f"{self.name} {self.cmdline}"


def _stat(pid: int) -> tuple[str, int, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return name, ppid, ticks / TICK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def own_cpu() -> float:
    """This process's CPU seconds (children included), cheaper than a scan."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def marked(run_id: str, exclude: Iterable[int] = ()) -> list[Proc]:
    """Every live process of the run: those whose environment carries its marker, and their
    descendants and the caller's (a process that rewrites its title, as redis-server and
    Celery do, may overwrite the environment that /proc shows)."""
    marker = f"{MARKER_ENV}={run_id}".encode()
    me = os.getpid()
    stats: dict[int, tuple[str, int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    members = {pid for pid in stats if pid != me and _has_marker(pid, marker)}
    members.add(me)
    grew = True
    while grew:  # add descendants until nothing changes (the process tree is shallow)
        grew = False
        for pid, (_, ppid, _) in stats.items():
            if pid not in members and ppid in members:
                members.add(pid)
                grew = True
    skip = {me, os.getppid(), *exclude}  # the parent: whoever started us, not one of ours
    return [Proc(pid, stats[pid][1], stats[pid][0], _cmdline(pid), stats[pid][2])
            for pid in sorted(members - skip)]


Classifier = Callable[[Proc, dict[int, Proc]], str]


class CpuMeter:
    """CPU by role over windows. The calling process is the client; `classify` names the role
    of every other process of the run (given it and all processes by pid)."""

    def __init__(self, run_id: str, classify: Classifier) -> None:
        self.run_id = run_id
        self.classify = classify
        self._start: dict[int, float] = {}
        self._own = 0.0
        #: (role, pid, name and command line, CPU seconds) of each process, after `stop()`
        self.detail: list[tuple[str, int, str, float]] = []

    def start(self) -> None:
        me = os.getpid()
        self._start = {p.pid: p.cpu for p in marked(self.run_id, exclude=[me])}
        self._own = own_cpu()  # last, so that the scan above is not counted

    def stop(self) -> dict[str, float]:
        """CPU seconds per role since `start()`."""
        own = own_cpu() - self._own  # first, for the same reason
        me = os.getpid()
        procs = {p.pid: p for p in marked(self.run_id, exclude=[me])}
        out = dict.fromkeys(ROLES, 0.0)
        out["client"] = own
        self.detail = [("client", me, "this process", own)]
        for pid, proc in procs.items():
            role = self.classify(proc, procs)
            role = role if role in out else "other"
            used = max(0.0, proc.cpu - self._start.get(pid, 0.0))
            out[role] += used
            self.detail.append((role, pid, proc.text[:80], used))
        return out


def descends(proc: Proc, ancestor: int, procs: dict[int, Proc]) -> bool:
    seen = 0
    p: Proc | None = proc
    while p is not None and seen < 64:
        if p.pid == ancestor:
            return True
        p = procs.get(p.ppid)
        seen += 1
    return False


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MiB: now, and the peak."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


def kill_marked(run_id: str, grace: float = 3.0) -> int:
    """SIGTERM every process of the run but this one, then SIGKILL what is left after `grace`
    seconds. Returns how many were still alive at the first look."""
    me = os.getpid()
    first = marked(run_id, exclude=[me])
    for p in first:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked(run_id, exclude=[me]):
        time.sleep(0.05)
    for p in marked(run_id, exclude=[me]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)
    return len(first)
