"""The read model of a task: what the catalog says about it, built from its ``c2d::`` AVUs.

Pure: no catalog access here (the state store in ``lifecycle/store.py`` reads the AVUs).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, CollectionAVUs
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.timings import parse_timings


@dataclass(frozen=True)
class TaskRecord:
    """What the catalog says about one task (all values as strings, as iRODS stores them)."""

    collection: str
    values: Mapping[str, str] = field(default_factory=dict)
    #: every value of each attribute (an attribute may carry several: claim announcements; or,
    #: where something went wrong, two states, which a transition then replaces together)
    all_avus: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_avus(cls, collection: str, avus: "Iterable[AVU]") -> "TaskRecord":
        values: dict[str, str] = {}
        every: dict[str, tuple[str, ...]] = {}
        for avu in avus:
            if avu.attribute.startswith(names.PREFIX):
                values[avu.attribute] = avu.value  # the newest, as before
                every[avu.attribute] = every.get(avu.attribute, ()) + (avu.value,)
        return cls(collection, values, every)

    def all_values(self, attribute: str) -> tuple[str, ...]:
        """Every value the attribute carries (``values`` holds the first)."""
        if attribute in self.all_avus:
            return self.all_avus[attribute]
        return (self.values[attribute],) if attribute in self.values else ()

    @property
    def task_id(self) -> str:
        return self.values.get(names.A_TASK_ID, posixpath.basename(self.collection))

    @property
    def state(self) -> TaskState | None:
        raw = self.values.get(names.A_STATE)
        try:
            return TaskState(raw) if raw else None
        except ValueError:
            return None

    @property
    def is_shard(self) -> bool:
        """One shard of a larger task (``<task>/shards/NNNN``): not a task of its own for readers."""
        return names.A_SHARD in self.values

    @property
    def is_sharded(self) -> bool:
        """A task that runs as shards: its state and progress aggregate theirs."""
        return names.A_SHARDS in self.values

    @property
    def run_key(self) -> str:
        """What names this record's run on its host (lock file, staging directory, the
        ``C2D_TASK_ID`` marker of its processes): the task id, plus ``-NNNN`` for a shard (the
        shards of one task may run on one host at once), ``-summary`` for a sharded task."""
        if self.is_shard:
            return f"{self.task_id}-{self.get(names.A_SHARD).partition('/')[0]}"
        if self.is_sharded:  # its one run of its own: the summary report
            return f"{self.task_id}-summary"
        return self.task_id

    def get(self, attribute: str, default: str = "") -> str:
        return self.values.get(attribute, default)

    @property
    def progress(self) -> tuple[int, int] | None:
        raw = self.values.get(names.A_PROGRESS, "")
        done, _, total = raw.partition("/")
        if done.isdigit() and total.isdigit():
            return int(done), int(total)
        return None

    def int_value(self, attribute: str, default: int = 0) -> int:
        raw = self.values.get(attribute, "")
        return int(raw) if raw.isdigit() else default

    @property
    def heartbeat(self) -> datetime | None:
        """The last sign of life of a running task (its start, for tasks that never beat)."""
        return names.parse_iso_utc(self.get(names.A_HEARTBEAT)) or names.parse_iso_utc(self.get(names.A_STARTED))

    def heartbeat_age(self, now: datetime | None = None) -> float | None:
        beat = self.heartbeat
        if beat is None:
            return None
        return ((now or names.utc_now()) - beat).total_seconds()

    def is_stale(self, lease_seconds: float, now: datetime | None = None) -> bool:
        """Running, but no sign of life for longer than the lease: probably dead."""
        if self.state != TaskState.RUNNING:
            return False
        if self.is_sharded and not self.get(names.A_HEARTBEAT):
            return False  # its shards show their own signs of life; only its summary run beats here
        age = self.heartbeat_age(now)
        return age is not None and age > lease_seconds

    @property
    def queue_reason(self) -> str:
        """Why a started run still waits (e.g. for a GPU in a batch scheduler's queue), or ''."""
        return self.get(names.A_QUEUE_REASON) if self.state == TaskState.RUNNING else ""

    def display_state(self, lease_seconds: float, now: datetime | None = None) -> str:
        """What readers show: the state, ``stale`` (never written) for a silent running task, or
        ``queued`` for a run a batch scheduler still holds back (its reason in ``queue_reason``)."""
        if self.is_stale(lease_seconds, now):
            return names.STALE
        if self.queue_reason:
            return TaskState.QUEUED.value
        return self.state.value if self.state else (self.get(names.A_STATE) or "unknown")

    def progress_text(self) -> str:
        """``done/total``, and how many inputs could not be read, e.g. ``25/25 (4 unreadable)``."""
        progress = self.progress
        if progress is not None:
            text = f"{progress[0]}/{progress[1]}"
        elif self.get(names.A_INPUTS):
            text = f"0/{self.get(names.A_INPUTS)}"
        else:
            return "-"
        failed = self.int_value(names.A_IMAGES_FAILED)
        return text + (f" ({failed} unreadable)" if failed else "")
    @property
    def timings(self) -> dict[str, float]:
        """``c2d::timings`` in the order the steps ran; {} when absent or unreadable."""
        return parse_timings(self.values.get(names.A_TIMINGS, ""))

    @classmethod
    def from_collection_avus(cls, item: CollectionAVUs) -> "TaskRecord":
        return cls.from_avus(item.path, item.avus)


def as_text(value: object) -> str:
    """An AVU value: states by name, JSON for dicts and lists (never NaN: iRODS keeps JSON)."""
    if isinstance(value, TaskState):
        return value.value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return str(value)
