"""The worker process: connects to the master, runs subtasks in slots, reports back.

`run_worker(settings)` is the entry point the CLI and LocalCluster call. The modules:
`agent` (lifecycle and drain), `channel` (the connection), `attempts` (what the worker holds),
`outbox`, `slots` and `procslot` (thread and process slots), `execute`, `capture`.
Imports `worker.agent`.
"""

from herder.worker.agent import Agent, run_worker

__all__ = ["Agent", "run_worker"]
