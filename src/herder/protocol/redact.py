"""Keeps the bearer token out of the logs of the worker channel's handshake.

At debug level, websockets logs every header of the handshake, `Authorization` included, on
both ends: through `uvicorn.error` on the master, through `websockets.client` on a worker.
`hide_authorization(logger)` makes that logger write such a header as `[hidden]`. Imports only
the stdlib.
"""

from __future__ import annotations

import logging

#: the formats websockets logs a header line of a handshake with (sent, received)
_HEADER_FORMATS = frozenset({"> %s: %s", "< %s: %s"})
HIDDEN = "[hidden]"


class _HideAuthorization(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.msg in _HEADER_FORMATS
            and isinstance(args, tuple)
            and len(args) == 2
            and str(args[0]).lower() in ("authorization", "proxy-authorization")
        ):
            record.args = (args[0], HIDDEN)
        return True


def hide_authorization(logger: logging.Logger) -> None:
    """Make `logger` hide authorization headers; once per logger, however often called."""
    if not any(isinstance(f, _HideAuthorization) for f in logger.filters):
        logger.addFilter(_HideAuthorization())
