"""The task state machine: the one place that changes ``c2d::state``, along allowed transitions.

    queued ──► running ──► succeeded | failed | cancelled
      │                          failed | cancelled ──► queued   (resume only)
      └──► failed (could not start) | cancelled

Every transition reads the current state, refuses what the table does not allow with a message
a researcher can act on, and writes the new state with its companion values (finished, error,
heartbeat, progress...) in one atomic metadata batch, behind a claim (``lifecycle/claims.py``):
of two writers who read the same state (a cancel and a finishing run, two resumes, a reaper and
a late heartbeat), exactly one writes; the other reads again and decides again, which usually
means it is refused. This holds on a real iRODS server, where an atomic batch that removes a
value that is no longer there still succeeds. A writer that lost (the engine finishing after a
reaper or a cancel) is refused and stops.

The use cases built on it (submit, start, cancel, resume, status) are the application service's
(``service/tasks.py``); stopping and cleaning up dead runs is the reaper's (``engine/reaper.py``).

This module is imported by the iRODS server (rules.py): standard library and light packages only.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

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
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.grid import hosts
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.claims import ClaimedWriter, Decision, token_operations
from compute_to_data.lifecycle.runlock import RunLock
from compute_to_data.lifecycle.shard_records import shard_records
from compute_to_data.lifecycle.store import TaskStateStore

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
CLEARED_ON_RESUME = (
    names.A_FINISHED, names.A_ERROR, names.A_HEARTBEAT, names.A_RUN_HANDLE, names.A_RUN_HOST,
    names.A_STARTED, names.A_IMAGES_FAILED, names.A_QUEUE_REASON,
)


_TOKEN_ATTRIBUTES = (names.A_CLAIM, names.A_CLAIMING)


def state_name(state: TaskState | None) -> str:
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
class Settled:
    """A sharded task after :meth:`TaskLifecycle.settle`; ``summarize``: every shard succeeded
    and the task's report is still to be made (by the caller, on a compute host)."""

    record: TaskRecord
    summarize: bool = False




def still_in(state: TaskState) -> Callable[[TaskRecord], None]:
    """A transition decided on having read ``state``: refused if another writer changed it since."""

    def check(record: TaskRecord) -> None:
        if record.state != state:
            raise TaskStateError(f"task {record.task_id} is {state_name(record.state)} now, no longer {state.value}")

    return check


