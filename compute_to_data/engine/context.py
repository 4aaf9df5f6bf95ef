"""What a task run needs from its surroundings (injected) and what it tells them (its outcome)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compute_to_data.domain.catalog import LISTING_PAGE_SIZE, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.settings import Settings
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle import series as schedule
from compute_to_data.runners.base import ProgressCallback, Runner, RunResult

StepListener = Callable[[str, str, float], None]


PartListener = Callable[[int, int], None]


#: Given the runner and the compute resource a run chose, run it on that resource's host if this
#: is not it; True when the run was handed over (this process then stops after the read-only steps).
Dispatcher = Callable[[Runner, Resource], bool]


@dataclass
class TaskContext:
    """Everything a task needs from its surroundings, injected (ports and adapters)."""

    grid: Grid
    settings: Settings
    #: a runner instance, or None to choose one from the config and settings (runners.choose_runner).
    runner: Runner | None = None
    dispatch: Dispatcher | None = None
    progress_listeners: list[ProgressCallback] = field(default_factory=list)
    step_listeners: list[StepListener] = field(default_factory=list)
    part_listeners: list[PartListener] = field(default_factory=list)
    keep_workdir: bool = False
    progress_interval: float = 3.0
    tag_batch_size: int = 256
    #: images tagged by this many taggers at once where the grid may be called from several
    #: threads (LocalGrid); inside the iRODS server the run tags alone
    taggers: int = 4
    #: signs of life and tagging in parts; off only to measure what they cost (benchmarks)
    heartbeat: bool = True
    parts: bool = True
    #: objects per page when a task's inputs are listed (planning a large task streams them)
    listing_page_size: int = LISTING_PAGE_SIZE
    #: starts one replication agent of its own (inside iRODS: a rule queued with the delay
    #: server) on a manifest data object; None: threads where the grid allows, else the run alone
    start_replication_agent: Callable[[str], None] | None = None
    #: a new task of a scheduled config: the series it starts (SeriesLink()) or continues (tasks/schedule.py)
    series: schedule.SeriesLink | None = None


@dataclass
class TaskOutcome:
    task_id: str
    state: TaskState | None
    collection: str
    report_path: str | None = None
    compute_resource: str | None = None
    inputs: int = 0
    skipped_already_tagged: int = 0
    replicated_bytes: int = 0
    #: how the inputs were staged (``c2d::staging``: in place, replicated, by how many agents)
    staging: dict[str, Any] = field(default_factory=dict)
    tagged: int = 0
    #: inputs of the whole task that could not be read (c2d::images_failed)
    failed_images: int = 0
    #: images a resumed run found done by earlier runs of the task
    done_before: int = 0
    #: images of the whole task with a result (classified or reported unreadable), when known
    images_done: int | None = None
    parts_tagged: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    runner: str | None = None
    run_result: RunResult | None = None
    dispatched: bool = False
    notes: list[str] = field(default_factory=list)
    #: a task larger than one shard: its shards' collections (each queued, then run)
    shard_collections: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.state == TaskState.SUCCEEDED
