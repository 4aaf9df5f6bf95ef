"""Runs one queued task on a LocalGrid: what the delay server does for ``c2d_submit`` on a zone.

``python -m compute_to_data.client.local_worker --grid DIR --user U --task COLLECTION``
reads the config the task recorded (``task_config.json`` in its collection) and runs the
engine with that task id, so the run takes the queued task over (or stops if it was cancelled).
For a task that runs as shards it is the dispatcher: its queued shards run in worker processes
like this one, at most ``local_concurrent_runs`` at once (``client/local_dispatcher.py``).

``--series COLLECTION`` (the first task of a series) is the series' local dispatcher: it sleeps
until the next run the series records, runs the scheduled step (a new task, started in a worker
of its own), and so on until the series is cancelled or ends (tasks/schedule.py).
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.service.scheduler import follow

if TYPE_CHECKING:
    from compute_to_data.engine.task import TaskOutcome


def run_queued_task(grid, collection: str, context) -> "TaskOutcome":  # noqa: ANN001
    """Run the queued task recorded in ``collection`` with ``context`` (a TaskContext)."""
    from compute_to_data.lifecycle.machine import TaskLifecycle

    return TaskLifecycle(grid, context.settings).start(collection, context)


def run_queued(grid_dir: Path, user: str, collection: str, settings_file: Path | None = None) -> int:
    """The worker's run; SIGTERM ends it as a recorded failure, its runner stopped, staging removed."""
    from compute_to_data.client.local_dispatcher import LocalDispatcher
    from compute_to_data.domain.settings import Settings
    from compute_to_data.engine.task import TaskContext
    from compute_to_data.engine.termination import Terminated, sigterm_as_exception
    from compute_to_data.grid.local import LocalGrid
    from compute_to_data.lifecycle.machine import TaskLifecycle

    grid = LocalGrid(grid_dir, user=user)
    context = TaskContext(grid=grid, settings=Settings.load(settings_file))
    lifecycle = TaskLifecycle(grid, context.settings)
    record = lifecycle.read(collection)
    if record.is_sharded:
        shards = [c for c in lifecycle.queued_runs(record) if c != collection]
        if shards:
            LocalDispatcher(grid_dir, user, settings_file=settings_file,
                            workers=context.settings.local_concurrent_runs).run(shards)
    try:
        with sigterm_as_exception():
            outcome = run_queued_task(grid, collection, context)
    except Terminated as exc:
        logging.getLogger(__name__).error("task %s: %s", posixpath.basename(collection), exc)
        return 143
    logging.getLogger(__name__).info("task %s ended %s", outcome.task_id, outcome.state)
    return 0 if outcome.succeeded else 1


def follow_series(grid_dir: Path, user: str, head_collection: str, settings_file: Path | None = None) -> int:
    """The dispatcher of a series on a LocalGrid, until the series stops (SIGTERM ends it; the
    series then stays active with its next run recorded: start a dispatcher again to go on)."""
    from compute_to_data.client.submitters import LocalSubmitter, worker_launcher
    from compute_to_data.grid.local import LocalGrid

    grid = LocalGrid(grid_dir, user=user)
    submitter = LocalSubmitter(grid, settings_file=settings_file, launcher=worker_launcher(settings_file))
    outcomes = follow(submitter.scheduler(), head_collection)
    last = outcomes[-1].message if outcomes else "the series is not active"
    logging.getLogger(__name__).info("series dispatcher of %s ends: %s", posixpath.basename(head_collection), last)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
