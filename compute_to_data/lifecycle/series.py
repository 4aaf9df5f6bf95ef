"""Continuous runs: a task config with ``schedule: {"every": "1d"}`` becomes a series of tasks.

Submitted once, the first task (the series' *head*) is queued like any task; it carries
``c2d::series`` = its own id, ``c2d::schedule`` (the interval) and ``c2d::series_state`` =
``active``, and the first scheduled *step* is queued at once, ``every`` later (the delay
server's ``PLUSET`` on a zone, the local dispatcher on a LocalGrid). A step:

1. reads the head first: a series that is no longer ``active`` stops there (this is how
   ``c2d_cancel`` of the head stops a series: the queued step exits when it comes);
2. claims its turn: the head's ``c2d::series_next_run`` must still be the time the step was
   queued for; the next step is queued, then ``c2d::series_next_run`` moves on to it in one
   atomic batch (a step queued or started twice runs once; a step that dies between the two
   leaves its successor able to take over);
3. skips the run while a task of the series is still queued or running (a slow run is never
   overtaken by the next one, which would classify the same images twice);
4. submits a new task from the head's stored ``task_config.json``, linked to the series
   (``c2d::series``): as every task with ``skip_tagged``, it selects the images that carry no
   complete prediction: what was added since the last run, and what earlier runs could not
   finish, but not an image an earlier task marked ``c2d::unclassified`` (unreadable, or scored
   under the threshold) while it keeps the size it had then. **Nothing new: no task is created**; ``c2d::series_checked`` on the head records the
   look. A config that cannot run any more (model or inputs deleted, access lost, an image or
   interval the settings no longer allow) **ends the series**, with the reason in
   ``c2d::series_reason``; any other failure fails this run only, and the next one comes;
5. queues the new task's run as ``c2d_submit`` does.

Series never rely on the delay server's own repetition (``EF ... UNTIL SUCCESS`` may not
reschedule a rule that failed, iRODS issue 8075): each step queues the next one itself, before
it does anything that could fail.

This module is imported by the iRODS server (rules.py): standard library and light packages only.
"""

from __future__ import annotations

