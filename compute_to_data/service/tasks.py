"""The application service: submit, run now, start a queued run, cancel, resume and status.

One home for the use cases, used alike by the iRODS rules (``rules.py``), the local submitter,
the local worker and the CLI. The service decides; where a decision needs another process or
host (queue a run with the delay server, stop a run on its compute host, have that host check a
silent run), it does not act itself but returns **effects**, as dask's scheduler returns
recommendations: :meth:`TaskService.carry_out` hands them to a :class:`Runs` port, which the
iRODS adapter implements with ``delayExec``/``remoteExec`` and the LocalGrid adapter with its
launcher, and records what a failed effect means (a run that cannot be queued is ``failed``,
never left queued).

Imported by the iRODS server: standard library and light packages only.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    TaskBusyError,
    TaskCancelled,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.shards import ShardSpec
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.reaper import Reaper
from compute_to_data.engine.summary import TaskSummary
from compute_to_data.grid import hosts
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.machine import (
    CLEARED_ON_RESUME,
    TaskStateMachine,
    state_name,
)

log = logging.getLogger(__name__)


# --- effects: what the caller's adapter carries out ------------------------------------------------
@dataclass(frozen=True)
class QueueRun:
    """Have the queued run of ``collection`` (a task or one shard) run, on its compute host."""

    collection: str


@dataclass(frozen=True)
class StopRun:
    """Stop the run of ``record`` on ``host`` (its compute host, not this one)."""

    record: TaskRecord
    host: str


@dataclass(frozen=True)
class CheckRun:
    """Have ``host`` (the compute host of ``record``) reap the run if it is dead."""

    record: TaskRecord
    host: str


Effect = QueueRun | StopRun | CheckRun


class Runs(Protocol):
    """How effects are carried out: the delay server and remote rules on a zone (rules.py), the
    local launcher on a LocalGrid (client/submitters.py)."""

    def queue_run(self, collection: str) -> None: ...

    def stop_on_host(self, record: TaskRecord, host: str) -> str:
        """Stop the run there; a line saying what happened."""

    def check_on_host(self, record: TaskRecord, host: str) -> None: ...


class RunNow(Protocol):
    """How ``run_now`` runs the queued runs of a task it just submitted, waiting for them."""

    def run_queued(self, collections: Sequence[str]) -> list[TaskOutcome]: ...


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submitted:
    outcome: TaskOutcome
    effects: tuple[Effect, ...]


@dataclass(frozen=True)
class Cancelled:
    record: TaskRecord
    was_running: bool
    #: the run was on this host and stopped here (True), or nothing ran (False)
    stopped_here: bool
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Resumed:
    record: TaskRecord
    effects: tuple[Effect, ...]

    @property
    def shards_queued(self) -> int:
        return len([e for e in self.effects if isinstance(e, QueueRun) and e.collection != self.record.collection])


@dataclass(frozen=True)
class Status:
    """A task as a reader should see it (``stale`` for a silent running task), and the effects
    that have the hosts of silent runs elsewhere check them."""

    record: TaskRecord
    display_state: str
    effects: tuple[Effect, ...] = ()

    @property
    def is_stale(self) -> bool:
        return self.display_state == names.STALE


@dataclass
class InProcessRuns:
    """Runs queued runs here, one after the other (each on its resource as usual)."""

    service: TaskService
    context: TaskContext
    outcomes: list[TaskOutcome] = field(default_factory=list)

    def run_queued(self, collections: Sequence[str]) -> list[TaskOutcome]:
        for collection in collections:
            try:
                self.outcomes.append(self.service.start(collection, self.context))
            except (TaskCancelled, TaskStateError) as exc:  # cancelled meanwhile, or taken by another run
                log.info("%s not run here: %s", collection, exc)
            except ComputeToDataError as exc:  # recorded on the run by the service
                log.error("%s could not start: %s", collection, exc)
        return self.outcomes


@dataclass
class SharedRuns:
    """Runs a task's shards here *and* through ``runs`` (the delay server) at once, and waits.

    Every shard is queued first; then this process takes the shards still queued, one after the
    other, while the delay server starts others: whoever starts a queued run first runs it (the
    run's start is claimed, engine and lifecycle), the other finds it not queued and leaves it
    alone. Once none is left queued, it waits for the shards running elsewhere and for the task's
    summary, checking their signs of life as ``c2d_status`` does (a dead run is reaped, so the
    wait ends). A synchronous run of a large task so spreads over every resource its shards were
    placed on, as a submitted one does, instead of running them one after the other; and if the
    delay server never starts one, this process runs them all itself."""

    service: "TaskService"
    runs: Runs
    run_here: Callable[[str], object]
    poll_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    def run_queued(self, collections: Sequence[str]) -> list[TaskOutcome]:
        if len(collections) <= 1:  # one run: here, as it comes
            for collection in collections:
                self.run_here(collection)
            return []
        try:
            for collection in collections:
                self.runs.queue_run(collection)
        except ComputeToDataError as exc:  # the ones not queued run here, as the others would
            log.warning("could not queue every shard with the delay server (%s); running them here", exc)
        owners: set[str] = set()
        while True:
            records = [self.service.read(c) for c in collections]
            owners.update(ShardSpec.of(r).task_collection for r in records if r.is_shard)
            waiting = [r.collection for r in records if r.state == TaskState.QUEUED]
            if waiting:
                self._start(waiting[0])
                continue
            if all(_has_ended(r) for r in records):
                break
            self._wait(owners or set(collections))
        # the summary, made by the run that ended the last shard (here, or a delayed run)
        while not all(_has_ended(self.service.read(owner)) for owner in owners):
            self._wait(owners)
        return []

    def _start(self, collection: str) -> None:
        try:
            self.run_here(collection)
        except (TaskCancelled, TaskStateError, TaskBusyError) as exc:  # taken by another run meanwhile
            log.info("%s not run here: %s", collection, exc)
        except ComputeToDataError as exc:  # recorded on the run
            log.error("%s could not start: %s", collection, exc)

    def _wait(self, tasks: set[str]) -> None:
        """A pause, then the runs' signs of life checked as ``c2d_status`` checks them: a dead
        run is recorded failed (here, or by its host), so the wait always ends."""
        self.sleep(self.poll_seconds)
        for collection in sorted(tasks):
            try:
                status = self.service.status(collection)
                self.service.carry_out(status.effects, self.runs)
            except ComputeToDataError as exc:
                log.warning("could not check %s: %s", collection, exc)


def _has_ended(record: TaskRecord) -> bool:
    return record.state is not None and record.state.is_final


class TaskService:
    """The use cases, as the grid's user."""

    def __init__(self, grid: Grid, settings: Settings) -> None:
        self.grid = grid
        self.settings = settings
        self.machine = TaskStateMachine(grid, settings)
        self.reaper = Reaper(self.machine)

    @property
    def lease_seconds(self) -> float:
        return self.machine.lease_seconds

    # ------------------------------------------------------------------ reading
    def read(self, collection: str) -> TaskRecord:
        return self.machine.read(collection)

    def find(self, task: str) -> TaskRecord:
        return self.machine.find(task)

    def shards(self, record: TaskRecord) -> list[TaskRecord]:
        return self.machine.shards(record)

    # ------------------------------------------------------------------ submit and run
    def submit(self, config: TaskConfig, context: TaskContext, submitted_by: str | None = None) -> Submitted:
        """Check everything a run would check, create the task collection, record ``queued``;
        the effects queue its run (one per shard for a task larger than one shard)."""
        outcome = create_task(config, context, submitted_by=submitted_by or self.grid.user).submit()
        runs = self.machine.queued_runs(self.machine.read(outcome.collection))
        return Submitted(outcome, tuple(QueueRun(run) for run in runs))

    def run_now(self, config: TaskConfig, context: TaskContext, runs: RunNow | None = None,
                submitted_by: str | None = None) -> TaskOutcome:
        """Run a task now and wait for it: the outcome of the task as a whole. One run whose
        compute resource is here runs at once (checked once, ``plans.run_or_submit``); a task
        larger than one shard, or one whose resource is another host's (the context's
        ``dispatch`` says so), is submitted and its queued runs run through ``runs`` (here, one
        after the other, by default)."""
        first = create_task(config, context, submitted_by=submitted_by or self.grid.user).run_now()
        if first.state != TaskState.QUEUED:
            return first  # it ran here
        collections = self.machine.queued_runs(self.machine.read(first.collection))
        outcomes = (runs or InProcessRuns(self, context)).run_queued(collections)
        if not first.shard_collections:
            if outcomes:
                return outcomes[-1]
            return self._outcome_of(first, [])
        return self._outcome_of(first, outcomes)

    def _outcome_of(self, first: TaskOutcome, outcomes: Sequence[TaskOutcome]) -> TaskOutcome:
        """What a task became, from its record (a sharded task: with its shards' figures added)."""
        record = self.machine.read(first.collection)
        progress = record.progress
        counts: Counter[str] = Counter()
        for shard in outcomes:
            counts.update(shard.class_counts)
        outcome = replace(
            first,
            state=record.state,
            error=record.get(names.A_ERROR) or None,
            report_path=record.get(names.A_REPORT) or None,
            failed_images=record.int_value(names.A_IMAGES_FAILED),
            images_done=progress[0] if progress else None,
            tagged=sum(o.tagged for o in outcomes),
            replicated_bytes=sum(o.replicated_bytes for o in outcomes),
            parts_tagged=sum(o.parts_tagged for o in outcomes),
            class_counts=dict(sorted(counts.items())),
            notes=list(first.notes),
        )
        if first.shard_collections:
            outcome.notes.append(f"ran as {len(first.shard_collections)} shards ({first.compute_resource})")
        return outcome

    def start(self, collection: str, context: TaskContext, *, compute_resource: str | None = None) -> TaskOutcome:
        """Take a queued run over and run it here (the engine's ``run()`` with the task's id).

        A queued run that is refused before it runs (its config no longer valid, its inputs
        gone...) is recorded ``failed`` with the reason, never left queued; a run that another
        process runs right now, or that is not queued, is left alone.
        """
        machine = self.machine
        record = machine.read(collection)
        if record.state == TaskState.CANCELLED:
            raise TaskCancelled(f"task {record.task_id} was cancelled before it started; not running it")
        if record.is_sharded and record.state in (TaskState.QUEUED, TaskState.RUNNING):
            return self.finish(record, context, compute_resource=compute_resource)
        if record.state != TaskState.QUEUED:
            raise TaskStateError(
                f"task {record.task_id} is {state_name(record.state)}; only a queued task can be started "
                "(a failed or cancelled one can be resumed)"
            )
        shard = ShardSpec.of(record) if record.is_shard else None
        if shard is not None:  # a shard runs on the resource it was placed on
            compute_resource = record.get(names.A_COMPUTE_RESOURCE) or compute_resource
        else:  # a queued task runs where its submit placed it (its own queued state counts as load)
            compute_resource = compute_resource or record.get(names.A_COMPUTE_RESOURCE) or None
        try:
            config = machine.read_config(record)
            if compute_resource is not None:
                config = replace(config, compute_resource=compute_resource)
        except ComputeToDataError as exc:
            machine.fail_queued(collection, f"cannot read the task's config: {exc}")
            machine.settle_after(shard)
            raise
        task = create_task(config, context, task_id=record.task_id, submitted_by=record.get(names.A_SUBMITTED_BY) or None,
                           shard=shard)
        try:
            outcome = task.run()
        except (TaskCancelled, TaskStateError):  # busy, not queued, lost: not this run's to record
            raise
        except ComputeToDataError as exc:  # refused in a read-only step: the queued run ends here
            machine.fail_queued(collection, str(exc))
            machine.settle_after(shard)
            raise
        if shard is not None:
            self._after_shard(shard, context, outcome)
        return outcome

    def _after_shard(self, shard: ShardSpec, context: TaskContext, outcome: TaskOutcome) -> None:
        """A shard ended: its task follows; the run that ended the last one makes the summary,
        here, on this shard's resource."""
        settled = self.machine.settle(shard.task_collection)
        if settled.summarize and outcome.compute_resource:
            try:
                self._summarize(settled.record, context, outcome.compute_resource)
            except ComputeToDataError as exc:  # recorded on the task by the summary
                log.error("task %s: its summary report failed: %s", settled.record.task_id, exc)

    def _summarize(self, record: TaskRecord, context: TaskContext, compute_resource: str | None) -> None:
        TaskSummary.for_task(self.machine, record, context.runner, compute_resource, context.keep_workdir).run()

    def finish(self, record: TaskRecord, context: TaskContext, *, compute_resource: str | None = None) -> TaskOutcome:
        """A sharded task's own run: when every shard succeeded (a resumed task whose shards
        were all done), make its summary report here; otherwise its shards run by themselves."""
        settled = self.machine.settle(record.collection)
        if settled.summarize:
            self._summarize(settled.record, context, compute_resource)
        final = self.machine.read(record.collection)
        return TaskOutcome(final.task_id, final.state, final.collection, report_path=final.get(names.A_REPORT) or None,
                           inputs=final.int_value(names.A_INPUTS), error=final.get(names.A_ERROR) or None,
                           failed_images=final.int_value(names.A_IMAGES_FAILED))

    def abandon(self, collections: Sequence[str], reason: str) -> None:
        """Queued runs nobody will start (their dispatcher was stopped): recorded ``failed`` with
        the reason, their task following, so the task is truthful and resumable."""
        tasks: set[str] = set()
        for collection in collections:
            self.machine.fail_queued(collection, reason)
            try:
                record = self.machine.read(collection)
            except ComputeToDataError:
                continue
            if record.is_shard:
                tasks.add(ShardSpec.of(record).task_collection)
        for task in sorted(tasks):
            self.machine.settle(task)

    def where_to_run(self, collection: str) -> tuple[TaskRecord, Resource]:
        """The queued run of ``collection`` and the compute resource it must run on (a sharded
        task's own run, which makes its summary: its last shard's). Refuses what must not run:
        a run that is not queued (cancelled ones are refused with :class:`TaskCancelled`)."""
        machine = self.machine
        record = machine.read(collection)
        if record.state == TaskState.CANCELLED:
            raise TaskCancelled(f"task {record.task_id} was cancelled before it started; not running it")
        if record.state != TaskState.QUEUED and not (record.is_sharded and record.state == TaskState.RUNNING):
            raise TaskStateError(
                f"task {record.task_id} is {state_name(record.state)}; only a queued task can be started"
            )
        machine.check_may_change(record)
        if record.is_sharded:
            shards = machine.shards(record)
            if not shards:
                raise TaskStateError(f"task {record.task_id} has no shards")
            return record, self.grid.get_resource(shards[-1].get(names.A_COMPUTE_RESOURCE))
        return record, machine.compute_resource(record)

    def is_here(self, resource: Resource) -> bool:
        return hosts.is_local_host(resource.host, self.settings.local_host_names)

    # ------------------------------------------------------------------ carrying effects out
    def carry_out(self, effects: Sequence[Effect], runs: Runs) -> list[str]:
        """Hand the effects to ``runs``; a run that cannot be queued is recorded failed (with the
        runs after it, and its task), never left queued. Lines saying what happened."""
        lines: list[str] = []
        queue = [e for e in effects if isinstance(e, QueueRun)]
        for i, queued in enumerate(queue):
            try:
                runs.queue_run(queued.collection)
            except ComputeToDataError as exc:
                for rest in queue[i:]:
                    self.machine.fail_queued(rest.collection, f"could not queue the run: {exc}")
                tasks = {ShardSpec.of(r).task_collection for r in self._records(queue[i:]) if r.is_shard}
                for task in sorted(tasks):
                    self.machine.fail_queued(task, f"its shards could not all be queued: {exc}")
                    self.machine.settle(task)
                raise
        for effect in effects:
            if isinstance(effect, StopRun):
                lines.append(runs.stop_on_host(effect.record, effect.host))
            elif isinstance(effect, CheckRun):
                try:
                    runs.check_on_host(effect.record, effect.host)
                except ComputeToDataError as exc:
                    log.warning("task %s shows no sign of life and %s could not check it: %s",
                                effect.record.task_id, effect.host, exc)
        return lines

    def _records(self, effects: Sequence[QueueRun]) -> list[TaskRecord]:
        records = []
        for effect in effects:
            try:
                records.append(self.machine.read(effect.collection))
            except ComputeToDataError:
                continue
        return records

    # ------------------------------------------------------------------ cancel and resume
    def cancel(self, task: str, by: str) -> Cancelled:
        """A queued task never runs; a running one is stopped (here, or by an effect on its host)."""
        machine = self.machine
        record = machine.find(task)
        machine.check_may_change(record)
        machine.refuse_shard(record, "cancel")
        if record.state is not None and record.state.is_final:
            raise TaskStateError(f"task {record.task_id} is already {record.state.value}; nothing to cancel")
        values: dict[str, object] = {names.A_FINISHED: names.iso_utc(), names.A_ERROR: f"cancelled by {by}"}

        def not_ended(current: TaskRecord) -> None:
            if current.state is not None and current.state.is_final:
                raise TaskStateError(f"task {current.task_id} is already {current.state.value}; nothing to cancel")

        cancelled = machine.transition(record.collection, TaskState.CANCELLED, values, check=not_ended)
        # the state cancelled replaced is the one the claim saw; what ran is what we read before it
        was_running = record.state == TaskState.RUNNING
        if record.is_sharded:
            return self._cancel_shards(cancelled, values)
        if not was_running:
            return Cancelled(cancelled, False, False)
        outcome = self._stop(record)
        return Cancelled(cancelled, True, outcome.here and outcome.stopped, outcome.elsewhere_effects)

    def _cancel_shards(self, cancelled: TaskRecord, values: dict[str, object]) -> Cancelled:
        effects: list[Effect] = []
        stopped = running = False
        for shard in self.machine.shards(cancelled):
            if shard.state is None or shard.state.is_final:
                continue
            try:
                self.machine.transition(shard.collection, TaskState.CANCELLED, values)
            except TaskStateError:  # it ended meanwhile
                continue
            if shard.state == TaskState.RUNNING:
                running = True
                outcome = self._stop(shard)
                stopped = stopped or outcome.stopped
                effects.extend(outcome.elsewhere_effects)
        settled = self.machine.settle(cancelled.collection)  # its progress: what its shards tagged
        return Cancelled(settled.record, running, stopped, tuple(effects))

    @dataclass(frozen=True)
    class _Stopped:
        here: bool
        stopped: bool
        elsewhere_effects: tuple[Effect, ...] = ()

    def _stop(self, record: TaskRecord) -> TaskService._Stopped:
        """Stop the run the record names: here when this is its host, else by an effect."""
        if self.machine.is_here(record):
            return TaskService._Stopped(True, self.reaper.stop_run(record, whole_task=False))
        try:
            host = self.machine.compute_resource(record).host
        except ComputeToDataError as exc:
            log.warning("task %s: cannot tell where its run is (%s); it stops itself at its next heartbeat",
                        record.task_id, exc)
            return TaskService._Stopped(False, False)
        return TaskService._Stopped(False, False, (StopRun(record, host),))

    def stop_here(self, record: TaskRecord) -> bool:
        """The compute host's part of a cancel: stop the run the record names (never another)."""
        self.machine.check_may_change(record)
        return self.reaper.stop_run(record, whole_task=False)

    def resume(self, task: str, by: str) -> Resumed:
        """failed | cancelled -> queued, in the same task collection; the effects queue its run,
        which classifies only the inputs that carry no complete prediction of this task yet.
        A sharded task resumes the shards that did not succeed."""
        machine = self.machine
        record = machine.find(task)
        machine.check_may_change(record)
        machine.refuse_shard(record, "resume")
        if record.state == TaskState.RUNNING:
            record = self.reaper.reap(record)
        self._refuse_while_its_run_lives(record)
        if record.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise TaskStateError(self._not_resumable(record))
        if not self.grid.data_object_exists(posixpath.join(record.collection, names.TASK_CONFIG_FILE)):
            raise TaskStateError(f"task {record.task_id} has no {names.TASK_CONFIG_FILE}; it cannot be resumed")
        values: dict[str, object] = {a: None for a in CLEARED_ON_RESUME}
        values[names.A_RESUMED] = record.int_value(names.A_RESUMED) + 1
        if record.is_sharded:  # its summary is to be made (again) once its shards succeeded
            values[names.A_SUMMARY_RESOURCE] = names.SUMMARY_PENDING

        def resumable(current: TaskRecord) -> None:
            if current.state not in (TaskState.FAILED, TaskState.CANCELLED):
                raise TaskStateError(self._not_resumable(current))
            values[names.A_RESUMED] = current.int_value(names.A_RESUMED) + 1

        resumed = machine.transition(record.collection, TaskState.QUEUED, values, check=resumable,
                                     refuse=self._not_resumable)
        log.info("task %s resumed by %s (was %s: %s)", record.task_id, by, state_name(record.state),
                 record.get(names.A_ERROR) or "no error recorded")
        for shard in machine.shards(record):
            if shard.state in (TaskState.FAILED, TaskState.CANCELLED):
                again: dict[str, object] = {a: None for a in CLEARED_ON_RESUME}
                again[names.A_RESUMED] = shard.int_value(names.A_RESUMED) + 1
                try:
                    machine.transition(shard.collection, TaskState.QUEUED, again)
                except TaskStateError as exc:
                    log.info("shard %s: %s", shard.get(names.A_SHARD), exc)
        runs = machine.queued_runs(machine.read(resumed.collection))
        return Resumed(resumed, tuple(QueueRun(run) for run in runs))

    def _not_resumable(self, record: TaskRecord) -> str:
        text = f"task {record.task_id} is {state_name(record.state)}; only a failed or cancelled task can be resumed"
        if record.state == TaskState.QUEUED:
            text += " (it is queued: a resume or a submit queued it already)"
        elif record.state == TaskState.RUNNING and record.is_sharded:
            text += " (its shards are still running: cancel it first to resume it)"
        elif record.state == TaskState.RUNNING and self.machine.is_here(record):
            text += " (its run is alive on this host, its compute host: cancel it first to resume it)"
        elif record.state == TaskState.RUNNING:
            # Only its compute host can tell a silent run from a dead one: say when it will be seen dead.
            text += f" ({self.machine.seen_dead_after(record)})"
        return text

    def _refuse_while_its_run_lives(self, record: TaskRecord) -> None:
        """A cancelled (or failed) task whose run is still stopping on this host: a resume now
        would find the run lock taken and its new run would not start; refuse until it is gone."""
        if record.state not in (TaskState.FAILED, TaskState.CANCELLED) or record.is_sharded:
            return
        if not self.machine.is_here(record):
            return
        lock = self.machine.run_lock(self.machine.compute_resource(record), record.run_key)
        if not lock.acquire():
            raise TaskBusyError(
                f"task {record.task_id} is {state_name(record.state)}, but its run is still stopping on this host; "
                "resume it again in a moment"
            )
        lock.release()

    # ------------------------------------------------------------------ status
    def status(self, task: str) -> Status:
        """The task as it is; a dead run on this host is reaped first (so the state is the truth),
        and silent runs on other hosts are left to effects that have their hosts check them."""
        machine = self.machine
        record = self.reaper.reap(machine.find(task))
        effects: list[Effect] = []
        if record.is_stale(self.lease_seconds) and not record.is_sharded:
            effects.extend(self._check_elsewhere(record))
        if record.is_sharded and record.state == TaskState.RUNNING:
            for shard in machine.shards(record):
                if shard.is_stale(self.lease_seconds):
                    reaped = self.reaper.reap(shard)  # recorded failed here when this is its host; the task follows
                    if reaped.is_stale(self.lease_seconds):
                        effects.extend(self._check_elsewhere(reaped))
            record = self.reaper.summary_never_started(machine.read(record.collection))
        return Status(record, record.display_state(self.lease_seconds), tuple(effects))

    def _check_elsewhere(self, record: TaskRecord) -> list[Effect]:
        if self.machine.is_here(record):
            return []
        try:
            return [CheckRun(record, self.machine.compute_resource(record).host)]
        except ComputeToDataError:
            return []

    def reap_here(self, record: TaskRecord) -> TaskRecord:
        """The compute host's part of a status: reap the run if it is dead."""
        self.machine.check_may_change(record)
        return self.reaper.reap(record)


__all__ = [
    "Cancelled", "CheckRun", "Effect", "InProcessRuns", "QueueRun", "Resumed", "RunNow", "Runs",
    "Status", "StopRun", "Submitted", "TaskService",
]
