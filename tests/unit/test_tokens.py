"""Tokens without a master: which token grants which role, the token file, the shortest token,
and settings that never show a token."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herder.cli import app
from herder.cli.tokens import RoleTokens, TokenFileError, read_token_file, role_tokens
from herder.config import MasterSettings, WorkerSettings
from herder.master.web.access import Role, Tokens, role_needed
from herder.protocol import paths
from herder.protocol.redact import HIDDEN, hide_authorization

CLIENT = "client-token-0123456789"
WORKER = "worker-token-0123456789"
ADMIN = "admin-token-0123456789"

runner = CliRunner()


def bearer(token: str) -> bytes:
    return f"Bearer {token}".encode()


def test_each_path_needs_its_role() -> None:
    assert role_needed(paths.HEALTHZ) is None
    assert role_needed(paths.WORKER_CHANNEL) is Role.WORKER
    assert role_needed(paths.WORKER_DRAIN.format(name="w-1")) is Role.ADMIN
    assert role_needed(paths.WORKER_DRAIN.format(name="a/b")) is Role.CLIENT  # no such route
    assert role_needed(paths.WORKERS) is Role.CLIENT
    assert role_needed("/api/v1/added-later") is Role.CLIENT


def test_distinct_tokens_grant_their_roles_only() -> None:
    tokens = Tokens(CLIENT, WORKER, ADMIN)
    granted = {
        (role, who)
        for role in Role
        for who, token in (("client", CLIENT), ("worker", WORKER), ("admin", ADMIN))
        if tokens.refusal(role, bearer(token)) is None
    }
    assert granted == {
        (Role.CLIENT, "client"), (Role.CLIENT, "admin"), (Role.ADMIN, "admin"),
        (Role.WORKER, "worker"),
    }
    refused = tokens.refusal(Role.ADMIN, bearer(CLIENT))
    assert refused is not None and refused.status == 403
    for header in (None, b"", b"Bearer ", bearer("x" * 20), CLIENT.encode()):
        refusal = tokens.refusal(Role.CLIENT, header)
        assert refusal is not None and refusal.status == 401


def test_one_token_opens_every_role_and_none_leaves_them_open() -> None:
    single = Tokens.of(MasterSettings(token=CLIENT))
    assert all(single.refusal(role, bearer(CLIENT)) is None for role in Role)
    assert all(single.refusal(role, None) is not None for role in Role)
    # a worker token alone (herder up without --token) locks the channel and nothing else
    channel_only = Tokens.of(MasterSettings(worker_token=WORKER))
    assert channel_only.refusal(Role.WORKER, None) is not None
    assert channel_only.refusal(Role.CLIENT, None) is None
    assert channel_only.refusal(Role.ADMIN, None) is None
    assert not Tokens.of(MasterSettings()).required


@pytest.mark.parametrize("field", ["token", "worker_token", "admin_token"])
def test_a_short_token_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match="at least 16 characters, not 6"):
        MasterSettings(**{field: "s3cret"})
    with pytest.raises(ValueError, match="--token: a token must be at least 16"):
        WorkerSettings(token="s3cret")


@pytest.mark.parametrize(
    ("command", "args"),
    [("master", ["--token", "s3cret"]), ("master", ["--admin-token", "s3cret"]),
     ("up", ["--token", "s3cret"]), ("worker", ["--token", "s3cret"])],
)
def test_the_cli_refuses_a_short_token(command: str, args: list[str]) -> None:
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 2, result.output
    assert "at least 16 characters" in result.stderr
    assert "s3cret" not in result.stderr


def test_settings_never_show_a_token() -> None:
    master = MasterSettings(token=CLIENT, worker_token=WORKER, admin_token=ADMIN)
    worker = WorkerSettings(token=WORKER)
    for text in (repr(master), str(master), repr(worker)):
        assert not {CLIENT, WORKER, ADMIN} & set(text.replace("'", " ").split())
        assert all(t not in text for t in (CLIENT, WORKER, ADMIN))


def test_the_handshake_logs_hide_the_authorization_header(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("herder.test.handshake")
    hide_authorization(logger)
    hide_authorization(logger)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.debug("> %s: %s", "Authorization", f"Bearer {CLIENT}")
        logger.debug("< %s: %s", "authorization", f"Bearer {CLIENT}")
        logger.debug("< %s: %s", "host", "127.0.0.1")
    assert CLIENT not in caplog.text
    assert caplog.text.count(HIDDEN) == 2 and "host: 127.0.0.1" in caplog.text


# -- the token file ------------------------------------------------------------------------------


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_token_file_gives_the_roles_it_names(tmp_path: Path) -> None:
    path = token_file(tmp_path, f"# herder\nclient={CLIENT}\n\n worker = {WORKER}\n")
    assert read_token_file(path) == {"client": CLIENT, "worker": WORKER}
    merged = role_tokens(RoleTokens(admin=ADMIN), path)
    assert merged == RoleTokens(client=CLIENT, worker=WORKER, admin=ADMIN)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_token_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = token_file(tmp_path, f"client={CLIENT}\n", mode)
    with pytest.raises(TokenFileError, match=f"mode {mode:04o}.*chmod 600"):
        read_token_file(path)
    assert read_token_file(token_file(tmp_path, f"client={CLIENT}\n", 0o400))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (f"{CLIENT}\n", "line 1: expected 'role=token'"),
        (f"client={CLIENT}\nboss={ADMIN}\n", "line 2: expected 'role=token'"),
        ("client=\n", "line 1: the client token is empty"),
        (f"client={CLIENT}\nclient={ADMIN}\n", "line 2: a second client token"),
        ("# nothing\n", "holds no token"),
    ],
)
def test_a_bad_token_file_says_which_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(TokenFileError, match=needle) as bad:
        read_token_file(token_file(tmp_path, text))
    assert CLIENT not in str(bad.value) and ADMIN not in str(bad.value)


def test_a_role_given_twice_is_an_error(tmp_path: Path) -> None:
    path = token_file(tmp_path, f"client={CLIENT}\n")
    with pytest.raises(TokenFileError, match="so does --token"):
        role_tokens(RoleTokens(client=ADMIN), path)


def test_the_master_command_checks_its_token_file(tmp_path: Path) -> None:
    path = token_file(tmp_path, f"client={CLIENT}\n", 0o644)
    result = runner.invoke(app, ["master", "--token-file", str(path)], env={"HERDER_TOKEN": ""})
    assert result.exit_code == 2
    assert "chmod 600" in result.stderr
    short = token_file(tmp_path, "admin=short\n")
    result = runner.invoke(app, ["master", "--token-file", str(short)], env={"HERDER_TOKEN": ""})
    assert result.exit_code == 2
    assert "--token-file: the admin token: a token must be at least 16" in result.stderr
    # a worker token alone does not make a public address safe: the API would be open
    only_worker = token_file(tmp_path, f"worker={WORKER}\n")
    result = runner.invoke(
        app, ["master", "--host", "0.0.0.0", "--token-file", str(only_worker)],
        env={"HERDER_TOKEN": ""},
    )
    assert result.exit_code == 2 and "without a token" in result.stderr
