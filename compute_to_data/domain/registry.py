"""Registries keyed by name, extended through ``pyproject.toml`` entry points.

As papermill does for its engines and I/O handlers: built-ins register themselves on import,
third-party packages add theirs under the entry-point groups ``compute_to_data.task_types``,
``compute_to_data.runners`` and ``compute_to_data.grids``. Entry points are loaded lazily, on
the first lookup of a name that is not registered yet, so importing the package stays cheap
(it runs inside the iRODS server) and a broken plugin only affects its own name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from compute_to_data.domain.errors import ComputeToDataError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> "module:attr", imported on first use
        self._entry_points_loaded = False

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """``registry.register("name", obj)`` or as a decorator ``@registry.register("name")``."""
        if item is not None:
            self._items[name] = item
            return item

        def decorator(obj: T) -> T:
            self._items[name] = obj
            return obj

        return decorator

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``module:attr``, imported only when ``name`` is first asked for.

        Keeps heavy or host-only modules (papermill, docker) out of the import of the package.
        """
        self._lazy[name] = target

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name not in self._items and ep.name not in self._lazy:
                self._lazy[ep.name] = ep.value

    def get(self, name: str) -> T:
        if name not in self._items and name not in self._lazy:
            self._load_entry_points()
        if name not in self._items and name in self._lazy:
            module_name, _, attr = self._lazy[name].partition(":")
            module = __import__(module_name, fromlist=[attr or "__name__"])
            self._items[name] = getattr(module, attr) if attr else module  # type: ignore[assignment]
        if name not in self._items:
            known = ", ".join(sorted(self.names())) or "none"
            raise ComputeToDataError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(set(self._items) | set(self._lazy))


def _registries() -> tuple["Registry[type]", "Registry[type]", "Registry[type]"]:
    return (
        Registry("task type", "compute_to_data.task_types"),
        Registry("runner", "compute_to_data.runners"),
        Registry("grid", "compute_to_data.grids"),
    )


task_types, runners, grids = _registries()

# Built-ins, by import path so that nothing heavy is imported before it is needed.
task_types.register_lazy("image_classification", "compute_to_data.engine.image_classification:ImageClassificationTask")
runners.register_lazy("inprocess", "compute_to_data.runners.inprocess:InProcessRunner")
runners.register_lazy("docker", "compute_to_data.runners.docker_runner:DockerRunner")
runners.register_lazy("slurm", "compute_to_data.runners.slurm_runner:SlurmRunner")
grids.register_lazy("local", "compute_to_data.grid.local:LocalGrid")
grids.register_lazy("rule_engine", "compute_to_data.grid.rule_engine:RuleEngineGrid")
grids.register_lazy("irods", "compute_to_data.grid.client:IrodsClientGrid")
