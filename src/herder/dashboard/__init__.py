"""The web dashboard: static files only (plain ES modules, no build step), served by the master.

`STATIC_DIR` is the directory of index.html, app.js, app.css and the other modules. Imports
nothing from herder: the master mounts the directory, the dashboard talks to it over HTTP.
"""

from __future__ import annotations

import pathlib

STATIC_DIR: pathlib.Path = pathlib.Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR"]
