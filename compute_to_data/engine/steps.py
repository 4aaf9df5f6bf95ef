"""The steps of one run of a task, and the values they hand on.

Each step takes what it needs as arguments and returns what it produced, as a frozen value:
``validate`` -> :class:`Checked`, ``select_compute_resource`` -> :class:`Selection` (or, for a
new task larger than one shard, :class:`ShardedSelection`), ``select_inputs`` ->
:class:`Inputs`, ``prepare_task_collection`` -> :class:`Placement`, the run's start ->
:class:`Running`, ``stage_inputs`` -> :class:`Staged`, ``execute`` -> the runner's
:class:`~compute_to_data.runners.base.RunResult`. The plans (:mod:`.plans`) thread them through
in the fixed order; task types (:mod:`.image_classification`) override steps and the hooks
(:meth:`TaskSteps.build_parameters`, :meth:`TaskSteps.tag_results`,
:meth:`TaskSteps.tag_finished_parts`, :meth:`TaskSteps.salvage_parts`), which get the run they
belong to (:class:`TaskRun`, :class:`Tagging`) as arguments: nothing is left on the task for a
later step to find.

Where a run's inputs come from is a value too (:class:`InputListing`): the input collection's
listing for a task that runs whole, the planned inputs file for one shard of a larger task.
"""

from __future__ import annotations

import base64
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

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
from compute_to_data.engine import onhost
from compute_to_data.engine import predictions as task_parts
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.pipelining import InputStream
from compute_to_data.engine.planning import read_inputs_text
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
from compute_to_data.lifecycle.shard_records import resource_load
from compute_to_data.lifecycle.store import Heartbeat, TaskStateStore
from compute_to_data.runners import choose_runner
from compute_to_data.runners.base import Runner, RunRequest, RunResult
from compute_to_data.runners.processes import run_id

log = logging.getLogger(__name__)

#: Task configs uploaded next to the images (upload trigger) are never inputs themselves.
TASK_CONFIG_SUFFIX = ".c2d.json"
#: a run's listing older than this (seconds) is read again before staging: what lies on the
#: resources may have changed since (replicas made or trimmed by others)
RELIST_AFTER_SECONDS = 10.0


# ---------------------------------------------------------------------------------- the values
@dataclass(frozen=True)
class RunScope:
    """What one run covers, fixed when the task object is made: its task, the collection it works
    in, the key that names it on its host (lock, staging directory, ``C2D_TASK_ID``), whether it
    takes over a task collection that exists (queued by submit or resume) and, for one shard of a
    larger task, which one."""

    task_id: str
    collection: str
    run_key: str
    takes_over: bool
    shard: ShardSpec | None = None

    @classmethod
    def of(cls, output_collection: str, task_id: str | None, shard: ShardSpec | None) -> "RunScope":
        new_id = task_id or names.new_task_id()
        if shard is not None:  # the shard's collection, on its inputs
            return cls(new_id, shard.collection, f"{new_id}-{shard.name}", task_id is not None, shard)
        return cls(new_id, posixpath.join(output_collection, new_id), new_id, task_id is not None)

    def describe(self) -> str:
        return f"shard {self.shard.label} of task {self.task_id}" if self.shard is not None else f"task {self.task_id}"


@dataclass(frozen=True)
class Checked:
    """What validation found: the runner chosen from the config, the notebook, the model and labels objects."""

    runner: Runner
    notebook_file: Path
    model: DataObject
    labels: DataObject


@dataclass(frozen=True)
class Selection:
    """Where the run goes: the compute resource, the runner and image for it, where the results are
    archived, and the candidates (every input the task may take) as the catalog listed them."""

    resource: Resource
    runner: Runner
    image: AllowedImage | None
    archive_resource: Resource | None
    candidates: Sequence[DataObject]
    #: when the candidates had just been listed (``time.monotonic()``)
    listed_at: float = field(default_factory=time.monotonic)

    def listed_long_ago(self) -> bool:
        """Whether what was listed may no longer be what lies on the resources (staging then
        lists the inputs again): older than :data:`RELIST_AFTER_SECONDS`."""
        return time.monotonic() - self.listed_at > RELIST_AFTER_SECONDS


@dataclass(frozen=True)
class ShardedSelection:
    """A new task found larger than one shard: the listing still to read and the resources its
    shards may go to (placed once the listing is read, :mod:`.plans`)."""

    pages: Iterator[Sequence[DataObject]]
    resources: Sequence[Resource]
    runner: Runner
    archive_resource: Resource | None


@dataclass(frozen=True)
class Recorded:
    """What a task collection that exists says of its inputs: the selection its first run
    recorded (None: none recorded yet) and the entries its earlier runs stored in parts."""

    selection: Sequence[str] | None
    previous: Mapping[str, Entry]


@dataclass(frozen=True)
class Inputs:
    """The images this run classifies, those left out as already tagged, the task's recorded
    selection (None: this run records it when it starts), what earlier runs stored, and the
    task's totals."""

    inputs: Sequence[DataObject]
    skipped: Sequence[DataObject] = ()
    selection: Sequence[str] | None = None
    previous: Mapping[str, Entry] = field(default_factory=dict)
    total: int = 0
    done_before: int = 0


@dataclass(frozen=True)
class Placement:
    """The task collection this run owns (made now, or a queued one taken over) and the run's index
    (0, then one more per resume)."""

    collection: str
    run_index: int


@dataclass(frozen=True)
class Running:
    """A run recorded ``running``: its start (its identity), its signs of life, and the task's
    selection as recorded (what its progress counts against)."""

    started: str
    heartbeat: Heartbeat
    selection: Sequence[str]
    #: raises when the task is no longer this run's (cancelled, or declared dead while only slow)
    check: Callable[[], None]


@dataclass(frozen=True)
class Staged:
    """What staging made on the compute host: the work directory, the inputs, model and labels as
    the catalog lists them now, the local model and labels files, how it was done
    (``c2d::staging``), and what is read through iRODS, possibly while the notebook runs
    (:mod:`.pipelining`: pumped by the run's thread where only it may call the grid, ended
    after the run)."""

    workdir: TaskWorkdir
    inputs: Sequence[DataObject]
    #: the inputs by their path relative to the input collection (as the notebook names them)
    by_name: Mapping[str, DataObject]
    model: DataObject
    labels: DataObject
    model_file: Path
    labels_file: Path
    summary: StagingSummary
    stream: InputStream


class InputListing(Protocol):
    """Where a run's inputs come from."""

    #: True when the run's inputs are the input collection's listing (a shard never reads it whole)
    whole_collection: bool

    def candidates(self) -> list[DataObject]:
        """Every input the run may take, as the catalog lists them now, sorted by path."""

    def current(self) -> dict[str, DataObject]:
        """The run's inputs as the catalog has them now (their predictions may have changed), by path."""


