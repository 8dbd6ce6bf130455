"""`value`: a class of plain values, such as the scheduling core's events and decisions, that
nobody changes once made.

It is a slotted dataclass that mypy checks as frozen (assigning a field is a type error), but
not frozen at run time: a frozen dataclass's `__init__` sets each field through
`object.__setattr__`, about four times the cost of a plain one, and the master makes several
such values per task (docs/decisions.md). Its hash is its fields', as a frozen one's. Imports
the stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
