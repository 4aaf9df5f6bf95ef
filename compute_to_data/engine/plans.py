"""The plans: the order in which a run takes the steps (:mod:`.steps`), one plan per kind of run.

- :func:`run_new_task`: a new task run at once (the demo, a config run in-process): it checks
  what a submit checks, makes the task collection and runs (one run: a larger task is refused).
- :func:`run_queued`: a queued run of a task that exists (submitted, or resumed) takes its task
  collection over and runs; a resumed task classifies only what its earlier runs left.
- :func:`run_shard`: one shard of a larger task: its planned inputs, in its shard's collection;
  it stages before it takes the resource's slot and gives the slot back before it tags, so the
  next shard replicates while this one computes; the task follows when it ends.
- :func:`submit_task`: checks what a run would check and records ``queued``; a task larger than
  one shard is planned as shards instead (:class:`ShardedSubmit`), each shard a queued run.
- :func:`run_or_submit`: a task run now (``c2d_run``, ``c2d run``): one run whose compute
  resource is here runs at once, as :func:`run_new_task`, checked once; a task larger than one
  shard, or one whose resource is another host's, is submitted instead, for the caller to run its
  queued runs.

The three runs share what follows the read-only steps (:func:`_run_here`): the run lock before
``running`` and until the end is recorded (on its compute host a running task whose lock is free
and whose processes are gone is dead at once, ``engine/reaper.py``), then prepare, stage,
execute, ingest, tag and finalize, and a failure recorded once the task collection is the run's.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import TaskBusyError, TaskStateError
from compute_to_data.domain.shards import Refusals, ShardSpec
from compute_to_data.domain.timings import timings_text
from compute_to_data.engine import onhost
from compute_to_data.engine.context import TaskOutcome
from compute_to_data.engine.planning import Candidate, ShardDraft, ShardPlanner, place_shards
from compute_to_data.engine.slots import ResourceSlot
from compute_to_data.engine.steps import (
    Checked,
    CollectionListing,
    InputListing,
    Recorded,
    RunFailed,
    Selection,
    ShardedSelection,
    ShardListing,
    Staged,
    TaskRun,
    TaskSteps,
    one_line,
)
from compute_to_data.engine.termination import deferred_termination
from compute_to_data.lifecycle import series as schedule
from compute_to_data.lifecycle.shard_records import resource_load
from compute_to_data.runners.base import RunResult

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- the plans
def run_new_task(task: TaskSteps) -> TaskOutcome:
    """A new task, run here and now: one run (a task larger than one shard is refused, its
    shards being queued runs of their own); the same plan as :func:`run_or_submit`."""
    return _new_task(task, may_run_here=True, shards_allowed=False)


def run_queued(task: TaskSteps) -> TaskOutcome:
    """A queued run of a task that exists (submitted, or resumed), on the whole of its inputs."""
    with task.step("validate"):
        checked = task.validate()
    listing = CollectionListing(task)
    with task.step("select_compute_resource"):
        selection = task.select_compute_resource(checked, task.compute_resources(), listing.candidates())
    return _run_here(task, checked, selection, listing, recorded=task.recorded, shard=None)


def run_shard(task: TaskSteps, shard: ShardSpec) -> TaskOutcome:
    """One shard of a larger task, on the resource it was placed on."""
    with task.step("validate"):
        checked = task.validate()
    with task.step("select_compute_resource"):
        tagged = task.compute_resources(restrict=False)
        listing = ShardListing.read(task, shard)
        selection = task.select_compute_resource(checked, tagged, listing.candidates())
    return _run_here(task, checked, selection, listing, recorded=lambda: task.recorded(listing.relative_paths),
                     shard=shard)


def submit_task(task: TaskSteps) -> TaskOutcome:
    """Check everything a run would check, then record ``queued``; the caller queues the run
    (one per shard, ``outcome.shard_collections``, for a task larger than one shard)."""
    return _new_task(task, may_run_here=False)


def run_or_submit(task: TaskSteps) -> TaskOutcome:
    """A task run now: here and at once when it is one run and its compute resource is here
    (the context's ``dispatch`` says whether it runs elsewhere); else submitted, as
    :func:`submit_task` would (state ``queued``, ``outcome.shard_collections`` for a task
    larger than one shard), for the caller to run its queued runs. A run here so checks
    everything once: submitting it first and starting the queued run would check it all again
    (on a real zone about 0.6 s of a 2,000-image task's 15)."""
    return _new_task(task, may_run_here=True)


def _new_task(task: TaskSteps, *, may_run_here: bool, shards_allowed: bool = True) -> TaskOutcome:
    """Every check once, then the task runs here (``may_run_here``, one run whose resource is
    here), or is recorded ``queued`` (a task larger than one shard: as shards, each a queued
    run, unless ``shards_allowed`` is false: refused before anything is written)."""
    if task.scope.takes_over:
        done_as = "run as a new task" if may_run_here else "submitted again"
        raise TaskStateError(f"task {task.task_id} exists: it is started or resumed, not {done_as}")
    with task.step("validate"):
        checked = _validate_new(task)
    with task.step("select_compute_resource"):
        chosen = _select_new(task, checked)
    if isinstance(chosen, ShardedSelection):
        if not shards_allowed:
            raise TaskStateError(
                f"this task is larger than one shard ({task.shard_size():,} images): submit it, and its shards run "
                "as queued runs (c2d submit, c2d run, c2d_submit and c2d_run do)"
            )
        return ShardedSubmit(task, checked, chosen).submit()
    dispatch = task.context.dispatch
    if may_run_here and not (dispatch is not None and dispatch(chosen.runner, chosen.resource)):
        return _run_here(task, checked, chosen, CollectionListing(task), recorded=None, shard=None, dispatched=False)
    return _record_queued(task, checked, chosen)  # queued, for its host (or the delay server) to run


def _record_queued(task: TaskSteps, checked: Checked, chosen: Selection) -> TaskOutcome:
    """The rest of a submit: the permission checks, then the task collection, ``queued``."""
    with task.step("check_permissions"):
        task.check_permissions(chosen.candidates, creates_collection=True)
    with task.step("select_inputs"):
        inputs = task.select_inputs(chosen.candidates, None)
    owned = False
    try:
        with task.step("prepare_task_collection", owned=True):
            with deferred_termination():  # made, and known to be this submit's to record
                task.create_collection()
                owned = True
            task.record_new_task(checked, chosen, inputs)
    except BaseException as exc:
        task.record_failure(exc, owned=owned)  # a task collection that exists never stays queued for nothing
        raise
    return task.outcome


# ---------------------------------------------------------------------------------- what they share
def _validate_new(task: TaskSteps) -> Checked:
    """A new task: its series may make it, then every check, then the task it runs after."""
    task.check_new_task()
    checked = task.validate()
    task.check_chain()
    return checked


def _select_new(task: TaskSteps, checked: Checked) -> Selection | ShardedSelection:
    """A new task: larger than one shard? The listing is read only as far as needed to know."""
    tagged = task.compute_resources()
    found = task.find_out_size()
    if isinstance(found, list):
        return task.select_compute_resource(checked, tagged, found)
    return task.select_for_shards(checked, tagged, found)


def _run_here(task: TaskSteps, checked: Checked, selection: Selection, listing: InputListing, *,
              recorded: Callable[[], Recorded] | None, shard: ShardSpec | None,
              dispatched: bool | None = None) -> TaskOutcome:
    """The run on its compute host, after the read-only steps that chose it. ``recorded``: the
    task collection exists (what it says of its inputs); ``shard``: the run is one shard;
    ``dispatched``: whether it runs elsewhere, when the plan asked already (else the context's
    ``dispatch`` is asked here).

    Raises before this run owns the task collection (refusals, a cancelled or busy task); after
    that, failures are recorded and returned in the outcome (state ``failed``/``cancelled``)."""
    dispatch = task.context.dispatch
    if dispatched is None:
        dispatched = dispatch is not None and dispatch(selection.runner, selection.resource)
    if dispatched:
        task.outcome.dispatched = True  # it runs on the resource's host, not here
        return task.outcome
    with task.step("check_permissions"):
        task.check_permissions(selection.candidates, creates_collection=recorded is None)
    with task.step("select_inputs"):
        inputs = task.select_inputs(selection.candidates, recorded() if recorded is not None else None)
    resource = selection.resource
    lock = task.lifecycle.run_lock(resource, task.scope.run_key)
    if not lock.acquire():
        raise TaskBusyError(
            f"{task.scope.describe()} is being run by another process on this host right now; not starting it twice"
        )
    owned = False
    run: TaskRun | None = None
    workdir: TaskWorkdir | None = None
    result: RunResult | None = None
    staged: Staged | None = None
    slot: ResourceSlot | None = None
    try:
        with task.step("prepare_task_collection", owned=True):
            placement = task.take_over_task_collection() if recorded is not None else None
            if placement is None:
                with deferred_termination():  # made, and known to be this run's to record
                    task.create_collection()
                    owned = True
                placement = task.record_new_task(checked, selection, inputs)
            owned = True
        task.reap_dead_runs(resource)
        if shard is None:
            slot = task.wait_for_slot(resource, None)
        with deferred_termination():  # ``running`` written, and the run knows it is the one running
            running = task.record_running(selection, inputs)
            live = run = TaskRun(task.scope, listing, checked, selection, inputs, placement, running)
        if shard is not None:
            task.lifecycle.shard_started(shard.task_collection)
        with task.step("stage_inputs", owned=True):
            workdir = task.new_workdir(resource)
            # listed moments ago and no other run on the resource meanwhile: no second listing
            relist = selection.listed_long_ago() or (slot is not None and slot.had_to_wait)
            on_host = staged = task.stage_inputs(live, workdir, relist=relist)
        if shard is not None:
            # A shard stages before it takes the resource's slot and tags after it gave it
            # back, so the next shard replicates while this one computes (pipelining).
            slot = task.wait_for_slot(resource, running, on_host)
        with task.step("execute", owned=True):
            ran = result = task.execute(live, on_host)
            task.end_execute(live, on_host, ran)
        if shard is not None and slot is not None:
            slot.release()
        with task.step("ingest_outputs", owned=True):
            task.ingest_outputs(live, on_host)
        task.raise_if_cancelled()
        if not ran.succeeded:
            raise RunFailed(ran.error or "the notebook run failed")
        with task.step("tag_results", owned=True):
            task.tag_results(live, on_host, ran)
        with task.step("finalize", owned=True):
            task.finalize(live, ran)
    except BaseException as exc:
        task.record_failure(exc, owned=owned, run=run, workdir=workdir, result=result)
        if not owned or not isinstance(exc, Exception):
            raise  # not ours to record (busy, cancelled before it ran) / Ctrl-C, SIGTERM: recorded
    finally:
        if slot is not None:
            slot.release()
        if staged is not None:
            staged.stream.stop("the run ended before staging did")  # no reader outlives the run
        onhost.remove_workdir(workdir, keep=task.context.keep_workdir)
        lock.release()
        if shard is not None and owned:
            task.settle_task(shard)
    return task.outcome


# ---------------------------------------------------------------------------------- a sharded submit
@dataclass(frozen=True)
class ShardLayout:
    """The planned shards, the resource of each, and how many images they hold."""

    drafts: Sequence[ShardDraft]
    assignment: Sequence[str]
    total: int


class ShardedSubmit:
    """A new task larger than one shard: check and select page by page, cut the shards, place
    them; then (all checks passed) write the task, its shards and their inputs, every shard
    ``queued``."""

    def __init__(self, task: TaskSteps, checked: Checked, chosen: ShardedSelection) -> None:
        self.task = task
        self.checked = checked
        self.chosen = chosen

    def submit(self) -> TaskOutcome:
        task = self.task
        with tempfile.TemporaryDirectory(prefix="c2d-plan-") as tmp:
            planner = ShardPlanner(task.shard_size(), Path(tmp))
            with task.step("plan_shards"):
                layout = self.scan(planner)
            owned = False
            try:
                with task.step("prepare_task_collection", owned=True):
                    with deferred_termination():  # made, and known to be this submit's to record
                        task.create_collection()
                        owned = True
                    self.create_shards(planner, layout)
            except BaseException as exc:
                task.record_failure(exc, owned=owned)  # a task collection that exists never stays queued for nothing
                raise
        return task.outcome

    def scan(self, planner: ShardPlanner) -> ShardLayout:
        """Every page checked (read and modify on its images) and cut into shards; the shards placed."""
        task, chosen = self.task, self.chosen
        unreadable, unwritable = Refusals(), Refusals()
        skipped = 0
        for page in chosen.pages:
            found = task.grid.paths_lacking_levels([o.path for o in page], [AccessLevel.READ, AccessLevel.MODIFY])
            unreadable.add(found[AccessLevel.READ])
            unwritable.add(found[AccessLevel.MODIFY])
            for obj in page:
                if task.is_eligible(obj):
                    planner.add(Candidate.of(obj, task.relative_path(obj)))
                else:
                    skipped += 1
        unreadable.add(task.grid.paths_lacking_access([task.config.model, task.config.labels], AccessLevel.READ))
        if unreadable.count:
            raise task.cannot_read(unreadable)
        task.check_can_create(task.config.output_collection)
        if unwritable.count:
            raise task.cannot_tag(unwritable)
        drafts = planner.finish()
        resources = chosen.resources
        load = resource_load(task.grid, resources) if len(resources) > 1 else {}
        assignment = place_shards(
            drafts, resources, spread=task.config.spread or task.config.compute_resources is not None,
            load=load, default_max_tasks=task.settings.max_concurrent_tasks_default,
        )
        task.outcome.inputs = planner.total
        task.outcome.skipped_already_tagged = skipped
        log.info("task %s: %d images in %d shards (%s)", task.task_id, planner.total, len(drafts),
                 ", ".join(f"{n} on {r}" for r, n in sorted(Counter(assignment).items())))
        return ShardLayout(drafts, assignment, planner.total)

    def create_shards(self, planner: ShardPlanner, layout: ShardLayout) -> None:
        """The task (``running`` once a shard runs) and each shard, ``queued``, with its inputs file."""
        task = self.task
        by_name = {r.name: r for r in self.chosen.resources}
        drafts, assignment = layout.drafts, layout.assignment
        common = {
            names.A_TASK_ID: task.task_id,
            names.A_TASK_TYPE: task.task_type,
            names.A_SUBMITTED_BY: task.submitted_by,
            names.A_CREATED: names.iso_utc(),
            names.A_INPUT_COLLECTION: task.config.input_collection,
            **task.pins(self.checked),  # every shard checks them before it classifies
        }
        task.lifecycle.create(task.collection, {
            **common,
            names.A_INPUTS: layout.total,
            names.A_PROGRESS: f"0/{layout.total}",
            names.A_SHARDS: len(drafts),
            names.A_COMPUTE_RESOURCE: ",".join(sorted(set(assignment))),
            names.A_SUMMARY_RESOURCE: names.SUMMARY_PENDING,
            names.A_MODEL: task.config.model,
            names.A_PARAMETERS: task.config.notebook_parameters(),
            names.A_TIMINGS: timings_text(task.outcome.timings),
            **schedule.creation_values(task.config, task.task_id, task.context.series),
            **task.chain_values(),
        })
        task.put_text(by_name[assignment[0]], names.TASK_CONFIG_FILE, task.config.to_json())  # the task's own files
        created: list[str] = []
        try:
            for draft, resource in zip(drafts, assignment):
                spec = ShardSpec(names.shard_collection(task.collection, draft.number), draft.number, len(drafts))
                task.grid.create_collection(spec.collection)
                task.grid.put_file(planner.inputs_file(draft.number),
                                   posixpath.join(spec.collection, names.SHARD_INPUTS_FILE), resource)
                task.lifecycle.create(spec.collection, {
                    **common,
                    names.A_SHARD: spec.label,
                    names.A_INPUTS: draft.count,
                    names.A_PROGRESS: f"0/{draft.count}",
                    names.A_COMPUTE_RESOURCE: resource,
                })
                created.append(spec.collection)
        except BaseException as exc:
            for collection in created:
                task.lifecycle.fail_queued(collection, f"the task could not be planned completely: {one_line(exc)}")
            raise
        task.outcome.shard_collections = created
        task.outcome.compute_resource = ",".join(sorted(set(assignment)))
        task.outcome.state = TaskState.QUEUED
