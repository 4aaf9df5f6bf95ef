"""How a task config becomes a queued task: through the rulebase on a zone, or the engine locally.

On a zone the client never runs the engine itself: ``c2d_submit`` (a Python rule called by name
through the native rule engine) validates, records ``queued`` and queues the run on the server,
as the caller; ``c2d_cancel``, ``c2d_resume`` and ``c2d_status`` likewise. On a LocalGrid there
is no server, so :class:`LocalSubmitter` does what the rules do through the task lifecycle
(``service/tasks.py``) and starts runs in a detached worker process; a scheduled config's
series is followed by a detached series worker (the local dispatcher: it sleeps until the next
run the series' first task records, runs the scheduled step, and ends with the series).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from compute_to_data.domain.conventions import SeriesState
from compute_to_data.domain.errors import ComputeToDataError, GridError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid.base import Grid
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.series import SeriesLink
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.scheduler import SeriesScheduler, submit_and_queue
from compute_to_data.service.scheduler import cancel as cancel_with_series
from compute_to_data.service.tasks import TaskService

log = logging.getLogger(__name__)

#: ``20261122T020304Z-3f9a1c`` (conventions.new_task_id).
TASK_ID_RE = re.compile(r"\b(\d{8}T\d{6}Z-[0-9a-f]{6})\b")

SUBMIT_RULE = "c2d_submit"
CANCEL_RULE = "c2d_cancel"
RESUME_RULE = "c2d_resume"
STATUS_RULE = "c2d_status"


class Submitter(Protocol):
    def submit(self, config_path: str) -> str:
        """Queue the task described by the config at logical path ``config_path``; its id."""

    def cancel(self, record: TaskRecord) -> None:
        """Ask for the task to stop (queued: never runs; running: stops, ends ``cancelled``)."""

    def resume(self, record: TaskRecord) -> TaskRecord:
        """Queue a failed or cancelled task again, in the same task collection; its record then."""

    def refresh(self, record: TaskRecord) -> None:
        """Have the task's compute host check a running task that shows no sign of life."""


class RuleSubmitter:
    """Submits and cancels through the rulebase (``c2d_submit`` / ``c2d_cancel``) as the caller."""

    def __init__(self, grid: Grid) -> None:
        if not hasattr(grid, "run_rule"):
            raise GridError(f"the {grid.kind} grid cannot run rules; use an iRODS connection or --local")
        self.grid = grid

    def submit(self, config_path: str) -> str:
        out = self.grid.run_rule(SUBMIT_RULE, {"*config": config_path})
        found = TASK_ID_RE.search(out or "")
        if not found:
            shown = (out or "").strip() or "nothing"
            raise GridError(f"{SUBMIT_RULE} did not report a task id; it printed: {shown[:500]}")
        return found.group(1)

    def cancel(self, record: TaskRecord) -> None:
        self.grid.run_rule(CANCEL_RULE, {"*task": record.collection})

    def resume(self, record: TaskRecord) -> TaskRecord:
        self.grid.run_rule(RESUME_RULE, {"*task": record.collection})
        return TaskStateStore(self.grid).read(record.collection)

    def refresh(self, record: TaskRecord) -> None:
        self.grid.run_rule(STATUS_RULE, {"*task": record.collection})


Launcher = Callable[[Grid, str], None]
"""Starts the run of the queued task whose collection is given."""


def worker_launcher(settings_file: Path | None = None, log_dir: Path | None = None, *, series: bool = False) -> Launcher:
    """Start ``python -m compute_to_data.client.local_worker`` detached from this process: the run
    of a queued task, or (``series``) the dispatcher of the series whose first task is given."""

    def launch(grid: Grid, collection: str) -> None:
        if not isinstance(grid, LocalGrid):
            raise GridError(f"a local worker runs tasks of a LocalGrid, not of the {grid.kind} grid")
        root = Path(grid.root)
        logs = log_dir or root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = logs / f"{posixpath.basename(collection)}{'-series' if series else ''}.log"
        command = [
            sys.executable, "-m", "compute_to_data.client.local_worker",
            "--grid", str(root), "--user", grid.user, "--series" if series else "--task", collection,
        ]
        if settings_file is not None:
            command += ["--settings", str(settings_file)]
        with open(log_file, "ab") as out:
            subprocess.Popen(  # noqa: S603 - our own module, arguments are not shell-parsed
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=dict(os.environ),
            )
        log.info("started the %s of %s (log: %s)", "series dispatcher" if series else "run", collection, log_file)

    return launch


