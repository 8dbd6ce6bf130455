"""The master's HTTP layer: the API, the worker channel and the dashboard in one ASGI app.

`access` says which role a path needs and whether a token grants it; `guard` applies that and
--max-body to every request; `errors` makes every error answer; `handlers` is what the routes
ask of the master; `submissions`, `tasks`, `status` and `channel` are the routes; `app`
assembles them.
"""

from herder.master.web.app import create_app

__all__ = ["create_app"]
