"""Continuous runs: a scheduled task config becomes a series of tasks, and the use cases that
know about series (submitting a scheduled config starts its series; cancelling the first task
of a series stops it). The series' state lives on its first task (``lifecycle/series.py``);
where steps and runs are queued is the caller's :class:`RunQueue` (the delay server on a zone,
the local dispatcher on a LocalGrid)."""

from __future__ import annotations

import logging
import math
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import Enum
from typing import Protocol

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import SeriesState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    GridError,
    NoEligibleInputsError,
    ObjectNotFoundError,
    TaskStateError,
)
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.series import (
    CONFIG_GONE,
    Clock,
    Series,
    SeriesInfo,
    SeriesLink,
    is_head,
    next_due,
    series_id_of,
)
from compute_to_data.service.tasks import Cancelled, Runs, Submitted, TaskService

log = logging.getLogger(__name__)


class StepKind(str, Enum):
    STARTED = "started"            # a new task of the series is queued
    NOTHING_NEW = "nothing_new"    # nothing to classify: no task created
    BUSY = "busy"                  # the series' previous run is still queued or running
    FAILED = "failed"              # this run could not be made; the next one comes
    ENDED = "ended"                # the config cannot run any more: the series ended now
    STOPPED = "stopped"            # the series was cancelled or ended before: nothing done
    NOT_ITS_TURN = "not_its_turn"  # another step took this turn (a step queued or started twice)

    @property
    def series_goes_on(self) -> bool:
        return self in (StepKind.STARTED, StepKind.NOTHING_NEW, StepKind.BUSY, StepKind.FAILED)


@dataclass(frozen=True)
class StepOutcome:
    kind: StepKind
    message: str
    series_id: str = ""
    task_id: str | None = None
    collection: str | None = None
    inputs: int = 0
    next_run: str | None = None


class RunQueue(Protocol):
    """Where scheduled steps and task runs are queued: the delay server (rules.py) or the local
    dispatcher (client/submitters.py)."""

    def queue_step(self, head_collection: str, due: str, delay_seconds: int) -> None:
        """Have :meth:`SeriesScheduler.step` run for ``head_collection`` and ``due`` in ``delay_seconds``."""

    def queue_run(self, collection: str) -> None:
        """Have the queued task of ``collection`` run (as ``c2d_submit`` does)."""


ContextFactory = Callable[[TaskConfig, SeriesLink], "TaskContext"]


