"""Chained tasks: a task config's ``after`` names the task (or the series) it runs after.

The observatory's pipeline is a detector over every frame, then a classifier over the frames the
detector found an animal in: the classifier's config says ``after: <detector task id>`` and
selects with ``inputs.where`` what the detector tagged. A task runs only once the one it names
has *succeeded* (for a series: no run of it is in progress and its latest succeeded), because its inputs are chosen from
what that task wrote; before that, it is refused as having nothing to do yet
(:class:`NoEligibleInputsError`), which a series takes as "not this turn" and ``c2d run`` shows
as one line. The link is recorded on the task collection (``c2d::after``) so that ``c2d
status`` and the report browser show the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    ConfigError,
    NoEligibleInputsError,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.series import is_head
from compute_to_data.lifecycle.store import TaskStateStore


@dataclass(frozen=True)
class Predecessor:
    """What ``after`` names: the task itself, or a series and the run that decides (one queued
    or running, else its latest; None: no run yet)."""

    named: str
    record: TaskRecord | None
    series: bool = False

    @property
    def state(self) -> TaskState | None:
        return self.record.state if self.record is not None else None

    def describe(self) -> str:
        """``task 2026...-ab12 (succeeded)`` or ``series 2026...-ab12, latest run 2026...-cd34 (running, 3/10)``."""
        if self.record is None:
            return f"series {self.named} (no run yet)"
        progress = self.record.get(names.A_PROGRESS)
        state = (self.state.value if self.state is not None else "unknown") + (f", {progress}" if progress else "")
        if self.series:
            return f"series {self.named}, latest run {self.record.task_id} ({state})"
        return f"task {self.named} ({state})"


def find_predecessor(grid: Grid, after: str) -> Predecessor:
    """The task ``after`` names, as the caller sees it now; ConfigError when it sees none."""
    store = TaskStateStore(grid)
    try:
        record = store.find(after)
    except ComputeToDataError as exc:
        raise ConfigError(f"$.after: {exc}") from None
    if not is_head(record):
        return Predecessor(after, record)
    runs = [TaskRecord.from_collection_avus(c) for c in grid.find_collections_with_avu(names.A_SERIES, after)]
    runs = sorted((r for r in runs if names.A_TASK_ID in r.values and not r.is_shard), key=lambda r: r.task_id)
    # a run in progress decides (ids made in one second do not sort by time), else the latest
    active = [r for r in runs if r.state in (TaskState.QUEUED, TaskState.RUNNING)]
    return Predecessor(after, (active or runs)[-1] if runs else None, series=True)


def check_after(grid: Grid, after: str | None) -> Predecessor | None:
    """Refuse (nothing to do yet) a new task whose predecessor has not succeeded."""
    if after is None:
        return None
    predecessor = find_predecessor(grid, after)
    if predecessor.state == TaskState.SUCCEEDED:
        return predecessor
    if predecessor.state in (TaskState.FAILED, TaskState.CANCELLED):
        then = f"resume it (c2d resume {predecessor.record.task_id})" if predecessor.record is not None else "resume it"
        raise NoEligibleInputsError(
            f"nothing to do yet: this task runs after {predecessor.describe()}; {then}, and run this task once it "
            "has succeeded"
        )
    raise NoEligibleInputsError(
        f"nothing to do yet: this task runs after {predecessor.describe()}; run it once that has succeeded"
    )


def chain_of(grid: Grid, record: TaskRecord) -> str:
    """What ``c2d status`` and the browser show for a chained task ("" for one that is not)."""
    after = record.get(names.A_AFTER)
    if not after:
        return ""
    try:
        return find_predecessor(grid, after).describe()
    except ComputeToDataError:
        return f"task {after} (not visible)"


def followers_of(grid: Grid, record: TaskRecord) -> list[TaskRecord]:
    """Tasks that run after this one (or after its series), oldest first: the rest of the chain."""
    named = {record.task_id} | ({record.get(names.A_SERIES)} if record.get(names.A_SERIES) else set())
    found = {c.path: c for name in sorted(named) for c in grid.find_collections_with_avu(names.A_AFTER, name)}
    records = (TaskRecord.from_collection_avus(c) for c in found.values())
    return sorted((r for r in records if names.A_TASK_ID in r.values and not r.is_shard), key=lambda r: r.task_id)


def chain_rows(grid: Grid, record: TaskRecord) -> list[tuple[str, str]]:
    """``after`` and ``followed by`` rows (what ``c2d status`` and the browser's task page show)."""
    rows = []
    before = chain_of(grid, record)
    if before:
        rows.append(("after", before))
    try:
        followers = followers_of(grid, record)
    except ComputeToDataError:
        followers = []
    if followers:
        shown = ", ".join(f"{r.task_id} ({r.state.value if r.state else 'unknown'})" for r in followers[-5:])
        more = f" and {len(followers) - 5} earlier" if len(followers) > 5 else ""
        rows.append(("followed by", shown + more))
    return rows
