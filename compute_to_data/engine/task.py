"""The Template Method every compute-to-data task follows, in a fixed order.

``run()`` is final: validate -> select compute resource -> check permissions -> select inputs
-> prepare the task collection -> stage inputs -> execute -> bring outputs into the catalog ->
tag results -> finalize. Task types override the steps (and the two hooks
:meth:`ComputeToDataTask.build_parameters` and :meth:`ComputeToDataTask.tag_results`), never
the order.

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

import fnmatch
import functools
import hashlib
import json
import logging
import os
import posixpath
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, final

from compute_to_data.contract.inputs import reads_inputs_manifest, write_manifest
from compute_to_data.contract.parts import Entry
from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel, DataObject, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    AccessDeniedError,
    ChangedSinceSubmitError,
    ComputeToDataError,
    ConfigError,
    NoEligibleInputsError,
    ObjectNotFoundError,
    StagingError,
    TaskBusyError,
    TaskCancelled,
    TaskLostError,
    TaskStateError,
)
from compute_to_data.domain.irods_codes import (
    CAT_NO_ACCESS_PERMISSION,
    CAT_UNKNOWN_COLLECTION,
    CAT_UNKNOWN_FILE,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import AllowedImage, Settings, notebook_path
from compute_to_data.domain.shards import Refusals, ShardSpec, pages_of
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.domain.timings import run_timing_name, timings_text
from compute_to_data.engine import predictions as task_parts
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.pipelining import InputStream
from compute_to_data.engine.planning import (
    Candidate,
    ShardDraft,
    ShardPlanner,
    place_shards,
    read_inputs_text,
)
from compute_to_data.engine.reaper import Reaper
from compute_to_data.engine.replication import (
    COLLECTION_PLANNING_MINIMUM,
    Replicator,
    agent_pool,
)
from compute_to_data.engine.selection import require_existing, restrict_to, select_compute_resource
from compute_to_data.engine.slots import ResourceSlot
from compute_to_data.engine.staging import (
    FROM_RESOURCE,
    IN_PLACE,
    Locality,
    StagingSummary,
    plan_staging,
)
from compute_to_data.engine.streaming import StreamItem
from compute_to_data.engine.termination import Terminated
from compute_to_data.engine.where import WhereFilter
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle import chain
from compute_to_data.lifecycle import series as schedule
from compute_to_data.lifecycle.machine import TaskStateMachine, still_in
from compute_to_data.lifecycle.runlock import RunLock
from compute_to_data.lifecycle.shard_records import resource_load
from compute_to_data.lifecycle.store import Heartbeat, TaskStateStore
from compute_to_data.runners import choose_runner
from compute_to_data.runners.base import Runner, RunRequest, RunResult
from compute_to_data.runners.processes import run_id

log = logging.getLogger(__name__)

#: Task configs uploaded next to the images (upload trigger) are never inputs themselves.
TASK_CONFIG_SUFFIX = ".c2d.json"

"""Called with (step name, "start" | "done" | "failed", seconds) for progress displays."""

"""Called with (part number, images in it) after a part was stored and tagged."""

"""Given the chosen compute resource, run the task on that resource's host if this is not it.

