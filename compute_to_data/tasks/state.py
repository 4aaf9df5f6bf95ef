"""Task bookkeeping as ``c2d::`` AVUs on the task collection, readable with ``imeta ls -C``.

Every write replaces the previous values of the attributes it names in one atomic batch, so a
reader never sees two states at once. ``c2d::state`` itself is written by the lifecycle
(``tasks/lifecycle.py``) alone, along its table of allowed transitions; this store writes the
other bookkeeping values and refuses a state.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .. import conventions as names
from ..conventions import TaskState
from ..errors import ObjectNotFoundError, TaskStateError
from ..grid.base import AVU, CollectionAVUs, EntityType, Grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskRecord:
    """What the catalog says about one task (all values as strings, as iRODS stores them)."""

    collection: str
    values: Mapping[str, str] = field(default_factory=dict)

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
        values = {a.attribute: a.value for a in item.avus if a.attribute.startswith(names.PREFIX)}
        return cls(item.path, values)


class TaskStateStore:
    """Reads and writes the bookkeeping AVUs of task collections through the grid port."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def write(self, collection: str, values: Mapping[str, object]) -> None:
        """Replace the given ``c2d::`` attributes; ``None`` values remove the attribute.

        ``c2d::state`` is refused: only the lifecycle changes a state (its transitions check
        that the change is allowed and that nobody else changed the task meanwhile).
        """
        if names.A_STATE in values:
            raise TaskStateError(f"{names.A_STATE} is written by the task lifecycle only (tasks/lifecycle.py)")
        to_set = [AVU(k, as_text(v)) for k, v in values.items() if v is not None]
        to_clear = [k for k, v in values.items() if v is None]
        self.grid.set_avus(EntityType.COLLECTION, collection, to_set, clear=to_clear)

    def read(self, collection: str) -> TaskRecord:
        if not self.grid.collection_exists(collection):
            raise ObjectNotFoundError(f"task collection {collection} does not exist (or you cannot see it)")
        avus = self.grid.get_avus(EntityType.COLLECTION, collection)
        values = {a.attribute: a.value for a in avus if a.attribute.startswith(names.PREFIX)}
        if names.A_TASK_ID not in values:
            raise TaskStateError(f"{collection} is not a compute_to_data task collection (no {names.A_TASK_ID} AVU)")
        return TaskRecord(collection, values)

    def find(self, task: str) -> TaskRecord:
        """A task by collection path or by task id (searched under the caller's whole zone)."""
        if task.startswith("/"):
            return self.read(task.rstrip("/"))
        found = [c for c in self.grid.find_collections_with_avu(names.A_TASK_ID, task)
                 if not TaskRecord.from_collection_avus(c).is_shard]
        if not found:
            raise TaskStateError(
                f"no task with id {task!r} is visible to {self.grid.user}; "
                "give the task collection path instead, or check the id"
            )
        if len(found) > 1:
            paths = ", ".join(c.path for c in found)
            raise TaskStateError(f"task id {task!r} is ambiguous: {paths}")
        return TaskRecord.from_collection_avus(found[0])

    def list(self, under: str | None = None) -> list[TaskRecord]:
        found = self.grid.find_collections_with_avu(names.A_TASK_ID, None, under)
        records = [r for r in (TaskRecord.from_collection_avus(c) for c in found) if not r.is_shard]
        return sorted(records, key=lambda r: r.task_id, reverse=True)


