"""The CLI without a master: option parsing, help of every command, and the unreachable-master
error. (End-to-end CLI runs against a real master live in the integration tests.)"""

from __future__ import annotations

import gc
import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from herder.cli import app, build_params, is_loopback, parse_duration, parse_param
from herder.client import normalize_url

runner = CliRunner()

COMMANDS = ["master", "worker", "up", "submit", "watch", "status", "list", "result", "cancel",
            "logs", "workers", "drain", "types"]


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0), ("1m", 60.0), ("1.5", 1.5), ("2", 2.0), ("500ms", 0.5), ("2h", 7200.0),
        ("1d", 86400.0), ("1m30s", 90.0), ("1h1m1s", 3661.0), (" 10S ", 10.0), (".5s", 0.5),
        ("0", 0.0), (3, 3.0), (2.5, 2.5),
    ],
)  # fmt: skip
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-1", "-5s", "1m-2s", "s", "nan", "inf",
                                  "1 m", "m1", "1.2.3s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=59))
def test_parse_duration_minutes_and_seconds(minutes: int, seconds: int) -> None:
    assert parse_duration(f"{minutes}m{seconds}s") == minutes * 60 + seconds


# -- --param / --params ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k=5", ("k", 5)), ("k=1.5", ("k", 1.5)), ("k=[1,2]", ("k", [1, 2])),
        ("k=true", ("k", True)), ("k=null", ("k", None)), ('k="5"', ("k", "5")),
        ("k=hello", ("k", "hello")), ("k=", ("k", "")), ("k=a=b", ("k", "a=b")),
        ('k={"a": 1}', ("k", {"a": 1})), ("text=the cat", ("text", "the cat")),
        # NaN/Infinity parse in Python's json but are not JSON: they stay strings.
        ("k=NaN", ("k", "NaN")), ("k=Infinity", ("k", "Infinity")),
    ],
)  # fmt: skip
def test_parse_param(text: str, expected: tuple[str, object]) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=5", " =5"])
def test_parse_param_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_param(text)


def test_build_params_overlays_param_on_params(tmp_path: Path) -> None:
    assert build_params('{"limit": 10, "parts": 2}', ["parts=4"]) == {"limit": 10, "parts": 4}
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"text": "a b"}))
    assert build_params(f"@{f}", ["top=3"]) == {"text": "a b", "top": 3}
    assert build_params(None, []) == {}


@pytest.mark.parametrize("bad", ["[1, 2]", "{nope", "@/does/not/exist.json", '{"x": NaN}'])
def test_build_params_rejects(bad: str) -> None:
    with pytest.raises(typer.BadParameter):
        build_params(bad, [])


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")


def test_normalize_url() -> None:
    assert normalize_url("localhost:8700/") == "http://localhost:8700"
    assert normalize_url("https://h.example/herder/") == "https://h.example/herder"


# -- commands ----------------------------------------------------------------------------------


def test_top_level_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: herder {command} [OPTIONS]" in result.stdout
    if command not in ("master", "worker", "up"):
        assert "HERDER_URL" in result.stdout  # every client command takes --url / HERDER_URL


def _dead_url() -> str:
    """A loopback URL nothing listens on: a port that was just bound and released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "args",
    [["submit", "noop", "-p", "value=1"], ["status", "x"], ["list"], ["result", "x"],
     ["cancel", "x"], ["logs", "x"], ["workers"], ["types"], ["watch", "x"]],
)
def test_unreachable_master_is_a_clear_error(args: list[str]) -> None:
    url = _dead_url()
    result = runner.invoke(app, [*args, "--url", url])
    assert result.exit_code == 1
    assert f"error: cannot reach the master at {url}" in result.stderr
    assert "Traceback" not in result.output


def test_url_comes_from_the_environment() -> None:
    url = _dead_url()
    result = runner.invoke(app, ["list"], env={"HERDER_URL": url})
    assert result.exit_code == 1
    assert f"cannot reach the master at {url}" in result.stderr


def test_bad_timeout_is_a_usage_error() -> None:
    result = runner.invoke(app, ["submit", "noop", "--timeout", "soon", "--url", _dead_url()])
    assert result.exit_code == 2
    assert "not a duration" in result.output


def test_bad_param_is_a_usage_error() -> None:
    result = runner.invoke(app, ["submit", "noop", "-p", "oops", "--url", _dead_url()])
    assert result.exit_code == 2
    assert "key=value" in result.output


@pytest.mark.parametrize("command", ["master", "up"])
def test_non_loopback_host_needs_a_token(command: str) -> None:
    result = runner.invoke(app, [command, "--host", "0.0.0.0"], env={"HERDER_TOKEN": ""})
    assert result.exit_code == 2
    assert "without a token" in result.stderr


@pytest.fixture
def restored_interpreter_settings() -> Iterator[None]:
    """`herder master` tunes the interpreter of its process, here the test's: undone after."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_interpreter_settings")
def test_duration_options_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_serve(settings: object) -> None:
        seen["settings"] = settings

    import herder.master

    monkeypatch.setattr(herder.master, "serve", fake_serve)
    result = runner.invoke(
        app, ["master", "--port", "0", "--heartbeat", "500ms", "--lease-timeout", "1m",
              "--tasks", "a.b", "--tasks", "c"],
        env={"HERDER_MAX_PENDING": "7"},
    )
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert math.isclose(settings.heartbeat, 0.5)  # type: ignore[attr-defined]
    assert settings.lease_timeout == 60.0  # type: ignore[attr-defined]
    assert settings.tasks == ("a.b", "c")  # type: ignore[attr-defined]
    assert settings.max_pending == 7  # type: ignore[attr-defined]