Returns True when the run was handed over (this process then stops after the read-only steps).
"""






@dataclass
class ShardPlan:
    """A new task found larger than one shard: the listing still to read, the resources its
    shards may go to, and (once read) the shards and the resource of each."""

    pages: Iterator[Sequence[DataObject]]
    resources: list[Resource]
    drafts: list[ShardDraft] = field(default_factory=list)
    assignment: list[str] = field(default_factory=list)


class ComputeToDataTask(ABC):
    """Base of all task types; subclasses are registered by name (``registry.task_types``)."""

    task_type: ClassVar[str] = "abstract"

    def __init__(
        self,
        config: TaskConfig,
        context: TaskContext,
        *,
        task_id: str | None = None,
        submitted_by: str | None = None,
        shard: ShardSpec | None = None,
    ) -> None:
        self.config = config
        self.context = context
        self.grid: Grid = context.grid
        self.settings: Settings = context.settings
        self.store = TaskStateStore(self.grid)
        self.lifecycle = TaskStateMachine(self.grid, self.settings)
        self.task_id = task_id or names.new_task_id()
        #: True when this run takes over a task collection that exists (queued by submit or resume)
        self.resuming = task_id is not None
        self.submitted_by = submitted_by or self.grid.user
        self.collection = posixpath.join(config.output_collection, self.task_id)
        #: one shard of a larger task: this run works in the shard's collection, on its inputs
        self.shard = shard
        if shard is not None:
            self.collection = shard.collection
        #: names this run on its host (lock, staging directory, C2D_TASK_ID of its processes)
        self.run_key = f"{self.task_id}-{shard.name}" if shard is not None else self.task_id
        #: a new task found larger than one shard: the listing so far, to plan its shards from
        self.plan: ShardPlan | None = None
        # Filled in by the steps, in order.
        self.runner: Runner | None = context.runner
        self.image: AllowedImage | None = None
        self.notebook_file: Path | None = None
        self.candidates: list[DataObject] = []
        self.resource: Resource | None = None
        self.archive_resource: Resource | None = None
        self.inputs: list[DataObject] = []
        self.skipped: list[DataObject] = []
        self.model_object: DataObject | None = None
        self.labels_object: DataObject | None = None
        self.workdir: TaskWorkdir | None = None
        #: what is read through iRODS, possibly while the notebook runs, and what c2d::staging says
        self.input_stream: InputStream | None = None
        self.staging_summary: StagingSummary | None = None
        self.replicated_bytes = 0
        self.run_result: RunResult | None = None
        self.collection_created = False
        #: the run: its index (0, then one more per resume), start time (its identity) and signs of life
        self.run_index = 0
        self.started: str | None = None
        self.heartbeat: Heartbeat | None = None
        self._queue_reason_written = False
        self.run_lock: RunLock | None = None
        #: a resumed task: the inputs it selected first, and what earlier runs stored and tagged
        self.selection: list[str] | None = None
        self.previous: dict[str, Entry] = {}
        self.total_inputs = 0
        #: ``inputs.where``: the AVU conditions a candidate must meet
        self.where = WhereFilter(self.grid, config.where)
        self.outcome = TaskOutcome(self.task_id, None, self.collection)

    # ------------------------------------------------------------------ the template methods
    @final
    def run(self) -> TaskOutcome:
        """Run every step in order. Raises before this run owns the task collection (refusals,
        a cancelled or busy task); after that, failures are recorded and returned in the outcome
        (state ``failed``/``cancelled``)."""
        self._step("validate", self.validate)
        self._step("select_compute_resource", self.select_compute_resource)
        if self.plan is not None:  # larger than one shard: its shards are queued runs of their own
            raise TaskStateError(
                f"this task is larger than one shard ({self.shard_size():,} images): submit it, and its shards run "
                "as queued runs (c2d submit, c2d run, c2d_submit and c2d_run do)"
            )
        assert self.resource is not None
        if self.context.dispatch is not None and self.context.dispatch(self, self.resource):
            self.outcome.dispatched = True
            return self.outcome
        self._step("check_permissions", self.check_permissions)
        self._step("select_inputs", self.select_inputs)
        # The lock before ``running`` (``_record_running``) and until the end is recorded: on
        # its compute host a running task whose lock is free and whose processes are gone is
        # dead at once (engine/reaper.py), so a run must never be ``running`` without its lock.
        self.run_lock = self.lifecycle.run_lock(self.resource, self.run_key)
        if not self.run_lock.acquire():
            what = f"shard {self.shard.label} of task {self.task_id}" if self.shard else f"task {self.task_id}"
            raise TaskBusyError(
                f"{what} is being run by another process on this host right now; not starting it twice"
            )
        slot: ResourceSlot | None = None
        try:
            self._step("prepare_task_collection", self.prepare_task_collection)
            self._reap_dead_runs()
            if self.shard is None:
                slot = self._wait_for_slot()
                self._record_running()
                self._step("stage_inputs", self.stage_inputs)
            else:
                # A shard stages before it takes the resource's slot and tags after it gave it
                # back, so the next shard replicates while this one computes (pipelining).
                self._record_running()
                self._step("stage_inputs", self.stage_inputs)
                slot = self._wait_for_slot()
            self._step("execute", self.execute)
            if self.shard is not None:
                slot.release()
            self._step("ingest_outputs", self.ingest_outputs)
            self._raise_if_cancelled()
            assert self.run_result is not None
            if not self.run_result.succeeded:
                raise _RunFailed(self.run_result.error or "the notebook run failed")
            self._step("tag_results", self.tag_results)
            self._step("finalize", self.finalize)
        except BaseException as exc:
            self._record_failure(exc)
            if not self.collection_created or not isinstance(exc, Exception):
                raise  # not ours to record (busy, cancelled before it ran) / Ctrl-C, SIGTERM: recorded
        finally:
            if slot is not None:
                slot.release()
            if self.input_stream is not None:
                self.input_stream.stop("the run ended before staging did")  # no reader outlives the run
            if self.workdir is not None and not self.context.keep_workdir:
                self.workdir.remove()
            self.run_lock.release()
            if self.shard is not None and self.collection_created:
                self._settle_task()
        return self.outcome

    def _wait_for_slot(self) -> ResourceSlot:
        """One of the resource's slots (COMPUTE_RESOURCE_MAX_TASKS); a shard that waits keeps
        beating (it is running: staged, waiting for the GPU), a queued task just waits."""
        slot = self._slot()
        waiting = time.perf_counter()
        acquired = slot.acquire()
        self.outcome.timings["wait_for_slot"] = time.perf_counter() - waiting
        if not acquired:
            raise TaskCancelled("the task was cancelled while it waited for a free slot")
        return slot

    @final
    def submit(self) -> TaskOutcome:
        """Check everything a run would check, then record ``queued``; the caller queues the run
        (one per shard, ``outcome.shard_collections``, for a task larger than one shard)."""
        self._step("validate", self.validate)
        self._step("select_compute_resource", self.select_compute_resource)
        if self.plan is not None:
            self._plan_sharded()
            return self.outcome
        self._step("check_permissions", self.check_permissions)
        self._step("select_inputs", self.select_inputs)
        try:
            self._step("prepare_task_collection", self.prepare_task_collection)
        except BaseException as exc:
            self._record_failure(exc)  # a task collection that exists never stays queued for nothing
            raise
        return self.outcome

    # ------------------------------------------------------------------ overridable steps
    def validate(self) -> None:
        """Everything that can be refused without touching the catalog, refused now."""
        if self.config.task_type != self.task_type:
            raise ConfigError(f"task type {self.config.task_type!r} cannot run as {self.task_type!r}")
        if not self.resuming:  # a scheduled config makes new tasks only as part of its series
            schedule.check_new_task(self.config, self.settings, self.context.series)
        self.notebook_file = notebook_path(self.settings, self.config.notebook)
        if self.runner is None:
            self.runner = choose_runner(self.config.runner, self.settings)
        else:
            self.settings.check_runner(self.runner.name)
        self._check_image_choice()
        if not self.grid.collection_exists(self.config.input_collection):
            raise ObjectNotFoundError(
                f"input collection {self.config.input_collection} does not exist (or you cannot see it)",
                irods_code=CAT_UNKNOWN_COLLECTION,
            )
        for what, path in (("model", self.config.model), ("labels", self.config.labels)):
            if not self.grid.data_object_exists(path):
                raise ObjectNotFoundError(
                    f"{what} data object {path} does not exist (or you cannot see it)", irods_code=CAT_UNKNOWN_FILE
                )
        self.model_object = self.grid.get_data_object(self.config.model)
        self.labels_object = self.grid.get_data_object(self.config.labels)
        if not self.resuming and self.shard is None:  # a chained task: the one it runs after has succeeded
            chain.check_after(self.grid, self.config.after)

    def _check_image_choice(self) -> None:
        # The allowlist holds whatever runner was chosen (also in-process, also when auto fell
        # back to it): a config naming an image the administrator did not allow is refused.
        assert self.runner is not None
        if self.runner.uses_container_paths or self.config.image is not None:
            self.settings.check_image_choice(self.config.image)  # the image itself comes with the resource

    def _choose_runner_for_resource(self) -> None:
        """``auto`` is decided again once the resource is known: Slurm only for the resources the
        settings list under slurm.resources, Docker (or in-process) for the others."""
        if self.config.runner == "auto" and self.context.runner is None and self.resource is not None:
            self.runner = choose_runner("auto", self.settings, resource=self.resource.name)
            self._check_image_choice()

    def select_compute_resource(self) -> None:
        tagged = self.grid.find_resources(names.ROLE_ATTRIBUTE, self.config.compute_role)
        role = self.config.compute_role
        if self.config.compute_resource is not None:
            require_existing(self.grid, "$.compute.resource", [self.config.compute_resource], tagged, role)
        if self.config.compute_resources is not None and self.shard is None:
            require_existing(self.grid, "$.compute.resources", self.config.compute_resources, tagged, role)
            tagged = restrict_to(tagged, self.config.compute_resources, self.config.compute_role)
        if self.resuming or self.shard is not None:
            self.candidates = self._list_candidates()
        else:  # a new task: larger than one shard? Read the listing only as far as needed to know.
            self.candidates = self._find_out_size(tagged)
            if self.plan is not None:
                self._choose_for_shards(tagged)
                return
        load = resource_load(self.grid, tagged) if len(tagged) > 1 and self.config.compute_resource is None else None
        self.resource = select_compute_resource(
            tagged, self.candidates, self.config.compute_role, self.config.compute_resource,
            load=load, default_max_tasks=self.settings.max_concurrent_tasks_default,
        )
        self.outcome.compute_resource = self.resource.name
        self._choose_runner_for_resource()
        if self.runner is not None and self.runner.uses_container_paths:
            gpus = self.resource.avu_int(names.GPUS_ATTRIBUTE, 0)
            self.image = self.settings.image_for(self.config.image, gpus)
        if self.config.archive_role is not None:  # refused now, not after the notebook has run
            archives = self.grid.find_resources(names.ROLE_ATTRIBUTE, self.config.archive_role)
            if self.config.archive_resource is not None:
                require_existing(self.grid, "$.archive.resource", [self.config.archive_resource], archives,
                                 self.config.archive_role)
            self.archive_resource = select_compute_resource(
                archives, [], self.config.archive_role, self.config.archive_resource
            )

    def check_permissions(self) -> None:
        """Read on every input, the model and the labels; write where the results go."""
        readable = [o.path for o in self.candidates] + [self.config.model, self.config.labels]
        lacking = Refusals()
        lacking.add(self.grid.paths_lacking_access(readable, AccessLevel.READ))
        if lacking.count:
            raise self._cannot_read(lacking)
        if not self.resuming:
            self._check_can_create(self.config.output_collection)
        if self.candidates:
            # Tagging predictions needs write access on the images themselves.
            unwritable = Refusals()
            unwritable.add(self.grid.paths_lacking_access([o.path for o in self.candidates], AccessLevel.MODIFY))
            if unwritable.count:
                raise self._cannot_tag(unwritable)

    def _cannot_read(self, lacking: Refusals) -> AccessDeniedError:
        return AccessDeniedError(f"{self.grid.user} cannot read {lacking.text()}; ask the owner for read access")

    def _cannot_tag(self, unwritable: Refusals) -> AccessDeniedError:
        return AccessDeniedError(
            f"{self.grid.user} cannot write metadata on {unwritable.text()}; predictions are stored as AVUs on "
            "the images, which needs modify_object (ichmod write) access"
        )

    def select_inputs(self) -> None:
        """The images to classify: a new task takes the pattern's matches (without those that
        carry a complete prediction, if ``skip_tagged``); a resumed task takes what it selected
        first, less what its earlier runs classified (stored parts) or tagged."""
        class_attribute, score_attribute = self.config.class_attribute, self.config.score_attribute
        if self.shard is not None:  # its inputs were written once, when the task was planned
            self.selection = self._shard_inputs()
            self.previous = task_parts.merge_entries(e for _, e in task_parts.stored_parts(self.grid, self.collection))
        elif self.resuming:
            self.selection = task_parts.load_selection(self.grid, self.collection)
            self.previous = task_parts.merge_entries(e for _, e in task_parts.stored_parts(self.grid, self.collection))
        if self.selection is not None:
            by_name = {self.relative_path(o): o for o in self.candidates}
            selected = [by_name[name] for name in self.selection if name in by_name]
            units = names.task_units(self.task_id)
            self.inputs = [
                o for o in selected
                if self.relative_path(o) not in self.previous
                and not task_parts.has_complete_prediction(o, class_attribute, score_attribute, units)
            ]
            self.total_inputs = len(self.selection)
            self.outcome.done_before = len(selected) - len(self.inputs)
            self.outcome.inputs = len(self.inputs)
            return
        complete = [
            o for o in self.candidates if task_parts.has_complete_prediction(o, class_attribute, score_attribute)
        ]
        if self.previous:  # resumed, but no selection recorded: the parts tell what is done
            done = {self.relative_path(o) for o in complete} | set(self.previous)
            self.inputs = [o for o in self.candidates if self.relative_path(o) not in done]
            self.total_inputs = len(self.candidates)
            self.outcome.done_before = len(self.candidates) - len(self.inputs)
            self.outcome.inputs = len(self.inputs)
            return
        if self.config.skip_tagged:
            self.inputs, self.skipped = [], []
            for obj in self.candidates:
                (self.inputs if self._is_eligible(obj) else self.skipped).append(obj)
        else:
            self.inputs = list(self.candidates)
        self.total_inputs = len(self.inputs)
        self.outcome.inputs = len(self.inputs)
        self.outcome.skipped_already_tagged = len(self.skipped)
        if not self.inputs:
            where = f"{self.config.input_collection} (pattern {self.config.pattern!r}"
            where += ", recursive" if self.config.recursive else ""
            where += f", {self.where.describe()})" if self.where else ")"
            if self.skipped:
                raise NoEligibleInputsError(
                    f"nothing to do: all {len(self.skipped)} matching data objects in {where} already carry "
                    f"{class_attribute}" + (f" (or {names.A_UNCLASSIFIED}: an earlier run of the series could "
                                            "not read them or scored them under its threshold)"
                                            if self.config.schedule_every is not None else "")
                    + "; set inputs.skip_tagged to false (or use --force) to classify them again"
                )
            raise NoEligibleInputsError(
                f"no data object in {where} matches, or none that {self.grid.user} may read; "
                "check inputs.collection, inputs.pattern" + (", inputs.where" if self.where else "") + " and your access"
            )

    def prepare_task_collection(self) -> None:
        """Create ``<output>/<task id>`` with its bookkeeping (or take over a queued one)."""
        if self.resuming and self.grid.collection_exists(self.collection):
            record = self.store.read(self.collection)
            if record.state == TaskState.CANCELLED:
                self.outcome.state = TaskState.CANCELLED
                raise TaskCancelled(f"task {self.task_id} was cancelled; not running it")
            if record.state != TaskState.QUEUED:
                raise TaskStateError(
                    f"task {self.task_id} is {record.state.value if record.state else 'in no known state'}; "
                    "only a queued task can be started"
                )
            self.run_index = record.int_value(names.A_RESUMED)
            # The checks made when it was submitted keep their times, as submit.<step>.
            submitted = {k if "." in k else f"submit.{k}": v for k, v in record.timings.items()}
            self.outcome.timings = {**submitted, **self.outcome.timings}
            self.collection_created = True
            return
        if self.grid.collection_exists(self.collection):
            raise TaskStateError(f"task collection {self.collection} exists already; not overwriting it")
        self.grid.create_collection(self.collection)
        self.collection_created = True
        self.lifecycle.create(
            self.collection,
            {
                names.A_TASK_ID: self.task_id,
                names.A_TASK_TYPE: self.task_type,
                names.A_SUBMITTED_BY: self.submitted_by,
                names.A_CREATED: names.iso_utc(),
                names.A_INPUT_COLLECTION: self.config.input_collection,
                names.A_INPUTS: len(self.inputs),
                names.A_COMPUTE_RESOURCE: self.resource.name if self.resource else None,
                names.A_MODEL: self.config.model,
                names.A_PARAMETERS: self.config.notebook_parameters(),
                names.A_TIMINGS: timings_text(self.outcome.timings),
                **self._pins(),
                **schedule.creation_values(self.config, self.task_id, self.context.series),
                **self._chain_values(),
            },
        )
        self._put_text(names.TASK_CONFIG_FILE, self.config.to_json())

    def stage_inputs(self) -> None:
        """Link each input from where this host can read it: its replica on the compute resource,
        or (``compute.replicate: when_needed``) a good replica on this host or in a vault the
        settings declare visible here, in place; read the rest through iRODS into the staging
        directory (:mod:`.streaming`), or with ``always`` replicate it first, by several agents
        when there are many (:mod:`.replication`). What happened is recorded (``c2d::staging``)."""
        assert self.resource is not None and self.runner is not None and self.heartbeat is not None
        self.runner.preflight(self.image.name if self.image is not None else None)
        resource = self.resource
        # What is on the resource now: a task that waited for its slot may find the images
        # replicated by the one it waited for (and must not count them as its own cost).
        self._refresh_staged_objects()
        locality = Locality(self.grid, self.settings, resource)
        summary = StagingSummary(self.config.replicate)
        plan = plan_staging(self._staged_objects(), resource.name, self.config.replicate, locality)
        summary.on_resource = plan.count(FROM_RESOURCE)[0]
        summary.in_place, summary.in_place_bytes = plan.count(IN_PLACE)
        started = time.perf_counter()
        if plan.to_replicate:
            replicator = Replicator(
                self.grid, resource.name, self.settings,
                pool=agent_pool(self.grid, resource.name, self.collection, self.context.start_replication_agent),
                keep_alive=self.heartbeat.beat, top=self.config.input_collection,
            )
            listing = None
            # (a shard replicates object by object: whether a collection holds only its inputs
            # would need the listing of the whole input collection, which a shard never reads)
            if (self.grid.replicates_collections and self.shard is None
                    and len(plan.to_replicate) >= COLLECTION_PLANNING_MINIMUM):
                # what the collections hold besides the inputs (msiCollRepl would replicate it)
                listing = [o.path for o in self.grid.list_data_objects(self.config.input_collection, recursive=True)]
            report = replicator.replicate(plan.to_replicate, listing)
            for name in ("replicated", "replicated_bytes", "agents", "collections", "taken_over", "agent_failures", "retried"):
                setattr(summary, name, getattr(report, name))
            self._refresh_staged_objects()
            plan = plan_staging(self._staged_objects(), resource.name, self.config.replicate, locality)
            if plan.to_replicate:
                raise StagingError(f"{plan.to_replicate[0].path} has no good replica on {resource.name} after replication")
            self.outcome.timings["stage.replicate"] = time.perf_counter() - started
        self.replicated_bytes = summary.replicated_bytes
        self.outcome.replicated_bytes = self.replicated_bytes
        self.store.write(self.collection, {names.A_REPLICATED_BYTES: self.replicated_bytes})

        linking = time.perf_counter()
        self.workdir = TaskWorkdir(self.settings.staging_directory_for(self.resource.host, self.resource.name), self.run_key)
        self.workdir.create()
        placements = plan.placements
        # what is read through iRODS rather than linked: the model and labels first (the
        # notebook needs them before any image), then the inputs in the manifest's order
        to_stream = {o.path: o for o in plan.to_stream}
        first: list[StreamItem] = []
        assert self.model_object is not None and self.labels_object is not None
        for obj, base in ((self.model_object, self.workdir.model_dir), (self.labels_object, self.workdir.labels_dir)):
            if obj.path in to_stream:
                first.append(StreamItem(to_stream[obj.path], base, obj.name))
        ordered = sorted(self.inputs, key=self.relative_path)
        stream: list[StreamItem] = []
        for i, obj in enumerate(ordered, 1):
            if obj.path in to_stream:
                stream.append(StreamItem(to_stream[obj.path], self.workdir.input_dir, self.relative_path(obj)))
                continue
            self.workdir.stage_input(placements[obj.path].path, self.relative_path(obj), shown=obj.path)
            if i % 200 == 0:
                self.heartbeat.beat()
        write_manifest(self.workdir.manifest_file, [self.relative_path(o) for o in ordered])
        if self.model_object.path in to_stream:
            self.model_file = self.workdir.model_dir / self.model_object.name
        else:
            self.model_file = self.workdir.stage_model_file(
                placements[self.model_object.path].path, self.model_object.name, shown=self.model_object.path
            )
        if self.labels_object.path in to_stream:
            self.labels_file = self.workdir.labels_dir / self.labels_object.name
        else:
            self.labels_file = self.workdir.stage_labels_file(
                placements[self.labels_object.path].path, self.labels_object.name, shown=self.labels_object.path
            )
        self.outcome.timings["stage.link"] = time.perf_counter() - linking
        # the inputs arrive while the notebook runs where it reads the manifest (engine/pipelining.py)
        self.input_stream = InputStream(
            self.grid, self.workdir, first, stream, readers=self.settings.replication.agents_for(resource.name),
            keep_alive=self.heartbeat.beat,
            pipelined=self.notebook_file is not None and reads_inputs_manifest(self.notebook_file),
        )
        self.input_stream.start()
        self._check_pins()
        staged = self.workdir.report
        summary.linked, summary.copied, summary.copied_bytes = staged.linked, staged.copied, staged.copied_bytes
        self.staging_summary = summary
        self._record_streamed()
        if summary.in_place or stream or first:
            log.info("task %s: %d object(s) staged in place, %d streamed%s, %d replicated", self.task_id,
                     summary.in_place, len(first) + len(stream),
                     " (the inputs while the notebook runs)" if self.input_stream.pipelined else "", summary.replicated)
        self.outcome.notes.extend(locality.notes + staged.notes)

    def _record_streamed(self) -> None:
        """``c2d::staging`` and ``stage.stream`` as streaming stands (again once it ended while
        the notebook ran: ``stage.stream`` then overlaps ``execute``)."""
        assert self.input_stream is not None and self.staging_summary is not None
        if self.input_stream.started is not None and (self.input_stream.first or self.input_stream.items):
            self.outcome.timings["stage.stream"] = self.input_stream.seconds
        self.outcome.staging = self.input_stream.summarize(self.staging_summary).as_dict()
        self.store.write(self.collection, {names.A_STAGING: self.outcome.staging})

    def _end_streaming(self, run_error: BaseException | None) -> None:
        """After the run: every input read (or the staging error, which is the task's error, not
        the notebook's consequent one); a run that ended early stops the readers."""
        assert self.input_stream is not None
        try:
            if run_error is not None:
                self.input_stream.settle(run_error)
            if run_error is None and self.run_result is not None and self.run_result.succeeded:
                self.input_stream.finish()
                self.input_stream.check_covered(self.run_result.images_total, len(self.inputs))
            else:
                reason = _one_line(run_error) if run_error is not None else (
                    self.run_result.error if self.run_result is not None and self.run_result.error else "the run ended")
                staging_error = self.input_stream.stop(reason)
                if staging_error is not None and staging_error is not run_error:
                    raise staging_error
        finally:
            if self.input_stream.pipelined:
                try:
                    self._record_streamed()
                except ComputeToDataError as exc:  # advisory: never hide how the run ended
                    log.warning("could not record the staging of task %s: %s", self.task_id, exc)

    def _refresh_staged_objects(self) -> None:
        """The inputs, model and labels as the catalog lists them now (their replicas)."""
        fresh = {o.path: o for o in self._list_candidates()}
        self.inputs = [fresh.get(o.path, o) for o in self.inputs]
        self.model_object = self.grid.get_data_object(self.config.model)
        self.labels_object = self.grid.get_data_object(self.config.labels)

    # ------------------------------------------------------------------ what the task pinned
    def _pins(self) -> dict[str, str]:
        """The checksums a new task pins (``c2d::model_checksum``, ``c2d::labels_checksum``,
        ``c2d::notebook_checksum``): the catalog's SHA-256 of the model and labels objects, and
        the notebook file's. Every run of the task (each shard, each resume) checks them before
        it classifies (:meth:`_check_pins`): a model replaced at the same path after two of six
        shards ran would otherwise make one task of two models, silently. A catalog checksum that
        is missing (an object put without one) or of another scheme is pinned instead by the
        first run that stages the object."""
        pins: dict[str, str] = {}
        for attribute, obj in ((names.A_MODEL_CHECKSUM, self.model_object),
                               (names.A_LABELS_CHECKSUM, self.labels_object)):
            if obj is not None and obj.checksum.startswith("sha2:"):
                pins[attribute] = obj.checksum
        if self.notebook_file is not None and self.notebook_file.is_file():
            pins[names.A_NOTEBOOK_CHECKSUM] = file_checksum(self.notebook_file)
        return pins

    def _check_pins(self) -> None:
        """Refuse to classify with a model, labels or notebook other than the task's (what it
        pinned when it was created); pin what was not pinned yet (the first run to stage it)."""
        record = self.store.read(self.collection)
        staged = (
            (names.A_MODEL_CHECKSUM, "model", self.config.model, getattr(self, "model_file", None)),
            (names.A_LABELS_CHECKSUM, "labels", self.config.labels, getattr(self, "labels_file", None)),
            (names.A_NOTEBOOK_CHECKSUM, "notebook", self.config.notebook, self.notebook_file),
        )
        unpinned: dict[str, object] = {}
        for attribute, what, path, local in staged:
            if local is None:
                continue
            now = file_checksum(local)
            pinned = record.get(attribute)
            if not pinned:
                unpinned[attribute] = now
            elif pinned != now:
                raise ChangedSinceSubmitError(
                    f"the {what} {path} changed since the task was submitted ({pinned}, now {now}); "
                    f"this run would classify with another {what} than the task's other results: "
                    f"put the original {what} back and resume the task, or submit a new task"
                )
        if unpinned:
            self.store.write(self.collection, unpinned)

    def _staged_objects(self) -> list[DataObject]:
        assert self.model_object is not None and self.labels_object is not None
        return [*self.inputs, self.model_object, self.labels_object]

    def execute(self) -> None:
        # the inputs may still arrive while the notebook runs (engine/pipelining.py): a staging
        # error, not what the notebook or the run made of it, is the task's error
        try:
            self._run_notebook()
        except BaseException as exc:
            self._end_streaming(exc)
            raise
        self._end_streaming(None)
        assert self.run_result is not None and self.workdir is not None and self.runner is not None
        self.outcome.run_result = self.run_result
        self.outcome.runner = self.run_result.runner or self.runner.name
        if self.run_result.log:
            log_file = self.workdir.output_dir / self.run_result.log_name
            if not log_file.exists():
                log_file.write_text(self.run_result.log)
        # The runner's own sub-timings (``kernel_start_seconds`` ...) as ``run.kernel_start``.
        self.outcome.timings.update({run_timing_name(k): v for k, v in self.run_result.timings.items()})

    def _run_notebook(self) -> None:
        assert self.runner is not None and self.workdir is not None and self.notebook_file is not None
        assert self.heartbeat is not None
        parameters = self.build_parameters()
        params_file = self.workdir.task_dir / names.PARAMS_FILE
        params_file.write_text(json.dumps(parameters, indent=2, sort_keys=True))
        params_file.chmod(0o644)
        if self.previous:
            previous_file = self.workdir.task_dir / names.PREVIOUS_PREDICTIONS_FILE
            previous_file.write_text(json.dumps({"task_id": self.task_id, "images": list(self.previous.values())}))
            previous_file.chmod(0o644)
        request = RunRequest(
            task_id=self.run_key,
            run_id=run_id(self.run_key, self.started or ""),
            notebook_name=self.config.notebook,
            notebook_path=self.notebook_file,
            workdir=self.workdir.root,
            parameters=parameters,
            timeout_seconds=self.settings.effective_timeout(self.config.timeout_seconds),
            image=self.image.name if self.image is not None else None,
            gpus=self.resource.avu_int(names.GPUS_ATTRIBUTE, 0) if self.resource else 0,
            resource_name=self.resource.name if self.resource else "",
            max_concurrent=self._capacity(),
            progress=self.heartbeat.progress,
            on_started=self._record_handle,
            on_status=self._record_run_phase,
            on_poll=self._on_poll,
        )
        self.run_result = self.runner.run(request)

    def ingest_outputs(self) -> None:
        """Every file the run produced becomes a data object in the task collection."""
        assert self.workdir is not None and self.resource is not None
        self._ingest_files(self.workdir.output_files())
        self._archive_outputs()

    @abstractmethod
    def build_parameters(self) -> dict[str, Any]:
        """``params.json`` for the notebook (contract keys + task-type specific ones)."""

    @abstractmethod
    def tag_results(self) -> None:
        """Write results as AVUs on the inputs, in atomic batches, after outputs are ingested."""

    def tag_finished_parts(self) -> None:
        """Hook, called while the notebook runs: store and tag the parts it finished so far.
        Task types whose notebooks write no parts keep this default (nothing to do)."""

    def salvage_parts(self, output_dir: Path) -> int:
        """Hook for a run that ended without its tag step (it failed, or died and is being
        reaped): store and tag the parts it finished, which are valid results. Default: none."""
        return 0

    @classmethod
    def for_salvage(cls, config: TaskConfig, context: TaskContext, record: TaskRecord, resource: Resource
                    ) -> "ComputeToDataTask | None":
        """The task of a dead run, rebuilt far enough to salvage its parts (None: nothing to do)."""
        task = cls(config, context, task_id=record.task_id, submitted_by=record.get(names.A_SUBMITTED_BY) or None,
                   shard=ShardSpec.of(record) if record.is_shard else None)
        task.resource = resource
        task.run_index = record.int_value(names.A_RESUMED)
        task.candidates = task._list_candidates()
        task.select_inputs()
        return task if task.selection is not None else None

    def tagged_progress(self) -> str | None:
        """``done/total`` as the catalog says now: of the inputs the task selected, those stored
        in a part or carrying this task's complete prediction (what a resume would not redo).

        Rewritten after every salvage (a failed run's, the reaper's, a cancelled run's): the
        heartbeat's figure lags the parts tagged after it, and users decide from this number
        whether to resume. None when the task never recorded its selection.
        """
        if self.selection is None:
            return None
        previous = task_parts.merge_entries(e for _, e in task_parts.stored_parts(self.grid, self.collection))
        objects = {self.relative_path(o): o for o in self.current_objects().values()}
        units = names.task_units(self.task_id)
        done = sum(
            1 for name in self.selection
            if name in previous or (name in objects and task_parts.has_complete_prediction(
                objects[name], self.config.class_attribute, self.config.score_attribute, units))
        )
        return f"{done}/{len(self.selection)}"

    def finalize(self) -> None:
        assert self.run_result is not None
        done = self.outcome.images_done
        if done is None:
            done = self.outcome.done_before + self.run_result.images_done
        values: dict[str, object] = {
            names.A_FINISHED: names.iso_utc(),
            names.A_PROGRESS: f"{done}/{max(self.total_inputs, done)}",
            names.A_RUNNER: self.outcome.runner,
            names.A_IMAGES_FAILED: self.outcome.failed_images,
            names.A_ERROR: None,
            names.A_TIMINGS: timings_text(self.outcome.timings),
        }
        values.update(self._provenance())
        try:
            self.lifecycle.transition(self.collection, TaskState.SUCCEEDED, values, expect_started=self.started)
        except TaskStateError:
            self._raise_if_cancelled()
            raise
        self.outcome.state = TaskState.SUCCEEDED

    # ------------------------------------------------------------------ a task larger than one shard
    def shard_size(self) -> int:
        return self.settings.effective_shard_size(self.config.shard_size)

    def _candidate_pages(self) -> Iterator[list[DataObject]]:
        """The input collection's candidates, page by page (never the whole listing at once)."""
        for page in self.grid.iter_data_objects(
            self.config.input_collection, recursive=self.config.recursive,
            avu_attributes=self.listed_attributes,
            page_size=self.context.listing_page_size,
        ):
            kept = [o for o in page if self._is_candidate(o)]
            if kept:
                yield kept

    def _find_out_size(self, resources: Sequence[Resource]) -> list[DataObject]:
        """Read the listing until more images than one shard are eligible: then the task is
        planned as shards (``self.plan`` keeps the listing's rest) and nothing more is held;
        otherwise the whole (small) listing, sorted by path, for a task that runs as today."""
        limit = self.shard_size()
        pages = self._candidate_pages()
        seen: list[Sequence[DataObject]] = []
        eligible = 0
        for page in pages:
            seen.append(page)
            eligible += sum(1 for o in page if self._is_eligible(o))
            if eligible > limit:
                self.plan = ShardPlan(pages_of(seen, pages), list(resources))
                return []
        return sorted((o for page in seen for o in page), key=lambda o: o.path)

    def _choose_for_shards(self, tagged: Sequence[Resource]) -> None:
        """The resources the shards may go to (placed once the listing is read), refused now if
        none or if their container image is not allowed."""
        assert self.plan is not None
        role = self.config.compute_role
        if self.config.compute_resource is not None:
            resources = [select_compute_resource(tagged, [], role, self.config.compute_resource)]
        else:
            select_compute_resource(tagged, [], role)  # refuses a role no resource carries
            resources = list(tagged)
        self.plan.resources = resources
        self.outcome.compute_resource = ",".join(r.name for r in resources)
        if self.runner is not None and self.runner.uses_container_paths:
            for resource in resources:
                self.image = self.settings.image_for(self.config.image, resource.avu_int(names.GPUS_ATTRIBUTE, 0))
        if self.config.archive_role is not None:
            archives = self.grid.find_resources(names.ROLE_ATTRIBUTE, self.config.archive_role)
            if self.config.archive_resource is not None:
                require_existing(self.grid, "$.archive.resource", [self.config.archive_resource], archives,
                                 self.config.archive_role)
            self.archive_resource = select_compute_resource(archives, [], self.config.archive_role, self.config.archive_resource)

    def _plan_sharded(self) -> None:
        """Check and select page by page, cut the shards, place them; then (all checks passed)
        write the task, its shards and their inputs, every shard ``queued``."""
        assert self.plan is not None
        with tempfile.TemporaryDirectory(prefix="c2d-plan-") as tmp:
            planner = ShardPlanner(self.shard_size(), Path(tmp))
            self._step("plan_shards", lambda: self._scan_for_shards(planner))
            try:
                self._step("prepare_task_collection", lambda: self._create_shards(planner))
            except BaseException as exc:
                self._record_failure(exc)  # a task collection that exists never stays queued for nothing
                raise

    def _scan_for_shards(self, planner: ShardPlanner) -> None:
        assert self.plan is not None
        unreadable, unwritable = Refusals(), Refusals()
        skipped = 0
        for page in self.plan.pages:
            paths = [o.path for o in page]
            unreadable.add(self.grid.paths_lacking_access(paths, AccessLevel.READ))
            unwritable.add(self.grid.paths_lacking_access(paths, AccessLevel.MODIFY))
            for obj in page:
                if self._is_eligible(obj):
                    planner.add(Candidate.of(obj, self.relative_path(obj)))
                else:
                    skipped += 1
        unreadable.add(self.grid.paths_lacking_access([self.config.model, self.config.labels], AccessLevel.READ))
        if unreadable.count:
            raise self._cannot_read(unreadable)
        self._check_can_create(self.config.output_collection)
        if unwritable.count:
            raise self._cannot_tag(unwritable)
        self.plan.drafts = planner.finish()
        resources = self.plan.resources
        load = resource_load(self.grid, resources) if len(resources) > 1 else {}
        self.plan.assignment = place_shards(
            self.plan.drafts, resources, spread=self.config.spread or self.config.compute_resources is not None,
            load=load, default_max_tasks=self.settings.max_concurrent_tasks_default,
        )
        self.total_inputs = self.outcome.inputs = planner.total
        self.outcome.skipped_already_tagged = skipped
        log.info("task %s: %d images in %d shards (%s)", self.task_id, planner.total, len(self.plan.drafts),
                 ", ".join(f"{n} on {r}" for r, n in sorted(Counter(self.plan.assignment).items())))

    def _create_shards(self, planner: ShardPlanner) -> None:
        assert self.plan is not None
        by_name = {r.name: r for r in self.plan.resources}
        drafts, assignment = self.plan.drafts, self.plan.assignment
        self.resource = by_name[assignment[0]]  # where the task's own files go
        if self.grid.collection_exists(self.collection):
            raise TaskStateError(f"task collection {self.collection} exists already; not overwriting it")
        self.grid.create_collection(self.collection)
        self.collection_created = True
        common = {
            names.A_TASK_ID: self.task_id,
            names.A_TASK_TYPE: self.task_type,
            names.A_SUBMITTED_BY: self.submitted_by,
            names.A_CREATED: names.iso_utc(),
            names.A_INPUT_COLLECTION: self.config.input_collection,
            **self._pins(),  # every shard checks them before it classifies
        }
        self.lifecycle.create(self.collection, {
            **common,
            names.A_INPUTS: planner.total,
            names.A_PROGRESS: f"0/{planner.total}",
            names.A_SHARDS: len(drafts),
            names.A_COMPUTE_RESOURCE: ",".join(sorted(set(assignment))),
            names.A_SUMMARY_RESOURCE: names.SUMMARY_PENDING,
            names.A_MODEL: self.config.model,
            names.A_PARAMETERS: self.config.notebook_parameters(),
            names.A_TIMINGS: timings_text(self.outcome.timings),
            **schedule.creation_values(self.config, self.task_id, self.context.series),
            **self._chain_values(),
        })
        self._put_text(names.TASK_CONFIG_FILE, self.config.to_json())
        created: list[str] = []
        try:
            for draft, resource in zip(drafts, assignment):
                spec = ShardSpec(names.shard_collection(self.collection, draft.number), draft.number, len(drafts))
                self.grid.create_collection(spec.collection)
                self.grid.put_file(planner.inputs_file(draft.number),
                                   posixpath.join(spec.collection, names.SHARD_INPUTS_FILE), resource)
                self.lifecycle.create(spec.collection, {
                    **common,
                    names.A_SHARD: spec.label,
                    names.A_INPUTS: draft.count,
                    names.A_PROGRESS: f"0/{draft.count}",
                    names.A_COMPUTE_RESOURCE: resource,
                })
                created.append(spec.collection)
        except BaseException as exc:
            for collection in created:
                self.lifecycle.fail_queued(collection, f"the task could not be planned completely: {_one_line(exc)}")
            raise
        self.outcome.shard_collections = created
        self.outcome.compute_resource = ",".join(sorted(set(assignment)))

    def _shard_inputs(self) -> list[str]:
        """A shard's inputs (relative to the input collection), as planned: read once."""
        assert self.shard is not None
        if self.selection is None:
            logical = posixpath.join(self.collection, names.SHARD_INPUTS_FILE)
            self.selection = read_inputs_text(self.grid.read_data_object(logical, max_bytes=256 * 1024 * 1024).decode("utf-8"))
        return self.selection

    def _shard_objects(self) -> list[DataObject]:
        """A shard's inputs as the catalog has them: only the collections they lie in are listed."""
        wanted = set(self._shard_inputs())
        root = self.config.input_collection
        collections = sorted({posixpath.dirname(posixpath.join(root, rel)) for rel in wanted})
        found: list[DataObject] = []
        for collection in collections:
            for page in self.grid.iter_data_objects(
                collection, avu_attributes=self.listed_attributes,
                page_size=self.context.listing_page_size,
            ):
                found.extend(o for o in page if self.relative_path(o) in wanted)
        return sorted(found, key=lambda o: o.path)

    def _settle_task(self) -> None:
        """A shard ended, however: the task's state and progress follow (the task service has the
        run that ended its last shard make the task's report, engine/summary.py)."""
        assert self.shard is not None
        try:
            self.lifecycle.settle(self.shard.task_collection)
        except Exception as exc:  # noqa: BLE001 - the shard's own state is recorded; say why the task's is not
            log.error("task %s: could not update the task after shard %s ended: %s", self.task_id, self.shard.label, exc)

    # ------------------------------------------------------------------ helpers for steps
    def _chain_values(self) -> dict[str, object]:
        """``c2d::after`` on a chained task's collection (what ``c2d status`` shows)."""
        return {names.A_AFTER: self.config.after} if self.config.after else {}

    def relative_path(self, obj: DataObject) -> str:
        return posixpath.relpath(obj.path, self.config.input_collection)

    def _list_candidates(self) -> list[DataObject]:
        if self.shard is not None:
            return self._shard_objects()
        listing = self.grid.list_data_objects(
            self.config.input_collection,
            recursive=self.config.recursive,
            avu_attributes=self.listed_attributes,
        )
        return [o for o in listing if self._is_candidate(o)]

    def _is_candidate(self, obj: DataObject) -> bool:
        return (
            fnmatch.fnmatchcase(obj.name, self.config.pattern)
            and obj.path not in (self.config.model, self.config.labels)
            and not obj.name.endswith(TASK_CONFIG_SUFFIX)
            and not obj.path.startswith(self.config.output_collection.rstrip("/") + "/")
            and not obj.avu_values(names.A_THUMBNAIL_OF)  # a thumbnail a run made is never an input
            and self.where.keeps(obj)
        )

    @property
    def listed_attributes(self) -> tuple[str, ...]:
        """The AVUs a listing brings with each image: its prediction, its unclassified mark, and
        the mark of a thumbnail (never an input)."""
        return (self.config.class_attribute, self.config.score_attribute, names.A_UNCLASSIFIED, names.A_THUMBNAIL_OF)

    def _is_eligible(self, obj: DataObject) -> bool:
        """A new task classifies it: skip_tagged leaves out images with a complete prediction, and
        a run of a series also those an earlier task found unreadable or under its threshold (and
        that were not replaced since): without that, every run would take them again, for ever."""
        if not self.config.skip_tagged:
            return True
        if task_parts.has_complete_prediction(obj, self.config.class_attribute, self.config.score_attribute):
            return False
        return self.config.schedule_every is None or not task_parts.is_marked_unclassified(obj)

    def current_objects(self) -> dict[str, DataObject]:
        """This run's inputs as the catalog has them now (their predictions may have changed):
        the input collection's listing, or for a shard only its own collections'."""
        if self.shard is not None:
            return {o.path: o for o in self._shard_objects()}
        return {
            o.path: o for o in self.grid.list_data_objects(
                self.config.input_collection, recursive=self.config.recursive,
                avu_attributes=self.listed_attributes)
        }

    def _check_can_create(self, collection: str) -> None:
        """Modify on the output collection, or on its nearest visible ancestor if it is new.

        On a stock zone an ordinary user sees neither ``/zone`` nor ``/zone/home`` nor other
        users' homes, so the walk up may find nothing visible: that is refused in terms of the
        collection the user named (docs/irods-behaviour.md).
        """
        zone_root = f"/{self.grid.zone}"
        path = collection
        while not self.grid.collection_exists(path):
            if path == zone_root or posixpath.dirname(path) == path:
                raise AccessDeniedError(
                    f"{self.grid.user} cannot write to the output collection {collection}, where the results "
                    f"({collection}/<task id>) would go: neither it nor any collection above it is visible to "
                    f"{self.grid.user}; choose an output collection under "
                    f"your home {self.grid.home()}, or ask its owner for write access",
                    irods_code=CAT_NO_ACCESS_PERMISSION,
                )
            path = posixpath.dirname(path)
        if not self.grid.has_access(path, AccessLevel.MODIFY):
            raise AccessDeniedError(
                f"{self.grid.user} cannot write to {path}, where the results ({collection}/<task id>) "
                "would go; choose an output collection you own, or ask for write access"
            )

    def _capacity(self) -> int:
        assert self.resource is not None
        return self.resource.avu_int(names.MAX_TASKS_ATTRIBUTE, self.settings.max_concurrent_tasks_default)

    def _slot(self) -> ResourceSlot:
        assert self.resource is not None
        return ResourceSlot(
            self.settings.lock_directory_for(self.resource.host, self.resource.name),
            self.resource.name,
            self._capacity(),
            should_stop=self._is_cancelled if self.heartbeat is None else self._beat_while_waiting,
        )

    def _beat_while_waiting(self) -> bool:
        """A running shard waiting for the GPU: signs of life (which raise if it was cancelled),
        and its inputs read meanwhile where only this thread may read them."""
        assert self.heartbeat is not None
        self.heartbeat.beat()
        if self.input_stream is not None:
            self.input_stream.pump()
        return False

    def _reap_dead_runs(self) -> None:
        """Before a run starts on a resource: what dead runs left there is stopped and recorded."""
        assert self.resource is not None
        try:
            Reaper(self.lifecycle).reap_resource(self.resource)
        except ComputeToDataError as exc:  # never keep a healthy task from running for it
            log.warning("could not look for dead runs on %s: %s", self.resource.name, exc)

    def _record_running(self) -> None:
        self._raise_if_cancelled()
        assert self.resource is not None
        done = self.outcome.done_before
        total = max(self.total_inputs, done + len(self.inputs))
        try:
            record = self.lifecycle.begin_run(
                self.collection,
                {
                    names.A_PROGRESS: f"{done}/{total}",
                    names.A_INPUTS: total,
                    names.A_COMPUTE_RESOURCE: self.resource.name,
                    names.A_RUNNER: self.runner.name if self.runner else None,
                    names.A_RUN_HOST: self.resource.host,
                    names.A_RUN_HANDLE: None,
                    names.A_TIMINGS: timings_text(self.outcome.timings),
                },
            )
        except TaskStateError:
            self._raise_if_cancelled()
            raise
        self.started = record.get(names.A_STARTED)
        self.outcome.state = TaskState.RUNNING
        self.heartbeat = Heartbeat(
            self.store,
            self.collection,
            interval=self.settings.heartbeat_interval_seconds,
            progress_interval=self.context.progress_interval,
            check=self._check_ours,
            enabled=self.context.heartbeat,
        )
        self.heartbeat.offset, self.heartbeat.total = done, total
        self.heartbeat.listeners.extend(self.context.progress_listeners)
        if self.shard is not None:
            self.lifecycle.shard_started(self.shard.task_collection)
        if self.selection is None:  # the first run records what the task is about
            assert self.resource is not None
            self.selection = [self.relative_path(o) for o in self.inputs]
            task_parts.store_selection(self.grid, self.collection, self.resource.name, self.selection)

    def _check_ours(self) -> None:
        assert self.started is not None
        self.lifecycle.check_ours(self.collection, self.started)

    def _record_handle(self, host: str, handle: str) -> None:
        """The run exists: where it is supervised, and the handle that finds it from elsewhere."""
        self.store.write(self.collection, {names.A_RUN_HOST: host, names.A_RUN_HANDLE: handle})

    def _record_run_phase(self, phase: str, reason: str | None) -> None:
        """A scheduler holding the run back: say why (readers show ``queued``); clear it once it runs."""
        waiting = phase == "queued"
        if not waiting and not self._queue_reason_written:
            return
        value = (reason or "waiting in the scheduler's queue") if waiting else None
        self.store.write(self.collection, {names.A_QUEUE_REASON: value})
        self._queue_reason_written = waiting

    def _on_poll(self) -> bool:
        """The runner's poll loop (our main thread): a sign of life, the finished parts, and the
        next inputs where only this thread may read them (True while some are left)."""
        assert self.heartbeat is not None
        self.heartbeat.beat()
        if self.context.parts:
            self.tag_finished_parts()
        return self.input_stream is not None and self.input_stream.pump()

    def _is_cancelled(self) -> bool:
        try:
            return self.store.read(self.collection).state == TaskState.CANCELLED
        except ComputeToDataError:
            return False

    def _raise_if_cancelled(self) -> None:
        if self._is_cancelled():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def _ingest_files(self, files: Sequence[Path]) -> None:
        assert self.workdir is not None and self.resource is not None
        for path in files:
            relative = path.relative_to(self.workdir.output_dir).as_posix()
            logical = posixpath.join(self.collection, relative)
            parent = posixpath.dirname(logical)
            if parent != self.collection:
                self.grid.create_collection(parent)
            self.grid.put_file(path, logical, self.resource.name, overwrite=True)
        report = posixpath.join(self.collection, names.REPORT_FILE)
        if any(p.name == names.REPORT_FILE and p.parent == self.workdir.output_dir for p in files):
            self.outcome.report_path = report
            self.store.write(self.collection, {names.A_REPORT: report})

    def _archive_outputs(self) -> None:
        """Copies of the results on long-term storage, when the task config asks for it."""
        if self.archive_resource is None:
            return
        for obj in self.grid.list_data_objects(self.collection, recursive=True):
            self.grid.replicate(obj.path, self.archive_resource.name)

    def _put_text(self, name: str, text: str) -> None:
        assert self.resource is not None
        with tempfile.TemporaryDirectory(prefix="c2d-") as tmp:
            local = Path(tmp) / name
            local.write_text(text)
            self.grid.put_file(local, posixpath.join(self.collection, name), self.resource.name, overwrite=True)

    def _provenance(self) -> dict[str, object]:
        values: dict[str, object] = {
            names.A_TASK_TYPE: self.task_type,
            names.A_MODEL: self.config.model,
            names.A_PARAMETERS: self.config.notebook_parameters(),
        }
        # The model's, labels' and notebook's checksums are the task's pins (_pins, _check_pins),
        # never rewritten at a run's end: a run that failed because one changed would otherwise
        # pin the changed file, and the next resume would classify with it. (Nor is a staged file
        # read here: a run that failed while staging may not have it.)
        if self.run_result is not None:
            if self.run_result.image:
                values[names.A_IMAGE] = self.run_result.image
            if self.run_result.image_digest:
                values[names.A_IMAGE_DIGEST] = self.run_result.image_digest
            # where it ran: the host that supervised it, its handle (container, pid, job id), the node
            for attribute, value in ((names.A_RUN_HOST, self.run_result.host),
                                     (names.A_RUN_HANDLE, self.run_result.handle),
                                     (names.A_RUN_NODE, self.run_result.node)):
                if value:
                    values[attribute] = value
        return values

    def _record_failure(self, exc: BaseException) -> None:
        """Say truthfully how the task ended; never let bookkeeping hide the original error.

        A run that lost the task (cancelled, or declared dead while it was only slow) records
        nothing over what the winner wrote: the lifecycle refuses, and the run stops.
        """
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted (Ctrl-C) on the compute host"
        elif isinstance(exc, Terminated):
            message = str(exc)
        else:
            message = _one_line(exc)
        self.outcome.error = message
        cancelled = isinstance(exc, TaskCancelled)
        self.outcome.state = TaskState.CANCELLED if cancelled else TaskState.FAILED
        log.error("task %s %s: %s", self.task_id, self.outcome.state.value, message)
        if not self.collection_created:
            return
        try:
            current: TaskRecord | None = self.store.read(self.collection)
        except ComputeToDataError as read_exc:
            log.error("could not read the state of task %s: %s", self.task_id, read_exc)
            current = None
        if isinstance(exc, TaskLostError) or (current is not None and current.state is not None and current.state.is_final):
            if current is not None and current.state is not None:
                self.outcome.state = current.state
                self.outcome.error = current.get(names.A_ERROR) or message
            log.warning("task %s: not recording %s over what was recorded meanwhile (%s)", self.task_id,
                        "cancelled" if cancelled else "failed", current.state.value if current and current.state else "?")
            if current is not None and current.state is not None and current.state.is_final:
                self._record_tagged_progress(current)  # a cancel stopped it: its figure, not its state
            return
        if not cancelled and self.workdir is not None and self.context.parts and self.started is not None:
            try:  # what the notebook finished before the failure is a valid result: keep it
                self.salvage_parts(self.workdir.output_dir)
            except Exception as salvage_exc:
                log.error("could not tag the finished parts of failed task %s: %s", self.task_id, salvage_exc)
        try:
            if self.workdir is not None and self.outcome.report_path is None and self.workdir.output_dir.is_dir():
                self._ingest_files(self.workdir.output_files())
        except Exception as ingest_exc:  # keep the first error; say the second in the log
            log.error("could not register the outputs of failed task %s: %s", self.task_id, ingest_exc)
        try:
            values: dict[str, object] = {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message}
            values.update(self._provenance())
            progress = self._safe_tagged_progress() if self.started is not None else None
            if progress is not None:
                values[names.A_PROGRESS] = progress
            if self.outcome.failed_images:
                values[names.A_IMAGES_FAILED] = self.outcome.failed_images
            values[names.A_TIMINGS] = timings_text(self.outcome.timings)
            # A run that began records its end only while the task is still its own (running,
            # with its c2d::started): after a cancel and a resume the task is another run's.
            self.lifecycle.transition(
                self.collection, self.outcome.state, values, expect_started=self.started,
                check=None if self.started is not None else still_in(TaskState.QUEUED),
            )
        except Exception as state_exc:
            log.error("could not record the state of task %s: %s", self.task_id, state_exc)

    def _safe_tagged_progress(self) -> str | None:
        """:meth:`tagged_progress`, or None (the progress stays as it is) if it cannot be read."""
        try:
            return self.tagged_progress()
        except Exception as exc:  # noqa: BLE001 - never let a figure hide the run's own error
            log.warning("task %s: could not count what is tagged: %s", self.task_id, exc)
            return None

    def _record_tagged_progress(self, current: TaskRecord) -> None:
        """A run stopped by a cancel (which recorded the state) still says how far it got, while
        the task is its own: not after a resume cleared its ``c2d::started``."""
        if self.started is None or current.get(names.A_STARTED) != self.started:
            return
        progress = self._safe_tagged_progress()
        if progress is not None and progress != current.get(names.A_PROGRESS):
            try:
                self.store.write(self.collection, {names.A_PROGRESS: progress})
            except ComputeToDataError as exc:
                log.warning("task %s: could not record its progress: %s", self.task_id, exc)

    def _record_timings(self) -> None:
        """Refresh ``c2d::timings`` after a step; advisory, so a failed write never fails the task."""
        try:
            self.store.write(self.collection, {names.A_TIMINGS: timings_text(self.outcome.timings)})
        except Exception as exc:
            log.warning("could not record the timings of task %s: %s", self.task_id, exc)

    def _step(self, name: str, step: Callable[[], None]) -> None:
        for listener in self.context.step_listeners:
            listener(name, "start", 0.0)
        started = time.perf_counter()
        try:
            step()
        except BaseException:
            elapsed = time.perf_counter() - started
            self.outcome.timings[name] = elapsed
            for listener in self.context.step_listeners:
                listener(name, "failed", elapsed)
            raise
        elapsed = time.perf_counter() - started
        self.outcome.timings[name] = elapsed
        log.debug("step %s took %.3f s", name, elapsed)
        if self.collection_created:
            self._record_timings()
        for listener in self.context.step_listeners:
            listener(name, "done", elapsed)


class _RunFailed(ComputeToDataError):
    """The runner reported a failed run; its error is the task's error."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, ComputeToDataError):
        text = f"{type(exc).__name__}: {text}"
    return text


def file_checksum(path: Path) -> str:
    """iRODS-style SHA-256 checksum (``sha2:`` + base64), so it compares with ``ichksum``.

    Remembered per (path, size, mtime): the report's provenance and the final state both need
    the model's checksum, and a model can be large.
    """
    stat = os.stat(path)
    return _file_checksum(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_checksum(path: str, size: int, mtime_ns: int) -> str:
    import base64

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha2:" + base64.b64encode(digest.digest()).decode()
