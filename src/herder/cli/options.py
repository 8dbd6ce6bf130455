"""What every command shares: the two consoles, parsing of durations and params, error exits,
and the options (each with its HERDER_* environment twin).

Only the CLI prints, and it prints through `out` (stdout: ids, results, tables, log lines) and
`err` (stderr: errors and the live display). Imports typer, rich and `durations`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console

from herder import durations

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# -- parsing helpers ---------------------------------------------------------------------------

def parse_duration(value: str | float) -> float:
    """Seconds from `30s`, `1m`, `1m30s`, `500ms`, `2h`, `1d`, `1.5` (plain numbers are seconds):
    `durations.parse_duration`, its error as the CLI's."""
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


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


def fail(message: str, code: int = 1) -> NoReturn:
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
def parse_keep_finished(value: str | float) -> float:
    """--keep-finished: a duration (`30s`, `10m`, `2h`, `7d`), or 0 to keep every task."""
    try:
        return durations.parse_duration(str(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


KeepFinished = Annotated[float, typer.Option(
    "--keep-finished", envvar="HERDER_KEEP_FINISHED", parser=parse_keep_finished,
    metavar="DURATION", show_default="7d",
    help="Delete each finished task this long after it finished, with its subtasks, results "
    "and logs (30s, 10m, 2h, 7d); 0 keeps every task.")]
MaxLogs = Annotated[int, typer.Option(
    "--max-logs-per-task", envvar="HERDER_MAX_LOGS_PER_TASK", min=1,
    help="Log lines kept per task; older ones are dropped and counted.")]
SpeculateAfter = Annotated[str, typer.Option(
    "--speculate-after", envvar="HERDER_SPECULATE_AFTER", metavar="3x|DURATION|off",
    help="Second attempt of a straggler after this many times its siblings' median run time "
    "(3x), after a fixed time (10s), or never (off).")]
SpeculateMin = Annotated[float, typer.Option(
    "--speculate-min", envvar="HERDER_SPECULATE_MIN", parser=parse_duration, metavar="DURATION",
    help="Never start a second attempt before a subtask ran this long.")]
MaxBody = Annotated[int, typer.Option(
    "--max-body", envvar="HERDER_MAX_BODY", min=1024, metavar="BYTES",
    help="Largest request body accepted; larger ones get 413.")]
# -- size and count limits (docs/limits.md)
MaxParams = Annotated[int, typer.Option(
    "--max-params", envvar="HERDER_MAX_PARAMS", min=1, metavar="BYTES",
    help="Largest params of one task, in bytes of JSON; larger ones get 413.")]
MaxSubtasksPerTask = Annotated[int, typer.Option(
    "--max-subtasks-per-task", envvar="HERDER_MAX_SUBTASKS_PER_TASK", min=1,
    help="Subtasks one task's split may make; more fails the task (422 at submission).")]
MaxPendingSubtasks = Annotated[int, typer.Option(
    "--max-pending-subtasks", envvar="HERDER_MAX_PENDING_SUBTASKS", min=1,
    help="Subtasks of unfinished tasks before submissions get 429.")]
Prefetch = Annotated[int, typer.Option(
    "--prefetch", envvar="HERDER_PREFETCH", min=0, help="Subtasks a worker may hold beyond slots.")]
PipelineBelow = Annotated[float, typer.Option(
    "--pipeline-below", envvar="HERDER_PIPELINE_BELOW", parser=parse_duration, metavar="DURATION",
    help="Pipeline subtasks of types that run this long or less on average: a worker holds "
    "about this long of them per slot (at most 32), so it starts the next at once, and hands "
    "them back if every slot runs 4 times this long (0: off).")]
ResultsInMemory = Annotated[int, typer.Option(
    "--results-in-memory", envvar="HERDER_RESULTS_IN_MEMORY", min=0, metavar="BYTES",
    help="Result JSON kept in memory for the aggregates of running tasks; past it they read "
    "the store.")]
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
Db = Annotated[str, typer.Option(
    "--db", envvar="HERDER_DB",
    # help texts are rich markup: "\\[" shows a "[" (else "[postgres]" is read as a style)
    help="The store: a SQLite file, or postgresql://user@host/db (needs herder\\[postgres]).")]
CaptureOutput = Annotated[bool, typer.Option(
    "--capture-output", envvar="HERDER_CAPTURE_OUTPUT",
    help="Send what subtasks print (stdout, stderr) to the master as log lines.")]

# -- TLS (docs/security.md, "TLS") -------------------------------------------------------------

TlsCert = Annotated[str | None, typer.Option(
    "--tls-cert", envvar="HERDER_TLS_CERT", metavar="FILE", show_default=False,
    help="Serve https:// and wss:// with this PEM certificate (chain).")]
TlsKey = Annotated[str | None, typer.Option(
    "--tls-key", envvar="HERDER_TLS_KEY", metavar="FILE", show_default=False,
    help="The PEM private key of --tls-cert (default: read from the --tls-cert file).")]
Ca = Annotated[str | None, typer.Option(
    "--ca", envvar="HERDER_CA", metavar="FILE", show_default=False,
    help="CA file that verifies an https:// master (default: the system's CA store).")]

# -- tokens of the roles (docs/security.md, "Roles and tokens") -------------------------------

WorkerToken = Annotated[str | None, typer.Option(
    "--worker-token", envvar="HERDER_WORKER_TOKEN", metavar="TOKEN", show_default=False,
    help="Token of the worker channel (default: --token).")]
AdminToken = Annotated[str | None, typer.Option(
    "--admin-token", envvar="HERDER_ADMIN_TOKEN", metavar="TOKEN", show_default=False,
    help="Token of the admin routes, which also grants the client's (default: --token).")]
TokenFile = Annotated[Path | None, typer.Option(
    "--token-file", envvar="HERDER_TOKEN_FILE", metavar="PATH", show_default=False,
    help="File of 'role=token' lines (client, worker, admin), of mode 0600 or stricter.")]
#: a worker's own token: the worker token, else the client one
WorkerOwnToken = Annotated[str | None, typer.Option(
    "--token", envvar=["HERDER_WORKER_TOKEN", "HERDER_TOKEN"], metavar="TOKEN",
    show_default=False, help="The master's worker token.")]
#: what admin commands send: the admin token, else the client one
AdminCallToken = Annotated[str | None, typer.Option(
    "--token", envvar=["HERDER_ADMIN_TOKEN", "HERDER_TOKEN"], metavar="TOKEN",
    show_default=False, help="The master's admin token.")]

# -- strict input and browsers -----------------------------------------------------------------

AdvertiseUrl = Annotated[str | None, typer.Option(
    "--advertise-url", envvar="HERDER_ADVERTISE_URL", metavar="URL", show_default=False,
    help="The URL clients and workers reach this master at, which standbys name as the active "
    "master's (several masters on one PostgreSQL store). Default: http(s)://HOST:PORT.")]
FailoverTimeout = Annotated[float, typer.Option(
    "--failover-timeout", envvar="HERDER_FAILOVER_TIMEOUT", min=0.1, metavar="SECONDS",
    help="Several masters on one PostgreSQL store: a standby takes over within this many "
    "seconds of the active master's death.")]
AllowedHosts = Annotated[str, typer.Option(
    "--allowed-hosts", envvar="HERDER_ALLOWED_HOSTS", metavar="HOST,...",
    help="Names a request's Host header may give, comma-separated ('*': any). Default: the "
    "bound address, localhost, 127.0.0.1 and ::1.")]


def parse_allowed_hosts(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())
