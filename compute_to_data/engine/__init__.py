"""The engine: one run of a task on one compute host, as a fixed sequence of steps (the Template
Method in ``task.py``; the steps and the values they return in ``steps.py``; the order each kind
of run takes them in, ``plans.py``), its task types (``image_classification.py``), and what a run
needs around it: staging, replication, planning of shards, tagging parts, what every run does on
its host (``onhost.py``), the summary of a sharded task and the reaper of dead runs. :func:`create_task` picks a task type by name (``registry.task_types``)."""

from __future__ import annotations

from compute_to_data.domain.registry import task_types
from compute_to_data.domain.shards import ShardSpec
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.task import ComputeToDataTask


def create_task(
    config: TaskConfig, context: TaskContext, *, task_id: str | None = None, submitted_by: str | None = None,
    shard: ShardSpec | None = None,
) -> ComputeToDataTask:
    """The registered task type named by ``config.task_type``, ready to ``run()`` or ``submit()``
    (``shard``: run one shard of a larger task, in the shard's collection)."""
    task_class = task_types.get(config.task_type)
    return task_class(config, context, task_id=task_id, submitted_by=submitted_by, shard=shard)