class LocalRuns:
    """The task service's effects on a LocalGrid, where this host is every resource's host: a
    queued run starts at once in a detached worker (the launcher); a series needs no queued
    step (its dispatcher waits for the next run the series' first task records); nothing ever
    runs on another host."""

    def __init__(self, grid: Grid, launcher: Launcher) -> None:
        self.grid = grid
        self.launcher = launcher

    def queue_step(self, head_collection: str, due: str, delay_seconds: int) -> None:
        log.debug("series %s: next run %s (in %d s)", posixpath.basename(head_collection), due, delay_seconds)

    def queue_run(self, collection: str) -> None:
        try:
            self.launcher(self.grid, collection)
        except Exception as exc:  # noqa: BLE001 - a run that cannot start is recorded failed by the service
            raise GridError(f"could not start the run: {exc}") from exc

    def stop_on_host(self, record: TaskRecord, host: str) -> str:
        raise GridError(f"{host} is not this host, and a LocalGrid has no other (task {record.task_id})")

    def check_on_host(self, record: TaskRecord, host: str) -> None:
        raise GridError(f"{host} is not this host, and a LocalGrid has no other (task {record.task_id})")


class LocalSubmitter:
    """Does on a LocalGrid what the rules do on a zone, through the same task service."""

    def __init__(self, grid: Grid, settings_file: Path | None = None, launcher: Launcher | None = None,
                 context_factory: Callable[[Grid], TaskContext] | None = None,
                 series_launcher: Launcher | None = None) -> None:
        self.grid = grid
        self.settings_file = settings_file
        self.launcher = launcher or worker_launcher(settings_file)
        self.series_launcher = series_launcher or worker_launcher(settings_file, series=True)
        self.context_factory = context_factory

    def _context(self) -> TaskContext:
        if self.context_factory is not None:
            return self.context_factory(self.grid)
        return TaskContext(grid=self.grid, settings=Settings.load(self.settings_file))

    @property
    def service(self) -> TaskService:
        return TaskService(self.grid, self._context().settings)

    def runs(self) -> LocalRuns:
        return LocalRuns(self.grid, self.launcher)

    def submit(self, config_path: str) -> str:
        text = self.grid.read_data_object(config_path, max_bytes=1024 * 1024)
        return self.submit_config(TaskConfig.from_json(text, source=config_path))

    def submit_config(self, config: TaskConfig) -> str:
        """Queue a validated config (nothing is uploaded first, so a refusal leaves nothing); a
        scheduled one starts its series, followed by a detached series dispatcher."""
        submitted, series = submit_and_queue(self.scheduler(), config, self._context(), self.runs())
        if series is not None:
            self._follow_series(submitted.outcome.collection)
        return submitted.outcome.task_id

    def scheduler(self) -> SeriesScheduler:
        """The series' steps on this LocalGrid: new tasks made with this submitter's context."""
        def context_for(config: TaskConfig, link: SeriesLink) -> TaskContext:
            return replace(self._context(), series=link)

        return SeriesScheduler(self.grid, self._context().settings, self.runs(), context_for)

    def _follow_series(self, head_collection: str) -> None:
        try:
            self.series_launcher(self.grid, head_collection)
        except Exception as exc:
            task_id = posixpath.basename(head_collection)
            try:
                self.scheduler().series.stop(head_collection, SeriesState.ENDED, f"its dispatcher could not start: {exc}")
            except ComputeToDataError:
                pass  # ended already
            raise GridError(f"task {task_id} is queued and runs once, but its series could not be scheduled: {exc}") from exc

    def cancel(self, record: TaskRecord) -> None:
        # On a LocalGrid this host is the compute host: a running run is stopped here and now.
        cancellation = cancel_with_series(self.scheduler(), record.collection, self.grid.user)
        for cancelled in cancellation.cancelled:
            self.service.carry_out(cancelled.effects, self.runs())

    def resume(self, record: TaskRecord) -> TaskRecord:
        service = self.service
        resumed = service.resume(record.collection, by=self.grid.user)
        service.carry_out(resumed.effects, self.runs())
        return resumed.record  # as resumed: queued (its run may have started already)

    def refresh(self, record: TaskRecord) -> None:
        self.service.reaper.reap(record)
