"""The worker process: connects to the master, runs subtasks in slots, reports back.

`run_worker(settings)` is the entry point the CLI and LocalCluster call.
"""

from herder.worker.agent import Agent, run_worker

__all__ = ["Agent", "run_worker"]
