"""The `herder` command: parse, build settings or a client, call one entry point, print.

Server commands (`master`, `worker`, `up`) build a frozen settings object and hand it to
`herder.master.serve` / `herder.worker.run_worker` / `LocalCluster`. Client commands talk to the
master through `herder.Client`. Every option has a HERDER_* environment twin. Only this module
prints. Imports `client`, `cluster`, `config`, `errors`, typer and rich (and, inside the server
commands, `master` / `worker`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from herder.client import Client, MasterUnreachable, TaskHandle, is_final
from herder.cluster import ClusterError, LocalCluster
from herder.config import DEFAULT_URL, MasterSettings, WorkerSettings
from herder.errors import ClientError, HerderError

app = typer.Typer(
    name="herder",
    help="herder: split work across worker processes and machines, and watch it happen.",
    no_args_is_help=True,
    # Locals in tracebacks could show a token.
    pretty_exceptions_show_locals=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_M = MasterSettings()
_W = WorkerSettings()
STATES = ("pending", "running", "aggregating", "succeeded", "failed", "cancelled", "timed_out")
STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
               "timed_out": "yellow", "running": "cyan", "aggregating": "cyan"}

# -- parsing helpers ---------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def parse_duration(value: str | float) -> float:
    """Seconds from `30s`, `1m`, `1m30s`, `500ms`, `2h`, `1.5` (plain numbers are seconds)."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise typer.BadParameter(
                    f"not a duration: {value!r} (use e.g. 30s, 1m, 1m30s, 500ms or 1.5)"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise typer.BadParameter(f"not a duration: {value!r} (must be a finite number >= 0)")
    return seconds