class SeriesScheduler:
    """Starts a series after its head was submitted, and runs its scheduled steps."""

    def __init__(self, grid: Grid, settings: Settings, queue: SeriesRuns, context_factory: ContextFactory,
                 clock: Clock | None = None) -> None:
        self.grid = grid
        self.settings = settings
        self.queue = queue
        self.context_factory = context_factory
        #: the time steps are scheduled by: the host's (the delay server's on a zone), or a test's
        self.clock: Clock = clock or (lambda: names.utc_now())
        self.series = Series(grid, settings)
        self.tasks = TaskService(grid, settings)

    def start(self, head_collection: str) -> SeriesInfo:
        """The head task was submitted: queue the series' first step, ``every`` from now. If it
        cannot be queued, the series ends with the reason (its head still runs once) and this raises."""
        info = self.series.read(head_collection)
        every = info.every_seconds
        if not every:
            raise TaskStateError(f"task {info.series_id} records no valid {names.A_SCHEDULE}")
        due = names.iso_utc(self.clock() + timedelta(seconds=every))
        if not self.series.record_next_run(head_collection, due):
            raise TaskStateError(f"series {info.series_id} changed while its first run was being scheduled")
        try:
            self.queue.queue_step(head_collection, due, every)
        except ComputeToDataError as exc:
            self.series.stop(head_collection, SeriesState.ENDED, f"its next run could not be queued: {exc}")
            raise
        log.info("series %s: every %s, next run %s", info.series_id, info.every, due)
        return self.series.read(head_collection)

    def step(self, head_collection: str, due: str) -> StepOutcome:
        """One scheduled run of the series (see the module's docstring for the order)."""
        try:
            info = self.series.read(head_collection)
        except ComputeToDataError as exc:
            return StepOutcome(StepKind.STOPPED, f"the series' first task {head_collection} cannot be read: {exc}")
        series_id = info.series_id
        if not info.is_active:
            return StepOutcome(StepKind.STOPPED, f"series {series_id} is {info.state_text}"
                               + (f" ({info.reason})" if info.reason else "") + "; no further run", series_id)
        every = info.every_seconds
        if not every:
            self._end(head_collection, f"it records no valid {names.A_SCHEDULE} ({info.every!r})")
            return StepOutcome(StepKind.ENDED, f"series {series_id} records no valid schedule; ended", series_id)
        previous = names.parse_iso_utc(due)
        one_before = names.iso_utc(previous - timedelta(seconds=every)) if previous else ""
        # one before: the step before this one died after it queued this one, before it took its turn
        if previous is None or info.next_run not in (due, one_before):
            return StepOutcome(StepKind.NOT_ITS_TURN, f"series {series_id}: the run due {due} was taken over "
                               f"(next run {info.next_run or 'none'}); not running it twice", series_id)
        now = self.clock()
        following = next_due(due, every, now)
        delay = max(1, math.ceil(((names.parse_iso_utc(following) or now) - now).total_seconds()))
        try:
            self.queue.queue_step(head_collection, following, delay)
        except ComputeToDataError as exc:
            self._end(head_collection, f"its next run could not be queued: {exc}")
            return StepOutcome(StepKind.ENDED, f"series {series_id}: the next run could not be queued: {exc}", series_id)
        if not self.series.claim(head_collection, info.next_run, following, names.iso_utc(now)):
            return StepOutcome(StepKind.NOT_ITS_TURN, f"series {series_id}: another step took the run due {due}", series_id)
        return self._run(info, following)

    def _run(self, info: SeriesInfo, following: str) -> StepOutcome:
        series_id, head_collection = info.series_id, info.head.collection
        then = f"the next run is due {following}"
        busy = self.series.active_tasks(series_id, stale_too=False)
        if busy:
            return StepOutcome(StepKind.BUSY, f"series {series_id}: task {busy[0].task_id} of the series is still "
                               f"{busy[0].state.value if busy[0].state else '?'}; this run is skipped, {then}",
                               series_id, next_run=following)
        try:
            config = self._config(head_collection)
            submitted = self.tasks.submit(config, self.context_factory(config, SeriesLink(series_id)))
            outcome = submitted.outcome
        except NoEligibleInputsError:
            return StepOutcome(StepKind.NOTHING_NEW, f"series {series_id}: nothing new to classify (no task created); "
                               + then, series_id, next_run=following)
        except CONFIG_GONE as exc:
            reason = f"its task config cannot run any more: {exc}"
            self._end(head_collection, reason)
            return StepOutcome(StepKind.ENDED, f"series {series_id} ended: {reason}", series_id)
        except ComputeToDataError as exc:
            log.warning("series %s: this run could not be made: %s", series_id, exc)
            return StepOutcome(StepKind.FAILED, f"series {series_id}: this run could not be made ({exc}); {then}",
                               series_id, next_run=following)
        if not self.series.read(head_collection).is_active:  # cancelled while this run was being made
            self.tasks.cancel(outcome.collection, by="the series' cancellation")
            return StepOutcome(StepKind.STOPPED, f"series {series_id} was cancelled; task {outcome.task_id} too",
                               series_id, outcome.task_id, outcome.collection)
        try:  # its run, or one per shard (a run that cannot be queued is recorded failed)
            self.tasks.carry_out(submitted.effects, self.queue)
        except ComputeToDataError as exc:
            return StepOutcome(StepKind.FAILED, f"series {series_id}: the run of task {outcome.task_id} could not be "
                               f"queued ({exc}); {then}", series_id, outcome.task_id, outcome.collection)
        log.info("series %s: task %s queued over %d new image(s); %s", series_id, outcome.task_id, outcome.inputs, then)
        return StepOutcome(StepKind.STARTED, f"series {series_id}: task {outcome.task_id} queued over {outcome.inputs} "
                           f"image(s) not classified yet; {then}", series_id, outcome.task_id, outcome.collection,
                           outcome.inputs, following)

    def _config(self, head_collection: str) -> TaskConfig:
        path = posixpath.join(head_collection, names.TASK_CONFIG_FILE)
        try:
            text = self.grid.read_data_object(path, max_bytes=1024 * 1024)
        except ObjectNotFoundError as exc:
            raise ObjectNotFoundError(f"the series' task config {path} is gone ({exc})") from None
        return TaskConfig.from_json(text, source=path)

    def _end(self, head_collection: str, reason: str) -> None:
        try:
            self.series.stop(head_collection, SeriesState.ENDED, reason)
        except ComputeToDataError as exc:  # cancelled meanwhile, or the catalog failed: say it in the log
            log.warning("could not record the end of series %s (%s): %s", posixpath.basename(head_collection), reason, exc)


