"""A task larger than one shard: its shards' records, what they add up to, and its planning.

A sharded task's collection ``<output>/<task id>/`` carries the task's ``c2d::`` AVUs plus
``c2d::shards`` (how many); each shard ``<task>/shards/NNNN/`` carries the same state AVUs as a
task (``c2d::task_id`` is the task's: predictions point to the task, not to a shard) plus
``c2d::shard`` (``NNNN/total``), its own ``c2d::compute_resource``, its ``inputs.txt`` (written
once at planning) and, once it ran, its own report, predictions, log and parts. Readers that
list or find *tasks* leave shards out (:meth:`TaskRecord.is_shard`).

The task's own state is the aggregate of its shards' (:func:`aggregate`), written by the
lifecycle (:meth:`TaskLifecycle.settle`) as shards start and end: ``running`` while any runs,
``failed`` when all ended and one did not succeed, ``succeeded`` once all succeeded and the
summary report is made, ``cancelled`` by a cancel (which cancels every shard).

Planning reads the listing in pages (:meth:`Grid.iter_data_objects`): permissions are checked
and inputs selected page by page, and :class:`~.sharding.ShardPlanner` writes each shard's
inputs to a local file as it closes. Nothing is written to the catalog before the whole listing
passed every check (a refusal leaves nothing behind); then the task collection, the shards'
collections and their ``inputs.txt`` are created, every shard ``queued``.

This module is imported by the iRODS server (through the engine): standard library only.
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .. import conventions as names
from ..conventions import TaskState
from ..errors import ComputeToDataError
from ..grid.base import DataObject, Grid, Resource
from .state import TaskRecord

log = logging.getLogger(__name__)

#: errors of failed shards quoted in the task's c2d::error (the rest are counted)
_ERRORS_SHOWN = 3


@dataclass(frozen=True)
class ShardSpec:
    """Which shard a run works on."""

    collection: str
    number: int
    total: int

    @property
    def task_collection(self) -> str:
        return posixpath.dirname(posixpath.dirname(self.collection))

    @property
    def name(self) -> str:
        return names.shard_name(self.number)

    @property
    def label(self) -> str:
        """``0003/0020``: the ``c2d::shard`` value."""
        return f"{names.shard_name(self.number)}/{names.shard_name(self.total)}"

    @classmethod
    def of(cls, record: TaskRecord) -> "ShardSpec":
        number, total = parse_shard_label(record.get(names.A_SHARD))
        return cls(record.collection, number, total)


def parse_shard_label(text: str) -> tuple[int, int]:
    number, _, total = text.partition("/")
    if not (number.isdigit() and total.isdigit()):
        raise ComputeToDataError(f"malformed {names.A_SHARD} value {text!r} (expected NNNN/total)")
    return int(number), int(total)


def shards_collection(task_collection: str) -> str:
    return posixpath.join(task_collection, names.SHARDS_COLLECTION)


def shard_records(grid: Grid, task_collection: str) -> list[TaskRecord]:
    """Every shard of a task (by number): one query for all of them, whatever their count."""
    found = grid.find_collections_with_avu(names.A_SHARD, None, shards_collection(task_collection))
    records = [TaskRecord.from_collection_avus(c) for c in found]
    records = [r for r in records if posixpath.dirname(r.collection) == shards_collection(task_collection)]
    return sorted(records, key=lambda r: r.collection)


@dataclass(frozen=True)
class Aggregate:
    """What a task's shards add up to."""

    shards: int
    done: int
    total: int
    images_failed: int
    states: Mapping[str, int] = field(default_factory=dict)

    def count(self, state: TaskState) -> int:
        return int(self.states.get(state.value, 0))

    @property
    def finished(self) -> bool:
        """Every shard in a final state."""
        return self.shards > 0 and sum(self.count(s) for s in TaskState if s.is_final) == self.shards

    @property
    def all_succeeded(self) -> bool:
        return self.shards > 0 and self.count(TaskState.SUCCEEDED) == self.shards

    @property
    def progress(self) -> str:
        return f"{self.done}/{self.total}"

    def describe(self) -> str:
        """``20 shards: 18 succeeded, 1 running, 1 failed``."""
        parts = [f"{self.count(s)} {s.value}" for s in TaskState if self.count(s)]
        return f"{self.shards} shard{'s' if self.shards != 1 else ''}: " + ", ".join(parts)


def aggregate(records: Sequence[TaskRecord]) -> Aggregate:
    done = total = failed = 0
    states: Counter[str] = Counter()
    for record in records:
        progress = record.progress
        inputs = record.int_value(names.A_INPUTS)
        if progress is not None:
            done += progress[0]
            total += max(progress[1], inputs)
        else:
            total += inputs
        failed += record.int_value(names.A_IMAGES_FAILED)
        states[record.state.value if record.state else "unknown"] += 1
    return Aggregate(len(records), done, total, failed, dict(states))


def failure_message(records: Sequence[TaskRecord]) -> str:
    """The task's error when its shards ended and some did not succeed: which, and why."""
    bad = [r for r in records if r.state != TaskState.SUCCEEDED]
    shown = "; ".join(
        f"shard {r.get(names.A_SHARD).partition('/')[0]} on {r.get(names.A_COMPUTE_RESOURCE) or '?'} "
        f"{r.state.value if r.state else 'unknown'}: {r.get(names.A_ERROR) or 'no error recorded'}"
        for r in bad[:_ERRORS_SHOWN]
    )
    more = f"; and {len(bad) - _ERRORS_SHOWN} more" if len(bad) > _ERRORS_SHOWN else ""
    return f"{len(bad)} of {len(records)} shards did not succeed ({shown}{more}); resume the task to run them again"


def resource_load(grid: Grid, resources: Iterable[Resource]) -> dict[str, int]:
    """Tasks and shards queued or running on each resource, as far as the caller can see them:
    two queries (by state), whatever the number of tasks."""
    wanted = {r.name for r in resources}
    load = {name: 0 for name in wanted}
    for state in (TaskState.QUEUED, TaskState.RUNNING):
        try:
            found = grid.find_collections_with_avu(names.A_STATE, state.value)
        except ComputeToDataError as exc:  # load only breaks ties: never refuse a task for it
            log.warning("could not read the load of the compute resources: %s", exc)
            return load
        for item in found:
            record = TaskRecord.from_collection_avus(item)
            resource = record.get(names.A_COMPUTE_RESOURCE)
            if resource in load and not record.is_sharded:
                load[resource] += 1
    return load


def pages_of(first: list[Sequence[DataObject]], rest: Iterator[Sequence[DataObject]]) -> Iterator[Sequence[DataObject]]:
    """The pages a listing gave so far (buffered while deciding whether to shard), then the rest;
    each buffered page is let go of as it is handed out, so planning never holds more than a page."""
    while first:
        yield first.pop(0)
    yield from rest


@dataclass
class Refusals:
    """Paths lacking a permission, found page by page: the first few by name, the rest counted."""

    shown: list[str] = field(default_factory=list)
    count: int = 0
    limit: int = 5

    def add(self, paths: Sequence[str]) -> None:
        self.count += len(paths)
        self.shown.extend(paths[: max(0, self.limit - len(self.shown))])

    def text(self) -> str:
        more = f" and {self.count - len(self.shown)} more" if self.count > len(self.shown) else ""
        return ", ".join(self.shown) + more
