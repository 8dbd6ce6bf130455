"""The TaskType API and the registry of loaded types.

Imports `context`, `errors` and pydantic; no I/O beyond importing the modules named with --tasks.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Collection, Iterable, Sequence
from types import ModuleType
from typing import Any, ClassVar

import pydantic

from herder.context import Context
from herder.errors import InvalidParams, TaskTypeError, UnknownTaskType

BUILTIN_MODULE = "herder.examples"


class TaskType:
    """Subclass this, set `name`, and override what you need.

    `split(params)` returns the parts, one per subtask (JSON values); `execute(ctx, part)` runs
    one part on a worker and returns its JSON result; `aggregate(params, results)` turns the
    results, in subtask order, into the task's result. `params` is an instance of `Params` when the
    type declares one, else the plain dict that was submitted.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[pydantic.BaseModel] | None] = None
    #: attempts after the first one before the task fails
    max_retries: ClassVar[int] = 3
    #: seconds one attempt may run before it is cancelled and counted as a failure; None: no limit
    subtask_timeout: ClassVar[float | None] = None
    #: may a second attempt be started next to a slow one (issue: stragglers)
    speculative: ClassVar[bool] = True
    #: at most this many subtasks of this type run at once across the cluster, whatever the free
    #: slots (for a fragile downstream service); None: no cap
    max_running: ClassVar[int | None] = None
    #: worker labels (`herder worker --label`) a worker must carry every one of to run this
    #: type's subtasks; a submission may add more
    labels: ClassVar[Collection[str]] = frozenset()

    def split(self, params: Any) -> Sequence[Any]:
        return [_as_json(params)]

    def execute(self, ctx: Context, part: Any) -> Any:
        raise NotImplementedError(f"task type {self.name!r} does not implement execute()")

    def aggregate(self, params: Any, results: list[Any]) -> Any:
        return results

    # -- used by herder itself -------------------------------------------------------------

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        if cls.Params is None:
            return {"type": "object", "title": cls.name, "additionalProperties": True}
        return cls.Params.model_json_schema()

    @classmethod
    def parse_params(cls, raw: Any) -> Any:
        """Validate submitted params; raise InvalidParams naming the offending field."""
        if cls.Params is None:
            if not isinstance(raw, dict):
                raise InvalidParams("params: must be a JSON object")
            return raw
        try:
            return cls.Params.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise InvalidParams(describe_validation_error(exc, prefix="params")) from None


def _as_json(params: Any) -> Any:
    if isinstance(params, pydantic.BaseModel):
        return params.model_dump(mode="json")
    return params


def describe_validation_error(exc: pydantic.ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the field: `params.limit: Input should be ...`."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        lines.append(f"{loc or prefix}: {err['msg']}")
    return "; ".join(lines)


class Registry:
    """Task types by name, filled from modules."""

    def __init__(self, types: Iterable[type[TaskType]] = ()) -> None:
        self._types: dict[str, type[TaskType]] = {}
        self._instances: dict[str, TaskType] = {}
        for t in types:
            self.add(t)

    @classmethod
    def from_modules(cls, modules: Iterable[str], builtins: bool = True) -> Registry:
        names = [BUILTIN_MODULE] if builtins else []
        names += [m for m in modules if m not in names]
        reg = cls()
        for name in names:
            reg.add_module(name)
        return reg

    def add_module(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise TaskTypeError(f"--tasks {module_name}: cannot import: {exc}") from exc
        found = list(types_in_module(module))
        if not found:
            raise TaskTypeError(f"--tasks {module_name}: defines no TaskType subclass with a name")
        for t in found:
            self.add(t)

    def add(self, task_type: type[TaskType]) -> None:
        if not task_type.name:
            raise TaskTypeError(f"{task_type.__qualname__}: a TaskType needs a non-empty name")
        cap = task_type.max_running
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            raise TaskTypeError(f"task type {task_type.name!r}: max_running must be at least 1")
        if isinstance(task_type.labels, str):
            raise TaskTypeError(
                f"task type {task_type.name!r}: labels must be a set of strings, not a string"
            )
        existing = self._types.get(task_type.name)
        if existing is not None and existing is not task_type:
            raise TaskTypeError(
                f"task type {task_type.name!r} is defined twice: "
                f"{existing.__module__}.{existing.__qualname__} and "
                f"{task_type.__module__}.{task_type.__qualname__}"
            )
        self._types[task_type.name] = task_type

    def get(self, name: str) -> type[TaskType]:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownTaskType(f"type: unknown task type {name!r} (known: {known})") from None

    def instance(self, name: str) -> TaskType:
        inst = self._instances.get(name)
        if inst is None:
            inst = self._instances[name] = self.get(name)()
        return inst

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Any:
        return iter(self._types.values())


def types_in_module(module: ModuleType) -> Iterable[type[TaskType]]:
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, TaskType) and obj is not TaskType and obj.name:
            yield obj
