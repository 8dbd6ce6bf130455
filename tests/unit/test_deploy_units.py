"""The systemd units and environment files in deploy/ (docs/deploy.md) run valid `herder`
commands: each ExecStart and each HERDER_* variable is parsed by the CLI itself, so a renamed or
removed option fails here; where systemd-analyze is installed, it verifies the units too."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.core
import typer.main

from herder.cli import app
from tests.needs import require

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: unit → (the herder command it runs, its environment file's example)
UNITS = {
    "herder-master.service": ("master", "herder-master.env.example"),
    "herder-worker.service": ("worker", "herder-worker.env.example"),
}
#: systemd's specifiers used in the units, as systemd would expand them
SPECIFIERS = {"%H": "worker-host-1"}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys keep their case
    parser.read_string((DEPLOY / name).read_text())
    return parser


def env_file(name: str) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    lines = (DEPLOY / name).read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def herder_command(name: str) -> typer.core.TyperCommand:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    command = group.commands.get(name)
    assert isinstance(command, typer.core.TyperCommand), f"no `herder {name}` command"
    return command


def envvars(command: typer.core.TyperCommand) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        value = getattr(param, "envvar", None)
        names.update([value] if isinstance(value, str) else value or [])
    return names


def exec_start(unit_name: str) -> list[str]:
    line = unit(unit_name)["Service"]["ExecStart"]
    for specifier, value in SPECIFIERS.items():
        line = line.replace(specifier, value)
    return shlex.split(line)


@pytest.mark.parametrize("unit_name", UNITS)
def test_exec_start_is_a_valid_herder_command_with_its_environment(
    unit_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    command_name, env_name = UNITS[unit_name]
    argv = exec_start(unit_name)
    assert Path(argv[0]).name == "herder" and argv[1] == command_name, argv
    command = herder_command(command_name)
    env = env_file(env_name)
    unknown = {k for k in env if not k.startswith("PG")} - envvars(command)  # PG*: libpq's
    assert not unknown, f"{env_name}: `herder {command_name}` has no option for {unknown}"
    for key in [k for k in os.environ if k.startswith("HERDER_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Parsing only: every option name and value of ExecStart and the environment file must be
    # one the command takes (a renamed flag raises NoSuchOption, a bad value BadParameter).
    ctx = command.make_context(command_name, argv[2:])
    assert ctx.params["log_level"] == "info"


def test_units_read_the_environment_file_they_document() -> None:
    for unit_name, (command_name, env_name) in UNITS.items():
        service = unit(unit_name)["Service"]
        assert service["EnvironmentFile"] == f"/etc/herder/{command_name}.env"
        assert service["KillMode"] == "mixed", "SIGTERM must reach the herder process alone"
        assert f"/etc/herder/{command_name}.env" in (DEPLOY / env_name).read_text()


def test_the_worker_unit_waits_longer_than_a_drain() -> None:
    worker = herder_command("worker")
    defaults = {p.name: p.default for p in worker.params}
    drain, grace = defaults["drain_timeout"], defaults["cancel_grace"]
    assert isinstance(drain, float) and isinstance(grace, float)
    stop_after = float(unit("herder-worker.service")["Service"]["TimeoutStopSec"])
    assert stop_after > drain + grace


@pytest.mark.parametrize("unit_name", UNITS)
def test_systemd_analyze_verifies_the_unit(unit_name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(None if analyze else "systemd-analyze is not installed", "systemd-analyze verify")
    assert analyze is not None
    # The unit as installed, but starting the herder of this environment (verify checks that
    # the program exists and is executable).
    herder = Path(sys.executable).with_name("herder")
    text = (DEPLOY / unit_name).read_text().replace("/opt/herder/bin/herder", str(herder))
    (tmp_path / unit_name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / unit_name)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    mentions = [line for line in (done.stdout + done.stderr).splitlines() if unit_name in line]
    assert done.returncode == 0 and not mentions, done.stdout + done.stderr
