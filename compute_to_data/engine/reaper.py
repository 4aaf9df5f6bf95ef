"""Dead runs, found and put to rest on their compute host.

A running task whose heartbeat is older than the lease and whose run lock nobody holds on its
compute host is dead: the reaper stops what is left of it (container, notebook processes, by
the runner that ran it), stores and tags the parts its notebook finished, removes its staging
directory and records ``failed`` with the reason. Elsewhere readers only show such a task as
``stale`` (derived, never written): only the compute host can tell a silent run from a dead one.

This module is imported by the iRODS server: standard library and light packages only.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    TaskLostError,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.registry import runners, task_types
from compute_to_data.domain.shards import ShardSpec, aggregate
from compute_to_data.engine.context import TaskContext
from compute_to_data.lifecycle.machine import TaskStateMachine
from compute_to_data.runners.base import CANCELLED_ON_REQUEST, Runner
from compute_to_data.runners.processes import (
    ENV_RUN_ID,
    ENV_TASK_ID,
    kill_tree,
    processes_with_env,
    run_id,
)

log = logging.getLogger(__name__)


class Reaper:
    """Reaps the caller's dead runs on this host (a no-op for runs on other hosts)."""

    def __init__(self, machine: TaskStateMachine) -> None:
        self.machine = machine
        self.grid = machine.grid
        self.settings = machine.settings

    def reap(self, record: TaskRecord) -> TaskRecord:
        """On the task's compute host: a running task that is dead is stopped, cleaned up and
        recorded ``failed``. Else unchanged.

        Dead is: nobody holds its run lock, and either no heartbeat for a lease, or none of its
        run's processes is left here (``kill -9`` of ``c2d run --local``: the run is certainly
        gone, and waiting a lease to say so only keeps its owner from resuming it). A live run
        holds its lock from before it becomes ``running`` (``engine/task.py`` takes the lock,
        then ``begin_run``) until it has recorded how it ended, so a free lock is never a run
        that is only starting or finishing.
        """
        if record.state != TaskState.RUNNING or not self.machine.is_here(record):
            return record
        if record.is_sharded and not record.is_stale(self.machine.lease_seconds):
            return record  # its shards beat for it; only its summary run can be reaped, when silent
        if not self.grid.has_access(record.collection, AccessLevel.MODIFY):
            return record  # someone else's task: its owner's next status call reaps it
        resource = self.machine.compute_resource(record)
        lock = self.machine.run_lock(resource, record.run_key)
        if not lock.acquire():
            return record  # its run is alive here, only silent (a long catalog call...)
        try:
            current = self.machine.read(record.collection)
            if current.state != TaskState.RUNNING:
                return current
            silent = current.is_stale(self.machine.lease_seconds)
            if not silent and self.run_lives(current):
                return current  # its lock is free, yet something of it runs: the lease decides
            self.stop_run(current)
            salvaged, progress = self.salvage(current, resource)
            self.remove_staging(current, resource)
            message = self.machine.death_message(current, resource, gone=not silent)
            if current.is_sharded:
                message = "its summary report was not made: " + message + "; resume the task to make it"
            if salvaged:
                message += f"; {salvaged} part(s) it had finished are tagged now"
            values: dict[str, object] = {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message}
            if progress is not None:  # what is tagged now, the salvaged parts included
                values[names.A_PROGRESS] = progress
            try:
                reaped = self.machine.transition(
                    current.collection, TaskState.FAILED, values,
                    expect_started=None if current.is_sharded else current.get(names.A_STARTED),
                )
            except TaskLostError:
                return self.machine.read(current.collection)
        finally:
            lock.release()
        if reaped.is_shard:
            self.machine.settle_after(ShardSpec.of(reaped))
        return reaped

    def run_lives(self, record: TaskRecord) -> bool:
        """Whether anything of the record's run may still run on this host: its handle alive for
        the runner that ran it (a container, a Slurm job, the notebook's processes), or a process
        marked with the task or the run. When that cannot be told (no runner here to ask, the
        runner cannot be asked), it may: only the lease then says the run is dead."""
        if processes_with_env(ENV_TASK_ID, record.run_key) or processes_with_env(
                ENV_RUN_ID, run_id(record.run_key, record.get(names.A_STARTED))):
            return True
        handle = record.get(names.A_RUN_HANDLE)
        if not handle:
            return False
        runner = self._runner_for(record.get(names.A_RUNNER))
        if runner is None:
            return True
        try:
            return bool(runner.is_alive(handle))
        except Exception as exc:  # noqa: BLE001 - an unanswered question is no proof of death
            log.info("task %s: cannot tell whether its run %s lives: %s", record.task_id, handle, exc)
            return True

    def reap_resource(self, resource: Resource) -> int:
        """Reap the dead runs visible to the user on ``resource`` (before a new run starts there)."""
        reaped = 0
        for record in self.machine.in_state(TaskState.RUNNING):
            if record.get(names.A_COMPUTE_RESOURCE) != resource.name:
                continue
            try:
                if self.reap(record).state == TaskState.FAILED:
                    reaped += 1
            except ComputeToDataError as exc:
                log.warning("could not reap task %s: %s", record.task_id, exc)
        return reaped

    def stop_run(self, record: TaskRecord, *, whole_task: bool = True) -> bool:
        """Stop whatever is left of the record's run on this host: by its handle with the runner
        that ran it (container, process tree), and every process marked with the run's identity
        (a run whose handle was never recorded). True if anything was left.

        ``whole_task``: also every process marked with the task (any run of it): only for the
        reaper, which holds the task's run lock, so no other run of the task lives here. A
        cancel stops the one run it cancelled and never the run of a resume that followed."""
        task_id, handle = record.run_key, record.get(names.A_RUN_HANDLE)
        # a cancel's run says why it stopped (Slurm's job log and partial report); a dead run's is stopped silently
        reason = None if whole_task else CANCELLED_ON_REQUEST
        stopped = False
        runner = self._runner_for(record.get(names.A_RUNNER))
        if runner is not None:
            try:
                stopped = bool(runner.stop(handle, task_id if whole_task else None, reason=reason)) if handle else False
            except ComputeToDataError as exc:
                log.warning("task %s: could not stop its run %s: %s", task_id, handle, exc)
            try:  # a run this very process supervises (never a later one: it could not have started yet)
                stopped = bool(runner.cancel(task_id)) or stopped
            except ComputeToDataError as exc:
                log.warning("task %s: could not cancel its run: %s", task_id, exc)
        marker = (ENV_TASK_ID, task_id) if whole_task else (ENV_RUN_ID, run_id(record.run_key, record.get(names.A_STARTED)))
        for pid in processes_with_env(*marker):
            kill_tree(pid)
            stopped = True
        return stopped

    def _runner_for(self, name: str) -> "Runner | None":
        """The runner that ran the task (by ``c2d::runner``), made here only to stop its run."""
        try:
            factory: Any = runners.get(name) if name else None
            return factory(settings=self.settings) if factory is not None else None
        except (ComputeToDataError, TypeError) as exc:
            log.debug("no runner %r here to stop a run with: %s", name, exc)
            return None

    def salvage(self, record: TaskRecord, resource: Resource) -> tuple[int, str | None]:
        """Store and tag the parts a dead run's notebook finished (nothing writes them any more):
        a crash costs only the part it was working on. Returns how many parts, and the task's
        progress counted from what is tagged now (None: not known; the record keeps its own).
        Best effort: the state is recorded anyway."""
        if record.is_sharded:
            return 0, None  # its shards count for it
        output_dir = self.settings.staging_directory_for(resource.host, resource.name) / record.run_key / "outputs"
        salvaged = 0
        try:
            config = self.machine.read_config(record)
            task_class: Any = task_types.get(config.task_type)
            found = task_class.for_salvage(config, TaskContext(grid=self.grid, settings=self.settings), record, resource)
            if found is None:
                return 0, None
            task, tagging = found
            if (output_dir / names.PARTS_DIR).is_dir():
                salvaged = task.salvage_parts(tagging, output_dir)
            progress = task.tagged_progress(tagging.selection, tagging.listing)
        except Exception as exc:  # noqa: BLE001 - the dead run's state must be recorded whatever this does
            log.warning("task %s: could not salvage the parts its dead run finished: %s", record.task_id, exc)
            return salvaged, None
        if salvaged:
            log.info("task %s: stored and tagged %d part(s) its dead run had finished", record.task_id, salvaged)
        return salvaged, progress

    def remove_staging(self, record: TaskRecord, resource: Resource) -> None:
        root = self.settings.staging_directory_for(resource.host, resource.name) / record.run_key
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
            log.info("task %s: removed its staging directory", record.task_id)

    def summary_never_started(self, record: TaskRecord) -> TaskRecord:
        """Every shard succeeded a lease ago, yet no summary began (the run that ended the last
        one died before it could start it): say so, so that a resume makes it."""
        if record.state != TaskState.RUNNING or record.get(names.A_SUMMARY_RESOURCE) not in ("", names.SUMMARY_PENDING):
            return record
        shards = self.machine.shards(record)
        if not shards or not aggregate(shards).all_succeeded:
            return record
        ended = max((names.parse_iso_utc(s.get(names.A_FINISHED)) for s in shards), default=None, key=lambda t: t or names.utc_now())
        if ended is None or (names.utc_now() - ended).total_seconds() <= self.machine.lease_seconds:
            return record
        try:
            return self.machine.transition(record.collection, TaskState.FAILED, {
                names.A_FINISHED: names.iso_utc(),
                names.A_ERROR: "every shard succeeded but the summary report was not made (the run that ended the last "
                               "shard stopped first); resume the task to make it",
            })
        except TaskStateError:
            return self.machine.read(record.collection)

