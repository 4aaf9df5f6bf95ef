"""Following tasks through the grid port: the logic behind ``c2d submit/status/list/wait/...``.

Everything here reads the ``c2d::`` AVUs of task collections (``tasks.state``) through the
:class:`~compute_to_data.grid.base.Grid` port, so it works the same against a zone
(IrodsClientGrid) and against a LocalGrid. Submitting, cancelling and resuming differ, and go
through a :class:`~compute_to_data.client.submitters.Submitter`.

A running task whose heartbeat is older than the lease is shown ``stale``. On a LocalGrid this
host is the compute host, so reading a task first reaps a dead run (the lifecycle records it
``failed``); on a zone ``wait`` asks the server (``c2d_status``) to check it on its host.
"""

from __future__ import annotations

import builtins
import json
import logging
import posixpath
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compute_to_data.client.submitters import Submitter
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel, PredictionQuery
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    ConfigError,
    GridError,
    ObjectNotFoundError,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig, parse_duration, parse_json
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle import chain
from compute_to_data.lifecycle import series as schedule
from compute_to_data.lifecycle.shard_records import shard_records
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.tasks import TaskService

log = logging.getLogger(__name__)

#: where uploaded configs go, under the caller's home collection.
SUBMISSIONS = ".c2d/submissions"
#: names the rulebase's optional upload trigger submits by itself (rules.UPLOAD_SUFFIX).
UPLOAD_TRIGGER_SUFFIX = ".c2d.json"
#: reports may embed many images; read at most this much.
MAX_REPORT_BYTES = 512 * 1024 * 1024

#: ``c2d wait`` exit codes: only ``succeeded`` is 0.
EXIT_CODES = {TaskState.SUCCEEDED: 0, TaskState.FAILED: 1, TaskState.CANCELLED: 2}
EXIT_TIMEOUT = 3
#: still no sign of life a lease after its compute host was asked to check it
EXIT_STALE = 4


@dataclass(frozen=True)
class Submission:
    task_id: str
    config_path: str
    record: TaskRecord | None = None