def follow(scheduler: SeriesScheduler, head_collection: str, *, sleep: Callable[[float], None] = time.sleep,
           poll_seconds: float = 30.0, max_steps: int | None = None) -> list[StepOutcome]:
    """The local dispatcher of a series (LocalGrid, where no delay server exists): wait for the
    next run the head records, run its step, and so on until the series stops. It looks at the
    head at least every ``poll_seconds``, so a cancelled series ends its dispatcher soon.
    ``scheduler.clock`` and ``sleep`` let a test run a week of a series in no time."""
    outcomes: list[StepOutcome] = []
    while max_steps is None or len(outcomes) < max_steps:
        info = scheduler.series.read(head_collection)
        if not info.is_active or not info.next_run:
            break
        due = names.parse_iso_utc(info.next_run)
        wait = (due - scheduler.clock()).total_seconds() if due is not None else 0.0
        if wait > 0:
            sleep(min(wait, poll_seconds))
            continue
        outcome = scheduler.step(head_collection, info.next_run)
        outcomes.append(outcome)
        log.info("%s", outcome.message)
        if not outcome.kind.series_goes_on:
            break
    return outcomes


class SeriesRuns(RunQueue, Runs, Protocol):
    """What the task use cases and the series need carried out (one adapter does both)."""


def submit_and_queue(scheduler: SeriesScheduler, config: TaskConfig, context: TaskContext,
                     runs: SeriesRuns, submitted_by: str | None = None) -> tuple[Submitted, SeriesInfo | None]:
    """``c2d_submit`` / ``c2d submit``: submit, queue the run(s), and for a scheduled config
    start its series (its first scheduled step, ``every`` from now)."""
    service = scheduler.tasks
    scheduled = config.schedule_every is not None
    if scheduled:
        context = replace(context, series=SeriesLink())
    submitted = service.submit(config, context, submitted_by)
    service.carry_out(submitted.effects, runs)
    if not scheduled:
        return submitted, None
    try:
        return submitted, scheduler.start(submitted.outcome.collection)
    except ComputeToDataError as exc:
        raise GridError(
            f"task {submitted.outcome.task_id} is queued and runs once, but its series could not be scheduled: {exc}",
            irods_code=exc.irods_code,
        ) from None


@dataclass(frozen=True)
class Cancellation:
    """What a cancel did: the tasks it cancelled and, for the first task of an active series,
    the series it stopped (no further run; its queued or running task cancelled too)."""

    cancelled: tuple[Cancelled, ...]
    series: SeriesInfo | None = None
    #: tasks of the series that ended meanwhile (nothing to cancel), with why
    skipped: tuple[str, ...] = ()
    #: a task of a series that goes on (not its first task): the series' id
    goes_on: str | None = None


def cancel(scheduler: SeriesScheduler, task: str, by: str) -> Cancellation:
    """``c2d_cancel`` / ``c2d cancel``: the first task of an active series stops the series and
    its active tasks; any other task is cancelled alone."""
    service = scheduler.tasks
    record = service.find(task)
    if is_head(record):
        series = scheduler.series
        current = series.read(record.collection)
        if current.is_active:
            service.machine.check_may_change(record)
            info = series.cancel(record.collection, by=by)
            done: list[Cancelled] = []
            skipped: list[str] = []
            for active in series.active_tasks(info.series_id):
                try:
                    done.append(service.cancel(active.collection, by=by))
                except TaskStateError as exc:  # it ended meanwhile
                    skipped.append(f"{active.task_id}: {exc}")
            return Cancellation(tuple(done), info, tuple(skipped))
        if record.state is not None and record.state.is_final:
            raise TaskStateError(
                f"task {record.task_id} is already {record.state.value} and its series is {current.state_text}"
                + (f" ({current.reason})" if current.reason else "") + "; nothing to cancel"
            )
    return Cancellation((service.cancel(record.collection, by=by),), goes_on=series_id_of(record))
