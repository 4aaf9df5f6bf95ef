"""Task types (Template Method in ``base``) and the factory that picks one by name."""

from __future__ import annotations

from compute_to_data.domain.registry import task_types
from compute_to_data.domain.shards import ShardSpec
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine.task import (
    ComputeToDataTask,
    TaskCancelled,
    TaskContext,
    TaskOutcome,
)
from compute_to_data.lifecycle.machine import TaskLifecycle


def create_task(
    config: TaskConfig, context: TaskContext, *, task_id: str | None = None, submitted_by: str | None = None,
    shard: ShardSpec | None = None,
) -> ComputeToDataTask:
    """The registered task type named by ``config.task_type``, ready to ``run()`` or ``submit()``
    (``shard``: run one shard of a larger task, in the shard's collection)."""
    task_class = task_types.get(config.task_type)
    return task_class(config, context, task_id=task_id, submitted_by=submitted_by, shard=shard)


__all__ = ["ComputeToDataTask", "ShardSpec", "TaskCancelled", "TaskContext", "TaskLifecycle", "TaskOutcome", "create_task"]
