"""Where all state lives. `base` is the contract; one backend per module."""

from herder.store.base import DuplicateTask, Store, open_store

__all__ = ["DuplicateTask", "Store", "open_store"]