@dataclass(frozen=True)
class TaskRun:
    """One run, once it is ``running``: what the hooks of a task type get."""

    scope: RunScope
    listing: InputListing
    checked: Checked
    selection: Selection
    inputs: Inputs
    placement: Placement
    running: Running

    def tagging(self, staged: Mapping[str, DataObject], *, check: bool) -> "Tagging":
        """What tagging this run's results needs (``check``: stop when the run lost the task)."""
        return Tagging(self.selection.resource, self.listing, self.selection.candidates, staged,
                       self.inputs.previous, self.placement.run_index, self.running.selection,
                       beat=self.running.heartbeat.beat, check=self.running.check if check else None)


@dataclass(frozen=True)
class Tagging:
    """What storing and tagging a run's parts needs: where they are stored, which images they may
    name (those the run staged), what earlier runs stored, the run's index; while the run lives,
    its signs of life and the check that it still owns the task (None for a dead run's salvage)."""

    resource: Resource
    listing: InputListing
    candidates: Sequence[DataObject]
    #: the images the run staged, by their path relative to the input collection
    staged: Mapping[str, DataObject]
    previous: Mapping[str, Entry]
    run_index: int
    selection: Sequence[str] | None
    beat: Callable[[], None] | None = None
    check: Callable[[], None] | None = None


class CollectionListing:
    """A task that runs whole: its inputs are the input collection's candidates."""

    whole_collection = True

    def __init__(self, task: "TaskSteps") -> None:
        self.task = task

    def candidates(self) -> list[DataObject]:
        task = self.task
        listing = task.grid.list_data_objects(task.config.input_collection, recursive=task.config.recursive,
                                              avu_attributes=task.listed_attributes)
        return [o for o in listing if task.is_candidate(o)]

    def current(self) -> dict[str, DataObject]:
        task = self.task
        return {
            o.path: o for o in task.grid.list_data_objects(
                task.config.input_collection, recursive=task.config.recursive, avu_attributes=task.listed_attributes)
        }


class ShardListing:
    """One shard of a larger task: its inputs were written once, when the task was planned
    (``inputs.txt``, relative paths); only the collections they lie in are ever listed."""

    whole_collection = False

    def __init__(self, task: "TaskSteps", relative_paths: Sequence[str]) -> None:
        self.task = task
        self.relative_paths = list(relative_paths)

    @classmethod
    def read(cls, task: "TaskSteps", shard: ShardSpec) -> "ShardListing":
        logical = posixpath.join(shard.collection, names.SHARD_INPUTS_FILE)
        text = task.grid.read_data_object(logical, max_bytes=256 * 1024 * 1024).decode("utf-8")
        return cls(task, read_inputs_text(text))

    def candidates(self) -> list[DataObject]:
        task = self.task
        wanted = set(self.relative_paths)
        root = task.config.input_collection
        collections = sorted({posixpath.dirname(posixpath.join(root, rel)) for rel in wanted})
        found: list[DataObject] = []
        for collection in collections:
            for page in task.grid.iter_data_objects(collection, avu_attributes=task.listed_attributes,
                                                    page_size=task.context.listing_page_size):
                found.extend(o for o in page if task.relative_path(o) in wanted)
        return sorted(found, key=lambda o: o.path)

    def current(self) -> dict[str, DataObject]:
        return {o.path: o for o in self.candidates()}