class Heartbeat:
    """Signs of life of a running task: ``c2d::heartbeat`` and ``c2d::progress`` in one write.

    The engine calls :meth:`beat` from its main thread at safe points (the runner's poll loop,
    between replications, staging links and tagging batches; never from a second thread: the
    rule engine's callback is not thread-safe). A changed progress is written at most every
    ``progress_interval`` seconds, and a heartbeat at least every ``interval`` seconds while
    beats come in; the catalog sees one write per interval, not one per batch.

    Before each write ``check`` runs (the lifecycle's "is this task still ours?"): a run that
    was cancelled, or declared dead by a reaper, learns it here and stops.
    """

    def __init__(
        self,
        store: TaskStateStore,
        collection: str,
        *,
        interval: float = 10.0,
        progress_interval: float = 3.0,
        check: Callable[[], None] | None = None,
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.collection = collection
        self.interval = interval
        self.progress_interval = min(progress_interval, interval)
        self.check = check
        self.enabled = enabled
        self.listeners: list[Callable[[int, int], None]] = []
        #: images done in earlier runs of the task (a resumed run counts on from there)
        self.offset = 0
        self.total: int | None = None
        self._last_write = time.monotonic()
        self._written: tuple[int, int] | None = None
        self._current: tuple[int, int] | None = None
        self.writes = 0

    def progress(self, done: int, total: int) -> None:
        """The runner's progress callback (images of this run): recorded with the next beat."""
        shown = (self.offset + done, self.total if self.total is not None else self.offset + total)
        for listener in self.listeners:
            listener(*shown)
        self._current = shown
        self.beat(final=done >= total)

    def beat(self, *, final: bool = False) -> None:
        """Write a sign of life if one is due; raises (from ``check``) if the task is not ours."""
        now = time.monotonic()
        changed = self._current is not None and self._current != self._written
        due = (self.enabled and now - self._last_write >= self.interval) or (
            changed and (final or now - self._last_write >= self.progress_interval)
        )
        if not due:
            return
        if self.enabled and self.check is not None:
            self.check()
        values: dict[str, object] = {}
        if self.enabled:
            values[names.A_HEARTBEAT] = names.iso_utc()
        if changed and self._current is not None:
            values[names.A_PROGRESS] = f"{self._current[0]}/{self._current[1]}"
        try:
            self.store.write(self.collection, values)
        except Exception as exc:  # a sign of life is advisory: never fail a task for it
            log.warning("could not record the heartbeat of %s: %s", self.collection, exc)
            return
        self.writes += 1
        self._last_write = now
        self._written = self._current


# --- step timings (c2d::timings) -----------------------------------------------------------------
#: sub-timings ``<prefix>.<name>`` are shown under the step they belong to.
SUB_TIMING_PARENTS = {"run": "execute", "stage": "stage_inputs"}


def run_timing_name(key: str) -> str:
    """A runner's sub-timing (``kernel_start_seconds`` in ``result.json``) as ``c2d::timings`` names it:
    ``run.kernel_start``, shown under the ``execute`` step."""
    return "run." + key.removesuffix("_seconds")


def timings_text(timings: Mapping[str, float]) -> str:
    """The ``c2d::timings`` value: a JSON object in the order the steps ran, milliseconds kept."""
    return json.dumps({k: round(float(v), 3) for k, v in timings.items()}, separators=(",", ":"))


def parse_timings(text: str) -> dict[str, float]:
    """Read a ``c2d::timings`` value, keeping only numeric entries (it may have been edited by hand)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class TimingRow:
    name: str
    seconds: float
    #: 0 for a step, 1 for a sub-timing of the step above it (``run.kernel_start`` under ``execute``).
    depth: int = 0


def timing_rows(timings: Mapping[str, float]) -> list[TimingRow]:
    """Steps in the order they ran, each followed by its sub-timings (``run.*`` after ``execute``)."""
    children: dict[str, list[TimingRow]] = {}
    top: list[TimingRow] = []
    for name, seconds in timings.items():
        prefix = name.partition(".")[0] if "." in name else ""
        parent = SUB_TIMING_PARENTS.get(prefix)
        if parent is not None and parent in timings:
            children.setdefault(parent, []).append(TimingRow(name, seconds, 1))
        else:
            top.append(TimingRow(name, seconds))
    rows: list[TimingRow] = []
    for row in top:
        rows.append(row)
        rows.extend(children.get(row.name, []))
    return rows


def format_seconds(seconds: float) -> str:
    """``0.012 s``, ``3.40 s``, ``156.2 s``, ``2:36:05 (9365 s)``: precise where it is short."""
    if seconds < 1:
        return f"{seconds:.3f} s"
    if seconds < 100:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d} ({whole} s)"


def timings_summary(timings: Mapping[str, float]) -> str:
    """One line for ``c2d_status``: ``stage_inputs 156.2 s, execute 12.30 s (run.papermill ...)``."""
    groups: list[tuple[str, list[str]]] = []
    for row in timing_rows(timings):
        text = f"{row.name} {format_seconds(row.seconds)}"
        if row.depth and groups:
            groups[-1][1].append(text)
        else:
            groups.append((text, []))
    return ", ".join(f"{step} ({'; '.join(subs)})" if subs else step for step, subs in groups)


def as_text(value: object) -> str:
    """An AVU value: states by name, JSON for dicts and lists (never NaN: iRODS keeps JSON)."""
    if isinstance(value, TaskState):
        return value.value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return str(value)
