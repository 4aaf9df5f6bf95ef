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
from collections.abc import Iterable

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.shards import shards_collection
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)









def shard_records(grid: Grid, task_collection: str) -> list[TaskRecord]:
    """Every shard of a task (by number): one query for all of them, whatever their count."""
    found = grid.find_collections_with_avu(names.A_SHARD, None, shards_collection(task_collection))
    records = [TaskRecord.from_collection_avus(c) for c in found]
    records = [r for r in records if posixpath.dirname(r.collection) == shards_collection(task_collection)]
    return sorted(records, key=lambda r: r.collection)








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




