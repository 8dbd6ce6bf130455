"""The master: HTTP API, worker channel, and the shell around the scheduler core."""

from herder.master.serve import build_master, build_seat, serve

__all__ = ["build_master", "build_seat", "serve"]