def _no_constant(name: str) -> NoReturn:
    raise ValueError(name)  # NaN and Infinity are not JSON: keep such a value as a string


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v` -> (k, v): v as JSON when it parses (5, true, [1,2], "x"), else the plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise typer.BadParameter(f"expected key=value, got {text!r}", param_hint="--param")
    try:
        value: Any = json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        value = raw
    return key, value


def build_params(params_json: str | None, param: Sequence[str]) -> dict[str, Any]:
    """--params (a JSON object, or @file) overlaid with each --param k=v."""
    params: dict[str, Any] = {}
    if params_json:
        source = params_json
        if params_json.startswith("@"):
            try:
                source = Path(params_json[1:]).read_text()
            except OSError as exc:
                raise typer.BadParameter(str(exc), param_hint="--params") from None
        try:
            loaded = json.loads(source, parse_constant=_no_constant)
        except ValueError as exc:
            raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--params") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--params")
        params.update(loaded)
    params.update(parse_param(p) for p in param)
    return params


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_token_off_loopback(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        err.print(f"error: refusing to listen on {host} without a token: anyone who can reach "
                  "it could run tasks. Pass --token (or set HERDER_TOKEN), or bind to 127.0.0.1.")
        raise typer.Exit(2)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


# -- shared options ----------------------------------------------------------------------------

Duration = Annotated[float, typer.Option(parser=parse_duration, metavar="DURATION")]
Url = Annotated[str, typer.Option(
    "--url", envvar="HERDER_URL", metavar="URL", help="The master's URL.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="HERDER_TOKEN", metavar="TOKEN", show_default=False,
    help="Bearer token of the master.")]
Tasks = Annotated[list[str], typer.Option(
    "--tasks", envvar="HERDER_TASKS", metavar="MODULE",
    help="Module of task types to load (repeatable).")]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"],
    typer.Option("--log-level", envvar="HERDER_LOG_LEVEL"),
]
Pool = Annotated[Literal["thread", "process"], typer.Option(
    "--pool", envvar="HERDER_POOL", help="Slots are threads or processes.")]
Slots = Annotated[int, typer.Option(
    "--slots", envvar="HERDER_SLOTS", min=1, help="Subtasks a worker runs at once.")]
Labels = Annotated[list[str], typer.Option(
    "--label", envvar="HERDER_LABELS", metavar="LABEL", help="Worker label (repeatable).")]
MaxPending = Annotated[int, typer.Option(
    "--max-pending", envvar="HERDER_MAX_PENDING", min=1, help="Unfinished tasks before 429.")]
MaxLogs = Annotated[int, typer.Option(
    "--max-logs-per-task", envvar="HERDER_MAX_LOGS_PER_TASK", min=1,
    help="Log lines kept per task; older ones are dropped and counted.")]
Prefetch = Annotated[int, typer.Option(
    "--prefetch", envvar="HERDER_PREFETCH", min=0, help="Subtasks a worker may hold beyond slots.")]
Heartbeat = Annotated[float, typer.Option(
    "--heartbeat", envvar="HERDER_HEARTBEAT", parser=parse_duration, metavar="DURATION",
    help="How often workers send heartbeats.")]
LeaseTimeout = Annotated[float, typer.Option(
    "--lease-timeout", envvar="HERDER_LEASE_TIMEOUT", parser=parse_duration, metavar="DURATION",
    help="Silence after which a worker is lost.")]
DrainTimeout = Annotated[float, typer.Option(
    "--drain-timeout", envvar="HERDER_DRAIN_TIMEOUT", parser=parse_duration, metavar="DURATION",
    help="On SIGTERM, time running subtasks get to finish.")]
CancelGrace = Annotated[float, typer.Option(
    "--cancel-grace", envvar="HERDER_CANCEL_GRACE", parser=parse_duration, metavar="DURATION",
    help="Time a cancelled process-pool subtask gets before it is killed.")]
Host = Annotated[str, typer.Option("--host", envvar="HERDER_HOST", help="Address to bind.")]
Db = Annotated[str, typer.Option("--db", envvar="HERDER_DB", help="SQLite file.")]
CaptureOutput = Annotated[bool, typer.Option(
    "--capture-output", envvar="HERDER_CAPTURE_OUTPUT",
    help="Send what subtasks print (stdout, stderr) to the master as log lines.")]


def _import_from_cwd() -> None:
    """Let --tasks name a module in the current directory, as `python -m` would (the `herder`
    script's sys.path starts at its own bin directory instead). LocalCluster hands our sys.path on
    to its children, so this reaches `up`'s master and workers too."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )


# -- server commands ---------------------------------------------------------------------------


@app.command(rich_help_panel="Run")
def master(
    host: Host = _M.host,
    port: Annotated[int, typer.Option(envvar="HERDER_PORT", min=0, max=65535)] = _M.port,
    db: Db = _M.db,
    tasks: Tasks = [],  # noqa: B006 - typer reads the default, never mutates it
    max_pending: MaxPending = _M.max_pending,
    prefetch: Prefetch = _M.prefetch,
    token: Token = None,
    heartbeat: Heartbeat = _M.heartbeat,
    lease_timeout: LeaseTimeout = _M.lease_timeout,
    max_logs_per_task: MaxLogs = _M.max_logs_per_task,
    log_level: LogLevel = "info",
) -> None:
    """Run the master: HTTP API, scheduler and store."""
    _require_token_off_loopback(host, token)
    settings = MasterSettings(
        host=host, port=port, db=db, tasks=tuple(tasks), max_pending=max_pending,
        prefetch=prefetch, token=token, heartbeat=heartbeat, lease_timeout=lease_timeout,
        max_logs_per_task=max_logs_per_task, log_level=log_level,
    )
    _setup_logging(log_level)
    _import_from_cwd()
    # Imported here so that client commands do not pay for the server's imports.
    from herder.master import serve

    try:
        serve(settings)
    except HerderError as exc:
        _fail(str(exc))


@app.command(rich_help_panel="Run")
def worker(
    master: Annotated[str, typer.Option(
        "--master", envvar=["HERDER_MASTER", "HERDER_URL"], help="The master's http(s) URL.")
    ] = DEFAULT_URL,
    slots: Slots = _W.slots,
    pool: Pool = "thread",
    tasks: Tasks = [],  # noqa: B006
    name: Annotated[str | None, typer.Option(
        envvar="HERDER_WORKER_NAME", show_default=False, help="Default: host-pid.")] = None,
    label: Labels = [],  # noqa: B006
    token: Token = None,
    drain_timeout: DrainTimeout = _W.drain_timeout,
    cancel_grace: CancelGrace = _W.cancel_grace,
    capture_output: CaptureOutput = False,
    log_level: LogLevel = "info",
) -> None:
    """Run a worker: connect to the master and run subtasks in SLOTS slots."""
    settings = WorkerSettings(
        master=master, slots=slots, pool=pool, tasks=tuple(tasks), labels=tuple(label),
        token=token, drain_timeout=drain_timeout, cancel_grace=cancel_grace, log_level=log_level,
        capture_output=capture_output,
    )
    if name:
        settings = dataclasses.replace(settings, name=name)
    _setup_logging(log_level)
    _import_from_cwd()
    from herder.worker import run_worker  # here for the same reason as in `master`

    try:
        code = run_worker(settings)
    except HerderError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops `up` the way Ctrl-C does


@app.command(rich_help_panel="Run")
def up(
    workers: Annotated[int, typer.Option(envvar="HERDER_WORKERS", min=0)] = 2,
    slots: Slots = _W.slots,
    port: Annotated[int, typer.Option(envvar="HERDER_PORT", min=0, max=65535)] = _M.port,
    db: Db = _M.db,
    tasks: Tasks = [],  # noqa: B006
    host: Host = _M.host,
    pool: Pool = "thread",
    label: Labels = [],  # noqa: B006
    token: Token = None,
    max_pending: MaxPending = _M.max_pending,
    prefetch: Prefetch = _M.prefetch,
    heartbeat: Heartbeat = _M.heartbeat,
    lease_timeout: LeaseTimeout = _M.lease_timeout,
    max_logs_per_task: MaxLogs = _M.max_logs_per_task,
    drain_timeout: DrainTimeout = _W.drain_timeout,
    cancel_grace: CancelGrace = _W.cancel_grace,
    capture_output: CaptureOutput = False,
    log_level: LogLevel = "info",
) -> None:
    """Run a master and WORKERS workers here, in the foreground, until Ctrl-C."""
    _require_token_off_loopback(host, token)
    _import_from_cwd()
    cluster = LocalCluster(
        workers=workers, slots=slots, tasks=tasks, pool=pool, port=port, db=db, token=token,
        extra_master_args=[
            "--max-pending", str(max_pending), "--prefetch", str(prefetch),
            "--heartbeat", str(heartbeat), "--lease-timeout", str(lease_timeout),
            "--max-logs-per-task", str(max_logs_per_task),
        ],
        extra_worker_args=[
            "--drain-timeout", str(drain_timeout), "--cancel-grace", str(cancel_grace),
            *(["--capture-output"] if capture_output else []),
            *(a for lab in label for a in ("--label", lab)),
        ],
        host=host, log_level=log_level,
        # Draining workers may take drain-timeout plus cancel-grace; do not kill them sooner.
        stop_timeout=drain_timeout + cancel_grace + 5.0,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        cluster.start()
        out.print(f"herder is up at {cluster.url} with {workers} worker(s) x {slots} slot(s), "
                  f"db {db}. Ctrl-C stops it.", markup=False)
        while not (gone := cluster.exited()):
            time.sleep(0.2)
        name, status = gone[0]
        err.print(f"error: {name} exited with code {status}; stopping everything")
        code = 1
    except KeyboardInterrupt:
        err.print(f"stopping: running subtasks get up to {drain_timeout:g} s to finish "
                  "(Ctrl-C again to stop them now)")
    except ClusterError as exc:
        err.print(f"error: {exc}", markup=False)
        code = 1
    finally:
        _stop(cluster, cancel_grace)
    raise typer.Exit(code)


def _stop(cluster: LocalCluster, cancel_grace: float) -> None:
    """Stop in order; each further Ctrl-C hurries: a second SIGTERM makes the workers cancel and
    hand back their subtasks at once, a third kills everything."""
    try:
        cluster.stop()
        return
    except KeyboardInterrupt:
        err.print("stopping now: running subtasks are cancelled (Ctrl-C again to kill)")
    try:
        cluster.stop(timeout=cancel_grace + 5.0)
    except KeyboardInterrupt:
        cluster.kill()


# -- client commands ---------------------------------------------------------------------------


@contextlib.contextmanager
def _client(url: str, token: str | None) -> Iterator[Client]:
    """A client whose errors end the command with `error: ...` and exit code 1."""
    try:
        with Client(url, token) as client:
            yield client
    except MasterUnreachable as exc:
        _fail(f"{exc} (is it running? set --url or HERDER_URL)")
    except ClientError as exc:
        _fail(exc.message)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _fmt_time(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _fmt_eta(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _fmt_progress(task: dict[str, Any]) -> str:
    p = task.get("progress") or {}
    text = f"{p.get('fraction', 0.0):.0%} {p.get('subtasks_done', 0)}/{p.get('subtasks_total', 0)}"
    if p.get("subtasks_failed"):
        text += f" ({p['subtasks_failed']} failed)"
    return text


def _styled_state(state: Any) -> str:
    style = STATE_STYLE.get(str(state))
    return f"[{style}]{state}[/]" if style else str(state)


def follow(handle: TaskHandle, console: Console = err) -> dict[str, Any]:
    """Show a live progress bar of the task until it is finished; return its final JSON."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[subtasks]}"), TextColumn("{task.fields[state]}"),
        TextColumn("{task.fields[eta]}"),
    )
    interval = 0.02  # grows to 0.25 s: short tasks end fast, long ones poll gently
    with Progress(*columns, console=console) as bar:
        name = f"{(handle.task or {}).get('type', 'task')} {handle.id[:12]}"
        row = bar.add_task(name, total=1.0, subtasks="", state="", eta="")
        while True:
            task = handle.status()
            p = task.get("progress") or {}
            done = task.get("state") == "succeeded"
            eta = task.get("eta_seconds")
            bar.update(
                row,
                completed=1.0 if done else float(p.get("fraction") or 0.0),
                subtasks=f"{p.get('subtasks_done', 0)}/{p.get('subtasks_total', 0)} subtasks",
                state=_styled_state(task.get("state")),
                eta=f"eta {_fmt_eta(eta)}" if eta is not None and not is_final(task) else "",
            )
            if is_final(task):
                return task
            time.sleep(interval)
            interval = min(0.25, interval * 1.5)


def report_outcome(handle: TaskHandle, task: dict[str, Any]) -> int:
    """Print the result (stdout) or the error (stderr) of a finished task; return the exit code."""
    if task.get("state") == "succeeded":
        _print_json(handle.result(timeout=0))
        return 0
    error = task.get("error") or {}
    where = ", ".join(f"{k} {error[k]}" for k in ("subtask", "worker", "attempt")
                      if error.get(k) is not None)
    message = f"task {handle.id} {task.get('state')}"
    if error.get("message"):
        message += f": {error['message']}"
    err.print(message + (f" ({where})" if where else ""), markup=False)
    if error.get("traceback"):
        err.print(str(error["traceback"]).rstrip(), markup=False)
    return 1


def _watch(handle: TaskHandle) -> int:
    try:
        return report_outcome(handle, follow(handle))
    except KeyboardInterrupt:
        err.print(f"stopped watching; task {handle.id} goes on "
                  f"(stop it with: herder cancel {handle.id})", markup=False)
        return 130


@app.command(rich_help_panel="Tasks")
def submit(
    type: Annotated[str, typer.Argument(metavar="TYPE", help="Task type, e.g. primes.")],
    param: Annotated[list[str], typer.Option(
        "--param", "-p", metavar="KEY=VALUE",
        help="A param; the value is parsed as JSON if it can be. Repeatable.",
    )] = [],  # noqa: B006
    params: Annotated[str | None, typer.Option(
        "--params", metavar="JSON", help="All params as a JSON object, or @file.json.")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    timeout: Annotated[float | None, typer.Option(
        parser=parse_duration, metavar="DURATION", show_default=False,
        help="Deadline of the whole task: 30s, 5m, 1.5...")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Task id (default: generated).")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Follow progress, then print the result.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Submit a task; print its id (and with --watch, its progress and result)."""
    values = build_params(params, param)
    with _client(url, token) as client:
        handle = client.submit(type, values, priority=priority, timeout=timeout, id=id)
        print(handle.id, flush=True)
        if watch:
            raise typer.Exit(_watch(handle))


@app.command(rich_help_panel="Tasks")
def watch(task_id: Annotated[str, typer.Argument(metavar="ID")], url: Url = DEFAULT_URL,
          token: Token = None) -> None:
    """Follow a task's progress, then print its result; exit 1 unless it succeeded."""
    with _client(url, token) as client:
        raise typer.Exit(_watch(client.get(task_id)))


@app.command(rich_help_panel="Tasks")
def status(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="The task as JSON.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Show a task's state, progress and error."""
    with _client(url, token) as client:
        task = client.get(task_id).status()
    if as_json:
        _print_json(task)
        return
    grid = Table.grid(padding=(0, 2))
    p = task.get("progress") or {}
    rows = [
        ("id", task.get("id")), ("type", task.get("type")),
        ("state", _styled_state(task.get("state"))), ("priority", task.get("priority")),
        ("progress", f"{_fmt_progress(task)} subtasks, {p.get('subtasks_running', 0)} running"),
        ("eta", _fmt_eta(task.get("eta_seconds"))), ("timeout", task.get("timeout")),
        ("created", _fmt_time(task.get("created_at"))),
        ("started", _fmt_time(task.get("started_at"))),
        ("finished", _fmt_time(task.get("finished_at"))),
        ("error", (task.get("error") or {}).get("message")),
    ]
    for key, value in rows:
        if value not in (None, ""):
            grid.add_row(f"[bold]{key}[/]", str(value))
    out.print(grid)


@app.command("list", rich_help_panel="Tasks")
def list_(
    state: Annotated[str | None, typer.Option(help=f"One of: {', '.join(STATES)}.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Task type.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """List tasks, newest first."""
    with _client(url, token) as client:
        tasks = client.list_tasks(state=state, type=type, limit=limit)
    if as_json:
        _print_json(tasks)
        return
    table = Table("id", "type", "state", "priority", "progress", "created", "eta")
    for t in tasks:
        table.add_row(str(t.get("id")), str(t.get("type")), _styled_state(t.get("state")),
                      str(t.get("priority")), _fmt_progress(t), _fmt_time(t.get("created_at")),
                      "" if is_final(t) else _fmt_eta(t.get("eta_seconds")))
    out.print(table)


@app.command(rich_help_panel="Tasks")
def result(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the task to finish.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Print a succeeded task's result as JSON; exit 1 (with the error) if it did not succeed."""
    with _client(url, token) as client:
        handle = client.get(task_id)
        task = handle.wait() if wait else (handle.task or handle.status())
        if not is_final(task):
            _fail(f"task {task_id} is {task.get('state')}: no result yet (use --wait)")
        raise typer.Exit(report_outcome(handle, task))


@app.command(rich_help_panel="Tasks")
def cancel(task_id: Annotated[str, typer.Argument(metavar="ID")], url: Url = DEFAULT_URL,
           token: Token = None) -> None:
    """Cancel a task: queued subtasks are dropped, running ones told to stop."""
    with _client(url, token) as client:
        task = TaskHandle(client, task_id).cancel()
    out.print(f"{task.get('id')} {_styled_state(task.get('state'))}")


def _print_logs(lines: list[dict[str, Any]]) -> None:
    for line in lines:
        ts = line.get("ts")
        when = datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if isinstance(
            ts, int | float) else ""
        where = " ".join(x for x in (
            f"#{line['subtask']}" if line.get("subtask") is not None else "",
            f"a{line['attempt']}" if line.get("attempt") is not None else "",
            str(line.get("worker") or ""),
        ) if x)
        out.print(f"{when} {str(line.get('level', '')).upper():<7} [{where}] {line.get('message')}",
                  markup=False)


@app.command(rich_help_panel="Tasks")
def logs(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    since: Annotated[int, typer.Option(help="Only lines after this sequence number.")] = 0,
    follow_: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing until the task finishes.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Print a task's log lines."""
    with _client(url, token) as client:
        handle = TaskHandle(client, task_id)
        while True:
            # Read the state before the logs: lines logged before the end are then all seen.
            finished = not follow_ or is_final(handle.status())
            lines = handle.logs(since)
            _print_logs(lines)
            since = max([since, *(int(x.get("seq", 0)) for x in lines)])
            if finished:
                return
            time.sleep(0.5)


@app.command(rich_help_panel="Cluster")
def workers(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """List connected workers."""
    with _client(url, token) as client:
        found = client.workers()
    if as_json:
        _print_json(found)
        return
    table = Table("name", "state", "busy/slots", "pool", "types", "labels", "heartbeat")
    now = time.time()
    for w in found:
        beat = w.get("last_heartbeat")
        table.add_row(str(w.get("name")), str(w.get("state")),
                      f"{w.get('busy')}/{w.get('slots')}", str(w.get("pool")),
                      " ".join(w.get("types") or []), " ".join(w.get("labels") or []),
                      f"{max(0.0, now - beat):.1f}s ago" if isinstance(beat, int | float)
                      else _fmt_time(beat))
    out.print(table)


def _describe_params(schema: dict[str, Any]) -> str:
    required = set(schema.get("required") or [])
    parts = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or "any"
        text = f"{name}: {kind}"
        if name not in required and "default" in prop:
            text += f" = {json.dumps(prop['default'])}"
        parts.append(text)
    return ", ".join(parts) or "(any JSON object)"


@app.command(rich_help_panel="Cluster")
def types(
    as_json: Annotated[bool, typer.Option("--json", help="Include params JSON schemas.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """List the task types the master knows, with their params."""
    with _client(url, token) as client:
        found = client.types()
    if as_json:
        _print_json(found)
        return
    table = Table("name", "params", "max retries", "subtask timeout")
    for t in found:
        table.add_row(str(t.get("name")), _describe_params(t.get("params_schema") or {}),
                      str(t.get("max_retries")), str(t.get("subtask_timeout") or "-"))
    out.print(table)


def main() -> None:
    app(prog_name="herder")


if __name__ == "__main__":
    main()