# ---------------------------------------------------------------------------------- the steps
class TaskSteps(ABC):
    """The overridable steps and hooks of a task type; the order is the plans' (:mod:`.plans`)."""

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
        self.scope = RunScope.of(config.output_collection, task_id, shard)
        self.task_id = self.scope.task_id
        self.collection = self.scope.collection
        #: names this run on its host (lock, staging directory, C2D_TASK_ID of its processes)
        self.run_key = self.scope.run_key
        self.submitted_by = submitted_by or self.grid.user
        #: ``inputs.where``: the AVU conditions a candidate must meet
        self.where = WhereFilter(self.grid, config.where)
        #: what the run tells its caller, filled in as it goes (the caller reads it, also after a failure)
        self.outcome = TaskOutcome(self.task_id, None, self.collection)

    # ------------------------------------------------------------------ validate
    def validate(self) -> Checked:
        """Everything that can be refused without touching the catalog, refused now."""
        if self.config.task_type != self.task_type:
            raise ConfigError(f"task type {self.config.task_type!r} cannot run as {self.task_type!r}")
        notebook_file = notebook_path(self.settings, self.config.notebook)
        runner = self.context.runner
        if runner is None:
            runner = choose_runner(self.config.runner, self.settings)
        else:
            self.settings.check_runner(runner.name)
        self._check_image_choice(runner)
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
        return Checked(runner, notebook_file, self.grid.get_data_object(self.config.model),
                       self.grid.get_data_object(self.config.labels))

    def check_new_task(self) -> None:
        """A new task only: a scheduled config makes new tasks only as part of its series."""
        schedule.check_new_task(self.config, self.settings, self.context.series)

    def check_chain(self) -> None:
        """A new task only: a chained task runs after the one it names has succeeded."""
        chain.check_after(self.grid, self.config.after)

    def _check_image_choice(self, runner: Runner) -> None:
        # The allowlist holds whatever runner was chosen (also in-process, also when auto fell
        # back to it): a config naming an image the administrator did not allow is refused.
        if runner.uses_container_paths or self.config.image is not None:
            self.settings.check_image_choice(self.config.image)  # the image itself comes with the resource

    def _runner_for_resource(self, runner: Runner, resource: Resource) -> Runner:
        """``auto`` is decided again once the resource is known: Slurm only for the resources the
        settings list under slurm.resources, Docker (or in-process) for the others."""
        if self.config.runner == "auto" and self.context.runner is None:
            runner = choose_runner("auto", self.settings, resource=resource.name)
            self._check_image_choice(runner)
        return runner

    # ------------------------------------------------------------------ select the compute resource
    def compute_resources(self, *, restrict: bool = True) -> list[Resource]:
        """The resources carrying the compute role, the configured one refused now if it is not one;
        ``restrict``: only those ``compute.resources`` lists (a shard runs where it was placed)."""
        tagged = self.grid.find_resources(names.ROLE_ATTRIBUTE, self.config.compute_role)
        role = self.config.compute_role
        if self.config.compute_resource is not None:
            require_existing(self.grid, "$.compute.resource", [self.config.compute_resource], tagged, role)
        if self.config.compute_resources is not None and restrict:
            require_existing(self.grid, "$.compute.resources", self.config.compute_resources, tagged, role)
            tagged = restrict_to(tagged, self.config.compute_resources, self.config.compute_role)
        return tagged

    def select_compute_resource(self, checked: Checked, tagged: Sequence[Resource],
                                candidates: Sequence[DataObject]) -> Selection:
        """The resource holding most of the candidates' bytes (or the configured one), its runner and image."""
        load = resource_load(self.grid, tagged) if len(tagged) > 1 and self.config.compute_resource is None else None
        resource = select_compute_resource(
            tagged, candidates, self.config.compute_role, self.config.compute_resource,
            load=load, default_max_tasks=self.settings.max_concurrent_tasks_default,
        )
        self.outcome.compute_resource = resource.name
        runner = self._runner_for_resource(checked.runner, resource)
        image = None
        if runner.uses_container_paths:
            image = self.settings.image_for(self.config.image, resource.avu_int(names.GPUS_ATTRIBUTE, 0))
        return Selection(resource, runner, image, self._archive_resource(), candidates)

    def select_for_shards(self, checked: Checked, tagged: Sequence[Resource],
                          pages: Iterator[Sequence[DataObject]]) -> ShardedSelection:
        """The resources the shards may go to (placed once the listing is read), refused now if
        none or if their container image is not allowed."""
        role = self.config.compute_role
        if self.config.compute_resource is not None:
            resources = [select_compute_resource(tagged, [], role, self.config.compute_resource)]
        else:
            select_compute_resource(tagged, [], role)  # refuses a role no resource carries
            resources = list(tagged)
        self.outcome.compute_resource = ",".join(r.name for r in resources)
        if checked.runner.uses_container_paths:
            for resource in resources:  # each resource's image is allowed, or the task is refused now
                self.settings.image_for(self.config.image, resource.avu_int(names.GPUS_ATTRIBUTE, 0))
        return ShardedSelection(pages, resources, checked.runner, self._archive_resource())

    def _archive_resource(self) -> Resource | None:
        """Where copies of the results go, refused now (not after the notebook has run)."""
        if self.config.archive_role is None:
            return None
        archives = self.grid.find_resources(names.ROLE_ATTRIBUTE, self.config.archive_role)
        if self.config.archive_resource is not None:
            require_existing(self.grid, "$.archive.resource", [self.config.archive_resource], archives,
                             self.config.archive_role)
        return select_compute_resource(archives, [], self.config.archive_role, self.config.archive_resource)

    def find_out_size(self) -> list[DataObject] | Iterator[Sequence[DataObject]]:
        """A new task: read the listing until more images than one shard are eligible, and hand on
        the listing's pages (what was read, then the rest) to plan its shards from, holding
        nothing more; otherwise the whole (small) listing, sorted by path."""
        limit = self.shard_size()
        pages = self._candidate_pages()
        seen: list[Sequence[DataObject]] = []
        eligible = 0
        for page in pages:
            seen.append(page)
            eligible += sum(1 for o in page if self.is_eligible(o))
            if eligible > limit:
                return pages_of(seen, pages)
        return sorted((o for page in seen for o in page), key=lambda o: o.path)

    def shard_size(self) -> int:
        return self.settings.effective_shard_size(self.config.shard_size)

    def _candidate_pages(self) -> Iterator[list[DataObject]]:
        """The input collection's candidates, page by page (never the whole listing at once)."""
        for page in self.grid.iter_data_objects(
            self.config.input_collection, recursive=self.config.recursive,
            avu_attributes=self.listed_attributes,
            page_size=self.context.listing_page_size,
        ):
            kept = [o for o in page if self.is_candidate(o)]
            if kept:
                yield kept

    # ------------------------------------------------------------------ permissions and inputs
    def check_permissions(self, candidates: Sequence[DataObject], *, creates_collection: bool) -> None:
        """Read on every input, the model and the labels; write where the results go (a new task)
        and on the images (their predictions are AVUs)."""
        inputs = [o.path for o in candidates]
        found = self.grid.paths_lacking_levels(inputs + [self.config.model, self.config.labels],
                                               [AccessLevel.READ, AccessLevel.MODIFY])  # one look for both
        lacking = Refusals()
        lacking.add(found[AccessLevel.READ])
        if lacking.count:
            raise self.cannot_read(lacking)
        if creates_collection:
            self.check_can_create(self.config.output_collection)
        if candidates:
            tagged = set(inputs)  # the model and labels are only read
            unwritable = Refusals()
            unwritable.add([path for path in found[AccessLevel.MODIFY] if path in tagged])
            if unwritable.count:
                raise self.cannot_tag(unwritable)

    def cannot_read(self, lacking: Refusals) -> AccessDeniedError:
        return AccessDeniedError(f"{self.grid.user} cannot read {lacking.text()}; ask the owner for read access")

    def cannot_tag(self, unwritable: Refusals) -> AccessDeniedError:
        return AccessDeniedError(
            f"{self.grid.user} cannot write metadata on {unwritable.text()}; predictions are stored as AVUs on "
            "the images, which needs modify_object (ichmod write) access"
        )

    def recorded(self, selection: Sequence[str] | None = None) -> Recorded:
        """What the task collection says of the inputs: its recorded selection (``selection``: a
        shard's, planned with the task) and what earlier runs stored."""
        if selection is None:
            selection = task_parts.load_selection(self.grid, self.collection)
        previous = task_parts.merge_entries(e for _, e in task_parts.stored_parts(self.grid, self.collection))
        return Recorded(selection, previous)

    def select_inputs(self, candidates: Sequence[DataObject], recorded: Recorded | None) -> Inputs:
        """The images to classify: a new task takes the pattern's matches (without those that
        carry a complete prediction, if ``skip_tagged``); a task that exists (``recorded``) takes
        what it selected first, less what its earlier runs classified (stored parts) or tagged."""
        class_attribute, score_attribute = self.config.class_attribute, self.config.score_attribute
        previous = recorded.previous if recorded is not None else {}
        if recorded is not None and recorded.selection is not None:
            by_name = {self.relative_path(o): o for o in candidates}
            selected = [by_name[name] for name in recorded.selection if name in by_name]
            units = names.task_units(self.task_id)
            inputs = [
                o for o in selected
                if self.relative_path(o) not in previous
                and not task_parts.has_complete_prediction(o, class_attribute, score_attribute, units)
            ]
            chosen = Inputs(inputs, (), recorded.selection, previous, len(recorded.selection), len(selected) - len(inputs))
            self.outcome.done_before = chosen.done_before
            self.outcome.inputs = len(inputs)
            return chosen
        complete = [o for o in candidates if task_parts.has_complete_prediction(o, class_attribute, score_attribute)]
        if previous:  # resumed, but no selection recorded: the parts tell what is done
            done = {self.relative_path(o) for o in complete} | set(previous)
            inputs = [o for o in candidates if self.relative_path(o) not in done]
            chosen = Inputs(inputs, (), None, previous, len(candidates), len(candidates) - len(inputs))
            self.outcome.done_before = chosen.done_before
            self.outcome.inputs = len(inputs)
            return chosen
        skipped: list[DataObject] = []
        if self.config.skip_tagged:
            inputs = []
            for obj in candidates:
                (inputs if self.is_eligible(obj) else skipped).append(obj)
        else:
            inputs = list(candidates)
        self.outcome.inputs = len(inputs)
        self.outcome.skipped_already_tagged = len(skipped)
        if not inputs:
            raise self._nothing_to_do(skipped)
        return Inputs(inputs, skipped, None, {}, len(inputs))

    def _nothing_to_do(self, skipped: Sequence[DataObject]) -> NoEligibleInputsError:
        class_attribute = self.config.class_attribute
        where = f"{self.config.input_collection} (pattern {self.config.pattern!r}"
        where += ", recursive" if self.config.recursive else ""
        where += f", {self.where.describe()})" if self.where else ")"
        if skipped:
            return NoEligibleInputsError(
                f"nothing to do: all {len(skipped)} matching data objects in {where} already carry "
                f"{class_attribute}" + (f" (or {names.A_UNCLASSIFIED}: an earlier run of the series could "
                                        "not read them or scored them under its threshold)"
                                        if self.config.schedule_every is not None else "")
                + "; set inputs.skip_tagged to false (or use --force) to classify them again"
            )
        return NoEligibleInputsError(
            f"no data object in {where} matches, or none that {self.grid.user} may read; "
            "check inputs.collection, inputs.pattern" + (", inputs.where" if self.where else "") + " and your access"
        )

    # ------------------------------------------------------------------ the task collection
    def take_over_task_collection(self) -> Placement | None:
        """A queued task collection, taken over by this run (None: there is none to take over)."""
        if not self.grid.collection_exists(self.collection):
            return None
        record = self.store.read(self.collection)
        if record.state == TaskState.CANCELLED:
            self.outcome.state = TaskState.CANCELLED
            raise TaskCancelled(f"task {self.task_id} was cancelled; not running it")
        if record.state != TaskState.QUEUED:
            raise TaskStateError(
                f"task {self.task_id} is {record.state.value if record.state else 'in no known state'}; "
                "only a queued task can be started"
            )
        # The checks made when it was submitted keep their times, as submit.<step>.
        submitted = {k if "." in k else f"submit.{k}": v for k, v in record.timings.items()}
        self.outcome.timings = {**submitted, **self.outcome.timings}
        return Placement(self.collection, record.int_value(names.A_RESUMED))

    def create_collection(self) -> None:
        """``<output>/<task id>``, new: from here on, how the task ends is this run's to record."""
        if self.grid.collection_exists(self.collection):
            raise TaskStateError(f"task collection {self.collection} exists already; not overwriting it")
        self.grid.create_collection(self.collection)

    def record_new_task(self, checked: Checked, selection: Selection, inputs: Inputs) -> Placement:
        """The new task collection's bookkeeping (``queued``) and its config."""
        self.lifecycle.create(
            self.collection,
            {
                names.A_TASK_ID: self.task_id,
                names.A_TASK_TYPE: self.task_type,
                names.A_SUBMITTED_BY: self.submitted_by,
                names.A_CREATED: names.iso_utc(),
                names.A_INPUT_COLLECTION: self.config.input_collection,
                names.A_INPUTS: len(inputs.inputs),
                names.A_COMPUTE_RESOURCE: selection.resource.name,
                names.A_MODEL: self.config.model,
                names.A_PARAMETERS: self.config.notebook_parameters(),
                names.A_TIMINGS: timings_text(self.outcome.timings),
                **self.pins(checked),
                **schedule.creation_values(self.config, self.task_id, self.context.series),
                **self.chain_values(),
            },
        )
        self.outcome.state = TaskState.QUEUED
        self.put_text(selection.resource, names.TASK_CONFIG_FILE, self.config.to_json())
        return Placement(self.collection, 0)

    # ------------------------------------------------------------------ the run's start
    def reap_dead_runs(self, resource: Resource) -> None:
        """Before a run starts on a resource: what dead runs left there is stopped and recorded."""
        try:
            Reaper(self.lifecycle).reap_resource(resource)
        except ComputeToDataError as exc:  # never keep a healthy task from running for it
            log.warning("could not look for dead runs on %s: %s", resource.name, exc)

    def wait_for_slot(self, resource: Resource, running: Running | None, staged: Staged | None = None) -> ResourceSlot:
        """One of the resource's slots (COMPUTE_RESOURCE_MAX_TASKS); a run already ``running``
        that waits keeps beating (staged, waiting for the GPU) and reads its inputs meanwhile, a
        queued one just waits."""
        slot = ResourceSlot(
            self.settings.lock_directory_for(resource.host, resource.name),
            resource.name,
            self._capacity(resource),
            should_stop=self._is_cancelled if running is None else _beating(
                running.heartbeat, staged.stream if staged is not None else None),
        )
        waiting = time.perf_counter()
        acquired = slot.acquire()
        self.outcome.timings["wait_for_slot"] = time.perf_counter() - waiting
        if not acquired:
            raise TaskCancelled("the task was cancelled while it waited for a free slot")
        return slot

    def _capacity(self, resource: Resource) -> int:
        return resource.avu_int(names.MAX_TASKS_ATTRIBUTE, self.settings.max_concurrent_tasks_default)

    def record_running(self, selection: Selection, inputs: Inputs) -> Running:
        """``running``, with the run's figures and signs of life; the first run of a task records
        what the task is about (its selection), so a resume works on the same images."""
        self.raise_if_cancelled()
        done = self.outcome.done_before
        total = max(inputs.total, done + len(inputs.inputs))
        try:
            record = self.lifecycle.begin_run(
                self.collection,
                {
                    names.A_PROGRESS: f"{done}/{total}",
                    names.A_INPUTS: total,
                    names.A_COMPUTE_RESOURCE: selection.resource.name,
                    names.A_RUNNER: selection.runner.name,
                    names.A_RUN_HOST: selection.resource.host,
                    names.A_RUN_HANDLE: None,
                    names.A_TIMINGS: timings_text(self.outcome.timings),
                },
            )
        except TaskStateError:
            self.raise_if_cancelled()
            raise
        started = record.get(names.A_STARTED)
        self.outcome.state = TaskState.RUNNING
        check = functools.partial(self.lifecycle.check_ours, self.collection, started)
        heartbeat = Heartbeat(
            self.store,
            self.collection,
            interval=self.settings.heartbeat_interval_seconds,
            progress_interval=self.context.progress_interval,
            check=check,
            enabled=self.context.heartbeat,
        )
        heartbeat.offset, heartbeat.total = done, total
        heartbeat.listeners.extend(self.context.progress_listeners)
        recorded = inputs.selection
        if recorded is None:  # the first run records what the task is about
            recorded = [self.relative_path(o) for o in inputs.inputs]
            task_parts.store_selection(self.grid, self.collection, selection.resource.name, recorded)
        return Running(started, heartbeat, recorded, check)

    # ------------------------------------------------------------------ stage
    def new_workdir(self, resource: Resource) -> TaskWorkdir:
        """The run's staging directory, made empty (what a dead run left of it is gone)."""
        return onhost.new_workdir(self.settings, resource, self.scope.run_key)

    def stage_inputs(self, run: TaskRun, workdir: TaskWorkdir, *, relist: bool = True) -> Staged:
        """Link each input from where this host can read it: its replica on the compute resource,
        or (``compute.replicate: when_needed``) a good replica on this host or in a vault the
        settings declare visible here, in place; read the rest through iRODS into the staging
        directory (:mod:`.streaming`), or with ``always`` replicate it first, by several agents
        when there are many (:mod:`.replication`). What happened is recorded (``c2d::staging``).
        ``relist``: list the inputs again first (the plan says so when the run waited for its
        slot or listed them long ago); else the replicas listed moments ago are used."""
        selection, heartbeat = run.selection, run.running.heartbeat
        selection.runner.preflight(selection.image.name if selection.image is not None else None)
        resource = selection.resource
        # What is on the resource now: a task that waited for its slot may find the images
        # replicated by the one it waited for (and must not count them as its own cost). Listed
        # a moment ago and not waited for, they are what was listed: a second listing of 2,000
        # images cost 0.25 s of a 13 s task on the measured costs.
        if relist:
            inputs, model, labels = self._refreshed(run.listing, run.inputs.inputs)
        else:
            inputs, model, labels = list(run.inputs.inputs), run.checked.model, run.checked.labels
        locality = Locality(self.grid, self.settings, resource)
        summary = StagingSummary(self.config.replicate)
        plan = plan_staging([*inputs, model, labels], resource.name, self.config.replicate, locality)
        summary.on_resource = plan.count(FROM_RESOURCE)[0]
        summary.in_place, summary.in_place_bytes = plan.count(IN_PLACE)
        started = time.perf_counter()
        if plan.to_replicate:
            replicator = Replicator(
                self.grid, resource.name, self.settings,
                pool=agent_pool(self.grid, resource.name, self.collection, self.context.start_replication_agent),
                keep_alive=heartbeat.beat, top=self.config.input_collection,
            )
            listing = None
            # (a shard replicates object by object: whether a collection holds only its inputs
            # would need the listing of the whole input collection, which a shard never reads)
            if (self.grid.replicates_collections and run.listing.whole_collection
                    and len(plan.to_replicate) >= COLLECTION_PLANNING_MINIMUM):
                # what the collections hold besides the inputs (msiCollRepl would replicate it)
                listing = [o.path for o in self.grid.list_data_objects(self.config.input_collection, recursive=True)]
            report = replicator.replicate(plan.to_replicate, listing)
            for name in ("replicated", "replicated_bytes", "agents", "collections", "taken_over", "agent_failures", "retried"):
                setattr(summary, name, getattr(report, name))
            inputs, model, labels = self._refreshed(run.listing, inputs)
            plan = plan_staging([*inputs, model, labels], resource.name, self.config.replicate, locality)
            if plan.to_replicate:
                raise StagingError(f"{plan.to_replicate[0].path} has no good replica on {resource.name} after replication")
            self.outcome.timings["stage.replicate"] = time.perf_counter() - started
        self.outcome.replicated_bytes = summary.replicated_bytes
        self.store.write(self.collection, {names.A_REPLICATED_BYTES: summary.replicated_bytes})

        linking = time.perf_counter()
        placements = plan.placements
        # what is read through iRODS rather than linked: the model and labels first (the
        # notebook needs them before any image), then the inputs in the manifest's order
        to_stream = {o.path: o for o in plan.to_stream}
        first: list[StreamItem] = []
        by_name: dict[str, DataObject] = {}
        for obj, base in ((model, workdir.model_dir), (labels, workdir.labels_dir)):
            if obj.path in to_stream:
                first.append(StreamItem(to_stream[obj.path], base, obj.name))
        ordered = sorted(inputs, key=self.relative_path)
        stream: list[StreamItem] = []
        for i, obj in enumerate(ordered, 1):
            relative = self.relative_path(obj)
            by_name[relative] = obj
            if obj.path in to_stream:
                stream.append(StreamItem(to_stream[obj.path], workdir.input_dir, relative))
                continue
            workdir.stage_input(placements[obj.path].path, relative, shown=obj.path)
            if i % 200 == 0:
                heartbeat.beat()
        write_manifest(workdir.manifest_file, list(by_name))
        if model.path in to_stream:
            model_file = workdir.model_dir / model.name
        else:
            model_file = workdir.stage_model_file(placements[model.path].path, model.name, shown=model.path)
        if labels.path in to_stream:
            labels_file = workdir.labels_dir / labels.name
        else:
            labels_file = workdir.stage_labels_file(placements[labels.path].path, labels.name, shown=labels.path)
        self.outcome.timings["stage.link"] = time.perf_counter() - linking
        # the inputs arrive while the notebook runs where it reads the manifest (engine/pipelining.py)
        input_stream = InputStream(
            self.grid, workdir, first, stream, readers=self.settings.replication.agents_for(resource.name),
            keep_alive=heartbeat.beat, pipelined=reads_inputs_manifest(run.checked.notebook_file),
        )
        input_stream.start()
        try:
            self.check_pins(model_file, labels_file, run.checked.notebook_file)
            made = workdir.report
            summary.linked, summary.copied, summary.copied_bytes = made.linked, made.copied, made.copied_bytes
            staged = Staged(workdir, inputs, by_name, model, labels, model_file, labels_file, summary, input_stream)
            self._record_streamed(staged)
        except BaseException:
            input_stream.stop("the run ended before staging did")  # no reader outlives the run
            raise
        if summary.in_place or stream or first:
            log.info("task %s: %d object(s) staged in place, %d streamed%s, %d replicated", self.task_id,
                     summary.in_place, len(first) + len(stream),
                     " (the inputs while the notebook runs)" if input_stream.pipelined else "", summary.replicated)
        self.outcome.notes.extend(locality.notes + made.notes)
        return staged

    def _record_streamed(self, staged: Staged) -> None:
        """``c2d::staging`` and ``stage.stream`` as streaming stands (again once it ended while
        the notebook ran: ``stage.stream`` then overlaps ``execute``)."""
        stream = staged.stream
        if stream.started is not None and (stream.first or stream.items):
            self.outcome.timings["stage.stream"] = stream.seconds
        self.outcome.staging = stream.summarize(staged.summary).as_dict()
        self.store.write(self.collection, {names.A_STAGING: self.outcome.staging})

    def end_streaming(self, staged: Staged, result: RunResult | None, run_error: BaseException | None) -> None:
        """After the run: every input read (or the staging error, which is the task's error, not
        the notebook's consequent one); a run that ended early stops the readers."""
        stream = staged.stream
        try:
            if run_error is not None:
                stream.settle(run_error)
            if run_error is None and result is not None and result.succeeded:
                stream.finish()
                stream.check_covered(result.images_total, len(staged.inputs))
            else:
                reason = one_line(run_error) if run_error is not None else (
                    result.error if result is not None and result.error else "the run ended")
                staging_error = stream.stop(reason)
                if staging_error is not None and staging_error is not run_error:
                    raise staging_error
        finally:
            if stream.pipelined:
                try:
                    self._record_streamed(staged)
                except ComputeToDataError as exc:  # advisory: never hide how the run ended
                    log.warning("could not record the staging of task %s: %s", self.task_id, exc)

    def _refreshed(self, listing: InputListing, inputs: Sequence[DataObject]
                   ) -> tuple[list[DataObject], DataObject, DataObject]:
        """The inputs, model and labels as the catalog lists them now (their replicas)."""
        fresh = {o.path: o for o in listing.candidates()}
        return ([fresh.get(o.path, o) for o in inputs], self.grid.get_data_object(self.config.model),
                self.grid.get_data_object(self.config.labels))

    # ------------------------------------------------------------------ what the task pinned
    def pins(self, checked: Checked) -> dict[str, str]:
        """The checksums a new task pins (``c2d::model_checksum``, ``c2d::labels_checksum``,
        ``c2d::notebook_checksum``): the catalog's SHA-256 of the model and labels objects, and
        the notebook file's. Every run of the task (each shard, each resume) checks them before
        it classifies (:meth:`check_pins`): a model replaced at the same path after two of six
        shards ran would otherwise make one task of two models, silently. A catalog checksum that
        is missing (an object put without one) or of another scheme is pinned instead by the
        first run that stages the object."""
        pins: dict[str, str] = {}
        for attribute, obj in ((names.A_MODEL_CHECKSUM, checked.model), (names.A_LABELS_CHECKSUM, checked.labels)):
            if obj.checksum.startswith("sha2:"):
                pins[attribute] = obj.checksum
        if checked.notebook_file.is_file():
            pins[names.A_NOTEBOOK_CHECKSUM] = file_checksum(checked.notebook_file)
        return pins

    def check_pins(self, model_file: Path, labels_file: Path, notebook_file: Path) -> None:
        """Refuse to classify with a model, labels or notebook other than the task's (what it
        pinned when it was created); pin what was not pinned yet (the first run to stage it)."""
        record = self.store.read(self.collection)
        staged = (
            (names.A_MODEL_CHECKSUM, "model", self.config.model, model_file),
            (names.A_LABELS_CHECKSUM, "labels", self.config.labels, labels_file),
            (names.A_NOTEBOOK_CHECKSUM, "notebook", self.config.notebook, notebook_file),
        )
        unpinned: dict[str, object] = {}
        for attribute, what, path, local in staged:
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

    # ------------------------------------------------------------------ execute
    def execute(self, run: TaskRun, staged: Staged) -> RunResult:
        """``params.json`` (and what earlier runs classified), then the notebook, by the runner;
        the inputs may still arrive while it runs (:mod:`.pipelining`): a staging error, not what
        the notebook or the run made of it, is the task's error (:meth:`end_execute`)."""
        try:
            return self._run_notebook(run, staged)
        except BaseException as exc:
            self.end_streaming(staged, None, exc)
            raise

    def end_execute(self, run: TaskRun, staged: Staged, result: RunResult) -> None:
        """The run ended: streaming ends (or its error is raised), then what the runner reported."""
        self.end_streaming(staged, result, None)
        self.outcome.run_result = result
        self.outcome.runner = result.runner or run.selection.runner.name
        # The runner's own sub-timings (``kernel_start_seconds`` ...) as ``run.kernel_start``.
        self.outcome.timings.update({run_timing_name(k): v for k, v in result.timings.items()})

    def _run_notebook(self, run: TaskRun, staged: Staged) -> RunResult:
        parameters = self.build_parameters(run, staged)
        workdir = staged.workdir
        params_file = workdir.task_dir / names.PARAMS_FILE
        params_file.write_text(json.dumps(parameters, indent=2, sort_keys=True))
        params_file.chmod(0o644)
        if run.inputs.previous:
            previous_file = workdir.task_dir / names.PREVIOUS_PREDICTIONS_FILE
            previous_file.write_text(json.dumps({"task_id": self.task_id, "images": list(run.inputs.previous.values())}))
            previous_file.chmod(0o644)
        selection, heartbeat = run.selection, run.running.heartbeat
        phase = _RunPhase(self.store, self.collection)
        run_key = self.scope.run_key

        def on_poll() -> bool:
            """The runner's poll loop (our main thread): a sign of life, the finished parts, and the
            next inputs where only this thread may read them (True while some are left)."""
            heartbeat.beat()
            if self.context.parts:
                self.tag_finished_parts(run, staged)
            return staged.stream.pump()

        request = RunRequest(
            task_id=run_key,
            run_id=run_id(run_key, run.running.started or ""),
            notebook_name=self.config.notebook,
            notebook_path=run.checked.notebook_file,
            workdir=workdir.root,
            parameters=parameters,
            timeout_seconds=self.settings.effective_timeout(self.config.timeout_seconds),
            image=selection.image.name if selection.image is not None else None,
            gpus=selection.resource.avu_int(names.GPUS_ATTRIBUTE, 0),
            resource_name=selection.resource.name,
            max_concurrent=self._capacity(selection.resource),
            progress=heartbeat.progress,
            on_started=self._record_handle,
            on_status=phase.record,
            on_poll=on_poll,
        )
        return onhost.run_notebook(selection.runner, request, workdir)

    def _record_handle(self, host: str, handle: str) -> None:
        """The run exists: where it is supervised, and the handle that finds it from elsewhere."""
        self.store.write(self.collection, {names.A_RUN_HOST: host, names.A_RUN_HANDLE: handle})

    # ------------------------------------------------------------------ ingest, tag, finalize
    def ingest_outputs(self, run: TaskRun, staged: Staged) -> None:
        """Every file the run produced becomes a data object in the task collection."""
        self.ingest_files(staged.workdir, run.selection.resource)
        self._archive_outputs(run.selection.archive_resource)

    @abstractmethod
    def build_parameters(self, run: TaskRun, staged: Staged) -> dict[str, Any]:
        """``params.json`` for the notebook (contract keys + task-type specific ones)."""

    @abstractmethod
    def tag_results(self, run: TaskRun, staged: Staged, result: RunResult) -> None:
        """Write results as AVUs on the inputs, in atomic batches, after outputs are ingested."""

    def tag_finished_parts(self, run: TaskRun, staged: Staged) -> None:
        """Hook, called while the notebook runs: store and tag the parts it finished so far.
        Task types whose notebooks write no parts keep this default (nothing to do)."""

    def salvage_parts(self, tagging: Tagging, output_dir: Path) -> int:
        """Hook for a run that ended without its tag step (it failed, or died and is being
        reaped): store and tag the parts it finished, which are valid results. Default: none."""
        return 0

    def finalize(self, run: TaskRun, result: RunResult) -> None:
        """``succeeded``, with the figures and provenance, while the task is still this run's."""
        done = self.outcome.images_done
        if done is None:
            done = self.outcome.done_before + result.images_done
        values: dict[str, object] = {
            names.A_FINISHED: names.iso_utc(),
            names.A_PROGRESS: f"{done}/{max(run.inputs.total, done)}",
            names.A_RUNNER: self.outcome.runner,
            names.A_IMAGES_FAILED: self.outcome.failed_images,
            names.A_ERROR: None,
            names.A_TIMINGS: timings_text(self.outcome.timings),
        }
        values.update(self.provenance(result))
        try:
            self.lifecycle.transition(self.collection, TaskState.SUCCEEDED, values, expect_started=run.running.started)
        except TaskStateError:
            self.raise_if_cancelled()
            raise
        self.outcome.state = TaskState.SUCCEEDED

    def tagged_progress(self, selection: Sequence[str] | None, listing: InputListing) -> str | None:
        """``done/total`` as the catalog says now: of the inputs the task selected, those stored
        in a part or carrying this task's complete prediction (what a resume would not redo).

        Rewritten after every salvage (a failed run's, the reaper's, a cancelled run's): the
        heartbeat's figure lags the parts tagged after it, and users decide from this number
        whether to resume. None when the task never recorded its selection.
        """
        if selection is None:
            return None
        previous = task_parts.merge_entries(e for _, e in task_parts.stored_parts(self.grid, self.collection))
        objects = {self.relative_path(o): o for o in listing.current().values()}
        units = names.task_units(self.task_id)
        done = sum(
            1 for name in selection
            if name in previous or (name in objects and task_parts.has_complete_prediction(
                objects[name], self.config.class_attribute, self.config.score_attribute, units))
        )
        return f"{done}/{len(selection)}"

    # ------------------------------------------------------------------ a dead run's parts
    @classmethod
    def for_salvage(cls, config: TaskConfig, context: TaskContext, record: TaskRecord, resource: Resource
                    ) -> "tuple[TaskSteps, Tagging] | None":
        """The task of a dead run and what salvaging its parts needs (None: it never recorded
        its selection, so it never ran: nothing to do)."""
        shard = ShardSpec.of(record) if record.is_shard else None
        task = cls(config, context, task_id=record.task_id, submitted_by=record.get(names.A_SUBMITTED_BY) or None,
                   shard=shard)
        listing: InputListing
        if shard is not None:
            shard_listing = ShardListing.read(task, shard)
            listing, recorded = shard_listing, task.recorded(shard_listing.relative_paths)
        else:
            listing, recorded = CollectionListing(task), task.recorded()
        candidates = listing.candidates()
        inputs = task.select_inputs(candidates, recorded)
        if inputs.selection is None:
            return None
        staged = {task.relative_path(o): o for o in inputs.inputs}
        return task, Tagging(resource, listing, candidates, staged, inputs.previous,
                             record.int_value(names.A_RESUMED), inputs.selection)

    # ------------------------------------------------------------------ how a run ends
    def settle_task(self, shard: ShardSpec) -> None:
        """A shard ended, however: the task's state and progress follow (the task service has the
        run that ended its last shard make the task's report, engine/summary.py)."""
        try:
            self.lifecycle.settle(shard.task_collection)
        except Exception as exc:  # noqa: BLE001 - the shard's own state is recorded; say why the task's is not
            log.error("task %s: could not update the task after shard %s ended: %s", self.task_id, shard.label, exc)

    def ingest_files(self, workdir: TaskWorkdir, resource: Resource) -> None:
        """The run's output files as data objects in the task collection; the report, if any, recorded."""
        files = onhost.put_outputs(self.grid, workdir, self.collection, resource)
        report = posixpath.join(self.collection, names.REPORT_FILE)
        if any(p.name == names.REPORT_FILE and p.parent == workdir.output_dir for p in files):
            self.outcome.report_path = report
            self.store.write(self.collection, {names.A_REPORT: report})

    def _archive_outputs(self, archive_resource: Resource | None) -> None:
        """Copies of the results on long-term storage, when the task config asks for it."""
        if archive_resource is None:
            return
        for obj in self.grid.list_data_objects(self.collection, recursive=True):
            self.grid.replicate(obj.path, archive_resource.name)

    def put_text(self, resource: Resource, name: str, text: str) -> None:
        with tempfile.TemporaryDirectory(prefix="c2d-") as tmp:
            local = Path(tmp) / name
            local.write_text(text)
            self.grid.put_file(local, posixpath.join(self.collection, name), resource.name, overwrite=True)

    def provenance(self, result: RunResult | None) -> dict[str, object]:
        values: dict[str, object] = {
            names.A_TASK_TYPE: self.task_type,
            names.A_MODEL: self.config.model,
            names.A_PARAMETERS: self.config.notebook_parameters(),
        }
        # The model's, labels' and notebook's checksums are the task's pins (pins, check_pins),
        # never rewritten at a run's end: a run that failed because one changed would otherwise
        # pin the changed file, and the next resume would classify with it. (Nor is a staged file
        # read here: a run that failed while staging may not have it.)
        if result is not None:
            if result.image:
                values[names.A_IMAGE] = result.image
            if result.image_digest:
                values[names.A_IMAGE_DIGEST] = result.image_digest
            # where it ran: the host that supervised it, its handle (container, pid, job id), the node
            for attribute, value in ((names.A_RUN_HOST, result.host),
                                     (names.A_RUN_HANDLE, result.handle),
                                     (names.A_RUN_NODE, result.node)):
                if value:
                    values[attribute] = value
        return values

    def record_failure(self, exc: BaseException, *, owned: bool, run: TaskRun | None = None,
                        workdir: TaskWorkdir | None = None, result: RunResult | None = None) -> None:
        """Say truthfully how the task ended; never let bookkeeping hide the original error.

        ``owned``: the task collection is this run's (made or taken over), so its state is the
        run's to record; ``run``: the run had begun (``running``), ``workdir``: its staging
        directory, ``result``: what its runner reported. A run that lost the task (cancelled, or
        declared dead while it was only slow) records nothing over what the winner wrote: the
        lifecycle refuses, and the run stops.
        """
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted (Ctrl-C) on the compute host"
        elif isinstance(exc, Terminated):
            message = str(exc)
        else:
            message = one_line(exc)
        self.outcome.error = message
        cancelled = isinstance(exc, TaskCancelled)
        self.outcome.state = TaskState.CANCELLED if cancelled else TaskState.FAILED
        log.error("task %s %s: %s", self.task_id, self.outcome.state.value, message)
        if not owned:
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
            if run is not None and current is not None and current.state is not None and current.state.is_final:
                self._record_tagged_progress(current, run)  # a cancel stopped it: its figure, not its state
            return
        if not cancelled and workdir is not None and self.context.parts and run is not None:
            try:  # what the notebook finished before the failure is a valid result: keep it
                staged = {self.relative_path(o): o for o in run.inputs.inputs}
                self.salvage_parts(run.tagging(staged, check=False), workdir.output_dir)
            except Exception as salvage_exc:
                log.error("could not tag the finished parts of failed task %s: %s", self.task_id, salvage_exc)
        try:
            if (workdir is not None and run is not None and self.outcome.report_path is None
                    and workdir.output_dir.is_dir()):
                self.ingest_files(workdir, run.selection.resource)
        except Exception as ingest_exc:  # keep the first error; say the second in the log
            log.error("could not register the outputs of failed task %s: %s", self.task_id, ingest_exc)
        try:
            values: dict[str, object] = {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message}
            values.update(self.provenance(result))
            progress = self._safe_tagged_progress(run) if run is not None else None
            if progress is not None:
                values[names.A_PROGRESS] = progress
            if self.outcome.failed_images:
                values[names.A_IMAGES_FAILED] = self.outcome.failed_images
            values[names.A_TIMINGS] = timings_text(self.outcome.timings)
            # A run that began records its end only while the task is still its own (running,
            # with its c2d::started): after a cancel and a resume the task is another run's.
            self.lifecycle.transition(
                self.collection, self.outcome.state, values,
                expect_started=run.running.started if run is not None else None,
                check=None if run is not None else still_in(TaskState.QUEUED),
            )
        except Exception as state_exc:
            log.error("could not record the state of task %s: %s", self.task_id, state_exc)

    def _safe_tagged_progress(self, run: TaskRun) -> str | None:
        """:meth:`tagged_progress`, or None (the progress stays as it is) if it cannot be read."""
        try:
            return self.tagged_progress(run.running.selection, run.listing)
        except Exception as exc:  # noqa: BLE001 - never let a figure hide the run's own error
            log.warning("task %s: could not count what is tagged: %s", self.task_id, exc)
            return None

    def _record_tagged_progress(self, current: TaskRecord, run: TaskRun) -> None:
        """A run stopped by a cancel (which recorded the state) still says how far it got, while
        the task is its own: not after a resume cleared its ``c2d::started``."""
        if current.get(names.A_STARTED) != run.running.started:
            return
        progress = self._safe_tagged_progress(run)
        if progress is not None and progress != current.get(names.A_PROGRESS):
            try:
                self.store.write(self.collection, {names.A_PROGRESS: progress})
            except ComputeToDataError as exc:
                log.warning("task %s: could not record its progress: %s", self.task_id, exc)

    def record_timings(self) -> None:
        """Refresh ``c2d::timings`` after a step; advisory, so a failed write never fails the task."""
        try:
            self.store.write(self.collection, {names.A_TIMINGS: timings_text(self.outcome.timings)})
        except Exception as exc:
            log.warning("could not record the timings of task %s: %s", self.task_id, exc)

    @contextmanager
    def step(self, name: str, *, owned: bool = False) -> Iterator[None]:
        """Time a step and tell the step listeners; ``owned``: the task collection is the run's
        (its ``c2d::timings`` follow after each step)."""
        for listener in self.context.step_listeners:
            listener(name, "start", 0.0)
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            elapsed = time.perf_counter() - started
            self.outcome.timings[name] = elapsed
            for listener in self.context.step_listeners:
                listener(name, "failed", elapsed)
            raise
        elapsed = time.perf_counter() - started
        self.outcome.timings[name] = elapsed
        log.debug("step %s took %.3f s", name, elapsed)
        if owned:
            self.record_timings()
        for listener in self.context.step_listeners:
            listener(name, "done", elapsed)

    def _is_cancelled(self) -> bool:
        try:
            return self.store.read(self.collection).state == TaskState.CANCELLED
        except ComputeToDataError:
            return False

    def raise_if_cancelled(self) -> None:
        if self._is_cancelled():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    # ------------------------------------------------------------------ helpers for steps
    def chain_values(self) -> dict[str, object]:
        """``c2d::after`` on a chained task's collection (what ``c2d status`` shows)."""
        return {names.A_AFTER: self.config.after} if self.config.after else {}

    def relative_path(self, obj: DataObject) -> str:
        """The object's path below the input collection. A run asks it several times per image
        (20,000 images: over 100,000 times): a prefix is cut where it can be, rather than
        ``relpath`` normalizing both paths each time."""
        prefix = self.config.input_collection.rstrip("/") + "/"
        if obj.path.startswith(prefix):
            return obj.path[len(prefix):]
        return posixpath.relpath(obj.path, self.config.input_collection)

    def is_candidate(self, obj: DataObject) -> bool:
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

    def is_eligible(self, obj: DataObject) -> bool:
        """A new task classifies it: skip_tagged leaves out images with a complete prediction, and
        a run of a series also those an earlier task found unreadable or under its threshold (and
        that were not replaced since): without that, every run would take them again, for ever."""
        if not self.config.skip_tagged:
            return True
        if task_parts.has_complete_prediction(obj, self.config.class_attribute, self.config.score_attribute):
            return False
        return self.config.schedule_every is None or not task_parts.is_marked_unclassified(obj)

    def check_can_create(self, collection: str) -> None:
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


class _RunPhase:
    """A scheduler holding the run back: say why (readers show ``queued``); clear it once it runs."""

    def __init__(self, store: TaskStateStore, collection: str) -> None:
        self.store = store
        self.collection = collection
        self.reason_written = False

    def record(self, phase: str, reason: str | None) -> None:
        waiting = phase == "queued"
        if not waiting and not self.reason_written:
            return
        value = (reason or "waiting in the scheduler's queue") if waiting else None
        self.store.write(self.collection, {names.A_QUEUE_REASON: value})
        self.reason_written = waiting


def _beating(heartbeat: Heartbeat, stream: InputStream | None) -> Callable[[], bool]:
    """A running run waiting for the GPU: signs of life (which raise if it was cancelled), and its
    inputs read meanwhile where only this thread may read them."""
    def should_stop() -> bool:
        heartbeat.beat()
        if stream is not None:
            stream.pump()
        return False
    return should_stop


class RunFailed(ComputeToDataError):
    """The runner reported a failed run; its error is the task's error."""


def one_line(exc: BaseException) -> str:
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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha2:" + base64.b64encode(digest.digest()).decode()
