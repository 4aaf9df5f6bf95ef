"""``inputs.where``: which listed images meet the task's AVU conditions.

A listing arrives collection by collection (:meth:`Grid.iter_data_objects`), so the grid is
asked once per collection for the paths there that meet the conditions
(:meth:`Grid.paths_meeting`: GenQuery on the iRODS adapters) and the answer is kept while that
collection's objects come. Planning, shards, resumed runs and every run of a series select
their candidates through the same listing, so they all honour the conditions.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from compute_to_data.domain.catalog import AVUCondition, DataObject
from compute_to_data.grid.base import Grid

#: collections whose answers are kept at once (a path-sorted recursive listing may come back
#: to a collection after one of its sub-collections); bounds memory like the listing's pages
KEPT_COLLECTIONS = 8


class WhereFilter:
    """``keeps(obj)``: whether an object meets every condition (always, without conditions)."""

    def __init__(self, grid: Grid, conditions: Sequence[AVUCondition]) -> None:
        self.grid = grid
        self.conditions = tuple(conditions)
        self._answers: dict[str, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def keeps(self, obj: DataObject) -> bool:
        return self.keeps_path(obj.path)

    def keeps_path(self, path: str) -> bool:
        if not self.conditions:
            return True
        collection = posixpath.dirname(path)
        paths = self._answers.get(collection)
        if paths is None:
            if len(self._answers) >= KEPT_COLLECTIONS:
                self._answers.pop(next(iter(self._answers)))
            paths = self._answers[collection] = self.grid.paths_meeting(collection, self.conditions)
        return path in paths

    def describe(self) -> str:
        """``where detectedclass = 'animal' and ...`` for messages (empty without conditions)."""
        return ("where " + " and ".join(c.describe() for c in self.conditions)) if self.conditions else ""
