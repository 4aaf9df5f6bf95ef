"""Runs one queued task on a LocalGrid: what the delay server does for ``c2d_submit`` on a zone.

``python -m compute_to_data.client.local_worker --grid DIR --user U --task COLLECTION``
takes the queued run over through the task service (``service/tasks.py``), as the delayed
``c2d_run_task`` rule does on a zone. For a task that runs as shards it is the dispatcher: its
queued shards run in worker processes like this one, at most ``local_concurrent_runs`` at once
(``client/local_dispatcher.py``); stopped by SIGTERM or Ctrl-C, it records the shards it never
started ``failed`` (their task follows: failed, and resumable), and its running workers record
theirs as terminated runs do.

``--series COLLECTION`` (the first task of a series) is the series' local dispatcher: it sleeps
until the next run the series records, runs the scheduled step (a new task, started in a worker
of its own), and so on until the series is cancelled or ends (service/scheduler.py).
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import sys
from collections.abc import Sequence
from pathlib import Path

from compute_to_data.client.local_dispatcher import LocalDispatcher
from compute_to_data.client.submitters import LocalSubmitter, worker_launcher
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.settings import Settings
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.termination import Terminated, sigterm_as_exception
from compute_to_data.grid.base import Grid
from compute_to_data.grid.local import LocalGrid
from compute_to_data.service.scheduler import follow
from compute_to_data.service.tasks import TaskService

log = logging.getLogger(__name__)

#: what the shards a stopped dispatcher never started are recorded failed with
ABANDONED = "not started: the local dispatcher of its task was stopped ({}); resume the task to run it"


class DispatchedRuns:
    """The task service's queued runs on a LocalGrid, run now: shards in worker processes (the
    local dispatcher), a single run here. Used by ``c2d run --local`` and by the worker of a
    sharded task. Shards the dispatcher never started because it was stopped are recorded
    ``failed`` (never left queued with nothing to run them)."""

    def __init__(self, service: TaskService, context: TaskContext, dispatcher: LocalDispatcher) -> None:
        self.service = service
        self.context = context
        self.dispatcher = dispatcher

    def run_queued(self, collections: Sequence[str]) -> list[TaskOutcome]:
        shards = [c for c in collections if self.service.read(c).is_shard]
        if not shards:
            return [self.service.start(c, self.context) for c in collections]
        try:
            self.dispatcher.run(shards)
        except KeyboardInterrupt:
            self._abandon("interrupted")
            raise
        if self.dispatcher.stopped_by:
            self._abandon(self.dispatcher.stopped_by)
            raise Terminated(f"terminated ({self.dispatcher.stopped_by}) while its shards ran")
        return []

    def _abandon(self, why: str) -> None:
        never_started = [c for c in self.dispatcher.never_started]
        self.service.abandon(never_started, ABANDONED.format(why))


def run_queued_task(grid: Grid, collection: str, context: TaskContext) -> TaskOutcome:
    """Run the queued run recorded in ``collection`` here (what a worker process does; tests
    run it in a thread as the launcher)."""
    return TaskService(grid, context.settings).start(collection, context)


def run_queued(grid_dir: Path, user: str, collection: str, settings_file: Path | None = None) -> int:
    """The worker's run; SIGTERM ends it as a recorded failure, its runner stopped, staging removed."""
    grid = LocalGrid(grid_dir, user=user)
    context = TaskContext(grid=grid, settings=Settings.load(settings_file))
    service = TaskService(grid, context.settings)
    record = service.read(collection)
    try:
        with sigterm_as_exception():
            if record.is_sharded:
                shards = [c for c in service.machine.queued_runs(record) if c != collection]
                if shards:
                    dispatcher = LocalDispatcher(grid_dir, user, settings_file=settings_file,
                                                 workers=context.settings.local_concurrent_runs)
                    DispatchedRuns(service, context, dispatcher).run_queued(shards)
            outcome = service.start(collection, context)
    except Terminated as exc:
        log.error("task %s: %s", posixpath.basename(collection), exc)
        return 143
    log.info("task %s ended %s", outcome.task_id, outcome.state)
    return 0 if outcome.succeeded else 1


def follow_series(grid_dir: Path, user: str, head_collection: str, settings_file: Path | None = None) -> int:
    """The dispatcher of a series on a LocalGrid, until the series stops (SIGTERM ends it; the
    series then stays active with its next run recorded: start a dispatcher again to go on)."""
    grid = LocalGrid(grid_dir, user=user)
    submitter = LocalSubmitter(grid, settings_file=settings_file, launcher=worker_launcher(settings_file))
    outcomes = follow(submitter.scheduler(), head_collection)
    last = outcomes[-1].message if outcomes else "the series is not active"
    log.info("series dispatcher of %s ends: %s", posixpath.basename(head_collection), last)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--grid", required=True, type=Path)
    parser.add_argument("--user", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="task collection (logical path)")
    which.add_argument("--series", help="collection of the first task of a series (logical path)")
    parser.add_argument("--settings", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.series:
            return follow_series(args.grid, args.user, args.series, args.settings)
        return run_queued(args.grid, args.user, args.task, args.settings)
    except ComputeToDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
