"""Who may make a request: the role each path needs and whether a bearer token grants it.

The one place where access is decided, for every route and the worker channel alike: `Guard`
asks `role_needed(path)` and `Tokens.grants(role, header)`. Separate tokens per role (client,
worker, admin) come in here, by mapping more roles to their tokens. Imports `protocol.paths`.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping

from herder.protocol import paths

#: served outside the API, to anyone who can reach the server
DASHBOARD = "/"
STATIC = "/static"
DOCS = "/docs"
OPENAPI = "/openapi.json"

PUBLIC_PATHS = frozenset({paths.HEALTHZ, DASHBOARD, DOCS, OPENAPI})


class Role(enum.Enum):
    """What a request acts as; each role may have a token of its own."""

    CLIENT = "client"  # the HTTP API and the metrics
    WORKER = "worker"  # the worker channel


#: the 401's detail for each role: what the caller must send
MISSING_TOKEN = {
    Role.CLIENT: "authorization: a valid 'Bearer' token is required",
    Role.WORKER: "authorization: a valid worker token is required",
}


def role_needed(path: str) -> Role | None:
    """The role a request to `path` needs; None for a public path. Any path not known to be
    public needs a role, so that a route added later is guarded without a word here."""
    if path in PUBLIC_PATHS or path.startswith(STATIC + "/"):
        return None
    if path == paths.WORKER_CHANNEL:
        return Role.WORKER
    return Role.CLIENT


class Tokens:
    """The bearer token of each role; a role without one is open to every request."""

    def __init__(self, by_role: Mapping[Role, bytes]) -> None:
        self._by_role = dict(by_role)

    @classmethod
    def single(cls, token: str | None) -> Tokens:
        """One token for every role (None: no token at all, every role open)."""
        if token is None:
            return cls({})
        return cls(dict.fromkeys(Role, token.encode()))

    @property
    def required(self) -> bool:
        return bool(self._by_role)

    def grants(self, role: Role, authorization: bytes | None) -> bool:
        """Whether an `Authorization` header's value grants `role`, compared in constant time."""
        token = self._by_role.get(role)
        if token is None:
            return True
        if authorization is None or not authorization.startswith(b"Bearer "):
            return False
        return secrets.compare_digest(authorization[7:], token)
