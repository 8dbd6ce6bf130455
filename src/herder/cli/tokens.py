"""The tokens of the roles, from the options and a token file.

A token file holds `role=token` lines (roles: client, worker, admin); blank lines and lines
starting with `#` are skipped. It must be of mode 0600 or stricter: a token others can read is
no secret. A role given both by an option and by the file is an error, not a silent choice.
Imports `config`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from herder.config import check_token

ROLES = ("client", "worker", "admin")
#: the option (and environment variable) that gives each role's token
OPTION_OF = {"client": "--token", "worker": "--worker-token", "admin": "--admin-token"}


class TokenFileError(ValueError):
    """The token file cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class RoleTokens:
    client: str | None = None
    worker: str | None = None
    admin: str | None = None


def read_token_file(path: Path) -> dict[str, str]:
    """The tokens of `path` by role; TokenFileError naming the file and the line if it cannot be
    used (never quoting a token)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"--token-file: cannot read {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenFileError(
            f"--token-file: {path} has mode {stat.S_IMODE(mode):04o}: others may read it; "
            f"make it 0600 (chmod 600 {path})"
        )
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        role, sep, token = line.partition("=")
        role, token = role.strip(), token.strip()
        where = f"--token-file: {path} line {number}"
        if not sep or role not in ROLES:
            roles = ", ".join(ROLES)
            raise TokenFileError(f"{where}: expected 'role=token' with a role of {roles}")
        if not token:
            raise TokenFileError(f"{where}: the {role} token is empty")
        if role in tokens:
            raise TokenFileError(f"{where}: a second {role} token")
        tokens[role] = token
    if not tokens:
        raise TokenFileError(f"--token-file: {path} holds no token")
    return tokens


def role_tokens(given: RoleTokens, token_file: Path | None) -> RoleTokens:
    """The options' tokens, with those of the token file for the roles they do not give;
    ValueError naming where a token came from if it is too short."""
    found = read_token_file(token_file) if token_file is not None else {}
    merged = {}
    for role in ROLES:
        option = getattr(given, role)
        if option is not None and role in found:
            raise TokenFileError(
                f"--token-file: {token_file} gives the {role} token, and so does "
                f"{OPTION_OF[role]} (or its environment variable): give it once"
            )
        if option is not None:
            check_token(OPTION_OF[role], option)
        elif role in found:
            check_token(f"--token-file: the {role} token", found[role])
        merged[role] = option if option is not None else found.get(role)
    return RoleTokens(**merged)
