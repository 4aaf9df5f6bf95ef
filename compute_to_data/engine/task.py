"""The Template Method every compute-to-data task follows, in a fixed order.

``run()`` is final: validate -> select compute resource -> check permissions -> select inputs
-> prepare the task collection -> stage inputs -> execute -> bring outputs into the catalog ->
tag results -> finalize. The steps and the values they hand on are in :mod:`.steps`; the order
each kind of run takes them in (a new task, a queued or resumed one, one shard of a larger task,
a submit) is a plan in :mod:`.plans`. Task types override the steps (and the hooks
``build_parameters``, ``tag_results``, ``tag_finished_parts``, ``salvage_parts``), never the
order.

Three promises hold whatever fails: nothing in the catalog changes before the read-only steps
(validation, selection, permission checks) have passed; once the task collection exists, its
``c2d::state`` tells the truth — states change only through the lifecycle
(:mod:`compute_to_data.lifecycle.machine`), a state is written only after what it claims is true,
a failure is recorded with its error, a report that was produced is registered, and every image
is either completely tagged or untouched; and a run that dies (``kill -9``, a lost host) costs
only the part it was working on: the parts finished and tagged stay, the run's host finds it
dead by its heartbeat, and a resumed run classifies only what is left.
"""

from __future__ import annotations

from typing import final

from compute_to_data.engine import plans
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.steps import TaskSteps

__all__ = ["ComputeToDataTask", "TaskContext", "TaskOutcome"]


class ComputeToDataTask(TaskSteps):
    """Base of all task types; subclasses are registered by name (``registry.task_types``)."""

    @final
    def run(self) -> TaskOutcome:
        """Run every step in order, by the plan of this kind of run. Raises before this run owns
        the task collection (refusals, a cancelled or busy task); after that, failures are
        recorded and returned in the outcome (state ``failed``/``cancelled``)."""
        if self.scope.shard is not None:
            return plans.run_shard(self, self.scope.shard)
        if self.scope.takes_over:
            return plans.run_queued(self)
        return plans.run_new_task(self)

    @final
    def run_now(self) -> TaskOutcome:
        """A new task run now: here at once when it is one run whose compute resource is here,
        else submitted (``queued``) for the caller to run its queued runs (:func:`.plans.run_or_submit`)."""
        return plans.run_or_submit(self)

    @final
    def submit(self) -> TaskOutcome:
        """Check everything a run would check, then record ``queued``; the caller queues the run
        (one per shard, ``outcome.shard_collections``, for a task larger than one shard)."""
        return plans.submit_task(self)
