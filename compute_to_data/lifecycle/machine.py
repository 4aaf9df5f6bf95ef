"""The task lifecycle: the one place that changes ``c2d::state``, along allowed transitions only.

    queued ──► running ──► succeeded | failed | cancelled
      │                          failed | cancelled ──► queued   (resume only)
      └──► failed (could not start) | cancelled

Every transition reads the current state first, refuses what the table does not allow with a
message a researcher can act on, and writes the new state together with its companion values
(finished, error, heartbeat, progress...) in one atomic metadata batch that also removes the
state value it read: on adapters where removing a value that is no longer there fails the batch
(LocalGrid, and the rule-engine fake following it), a concurrent change makes the transition
re-read and decide again instead of overwriting. A writer that lost such a race (the engine
finishing after a reaper or a cancel) is refused and stops.

Signs of life: a running task records its compute host (``c2d::run_host``), the runner's handle
(``c2d::run_handle``) and a heartbeat (``c2d::heartbeat``, with the progress). On the compute
host a run also holds a per-task lock file for as long as it runs (the OS releases it when the
process dies). A running task whose heartbeat is older than the lease and whose lock nobody holds
is dead: :meth:`TaskLifecycle.reap` stops what is left of it (container, notebook processes),
removes its staging directory and records ``failed`` with the reason. Readers elsewhere show such
a task as ``stale`` (derived, never written).

This module is imported by the iRODS server (rules.py): standard library and light packages only.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    AVU,
    AccessLevel,
    EntityType,
    MetadataOperation,
    Resource,
)
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    AccessDeniedError,
    ComputeToDataError,
    GridError,
    TaskCancelled,
    TaskLostError,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord, as_text
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.shards import ShardSpec, aggregate, failure_message
from compute_to_data.grid import hosts
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.runlock import RunLock
from compute_to_data.lifecycle.shards import shard_records
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.base import CANCELLED_ON_REQUEST

if TYPE_CHECKING:
    from compute_to_data.domain.taskconfig import TaskConfig
    from compute_to_data.engine.task import TaskContext, TaskOutcome
    from compute_to_data.runners.base import Runner

log = logging.getLogger(__name__)

#: state -> the states it may become. ``None``: a task collection being created.
TRANSITIONS: dict[TaskState | None, frozenset[TaskState]] = {
    None: frozenset({TaskState.QUEUED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.RUNNING: frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.FAILED: frozenset({TaskState.QUEUED}),
    TaskState.CANCELLED: frozenset({TaskState.QUEUED}),
    TaskState.SUCCEEDED: frozenset(),
}

#: what a resumed task forgets of its previous run (the error stays in the log and the report).
_CLEARED_ON_RESUME = (
    names.A_FINISHED, names.A_ERROR, names.A_HEARTBEAT, names.A_RUN_HANDLE, names.A_RUN_HOST,
    names.A_STARTED, names.A_IMAGES_FAILED, names.A_QUEUE_REASON,
)


def _state_name(state: TaskState | None) -> str:
    return state.value if state is not None else "in no known state"


@dataclass(frozen=True)
class TaskStatus:
    """A task as a reader should see it: the record, and ``stale`` for a silent running task."""

    record: TaskRecord
    display_state: str

    @property
    def is_stale(self) -> bool:
        return self.display_state == names.STALE


@dataclass(frozen=True)
class CancelOutcome:
    record: TaskRecord
    was_running: bool
    #: the run is on this host (and was stopped here); False: the caller stops it on its host.
    here: bool
    stopped: bool
    #: a sharded task: its shards that were running on other hosts (the caller stops them there)
    elsewhere: tuple[TaskRecord, ...] = ()


@dataclass(frozen=True)
class Settled:
    """A sharded task after :meth:`TaskLifecycle.settle`; ``summarize``: every shard succeeded
    and the task's report is still to be made (by the caller, on a compute host)."""

    record: TaskRecord
    summarize: bool = False