import logging
import math
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import SeriesState, TaskState
from compute_to_data.domain.errors import (
    AccessDeniedError,
    ComputeToDataError,
    ConfigError,
    NotAllowedError,
    ObjectNotFoundError,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord, as_text
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig, parse_duration
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.claims import Decision
from compute_to_data.lifecycle.machine import TaskStateMachine
from compute_to_data.lifecycle.store import TaskStateStore

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

#: refusals that say the series' config cannot run any more: the series ends with the reason.
#: Anything else (the catalog not answering, no free resource) fails one run; the next one comes.
CONFIG_GONE: tuple[type[ComputeToDataError], ...] = (ConfigError, ObjectNotFoundError, AccessDeniedError, NotAllowedError)

Clock = Callable[[], datetime]
#: the longest ``c2d::series_reason`` written (a config's every problem can make a long message)
MAX_REASON = 2000


@dataclass(frozen=True)
class SeriesLink:
    """How a new task belongs to a series: ``series_id`` None makes it the head of a new one."""

    series_id: str | None = None


def describe_every(seconds: int) -> str:
    """``86400`` -> ``1d``, ``5400`` -> ``90m``: the largest unit that says it exactly."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_new_task(config: TaskConfig, settings: Settings, link: SeriesLink | None) -> None:
    """Refuse a new task of a scheduled config that is not submitted as part of a series (``c2d
    run``, ``c2d_run``), or whose interval is shorter than the settings allow."""
    every = config.schedule_seconds
    if every is None:
        if link is not None:
            raise ConfigError("the task config has no schedule; it cannot start or continue a series")
        return
    if link is None:
        raise ConfigError(
            f"the task config has a schedule (every {config.schedule_every}): submit it (c2d submit, or the rule "
            "c2d_submit), which queues its first run and the series after it; c2d run and c2d_run run a task once, "
            "now: remove schedule for that"
        )
    minimum = settings.schedule_min_interval_seconds
    if every < minimum:
        raise ConfigError(
            "task config is invalid (1 problem(s)):",
            [f"$.schedule.every: {config.schedule_every!r} is more often than this zone allows: at most every "
             f"{describe_every(minimum)} (schedule_min_interval_seconds in the server settings, {settings.source})"],
        )


def creation_values(config: TaskConfig, task_id: str, link: SeriesLink | None) -> dict[str, object]:
    """What a new task collection of a series records when it is created (with its first state)."""
    if link is None:
        return {}
    if link.series_id is None:  # the head: the series is this task's id, and active from now
        return {
            names.A_SERIES: task_id,
            names.A_SCHEDULE: config.schedule_every,
            names.A_SERIES_STATE: SeriesState.ACTIVE.value,
        }
    return {names.A_SERIES: link.series_id}


def series_id_of(record: TaskRecord) -> str | None:
    return record.get(names.A_SERIES) or None


def is_head(record: TaskRecord) -> bool:
    """The first task of a series: its series is its own id."""
    return series_id_of(record) == record.task_id and bool(record.get(names.A_SERIES_STATE))


@dataclass(frozen=True)
class SeriesInfo:
    """A series as its head records it."""

    head: TaskRecord

    @property
    def series_id(self) -> str:
        return self.head.task_id

    @property
    def state(self) -> SeriesState | None:
        try:
            return SeriesState(self.head.get(names.A_SERIES_STATE))
        except ValueError:
            return None

    @property
    def state_text(self) -> str:
        return self.state.value if self.state is not None else (self.head.get(names.A_SERIES_STATE) or "unknown")

    @property
    def is_active(self) -> bool:
        return self.state == SeriesState.ACTIVE

    @property
    def every(self) -> str:
        return self.head.get(names.A_SCHEDULE)

    @property
    def every_seconds(self) -> int | None:
        every = parse_duration(self.every) if self.every else None
        return int(every.total_seconds()) if every else None

    @property
    def next_run(self) -> str:
        return self.head.get(names.A_SERIES_NEXT_RUN)

    @property
    def checked(self) -> str:
        return self.head.get(names.A_SERIES_CHECKED)

    @property
    def reason(self) -> str:
        return self.head.get(names.A_SERIES_REASON)

    def is_overdue(self, now: datetime | None = None, grace_seconds: float = 3600.0) -> bool:
        """Active, but its next run should have started long ago (its queued step was lost)."""
        due = names.parse_iso_utc(self.next_run)
        return self.is_active and due is not None and ((now or names.utc_now()) - due).total_seconds() > grace_seconds

    def summary(self) -> str:
        """One line: ``every 1d, active, next run 2026-11-23T02:03:04Z``."""
        text = f"every {self.every or '?'}, {self.state_text}"
        if self.is_active:
            text += f", next run {self.next_run}" if self.next_run else ", no run queued"
            if self.is_overdue():
                text += " (overdue: its queued run was lost; cancel the series and submit it again)"
        elif self.reason:
            text += f": {self.reason}"
        return text










class Series:
    """Reads and changes a series' records (on its head task collection) through the grid."""

    def __init__(self, grid: Grid, settings: Settings) -> None:
        self.grid = grid
        self.settings = settings
        self.store = TaskStateStore(grid)
        self.machine = TaskStateMachine(grid, settings)

    # --- reading -----------------------------------------------------------------------------
    def head_of(self, record: TaskRecord) -> TaskRecord:
        """The series' first task: tasks of one series share their output collection."""
        series_id = series_id_of(record)
        if series_id is None:
            raise TaskStateError(f"task {record.task_id} belongs to no series")
        if series_id == record.task_id:
            return record
        try:
            return self.store.read(posixpath.join(posixpath.dirname(record.collection), series_id))
        except ComputeToDataError:
            return self.store.find(series_id)

    def info(self, record: TaskRecord) -> SeriesInfo | None:
        """The series of any task (None for a task that belongs to none)."""
        if series_id_of(record) is None:
            return None
        return SeriesInfo(self.head_of(record))

    def read(self, head_collection: str) -> SeriesInfo:
        record = self.store.read(head_collection)
        if not is_head(record):
            raise TaskStateError(f"task {record.task_id} is not the first task of a series")
        return SeriesInfo(record)

    def find(self, series_id: str) -> SeriesInfo:
        record = self.store.find(series_id)
        if not is_head(record):
            raise TaskStateError(f"task {series_id} is not the first task of a series (no {names.A_SERIES_STATE})")
        return SeriesInfo(record)

    def tasks(self, series_id: str) -> list[TaskRecord]:
        """Every task of the series the caller can see, newest first (the head last)."""
        found = self.grid.find_collections_with_avu(names.A_SERIES, series_id)
        records = [TaskRecord.from_collection_avus(c) for c in found]
        return sorted((r for r in records if names.A_TASK_ID in r.values), key=lambda r: r.task_id, reverse=True)

    def active_tasks(self, series_id: str, *, stale_too: bool = True) -> list[TaskRecord]:
        """Its tasks that are queued or running (without ``stale_too``: not those that show no
        sign of life, which must not hold the series up for ever)."""
        lease = self.machine.lease_seconds
        return [
            r for r in self.tasks(series_id)
            if r.state == TaskState.QUEUED or (r.state == TaskState.RUNNING and (stale_too or not r.is_stale(lease)))
        ]

    # --- changing ----------------------------------------------------------------------------
    def _change(self, head_collection: str, expect: Mapping[str, str], values: Mapping[str, object | None]) -> bool:
        """Compare and swap the head's series values behind the head's claim (lifecycle/claims.py):
        if the attributes in ``expect`` hold what it says ("" for none), replace what ``values``'
        attributes hold; False when they hold something else (another writer was first). Of two
        writers racing for the same turn, exactly one changes it, also on a real server."""

        def decide(record: TaskRecord) -> Decision[bool]:
            if any(record.get(attribute) != value for attribute, value in expect.items()):
                log.info("series %s changed meanwhile; leaving it", record.task_id)
                return None
            current = [AVU(k, v) for k in values for v in record.all_values(k)]
            new = [AVU(k, as_text(v)) for k, v in values.items() if v is not None]
            operations = [MetadataOperation("remove", EntityType.COLLECTION, head_collection, a) for a in current if a not in new]
            operations += [MetadataOperation("add", EntityType.COLLECTION, head_collection, a) for a in new if a not in current]
            return operations, True

        return bool(self.machine.writer.write(head_collection, decide))

    def claim(self, head_collection: str, current: str, next_run: str, checked: str) -> bool:
        """This step's turn: ``c2d::series_next_run`` from ``current`` to ``next_run``."""
        return self._change(
            head_collection,
            {names.A_SERIES_STATE: SeriesState.ACTIVE.value, names.A_SERIES_NEXT_RUN: current},
            {names.A_SERIES_NEXT_RUN: next_run, names.A_SERIES_CHECKED: checked},
        )

    def record_next_run(self, head_collection: str, next_run: str) -> bool:
        """The first step is queued: the head says when."""
        return self._change(
            head_collection,
            {names.A_SERIES_STATE: SeriesState.ACTIVE.value, names.A_SERIES_NEXT_RUN: ""},
            {names.A_SERIES_NEXT_RUN: next_run},
        )

    def stop(self, head_collection: str, to: SeriesState, reason: str) -> SeriesInfo:
        """active -> cancelled | ended, with the reason; no further step will run a task."""
        for _ in range(3):
            info = self.read(head_collection)
            if not info.is_active:
                raise TaskStateError(
                    f"series {info.series_id} is {info.state_text} already"
                    + (f" ({info.reason})" if info.reason else "") + "; nothing to stop"
                )
            if self._change(
                head_collection,
                {names.A_SERIES_STATE: SeriesState.ACTIVE.value},
                {names.A_SERIES_STATE: to.value, names.A_SERIES_NEXT_RUN: None,
                 names.A_SERIES_REASON: reason[:MAX_REASON] or to.value},
            ):
                log.info("series %s %s: %s", info.series_id, to.value, reason)
                return self.read(head_collection)
        raise TaskStateError(f"series {posixpath.basename(head_collection)} kept changing while it was being stopped; try again")

    def cancel(self, head_collection: str, by: str) -> SeriesInfo:
        """``c2d_cancel`` of the head: no further run. The caller then cancels the series' tasks that
        are queued or running (:meth:`active_tasks`), each as ``c2d_cancel`` of that task would."""
        info = self.read(head_collection)
        self.machine.check_may_change(info.head)
        return self.stop(head_collection, SeriesState.CANCELLED, f"cancelled by {by} at {names.iso_utc()}")


def next_due(due: str, every_seconds: int, now: datetime) -> str:
    """The step after the one due at ``due``: on the series' own cadence (``due`` + n × every),
    the first such time after ``now`` (a delay server that was down does not replay the runs it
    missed, one after the other)."""
    start = names.parse_iso_utc(due) or now
    steps = max(1, math.floor((now - start).total_seconds() / every_seconds) + 1)
    return names.iso_utc(start + timedelta(seconds=steps * every_seconds))