@dataclass(frozen=True)
class WaitResult:
    record: TaskRecord
    timed_out: bool = False
    stale: bool = False

    @property
    def exit_code(self) -> int:
        if self.timed_out:
            return EXIT_TIMEOUT
        if self.stale:
            return EXIT_STALE
        state = self.record.state
        return EXIT_CODES.get(state, 1) if state is not None else 1


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date/time (``2026-11-22``, ``2026-11-22T10:00Z``) or an age
    (``30m``, ``2h``, ``3d``, ``1w``), in UTC."""
    now = now or datetime.now(UTC)
    text = text.strip()
    age = parse_duration(text)
    if age is not None:
        try:
            return now - age
        except (OverflowError, ValueError):  # older than the calendar: every task is newer
            return datetime.min.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a date/time (2026-11-22, 2026-11-22T10:00Z) nor an age (30m, 2h, 3d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


parse_time = names.parse_iso_utc


class TaskClient:
    """The task operations of one user against one grid.

    ``lifecycle`` is given where this host is the tasks' compute host (a LocalGrid): reading a
    task then reaps a dead run first. ``lease_seconds`` is when a silent running task is shown
    ``stale`` (the settings' heartbeat lease; 60 s by default).
    """

    def __init__(self, grid: Grid, submitter: Submitter | None = None, *, service: TaskService | None = None,
                 lease_seconds: float | None = None) -> None:
        self.grid = grid
        self.submitter = submitter
        self.store = TaskStateStore(grid)
        self.service = service
        if lease_seconds is None:
            lease_seconds = service.lease_seconds if service is not None else Settings().heartbeat_lease_seconds
        self.lease_seconds = lease_seconds

    def display_state(self, record: TaskRecord) -> str:
        return record.display_state(self.lease_seconds)

    def _checked(self, record: TaskRecord) -> TaskRecord:
        """On the compute host, a dead run is recorded as what it is before anyone is told (for
        a sharded task: its silent shards, and its summary)."""
        if self.service is None:
            return record
        if record.is_sharded and record.state == TaskState.RUNNING:
            return self.service.status(record.collection).record
        if record.is_stale(self.lease_seconds):
            return self.service.reaper.reap(record)
        return record

    def shards(self, record: TaskRecord) -> list[TaskRecord]:
        """A sharded task's shards, by number ([] for a task that runs as one)."""
        return shard_records(self.grid, record.collection) if record.is_sharded else []

    # --- reading ----------------------------------------------------------------------------------
    def find(self, task: str) -> TaskRecord:
        """A task by id or collection path, if the caller may read its collection."""
        record = self.store.find(task)
        if self.grid.paths_lacking_access([record.collection], AccessLevel.READ):
            raise ObjectNotFoundError(f"task {task} does not exist or {self.grid.user} cannot read it")
        return self._checked(record)

    def list(
        self,
        state: TaskState | None = None,
        since: datetime | None = None,
        mine_only: bool = False,
        under: str | None = None,
        series: str | None = None,
    ) -> list[TaskRecord]:
        """Tasks the caller can read, newest first (``series``: only the tasks of that series)."""
        records = self.store.list(under) if series is None else self._series().tasks(series)
        if records:
            hidden = set(self.grid.paths_lacking_access([r.collection for r in records], AccessLevel.READ))
            records = [r for r in records if r.collection not in hidden]
        records = [self._checked(r) for r in records]
        if state is not None:
            records = [r for r in records if r.state == state]
        if since is not None:
            records = [r for r in records if (parse_time(r.get(names.A_CREATED)) or since) >= since]
        if mine_only:
            records = [r for r in records if r.get(names.A_SUBMITTED_BY) == self.grid.user]
        return records

    def _series(self) -> schedule.Series:
        return schedule.Series(self.grid, self.service.settings if self.service is not None else Settings())

    def chain(self, record: TaskRecord) -> Sequence[tuple[str, str]]:
        """The task it runs after (``after`` in its config) and those that run after it."""
        return chain.chain_rows(self.grid, record)

    def series_info(self, record: TaskRecord) -> schedule.SeriesInfo | None:
        """The series a task belongs to (read on its first task); None for a task of no series."""
        return self._series().info(record)

    def series(self, series_id: str) -> tuple[schedule.SeriesInfo, builtins.list[TaskRecord]]:
        """A series (by its id, the id of its first task) and its tasks the caller can read, newest first."""
        info = self._series().find(series_id)
        if self.grid.paths_lacking_access([info.head.collection], AccessLevel.READ):
            raise ObjectNotFoundError(f"series {series_id} does not exist or {self.grid.user} cannot read it")
        return info, self.list(series=info.series_id)

    def status(self, task: str | None = None) -> TaskRecord:
        """One task; without ``task``, the newest task the caller submitted."""
        if task:
            return self.find(task)
        mine = self.list(mine_only=True)
        if not mine:
            raise TaskStateError(f"{self.grid.user} has no tasks yet; submit one with: c2d submit CONFIG")
        return mine[0]

    def wait(
        self,
        task: str,
        *,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
        on_update: Callable[[TaskRecord], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> WaitResult:
        """Poll the task's state AVUs until a final state (or ``timeout`` seconds).

        A task that shows no sign of life is checked on its compute host (the lifecycle here, or
        the ``c2d_status`` rule on a zone); if it is still silent a lease after that check, the
        wait ends with ``stale`` rather than waiting for ever on a run that is gone.
        """
        record = self.find(task)
        collection = record.collection
        started = clock()
        checked_at: float | None = None
        while True:
            if on_update is not None:
                on_update(record)
            if record.state is not None and record.state.is_final:
                return WaitResult(record)
            if record.is_stale(self.lease_seconds):
                if checked_at is None:
                    checked_at = clock()
                    self._refresh(record)
                    record = self._checked(self.store.read(collection))
                    continue
                if clock() - checked_at >= self.lease_seconds:
                    return WaitResult(record, stale=True)
            else:
                checked_at = None
            if timeout is not None and clock() - started >= timeout:
                return WaitResult(record, timed_out=True)
            sleep(poll_seconds)
            record = self._checked(self.store.read(collection))

    def _refresh(self, record: TaskRecord) -> None:
        if self.submitter is None:
            return
        try:
            self.submitter.refresh(record)
        except ComputeToDataError as exc:  # the check is a courtesy; waiting goes on
            log.warning("could not have task %s checked: %s", record.task_id, exc)

    def report_path(self, record: TaskRecord) -> str:
        return record.get(names.A_REPORT) or posixpath.join(record.collection, names.REPORT_FILE)

    def download_report(self, task: str, destination: Path | None = None) -> Path:
        record = self.find(task)
        logical = self.report_path(record)
        if not self.grid.data_object_exists(logical):
            state = record.state.value if record.state else "unknown"
            raise ObjectNotFoundError(
                f"task {record.task_id} has no report yet ({logical} does not exist; the task is {state})"
            )
        data = self.grid.read_data_object(logical, max_bytes=MAX_REPORT_BYTES)
        target = destination or Path(f"{record.task_id}-report.html")
        if target.is_dir():
            target = target / f"{record.task_id}-report.html"
        target.write_bytes(data)
        return target

    def class_attribute_names(self, record: TaskRecord) -> tuple[str, str]:
        """(class attribute, score attribute) the task tagged with, from its recorded config."""
        path = posixpath.join(record.collection, names.TASK_CONFIG_FILE)
        try:
            doc = json.loads(self.grid.read_data_object(path, max_bytes=1024 * 1024))
            tagging = doc.get("tagging", {}) if isinstance(doc, dict) else {}
        except (ComputeToDataError, ValueError):
            tagging = {}
        return (
            tagging.get("class_attribute", names.DEFAULT_CLASS_ATTRIBUTE),
            tagging.get("score_attribute", names.DEFAULT_SCORE_ATTRIBUTE),
        )

    def prediction_query(self, record: TaskRecord, **filters: object) -> PredictionQuery:
        class_attribute, score_attribute = self.class_attribute_names(record)
        return PredictionQuery(
            task_id=record.task_id,
            input_collection=record.get(names.A_INPUT_COLLECTION),
            class_attribute=class_attribute,
            score_attribute=score_attribute,
            **filters,  # type: ignore[arg-type]
        )

    # --- changing ---------------------------------------------------------------------------------
    def _require_submitter(self) -> Submitter:
        if self.submitter is None:
            raise GridError("this connection cannot submit or cancel tasks")
        return self.submitter

    @staticmethod
    def read_config(local_file: Path) -> TaskConfig:
        """A local config, validated (all problems at once)."""
        try:
            text = local_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {local_file}: {exc.strerror}") from None
        return TaskConfig.from_document(parse_json(text, source=str(local_file)), source=str(local_file))

    def upload_config(self, local_file: Path) -> str:
        """Validate a local config (all problems at once) and store it in the caller's home."""
        self.read_config(local_file)
        folder = posixpath.join(self.grid.home(), SUBMISSIONS)
        self.grid.create_collection(folder)
        stamp = names.new_task_id().split("-")[0] + "-" + secrets.token_hex(2)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", local_file.name) or "task_config.json"
        if safe.endswith(UPLOAD_TRIGGER_SUFFIX):  # the upload trigger would submit it a second time
            safe = safe[: -len(UPLOAD_TRIGGER_SUFFIX)] + ".json"
        logical = posixpath.join(folder, f"{stamp}-{safe}")
        self.grid.put_file(local_file, logical, self._upload_resource())
        return logical

    def _upload_resource(self) -> str:
        """Where an uploaded config goes: the zone's default on iRODS ("" lets the server
        decide); on a LocalGrid, long-term storage if tagged, else any resource."""
        if self.grid.kind == "irods":
            return ""
        for role in (names.ROLE_LONG_TERM_STORAGE, names.ROLE_CPU_COMPUTE, names.ROLE_GPU_COMPUTE):
            found = self.grid.find_resources(names.ROLE_ATTRIBUTE, role)
            if found:
                return found[0].name
        listing = getattr(self.grid, "list_resources", None)
        if listing is not None and listing():
            return listing()[0].name
        raise GridError("this grid has no resource to store the task config on")

    def submit(self, config: str, *, logical: bool | None = None) -> Submission:
        """Submit a local config file (uploaded first) or a config already in the grid.

        ``logical`` None: a path naming an existing local file is local, otherwise logical.
        """
        is_local = Path(config).is_file() if logical is None else not logical
        submitter = self._require_submitter()
        if is_local and hasattr(submitter, "submit_config"):
            # Submitted first, uploaded (for the record) only once accepted: a refusal leaves nothing.
            task_id = submitter.submit_config(self.read_config(Path(config)))
            config_path = self.upload_config(Path(config))
            return Submission(task_id, config_path, self._record_or_none(task_id))
        if is_local:
            config_path = self.upload_config(Path(config))
        else:
            if not config.startswith("/"):
                raise ConfigError(f"{config} is neither a local file nor an absolute logical path")
            if not self.grid.data_object_exists(config):
                raise ObjectNotFoundError(f"task config {config} does not exist in the grid (or you cannot read it)")
            config_path = config
        task_id = submitter.submit(config_path)
        return Submission(task_id, config_path, self._record_or_none(task_id))

    def _record_or_none(self, task_id: str) -> TaskRecord | None:
        try:
            return self.store.find(task_id)
        except ComputeToDataError:
            return None

    def cancel(self, task: str) -> TaskRecord:
        """A queued or running task; the first task of an active series stops the series (and
        its run queued or running now), whatever the state of that first task."""
        record = self.find(task)
        series_goes_on = schedule.is_head(record) and schedule.SeriesInfo(record).is_active
        if record.state is not None and record.state.is_final and not series_goes_on:
            raise TaskStateError(f"task {record.task_id} is already {record.state.value}; nothing to cancel")
        self._require_submitter().cancel(record)
        return self.store.read(record.collection)

    def resume(self, task: str) -> TaskRecord:
        """Run a failed or cancelled task again in its collection (only what is not done yet)."""
        record = self.find(task)
        if record.state not in (TaskState.FAILED, TaskState.CANCELLED):
            state = self.display_state(record)
            raise TaskStateError(f"task {record.task_id} is {state}; only a failed or cancelled task can be resumed")
        return self._require_submitter().resume(record)


def elapsed(record: TaskRecord, now: datetime | None = None) -> timedelta | None:
    """How long the task has been running (or ran): started -> finished (or now)."""
    start = parse_time(record.get(names.A_STARTED)) or parse_time(record.get(names.A_CREATED))
    if start is None:
        return None
    end = parse_time(record.get(names.A_FINISHED)) or now or datetime.now(UTC)
    return max(end - start, timedelta(0))


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