class TaskLifecycle:
    """Submit, start, cancel, resume, status and reap tasks, as the grid's user."""

    def __init__(self, grid: Grid, settings: Settings) -> None:
        self.grid = grid
        self.settings = settings
        self.store = TaskStateStore(grid)

    @property
    def lease_seconds(self) -> float:
        return self.settings.heartbeat_lease_seconds

    # ------------------------------------------------------------------ reading
    def read(self, collection: str) -> TaskRecord:
        return self.store.read(collection)

    def find(self, task: str) -> TaskRecord:
        return self.store.find(task)

    # ------------------------------------------------------------------ the one writer of c2d::state
    def create(self, collection: str, values: Mapping[str, object]) -> None:
        """The bookkeeping of a task collection just created, in one batch: its first state is
        ``queued`` (a reader never sees a task without a state)."""
        if names.A_TASK_ID not in values:
            raise TaskStateError(f"a new task needs {names.A_TASK_ID}")
        existing = self.grid.get_avus(EntityType.COLLECTION, collection)
        if any(a.attribute == names.A_STATE for a in existing):
            raise TaskStateError(f"{collection} is a task collection already; not creating it again")
        avus = [AVU(k, as_text(v)) for k, v in values.items() if v is not None and k != names.A_STATE]
        avus.append(AVU(names.A_STATE, TaskState.QUEUED.value))
        self.grid.set_avus(EntityType.COLLECTION, collection, avus)

    def transition(
        self,
        collection: str,
        to: TaskState,
        values: Mapping[str, object] | None = None,
        *,
        expect_started: str | None = None,
        refuse: str | None = None,
    ) -> TaskRecord:
        """Move the task to ``to`` with ``values`` (None removes one) in one atomic batch.

        Refused with :class:`TaskStateError` (``refuse`` is the message, if given) when the
        table does not allow it; with :class:`TaskLostError` when ``expect_started`` names a
        run that is no longer the task's current one.
        """
        wanted = {k: v for k, v in (values or {}).items() if k != names.A_STATE}
        if to.is_final:  # a run that ended waits for nothing
            wanted.setdefault(names.A_QUEUE_REASON, None)
        for attempt in range(3):
            record = self.store.read(collection)
            if to not in TRANSITIONS.get(record.state, frozenset()):
                raise TaskStateError(
                    refuse or f"task {record.task_id} is {_state_name(record.state)}; it cannot become {to.value}"
                )
            if expect_started is not None and (
                record.state != TaskState.RUNNING or record.get(names.A_STARTED) != expect_started
            ):
                raise TaskLostError(
                    f"task {record.task_id} is {_state_name(record.state)} now and no longer this run's "
                    f"(started {expect_started}); not recording {to.value}"
                )
            operations = self._operations(collection, record, to, wanted)
            try:
                self.grid.apply_metadata(operations)
            except GridError as exc:
                if attempt == 2:
                    raise
                log.info("task %s changed while it became %s (%s); reading it again", record.task_id, to.value, exc)
                continue
            shown = f"{record.task_id} shard {record.get(names.A_SHARD)}" if record.is_shard else record.task_id
            log.info("task %s: %s -> %s", shown, _state_name(record.state), to.value)
            merged = {k: v for k, v in record.values.items() if k not in wanted}
            merged.update({k: as_text(v) for k, v in wanted.items() if v is not None})
            merged[names.A_STATE] = to.value
            return TaskRecord(collection, merged)
        raise AssertionError("unreachable")

    @staticmethod
    def _operations(
        collection: str, record: TaskRecord, to: TaskState, wanted: Mapping[str, object]
    ) -> list[MetadataOperation]:
        """Remove what the named attributes hold now (the state we read included), add the new."""
        new = [AVU(k, as_text(v)) for k, v in wanted.items() if v is not None]
        new.append(AVU(names.A_STATE, to.value))
        named = set(wanted) | {names.A_STATE}
        current = [AVU(k, v) for k, v in record.values.items() if k in named]
        ops = [MetadataOperation("remove", EntityType.COLLECTION, collection, a) for a in current if a not in new]
        ops += [MetadataOperation("add", EntityType.COLLECTION, collection, a) for a in new if a not in current]
        return ops

    # ------------------------------------------------------------------ transitions the engine asks for
    def begin_run(self, collection: str, values: Mapping[str, object]) -> TaskRecord:
        """queued -> running; ``c2d::started`` names the run from now on."""
        now = names.iso_utc()
        return self.transition(
            collection, TaskState.RUNNING, {names.A_STARTED: now, names.A_HEARTBEAT: now, **values},
            refuse=f"task {posixpath.basename(collection)} is not queued; only a queued task can be started",
        )

    def check_ours(self, collection: str, started: str) -> None:
        """Raise if the task is no longer this run's: cancelled (TaskCancelled) or lost."""
        record = self.store.read(collection)
        if record.state == TaskState.CANCELLED:
            raise TaskCancelled(f"task {record.task_id} was cancelled ({record.get(names.A_ERROR) or 'by its owner'})")
        if record.state != TaskState.RUNNING or record.get(names.A_STARTED) != started:
            raise TaskLostError(
                f"task {record.task_id} is {_state_name(record.state)} now and no longer this run's "
                f"({record.get(names.A_ERROR) or 'another run took it over'}); stopping"
            )

    def fail_queued(self, collection: str, message: str) -> None:
        """A queued task that cannot start must not stay queued forever: record why."""
        try:
            record = self.store.read(collection)
            if record.state == TaskState.QUEUED:
                self.transition(collection, TaskState.FAILED, {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message})
        except ComputeToDataError as exc:
            log.error("could not record the failure of %s: %s", collection, exc)

    # ------------------------------------------------------------------ what users ask for
    def submit(self, config: "TaskConfig", context: "TaskContext", submitted_by: str | None = None) -> "TaskOutcome":
        """Check everything a run would check, create the task collection, record ``queued``."""
        from compute_to_data.engine import create_task

        return create_task(config, context, submitted_by=submitted_by or self.grid.user).submit()

    def start(self, collection: str, context: "TaskContext", *, compute_resource: str | None = None) -> "TaskOutcome":
        """Take a queued task over and run it here (the engine's ``run()`` with the task's id).

        A queued task that is refused before it runs (its config no longer valid, its inputs
        gone...) is recorded ``failed`` with the reason, never left queued; a task that another
        process runs right now, or that is not queued, is left alone.
        """
        from compute_to_data.engine import create_task

        record = self.store.read(collection)
        if record.state == TaskState.CANCELLED:
            raise TaskCancelled(f"task {record.task_id} was cancelled before it started; not running it")
        if record.is_sharded and record.state in (TaskState.QUEUED, TaskState.RUNNING):
            return self.finish(record, context, compute_resource=compute_resource)
        if record.state != TaskState.QUEUED:
            raise TaskStateError(
                f"task {record.task_id} is {_state_name(record.state)}; only a queued task can be started "
                "(a failed or cancelled one can be resumed)"
            )
        shard = ShardSpec.of(record) if record.is_shard else None
        if shard is not None:  # a shard runs on the resource it was placed on
            compute_resource = record.get(names.A_COMPUTE_RESOURCE) or compute_resource
        try:
            config = self.read_config(record)
            if compute_resource is not None:
                config = dataclasses.replace(config, compute_resource=compute_resource)
        except ComputeToDataError as exc:
            self.fail_queued(collection, f"cannot read the task's config: {exc}")
            self._settle_after(shard)
            raise
        task = create_task(config, context, task_id=record.task_id, submitted_by=record.get(names.A_SUBMITTED_BY) or None,
                           shard=shard)
        try:
            return task.run()
        except (TaskCancelled, TaskStateError):  # busy, not queued, lost: not this run's to record
            raise
        except ComputeToDataError as exc:  # refused in a read-only step: the queued task ends here
            self.fail_queued(collection, str(exc))
            self._settle_after(shard)
            raise

    def read_config(self, record: TaskRecord) -> "TaskConfig":
        """The config a task recorded (``task_config.json``; a shard's is its task's)."""
        from compute_to_data.domain.taskconfig import TaskConfig

        owner = ShardSpec.of(record).task_collection if record.is_shard else record.collection
        config_path = posixpath.join(owner, names.TASK_CONFIG_FILE)
        return TaskConfig.from_json(self.grid.read_data_object(config_path, max_bytes=1024 * 1024), source=config_path)

    def _settle_after(self, shard: ShardSpec | None) -> None:
        if shard is not None:
            try:
                self.settle(shard.task_collection)
            except ComputeToDataError as exc:
                log.error("could not update task %s after its shard %s: %s", shard.task_collection, shard.label, exc)

    # ------------------------------------------------------------------ a task that runs as shards
    def shards(self, record: TaskRecord) -> list[TaskRecord]:
        return shard_records(self.grid, record.collection) if record.is_sharded else []

    def settle(self, collection: str) -> Settled:
        """A sharded task's state and progress from its shards': ``running`` once one started,
        ``failed`` once all ended and one did not succeed; when all succeeded the caller makes
        the summary report (:class:`~.summary.TaskSummary`), which records ``succeeded``.
        Idempotent: two shards ending at once may both settle; the table refuses the second."""
        record = self.store.read(collection)
        if not record.is_sharded or (record.state is not None and record.state.is_final):
            return Settled(record)
        shards = shard_records(self.grid, collection)
        total = aggregate(shards)
        values: dict[str, object] = {}
        if record.get(names.A_PROGRESS) != total.progress:
            values[names.A_PROGRESS] = total.progress
        if record.int_value(names.A_IMAGES_FAILED) != total.images_failed:
            values[names.A_IMAGES_FAILED] = total.images_failed
        if values:
            try:
                self.store.write(collection, values)
            except GridError as exc:  # another shard's run wrote them at the same moment: advisory
                log.info("task %s: progress not recorded this time (%s)", record.task_id, exc)
        try:
            if not total.finished:
                if record.state == TaskState.QUEUED and total.count(TaskState.QUEUED) < total.shards:
                    self.transition(collection, TaskState.RUNNING, {names.A_STARTED: names.iso_utc()})
                return Settled(self.store.read(collection))
            if total.all_succeeded:
                return Settled(self.store.read(collection), summarize=True)
            self.transition(collection, TaskState.FAILED, {
                names.A_FINISHED: names.iso_utc(), names.A_ERROR: failure_message(shards), **values,
            })
        except TaskStateError as exc:  # another shard's run settled it first
            log.info("task %s: %s", record.task_id, exc)
        return Settled(self.store.read(collection))

    def shard_started(self, task_collection: str) -> None:
        """A shard began to run: the task is running (and its progress says so)."""
        try:
            self.settle(task_collection)
        except ComputeToDataError as exc:  # the shard runs anyway; its task catches up when it ends
            log.warning("could not update task %s as its shard started: %s", task_collection, exc)

    def finish(self, record: TaskRecord, context: "TaskContext", *, compute_resource: str | None = None) -> "TaskOutcome":
        """A sharded task's own run: when every shard succeeded (a resumed task whose shards
        were all done), make its summary report here; otherwise its shards run by themselves."""
        from compute_to_data.engine.summary import TaskSummary
        from compute_to_data.engine.task import TaskOutcome

        settled = self.settle(record.collection)
        if settled.summarize:
            TaskSummary.for_task(self, settled.record, context, compute_resource).run()
        final = self.store.read(record.collection)
        return TaskOutcome(final.task_id, final.state, final.collection, report_path=final.get(names.A_REPORT) or None,
                           inputs=final.int_value(names.A_INPUTS), error=final.get(names.A_ERROR) or None,
                           failed_images=final.int_value(names.A_IMAGES_FAILED))

    def queued_runs(self, record: TaskRecord) -> list[str]:
        """The runs to queue for a task just submitted or resumed: itself, or its queued shards
        (and, for a sharded task with none left to run, itself, to make its summary)."""
        if not record.is_sharded:
            return [record.collection]
        queued = [s.collection for s in shard_records(self.grid, record.collection) if s.state == TaskState.QUEUED]
        return queued or [record.collection]

    def cancel(self, task: str, by: str) -> CancelOutcome:
        """A queued task never runs; a running one is stopped (here, if this is its host)."""
        record = self.find(task)
        self.check_may_change(record)
        self._refuse_shard(record, "cancel")
        if record.state is not None and record.state.is_final:
            raise TaskStateError(f"task {record.task_id} is already {record.state.value}; nothing to cancel")
        was_running = record.state == TaskState.RUNNING
        cancelled = self.transition(
            record.collection, TaskState.CANCELLED,
            {names.A_FINISHED: names.iso_utc(), names.A_ERROR: f"cancelled by {by}"},
            refuse=f"task {record.task_id} is {_state_name(record.state)}; nothing to cancel",
        )
        if record.is_sharded:
            return self._cancel_shards(cancelled, by)
        if not was_running:
            return CancelOutcome(cancelled, False, True, False)
        if not self.is_here(record):
            return CancelOutcome(cancelled, True, False, False)
        stopped = self.stop_run(cancelled)
        return CancelOutcome(cancelled, True, True, stopped)

    def _cancel_shards(self, cancelled: TaskRecord, by: str) -> CancelOutcome:
        """Every shard not ended yet is cancelled; running ones are stopped here or by the caller."""
        elsewhere: list[TaskRecord] = []
        stopped = running = False
        for shard in shard_records(self.grid, cancelled.collection):
            if shard.state is None or shard.state.is_final:
                continue
            try:
                shard_cancelled = self.transition(shard.collection, TaskState.CANCELLED,
                                                  {names.A_FINISHED: names.iso_utc(), names.A_ERROR: f"cancelled by {by}"})
            except TaskStateError:  # it ended meanwhile
                continue
            if shard.state == TaskState.RUNNING:
                running = True
                if self.is_here(shard):
                    stopped = self.stop_run(shard_cancelled) or stopped
                else:
                    elsewhere.append(shard)
        return CancelOutcome(cancelled, running, not elsewhere, stopped, tuple(elsewhere))

    @staticmethod
    def _refuse_shard(record: TaskRecord, what: str) -> None:
        if record.is_shard:
            task = ShardSpec.of(record).task_collection
            raise TaskStateError(
                f"{record.collection} is shard {record.get(names.A_SHARD)} of task {record.task_id}; "
                f"{what} the task ({task}), which does it for its shards"
            )

    def resume(self, task: str, by: str) -> TaskRecord:
        """failed | cancelled -> queued, in the same task collection; the caller queues the run,
        which classifies only the inputs that carry no complete prediction of this task yet.
        A sharded task resumes the shards that did not succeed (``queued_runs`` names them)."""
        record = self.find(task)
        self.check_may_change(record)
        self._refuse_shard(record, "resume")
        if record.state == TaskState.RUNNING:
            record = self.reap(record)
        refuse = f"task {record.task_id} is {_state_name(record.state)}; only a failed or cancelled task can be resumed"
        if record.state == TaskState.RUNNING:
            refuse += (
                " (this one is still running" + (", or shows no sign of life: its compute host has not confirmed it "
                                                 "is gone yet" if record.is_stale(self.lease_seconds) else "") + ")"
            )
        if record.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise TaskStateError(refuse)
        if not self.grid.data_object_exists(posixpath.join(record.collection, names.TASK_CONFIG_FILE)):
            raise TaskStateError(f"task {record.task_id} has no {names.TASK_CONFIG_FILE}; it cannot be resumed")
        values: dict[str, object] = {a: None for a in _CLEARED_ON_RESUME}
        values[names.A_RESUMED] = record.int_value(names.A_RESUMED) + 1
        if record.is_sharded:  # its summary is to be made (again) once its shards succeeded
            values[names.A_SUMMARY_RESOURCE] = names.SUMMARY_PENDING
        log.info("task %s resumed by %s (was %s: %s)", record.task_id, by, _state_name(record.state),
                 record.get(names.A_ERROR) or "no error recorded")
        resumed = self.transition(record.collection, TaskState.QUEUED, values, refuse=refuse)
        for shard in self.shards(record):
            if shard.state in (TaskState.FAILED, TaskState.CANCELLED):
                again: dict[str, object] = {a: None for a in _CLEARED_ON_RESUME}
                again[names.A_RESUMED] = shard.int_value(names.A_RESUMED) + 1
                self.transition(shard.collection, TaskState.QUEUED, again)
        return resumed

    def status(self, task: str) -> TaskStatus:
        """The task; on its compute host a dead run is reaped first, so the state is the truth."""
        record = self.find(task)
        record = self.reap(record)
        if record.is_sharded and record.state == TaskState.RUNNING:
            for shard in self.shards(record):
                if shard.is_stale(self.lease_seconds):
                    self.reap(shard)  # recorded failed here when this is its host; the task follows
            record = self._summary_never_started(self.store.read(record.collection))
        return TaskStatus(record, record.display_state(self.lease_seconds))

    def _summary_never_started(self, record: TaskRecord) -> TaskRecord:
        """Every shard succeeded a lease ago, yet no summary began (the run that ended the last
        one died before it could start it): say so, so that a resume makes it."""
        if record.state != TaskState.RUNNING or record.get(names.A_SUMMARY_RESOURCE) not in ("", names.SUMMARY_PENDING):
            return record
        shards = self.shards(record)
        if not shards or not aggregate(shards).all_succeeded:
            return record
        ended = max((names.parse_iso_utc(s.get(names.A_FINISHED)) for s in shards), default=None, key=lambda t: t or names.utc_now())
        if ended is None or (names.utc_now() - ended).total_seconds() <= self.lease_seconds:
            return record
        try:
            return self.transition(record.collection, TaskState.FAILED, {
                names.A_FINISHED: names.iso_utc(),
                names.A_ERROR: "every shard succeeded but the summary report was not made (the run that ended the last "
                               "shard stopped first); resume the task to make it",
            })
        except TaskStateError:
            return self.store.read(record.collection)

    def show(self, record: TaskRecord) -> TaskStatus:
        return TaskStatus(record, record.display_state(self.lease_seconds))

    # ------------------------------------------------------------------ signs of life
    def check_may_change(self, record: TaskRecord) -> None:
        if not self.grid.has_access(record.collection, AccessLevel.MODIFY):
            raise AccessDeniedError(
                f"{self.grid.user} may not change task {record.task_id} ({record.collection}); "
                f"it was submitted by {record.get(names.A_SUBMITTED_BY) or 'someone else'}"
            )

    def compute_resource(self, record: TaskRecord) -> Resource:
        if record.is_sharded:  # the resource its summary runs on, if it runs; its shards have their own
            name = record.get(names.A_SUMMARY_RESOURCE)
            if not name or name == names.SUMMARY_PENDING:
                raise TaskStateError(
                    f"task {record.task_id} runs as {record.get(names.A_SHARDS)} shards, each on its own compute "
                    "resource (see its shards)"
                )
            return self.grid.get_resource(name)
        name = record.get(names.A_COMPUTE_RESOURCE)
        if not name:
            raise TaskStateError(f"task {record.task_id} records no compute resource ({names.A_COMPUTE_RESOURCE})")
        return self.grid.get_resource(name)

    def is_here(self, record: TaskRecord) -> bool:
        """Whether this host is the task's compute host (the only place its run can be touched)."""
        try:
            resource = self.compute_resource(record)
        except ComputeToDataError:
            return False
        return hosts.is_local_host(resource.host, self.settings.local_host_names)

    def run_lock(self, resource: Resource, task_id: str) -> RunLock:
        return RunLock(self.settings.lock_directory_for(resource.host, resource.name), task_id)

    def reap(self, record: TaskRecord) -> TaskRecord:
        """On the task's compute host: a running task that is dead (no heartbeat for a lease, and
        nobody holds its run lock) is stopped, cleaned up and recorded ``failed``. Else unchanged."""
        if record.state != TaskState.RUNNING or not record.is_stale(self.lease_seconds) or not self.is_here(record):
            return record
        if not self.grid.has_access(record.collection, AccessLevel.MODIFY):
            return record  # someone else's task: its owner's next status call reaps it
        resource = self.compute_resource(record)
        lock = self.run_lock(resource, record.run_key)
        if not lock.acquire():
            return record  # its run is alive here, only silent (a long catalog call...)
        try:
            current = self.store.read(record.collection)
            if current.state != TaskState.RUNNING or not current.is_stale(self.lease_seconds):
                return current
            self.stop_run(current)
            salvaged = self.salvage(current, resource)
            self.remove_staging(current, resource)
            message = self.death_message(current, resource)
            if current.is_sharded:
                message = "its summary report was not made: " + message + "; resume the task to make it"
            if salvaged:
                message += f"; {salvaged} part(s) it had finished are tagged now"
            try:
                reaped = self.transition(
                    current.collection, TaskState.FAILED,
                    {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message},
                    expect_started=None if current.is_sharded else current.get(names.A_STARTED),
                )
            except TaskLostError:
                return self.store.read(current.collection)
        finally:
            lock.release()
        if reaped.is_shard:
            self._settle_after(ShardSpec.of(reaped))
        return reaped

    def reap_resource(self, resource: Resource) -> int:
        """Reap the dead runs visible to the user on ``resource`` (before a new run starts there)."""
        reaped = 0
        for item in self.grid.find_collections_with_avu(names.A_STATE, TaskState.RUNNING.value):
            record = TaskRecord.from_collection_avus(item)
            if record.get(names.A_COMPUTE_RESOURCE) != resource.name or names.A_TASK_ID not in record.values:
                continue
            try:
                if self.reap(record).state == TaskState.FAILED:
                    reaped += 1
            except ComputeToDataError as exc:
                log.warning("could not reap task %s: %s", record.task_id, exc)
        return reaped

    def death_message(self, record: TaskRecord, resource: Resource) -> str:
        host = record.get(names.A_RUN_HOST) or resource.host
        since = record.get(names.A_HEARTBEAT) or record.get(names.A_STARTED) or "its start"
        progress = record.progress
        done = f"; {progress[0]:,}/{progress[1]:,} images done" if progress else ""
        return f"no sign of life from {host} since {since}{done}"

    def stop_run(self, record: TaskRecord) -> bool:
        """Stop whatever is left of the task's run on this host: by its handle with the runner that
        ran it (container, process tree), and every process marked with the task id (a run whose
        handle was never recorded). True if anything was left."""
        from compute_to_data.runners.inprocess import (
            ENV_TASK_ID,
            kill_tree,
            processes_with_env,
        )

        task_id, handle = record.run_key, record.get(names.A_RUN_HANDLE)
        # a cancelled task's run says so (Slurm's job log and report); a dead run's is stopped silently
        reason = CANCELLED_ON_REQUEST if record.state == TaskState.CANCELLED else None
        stopped = False
        runner = self._runner_for(record.get(names.A_RUNNER))
        if runner is not None:
            try:
                stopped = bool(runner.stop(handle, task_id, reason=reason)) if handle else False
            except ComputeToDataError as exc:
                log.warning("task %s: could not stop its run %s: %s", task_id, handle, exc)
            try:
                stopped = bool(runner.cancel(task_id)) or stopped  # a run this very process supervises
            except ComputeToDataError as exc:
                log.warning("task %s: could not cancel its run: %s", task_id, exc)
        for pid in processes_with_env(ENV_TASK_ID, task_id):
            kill_tree(pid)
            stopped = True
        return stopped

    def _runner_for(self, name: str) -> "Runner | None":
        """The runner that ran the task (by ``c2d::runner``), made here only to stop its run."""
        from compute_to_data.domain.registry import runners

        try:
            factory: Any = runners.get(name) if name else None
            return factory(settings=self.settings) if factory is not None else None
        except (ComputeToDataError, TypeError) as exc:
            log.debug("no runner %r here to stop a run with: %s", name, exc)
            return None

    def salvage(self, record: TaskRecord, resource: Resource) -> int:
        """Store and tag the parts a dead run's notebook finished (nothing writes them any more):
        a crash costs only the part it was working on. Best effort: the state is recorded anyway."""
        from compute_to_data.domain.registry import task_types
        from compute_to_data.engine.task import TaskContext

        output_dir = self.settings.staging_directory_for(resource.host, resource.name) / record.run_key / "outputs"
        if record.is_sharded or not (output_dir / names.PARTS_DIR).is_dir():
            return 0
        try:
            config = self.read_config(record)
            task_class = task_types.get(config.task_type)
            task = task_class.for_salvage(config, TaskContext(grid=self.grid, settings=self.settings), record, resource)
            salvaged = task.salvage_parts(output_dir) if task is not None else 0
        except Exception as exc:  # noqa: BLE001 - the dead run's state must be recorded whatever this does
            log.warning("task %s: could not salvage the parts its dead run finished: %s", record.task_id, exc)
            return 0
        if salvaged:
            log.info("task %s: stored and tagged %d part(s) its dead run had finished", record.task_id, salvaged)
        return salvaged

    def remove_staging(self, record: TaskRecord, resource: Resource) -> None:
        root = self.settings.staging_directory_for(resource.host, resource.name) / record.run_key
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
            log.info("task %s: removed its staging directory", record.task_id)