class TaskStateMachine:
    """The states of the caller's tasks: read them, create them, move them along the table."""

    def __init__(self, grid: Grid, settings: Settings) -> None:
        self.grid = grid
        self.settings = settings
        self.store = TaskStateStore(grid)
        self.writer = ClaimedWriter(grid, settings.heartbeat_lease_seconds)

    @property
    def lease_seconds(self) -> float:
        return self.settings.heartbeat_lease_seconds

    # ------------------------------------------------------------------ reading (never writes)
    def read(self, collection: str) -> TaskRecord:
        return self.store.read(collection)

    def find(self, task: str) -> TaskRecord:
        return self.store.find(task)

    def in_state(self, state: TaskState) -> list[TaskRecord]:
        """Every task and shard the caller can see that is in ``state`` (one query)."""
        found = (TaskRecord.from_collection_avus(c) for c in self.grid.find_collections_with_avu(names.A_STATE, state.value))
        return [r for r in found if names.A_TASK_ID in r.values]

    # ------------------------------------------------------------------ the one writer of c2d::state
    def create(self, collection: str, values: Mapping[str, object]) -> None:
        """The bookkeeping of a task collection just created, in one batch: its first state is
        ``queued`` (a reader never sees a task without a state), with its first claim token."""
        if names.A_TASK_ID not in values:
            raise TaskStateError(f"a new task needs {names.A_TASK_ID}")
        existing = self.grid.get_avus(EntityType.COLLECTION, collection)
        if any(a.attribute == names.A_STATE for a in existing):
            raise TaskStateError(f"{collection} is a task collection already; not creating it again")
        avus = [AVU(k, as_text(v)) for k, v in values.items() if v is not None and k != names.A_STATE]
        avus.append(AVU(names.A_STATE, TaskState.QUEUED.value))
        operations = [MetadataOperation("add", EntityType.COLLECTION, collection, a) for a in avus]
        self.grid.apply_metadata(operations + token_operations(collection))

    def transition(
        self,
        collection: str,
        to: TaskState,
        values: Mapping[str, object] | None = None,
        *,
        expect_started: str | None = None,
        refuse: str | Callable[[TaskRecord], str] | None = None,
        check: Callable[[TaskRecord], None] | None = None,
    ) -> TaskRecord:
        """Move the task to ``to`` with ``values`` (None removes one), claimed and in one batch.

        Refused with :class:`TaskStateError` (``refuse`` is the message, or makes it from the
        record read, if given) when the
        table does not allow it; with :class:`TaskLostError` when ``expect_started`` names a
        run that is no longer the task's current one. ``check`` may refuse on anything else it
        reads in the record (it runs on every fresh read, after the table's checks).
        """
        wanted = {k: v for k, v in (values or {}).items() if k != names.A_STATE}
        if to.is_final:  # a run that ended waits for nothing
            wanted.setdefault(names.A_QUEUE_REASON, None)

        def decide(record: TaskRecord) -> Decision[TaskRecord]:
            if to not in TRANSITIONS.get(record.state, frozenset()):
                if callable(refuse):  # said of the state read now, not of an earlier read
                    raise TaskStateError(refuse(record))
                raise TaskStateError(
                    refuse or f"task {record.task_id} is {state_name(record.state)}; it cannot become {to.value}"
                )
            if expect_started is not None and (
                record.state != TaskState.RUNNING or record.get(names.A_STARTED) != expect_started
            ):
                raise TaskLostError(
                    f"task {record.task_id} is {state_name(record.state)} now and no longer this run's "
                    f"(started {expect_started}); not recording {to.value}"
                )
            if check is not None:
                check(record)
            merged = {k: v for k, v in record.values.items() if k not in wanted and k not in _TOKEN_ATTRIBUTES}
            merged.update({k: as_text(v) for k, v in wanted.items() if v is not None})
            merged[names.A_STATE] = to.value
            seen.append(record)
            return self._operations(collection, record, to, wanted), TaskRecord(collection, merged)

        seen: list[TaskRecord] = []
        written = self.writer.write(collection, decide)
        assert written is not None  # decide never stands down
        before = seen[-1]
        shown = f"{before.task_id} shard {before.get(names.A_SHARD)}" if before.is_shard else before.task_id
        log.info("task %s: %s -> %s", shown, state_name(before.state), to.value)
        return written

    @staticmethod
    def _operations(
        collection: str, record: TaskRecord, to: TaskState, wanted: Mapping[str, object]
    ) -> list[MetadataOperation]:
        """Remove every value the named attributes hold now (the state we read included), add the new."""
        new = [AVU(k, as_text(v)) for k, v in wanted.items() if v is not None]
        new.append(AVU(names.A_STATE, to.value))
        named = set(wanted) | {names.A_STATE}
        current = [AVU(k, v) for k in named for v in record.all_values(k)]
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
                f"task {record.task_id} is {state_name(record.state)} now and no longer this run's "
                f"({record.get(names.A_ERROR) or 'another run took it over'}); stopping"
            )

    def fail_queued(self, collection: str, message: str) -> None:
        """A queued task that cannot start must not stay queued forever: record why."""
        try:
            record = self.store.read(collection)
            if record.state == TaskState.QUEUED:
                self.transition(collection, TaskState.FAILED, {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message},
                                check=still_in(TaskState.QUEUED))
        except ComputeToDataError as exc:
            log.error("could not record the failure of %s: %s", collection, exc)

    def read_config(self, record: TaskRecord) -> TaskConfig:
        """The config a task recorded (``task_config.json``; a shard's is its task's)."""
        owner = ShardSpec.of(record).task_collection if record.is_shard else record.collection
        config_path = posixpath.join(owner, names.TASK_CONFIG_FILE)
        return TaskConfig.from_json(self.grid.read_data_object(config_path, max_bytes=1024 * 1024), source=config_path)

    def settle_after(self, shard: ShardSpec | None) -> None:
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
        if not record.is_sharded:
            return Settled(record)
        shards = shard_records(self.grid, collection)
        total = aggregate(shards)
        values: dict[str, object] = {}
        if record.get(names.A_PROGRESS) != total.progress:
            values[names.A_PROGRESS] = total.progress
        if record.int_value(names.A_IMAGES_FAILED) != total.images_failed:
            values[names.A_IMAGES_FAILED] = total.images_failed
        if values:  # also once the task ended: a shard stopped by a cancel, or reaped, counts what it tagged
            try:
                self.store.write(collection, values)
            except GridError as exc:  # another shard's run wrote them at the same moment: advisory
                log.info("task %s: progress not recorded this time (%s)", record.task_id, exc)
        if record.state is not None and record.state.is_final:
            return Settled(self.store.read(collection) if values else record)
        try:
            if not total.finished:
                if record.state == TaskState.QUEUED and total.count(TaskState.QUEUED) < total.shards:
                    self.transition(collection, TaskState.RUNNING, {names.A_STARTED: names.iso_utc()},
                                    check=still_in(TaskState.QUEUED))
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

    def queued_runs(self, record: TaskRecord) -> list[str]:
        """The runs to queue for a task just submitted or resumed: itself, or its queued shards
        (and, for a sharded task with none left to run, itself, to make its summary)."""
        if not record.is_sharded:
            return [record.collection]
        queued = [s.collection for s in shard_records(self.grid, record.collection) if s.state == TaskState.QUEUED]
        return queued or [record.collection]

    @staticmethod
    def refuse_shard(record: TaskRecord, what: str) -> None:
        if record.is_shard:
            task = ShardSpec.of(record).task_collection
            raise TaskStateError(
                f"{record.collection} is shard {record.get(names.A_SHARD)} of task {record.task_id}; "
                f"{what} the task ({task}), which does it for its shards"
            )

    # ------------------------------------------------------------------ signs of life
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

    def death_message(self, record: TaskRecord, resource: Resource, *, gone: bool = False) -> str:
        """Why a run is recorded dead: silent for a lease, or (``gone``) certainly gone already."""
        host = record.get(names.A_RUN_HOST) or resource.host
        since = record.get(names.A_HEARTBEAT) or record.get(names.A_STARTED) or "its start"
        progress = record.progress
        done = f"; {progress[0]:,}/{progress[1]:,} images done" if progress else ""
        gone_now = " (its run is gone: nothing holds its run lock and none of its processes is left)" if gone else ""
        return f"no sign of life from {host} since {since}{gone_now}{done}"

    def seen_dead_after(self, record: TaskRecord) -> str:
        """When a running task that stopped beating will be seen dead: its last sign of life plus
        the lease, for a message that tells its owner how long a resume must wait."""
        beat = record.heartbeat
        if beat is None:
            return "its compute host has not confirmed it is gone yet"
        until = beat + timedelta(seconds=self.lease_seconds)
        return (f"no sign of life since {names.iso_utc(beat)}; resumable after {names.iso_utc(until)}, "
                "or cancel it now")
