"""Runs one queued task on a LocalGrid: what the delay server does for ``c2d_submit`` on a zone.

``python -m compute_to_data.client.local_worker --grid DIR --user U --task COLLECTION``
reads the config the task recorded (``task_config.json`` in its collection) and runs the
engine with that task id, so the run takes the queued task over (or stops if it was cancelled).
For a task that runs as shards it is the dispatcher: its queued shards run in worker processes
like this one, at most ``local_concurrent_runs`` at once (``client/local_dispatcher.py``).
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ComputeToDataError

if TYPE_CHECKING:
    from ..tasks import TaskOutcome


def run_queued_task(grid, collection: str, context) -> "TaskOutcome":  # noqa: ANN001
    """Run the queued task recorded in ``collection`` with ``context`` (a TaskContext)."""
    from ..tasks.lifecycle import TaskLifecycle

    return TaskLifecycle(grid, context.settings).start(collection, context)


def run_queued(grid_dir: Path, user: str, collection: str, settings_file: Path | None = None) -> int:
    """The worker's run; SIGTERM ends it as a recorded failure, its runner stopped, staging removed."""
    from ..grid.local import LocalGrid
    from ..settings import Settings
    from ..tasks import TaskContext
    from ..tasks.lifecycle import TaskLifecycle, Terminated, sigterm_as_exception
    from .local_dispatcher import LocalDispatcher

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, type=Path)
    parser.add_argument("--user", required=True)
    parser.add_argument("--task", required=True, help="task collection (logical path)")
    parser.add_argument("--settings", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_queued(args.grid, args.user, args.task, args.settings)
    except ComputeToDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
