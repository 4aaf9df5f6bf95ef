"""Task bookkeeping as ``c2d::`` AVUs on the task collection, readable with ``imeta ls -C``.

Every write replaces the previous values of the attributes it names in one atomic batch, so a
reader never sees two states at once. ``c2d::state`` itself is written by the lifecycle
(``tasks/lifecycle.py``) alone, along its table of allowed transitions; this store writes the
other bookkeeping values and refuses a state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType
from compute_to_data.domain.errors import ObjectNotFoundError, TaskNotFoundError, TaskStateError
from compute_to_data.domain.records import TaskRecord, as_text
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)




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
            raise TaskStateError(f"{names.A_STATE} is written by the task lifecycle only (lifecycle/machine.py)")
        to_set = [AVU(k, as_text(v)) for k, v in values.items() if v is not None]
        to_clear = [k for k, v in values.items() if v is None]
        self.grid.set_avus(EntityType.COLLECTION, collection, to_set, clear=to_clear)

    def read(self, collection: str) -> TaskRecord:
        try:  # one catalog query where the collection carries AVUs (a task's always does)
            avus = self.grid.get_avus(EntityType.COLLECTION, collection)
        except ObjectNotFoundError:
            raise TaskNotFoundError(f"task collection {collection} does not exist (or you cannot see it)") from None
        record = TaskRecord.from_avus(collection, avus)
        if names.A_TASK_ID not in record.values:
            raise TaskNotFoundError(f"{collection} is not a compute_to_data task collection (no {names.A_TASK_ID} AVU)")
        return record

    def find(self, task: str) -> TaskRecord:
        """A task by collection path or by task id (searched under the caller's whole zone)."""
        if task.startswith("/"):
            return self.read(task.rstrip("/"))
        found = [c for c in self.grid.find_collections_with_avu(names.A_TASK_ID, task)
                 if not TaskRecord.from_collection_avus(c).is_shard]
        if not found:
            raise TaskNotFoundError(
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


















