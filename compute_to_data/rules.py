"""The compute_to_data rulebase: Python rules researchers call with ``irule``, as themselves.

An administrator installs the package into the server's Python and adds one line to
``/etc/irods/core.py``::

    from compute_to_data.rules import *

Researchers call the rules by name through the native rule language (``rules/*.r``)::

    irule -r irods_rule_engine_plugin-irods_rule_language-instance -F rules/c2d_submit.r \\
        "*config='/tempZone/home/alice/task_config.json'"

* ``c2d_run(*config)``     run the task now; prints task id, state, task collection, report.
* ``c2d_submit(*config)``  validate now (errors reported at once), record ``queued``, queue the
  run with the delay server, print the task id at once.
* ``c2d_status(*task)``    state, timings, progress, error, report of a task (id or collection);
  a running task that shows no sign of life is checked on its compute host first (and recorded
  ``failed`` there if its run is gone), so the state printed is the truth.
* ``c2d_cancel(*task)``    a queued task never runs; a running one is stopped on its host.
* ``c2d_resume(*task)``    a failed or cancelled task runs again in the same task collection,
  classifying only what is not done yet; queued with the delay server like ``c2d_submit``.

A config with ``schedule: {"every": "1d"}`` submitted with ``c2d_submit`` starts a series
(``service/scheduler.py``): its first task is queued as above, and ``c2d_series_step`` is queued
``every`` later; each step queues the next one, then a new task over the images not classified
yet. ``c2d_cancel`` of the first task stops the series.

A task with more images than one shard (``compute.shard_size``) is planned by ``c2d_submit`` as
shards, each queued as a delayed ``c2d_run_task`` of its own and handed to its resource's host
like a task; the task's state follows its shards' (lifecycle/shard_records.py), and the run that ends the
last shard renders the task's report. ``c2d_status``, ``c2d_cancel`` and ``c2d_resume`` of the
task act on its shards (status lists them, cancel stops them on their hosts, resume queues the
ones that did not succeed).

The rulebase calls five more rules by name itself: ``c2d_run_task`` (the delayed run, and the
run handed to the compute resource's host with ``remoteExec``), ``c2d_cancel_here`` (stopping a
run on its host), ``c2d_reap_here`` (checking a silent run on its host), ``c2d_series_step``
(a scheduled run of a series, queued with the delay server) and ``c2d_replicate_chunk`` (one of
a run's parallel replication agents, queued with the delay server: a rule never calls
``callback`` from two threads, so agents are rules of their own). Docker and the run's
processes are only ever touched on the compute resource's host. Every rule acts as the client
user (``session_vars``), so iRODS permissions apply; no rule needs rodsadmin. State changes go
through the task service (``service/tasks.py``) and its state machine (``lifecycle/machine.py``) only.

Errors end the rule with ``callback.msiExit(code, message)``: ``irule`` then prints the
message and exits with the iRODS code's name (a plain exception would show only ``-1``).

The optional upload trigger (``acPostProcForPut``, for ``*.c2d.json`` task configs) is *not*
exported by ``import *``; see :func:`c2d_upload_hook`.

This module imports only the standard library and light packages (jsonschema, filelock, the
docker SDK only inside the docker runner): never torch, papermill or nbconvert.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import posixpath
from collections.abc import Callable, Sequence
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain import irods_codes as irods_errors
from compute_to_data.domain.catalog import AVU, EntityType, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    GridError,
    NotAllowedError,
    TaskBusyError,
    TaskCancelled,
    TaskFailedError,
    TaskStateError,
)
from compute_to_data.domain.irods_codes import describe_code, parse_error_code
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.registry import runners as runner_registry
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.shards import aggregate
from compute_to_data.domain.taskconfig import TaskConfig, parse_json, validate_document
from compute_to_data.domain.timings import timings_summary
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.replication import run_agent
from compute_to_data.grid.rule_engine import RuleEngineGrid
from compute_to_data.lifecycle.series import Series, SeriesLink, series_id_of
from compute_to_data.rules_ingest import c2d_ingest_hook
from compute_to_data.runners import auto_candidates, choose_runner
from compute_to_data.runners.base import Runner, RunRequest, RunResult
from compute_to_data.service.scheduler import SeriesScheduler, submit_and_queue
from compute_to_data.service.scheduler import cancel as cancel_with_series
from compute_to_data.service.tasks import Cancelled, SharedRuns, TaskService

log = logging.getLogger(__name__)

__all__ = [
    "c2d_run", "c2d_submit", "c2d_status", "c2d_cancel", "c2d_resume",
    "c2d_run_task", "c2d_cancel_here", "c2d_reap_here", "c2d_series_step", "c2d_replicate_chunk",
]

PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"
#: Delay hints: start as soon as the delay server polls (default every 30 s).
DELAY_HINTS = f"<INST_NAME>{PYTHON_INSTANCE}</INST_NAME><PLUSET>1s</PLUSET>"
#: iRODS refuses delayed and remote rule text longer than this.
MAX_RULE_TEXT = 2700
MAX_CONFIG_BYTES = 1024 * 1024
UPLOAD_SUFFIX = ".c2d.json"
#: SYS_INTERNAL_ERR: what the user sees for a bug (details go to the server log).
SYS_INTERNAL_ERR = irods_errors.SYS_INTERNAL_ERR
#: ACTION_FAILED_ERR: c2d_run's exit code when the task ran and ended failed or cancelled.
ACTION_FAILED_ERR = irods_errors.ACTION_FAILED_ERR
A_SUBMIT_ERROR = names.PREFIX + "submit_error"


# --- plumbing shared by the rules ------------------------------------------------------------------
class _ServerLogHandler(logging.Handler):
    """Forwards the package's log records to the iRODS server log while a rule runs."""

    def __init__(self, callback: Any) -> None:
        super().__init__(logging.INFO)
        self.callback = callback
        self.setFormatter(logging.Formatter("compute_to_data %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.callback.writeLine("serverLog", self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break a rule
            pass


class _Session:
    """One rule execution: the caller's grid, the administrator's settings, stdout."""

    def __init__(self, rule: str, callback: Any, rei: Any) -> None:
        self.rule = rule
        self.callback = callback
        self.rei = rei
        self.grid = RuleEngineGrid(callback, rei)
        self.settings = Settings.load()
        self.service = TaskService(self.grid, self.settings)

    @property
    def user(self) -> str:
        return self.grid.user

    def out(self, text: str) -> None:
        self.callback.writeLine("stdout", text)

    def lines(self, pairs: list[tuple[str, object]]) -> None:
        for key, value in pairs:
            if value not in (None, ""):
                self.out(f"{key}: {value}")


def _exit(callback: Any, code: int, message: str) -> None:
    """End the rule with ``code`` and a message irule shows (raises, as msiExit does)."""
    code = int(code) if int(code) < 0 else SYS_INTERNAL_ERR
    if code == irods_errors.CAT_NO_ROWS_FOUND:
        # callback answers this code with a status instead of failing, so msiExit could not
        # end the rule with it: say that the path does not exist instead.
        code = irods_errors.OBJ_PATH_DOES_NOT_EXIST
    callback.msiExit(str(code), message)
    # msiExit always fails the rule; if a callback ever returned, fail anyway.
    raise RuntimeError(f"[iRods__Error__Code:{code}] {message}")


def _entry(name: str, body: Callable[[_Session, list[str]], None]) -> Callable[[list, Any, Any], None]:
    """Wrap a rule body: server-log forwarding, typed errors to msiExit, bugs to SYS_INTERNAL_ERR."""

    def rule(rule_args: list, callback: Any, rei: Any) -> None:
        handler = _ServerLogHandler(callback)
        package_logger = logging.getLogger("compute_to_data")
        previous_level = package_logger.level
        package_logger.addHandler(handler)
        if package_logger.getEffectiveLevel() > logging.INFO:
            package_logger.setLevel(logging.INFO)
        try:
            session = _Session(name, callback, rei)
            body(session, [_unquote(str(a)) for a in rule_args])
        except ComputeToDataError as exc:
            _exit(callback, exc.irods_code, f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user readably
            code = parse_error_code(exc) if isinstance(exc, RuntimeError) else None
            if code is not None:  # an iRODS error no adapter turned into a typed one
                log.error("%s: unexpected iRODS error %s", name, describe_code(code))
                _exit(callback, code, f"{name}: iRODS error {describe_code(code)}")
            log.exception("%s failed unexpectedly", name)
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            _exit(
                callback,
                SYS_INTERNAL_ERR,
                f"{name}: internal error ({type(exc).__name__}: {first_line}); "
                "the iRODS administrator finds the details in the server log",
            )
        finally:
            package_logger.removeHandler(handler)
            package_logger.setLevel(previous_level)

    rule.__name__ = name
    rule.__qualname__ = name
    rule.__doc__ = body.__doc__
    return rule


def _unquote(value: str) -> str:
    """Rule arguments arrive unquoted from ``irule -F``, but quoted when a client sent quotes."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _argument(args: list[str], what: str, example: str) -> str:
    if not args or not args[0]:
        raise ComputeToDataError(f"missing {what}; for example: {example}")
    return args[0]


def _encode(doc: dict[str, Any]) -> str:
    """A payload safe inside native-language and Python string literals: base64url, no padding."""
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(text: str) -> dict[str, Any]:
    try:
        padded = text + "=" * (-len(text) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ComputeToDataError(f"malformed internal payload {text[:40]!r}: {exc}") from None
    if not isinstance(doc, dict):
        raise ComputeToDataError("malformed internal payload: not an object")
    return doc


# --- the deferred runner: choose (and touch Docker) only on the compute host ----------------------
class DeferredRunner(Runner):
    """Stands for the runner a task will use until the task runs on the compute resource's host.

    The engine validates (allowed runner, image) before it knows where the task runs; asking
    ``choose_runner`` then would ping Docker on whatever host the rule happens to run on.
    This plans the runner from the settings alone and creates the real one (which may talk to
    Docker) in :meth:`resolve`, called on the compute host.
    """

    def __init__(self, requested: str, settings: Settings) -> None:
        self.requested = requested
        self.settings = settings
        self._real: Runner | None = None
        self._planned = self._plan()

    def _plan(self) -> str:
        if self.requested != "auto":
            return self.requested
        candidates = auto_candidates(self.settings)
        if candidates:
            return candidates[0]
        raise NotAllowedError(f"the server settings ({self.settings.source}) allow no runner for 'auto'")

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._real.name if self._real is not None else self._planned

    @property
    def uses_container_paths(self) -> bool:  # type: ignore[override]
        if self._real is not None:
            return self._real.uses_container_paths
        try:
            return bool(getattr(runner_registry.get(self._planned), "uses_container_paths", False))
        except Exception:  # noqa: BLE001 - e.g. the docker SDK missing on this host
            return self._planned != "inprocess"

    def resolve(self) -> Runner:
        if self._real is None:
            self._real = choose_runner(self.requested, self.settings)
        return self._real

    def preflight(self, image: str | None) -> None:
        self.resolve().preflight(image)

    def run(self, request: RunRequest) -> RunResult:
        return self.resolve().run(request)

    def cancel(self, task_id: str) -> bool:
        return self._real.cancel(task_id) if self._real is not None else False

    def describe(self) -> str:
        return self._real.describe() if self._real is not None else f"{self._planned} (not started yet)"


# --- what the rules translate to: the task service, its effects carried out with the delay server ---
def _read_config(session: _Session, path: str, input_default: str | None = None) -> TaskConfig:
    text = session.grid.read_data_object(path, max_bytes=MAX_CONFIG_BYTES)
    if input_default is None:
        return TaskConfig.from_json(text, source=path)
    doc = _parse_lenient(text, path)
    inputs = doc.setdefault("inputs", {})
    if isinstance(inputs, dict) and "collection" not in inputs:
        inputs["collection"] = input_default
    return TaskConfig.from_document(doc, source=path)


def _parse_lenient(text: bytes | str, source: str) -> dict[str, Any]:
    """JSON of a config that may still lack fields we fill in (the upload trigger's input)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        parse_json(text, source=source)  # raises the ConfigError (line, column) the other rules give
        raise
    if not isinstance(doc, dict):
        validate_document(doc, source=source)  # raises: a config is a JSON object
    return doc


def _context(session: _Session, config: TaskConfig, dispatch: Callable[..., bool] | None = None,
             series: SeriesLink | None = None) -> TaskContext:
    return TaskContext(
        grid=session.grid,
        settings=session.settings,
        runner=DeferredRunner(config.runner, session.settings),
        dispatch=dispatch,
        series=series,
        start_replication_agent=lambda manifest: _queue_agent(session, manifest),
    )


def _queue_agent(session: _Session, manifest: str) -> None:
    """Queue ``c2d_replicate_chunk`` for one manifest with the delay server, as the caller."""
    body = f'callback.c2d_replicate_chunk("{_encode({"manifest": manifest})}")'
    _delay(session, DELAY_HINTS, body, "a replication agent", posixpath.dirname(posixpath.dirname(manifest)))


class _DelayServerRuns:
    """The task service's effects on a zone: runs and series steps queued with the delay server
    as the caller, stops and checks sent to the compute host with ``remoteExec``, and queued runs
    executed now (``c2d_run``) here or on their compute host."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def queue_run(self, collection: str) -> None:
        body = f'callback.c2d_run_task("{_encode({"collection": collection, "hops": 0})}")'
        _delay(self.session, DELAY_HINTS, body, "the run", collection)

    def queue_step(self, head_collection: str, due: str, delay_seconds: int) -> None:
        # PLUSET in seconds: every unit a schedule may use, in the one form the delay server surely reads
        hints = f"<INST_NAME>{PYTHON_INSTANCE}</INST_NAME><PLUSET>{int(delay_seconds)}s</PLUSET>"
        body = f'callback.c2d_series_step("{_encode({"series": head_collection, "due": due})}")'
        _delay(self.session, hints, body, "the next run of the series", head_collection)

    def stop_on_host(self, record: TaskRecord, host: str) -> str:
        what = f"shard {record.get(names.A_SHARD)}" if record.is_shard else f"task {record.task_id}"
        try:
            self._remote(host, "c2d_cancel_here", record)
        except RuntimeError as exc:
            code = parse_error_code(exc)
            log.warning("could not stop %s on %s: %s", what, host, describe_code(code) if code is not None else exc)
            return (f"{what}: stopping its run on {host} failed ({describe_code(code) if code is not None else exc}); "
                    "it stops itself at its next heartbeat and tags nothing more")
        return f"stopped: requested on {host}" if not record.is_shard else f"{what}: stop requested on {host}"

    def check_on_host(self, record: TaskRecord, host: str) -> None:
        try:
            self._remote(host, "c2d_reap_here", record)
        except RuntimeError as exc:
            raise GridError(f"{host} could not check it: {exc}") from None

    def _remote(self, host: str, rule: str, record: TaskRecord) -> None:
        payload = _encode({"collection": record.collection, "task_id": record.task_id})
        self.session.callback.remoteExec(host, "", f'{rule}("{payload}")', "")

    def run_queued(self, collections: Sequence[str]) -> list[TaskOutcome]:
        """``c2d_run``: a task's run here; a task's shards here and through the delay server at
        once (service/tasks.py ``SharedRuns``), the rule returning once all of them and the
        task's summary have ended."""
        return SharedRuns(self.session.service, self, lambda c: _execute_queued(self.session, c, hops=0)
                          ).run_queued(collections)


def _delay(session: _Session, hints: str, body: str, what: str, collection: str) -> None:
    if len(hints) + len(body) > MAX_RULE_TEXT:
        raise ComputeToDataError(
            f"the task collection path {collection!r} is too long to queue (delayed rules are limited to "
            f"{MAX_RULE_TEXT} characters); choose a shorter output collection"
        )
    try:
        session.callback.delayExec(hints, body, "")
    except RuntimeError as exc:
        code = parse_error_code(exc)
        raise GridError(
            f"could not queue {what} with the delay server: {describe_code(code) if code else exc}",
            irods_code=code,
        ) from None


def _scheduler(session: _Session) -> SeriesScheduler:
    return SeriesScheduler(
        session.grid, session.settings, _DelayServerRuns(session),
        lambda config, link: _context(session, config, series=link),
    )


def _execute_queued(session: _Session, collection: str, hops: int) -> TaskRecord:
    """Run the queued run of ``collection`` on its compute resource's host: here when this is that
    host, else handed over with ``remoteExec`` (synchronously). A run that cannot even start is
    recorded ``failed`` with the reason, never left queued."""
    service = session.service
    try:
        record, resource = service.where_to_run(collection)
    except TaskCancelled as exc:
        log.info("%s", exc)
        return service.read(collection)
    except TaskStateError as exc:
        current = service.read(collection)
        if current.state is None or current.state == TaskState.QUEUED:
            raise
        # started meanwhile by another run (the rule of a c2d_run takes the shards it gave the
        # delay server too): that run records its state; this one leaves it alone
        log.info("%s; leaving it to the run that took it", exc)
        return current
    if not service.is_here(resource):
        if hops >= 1:
            message = (
                f"the run was handed to {resource.host} (host of {resource.name}), but that server does not "
                "recognise the name as its own; the administrator can add it to local_host_names in the "
                "compute_to_data settings of that server"
            )
            service.machine.fail_queued(collection, message)
            raise ComputeToDataError(message)
        payload = _encode({"collection": collection, "hops": hops + 1})
        log.info("task %s: running on %s (host of %s)", record.task_id, resource.host, resource.name)
        try:
            session.callback.remoteExec(resource.host, "", f'c2d_run_task("{payload}")', "")
        except RuntimeError as exc:
            code = parse_error_code(exc)
            reason = describe_code(code) if code is not None else "unknown error"
            service.machine.fail_queued(collection, f"could not start the task on {resource.host} ({resource.name}): {reason}")
        return service.read(collection)
    try:
        config = service.machine.read_config(record)
    except ComputeToDataError as exc:
        service.machine.fail_queued(collection, f"cannot read the task's config: {exc}")
        raise

    def stay_here(runner: Runner, chosen: Resource) -> bool:
        if chosen.name != resource.name or not service.is_here(chosen):
            raise ComputeToDataError(f"task {record.task_id} was about to run on {chosen.name}, not on {resource.name}")
        if isinstance(runner, DeferredRunner):
            runner.resolve()  # on the compute host: the only place Docker is asked
        return False

    try:
        service.start(collection, _context(session, config, dispatch=stay_here), compute_resource=resource.name)
    except TaskCancelled:
        pass
    except TaskBusyError as exc:
        # another run on this host holds its run lock (the rule of a c2d_run and the delay
        # server raced for the same shard, and that one is past the lock but has not recorded
        # ``running`` yet): that run records its state
        log.info("%s; leaving it to the run that holds it", exc)
    except TaskStateError as exc:
        current = service.read(collection)
        if current.state is None or current.state == TaskState.QUEUED:
            raise
        # another run took it between the look above and the start (the rule of a c2d_run and
        # the delay server race for the same shard): that run records its state
        log.info("%s; leaving it to the run that took it", exc)
    return service.read(collection)


def _print_record(session: _Session, record: TaskRecord) -> None:
    session.lines([
        ("task_id", record.task_id),
        ("state", record.display_state(session.service.lease_seconds)),
        ("waiting", record.queue_reason),
        ("collection", record.collection),
        ("report", record.get(names.A_REPORT)),
        ("submitted_by", record.get(names.A_SUBMITTED_BY)),
        ("created", record.get(names.A_CREATED)),
        ("started", record.get(names.A_STARTED)),
        ("finished", record.get(names.A_FINISHED)),
        ("progress", record.get(names.A_PROGRESS)),
        ("images_failed", record.get(names.A_IMAGES_FAILED)),
        ("heartbeat", record.get(names.A_HEARTBEAT) if record.state == TaskState.RUNNING else ""),
        ("resumed", record.get(names.A_RESUMED)),
        ("inputs", record.get(names.A_INPUTS)),
        ("compute_resource", record.get(names.A_COMPUTE_RESOURCE)),
        ("runner", record.get(names.A_RUNNER)),
        ("error", record.get(names.A_ERROR)),
        ("timings", timings_summary(record.timings)),
    ])
    if record.is_sharded:
        _print_shards(session, record)
    _print_series(session, record)


#: a sharded task's status lists every shard up to this many, else only those not succeeded
_SHARD_LINES = 20


def _print_shards(session: _Session, record: TaskRecord) -> None:
    shards = session.service.shards(record)
    session.out(f"shards: {aggregate(shards).describe()}")
    shown = shards if len(shards) <= _SHARD_LINES else [s for s in shards if s.state != TaskState.SUCCEEDED]
    for shard in shown[:_SHARD_LINES]:
        details = [shard.display_state(session.service.lease_seconds), f"on {shard.get(names.A_COMPUTE_RESOURCE)}",
                   f"images {shard.progress_text()}"]
        if shard.get(names.A_ERROR):
            details.append(f"error: {shard.get(names.A_ERROR)}")
        session.out(f"shard {shard.get(names.A_SHARD)}: " + ", ".join(details))


def _print_series(session: _Session, record: TaskRecord) -> None:
    """The series a task belongs to: its id, schedule, state and next run (read on its head)."""
    if series_id_of(record) is None:
        return
    try:
        info = Series(session.grid, session.settings).info(record)
    except ComputeToDataError as exc:
        session.lines([("series", f"{series_id_of(record)} (its first task cannot be read: {exc})")])
        return
    if info is None:
        return
    session.lines([
        ("series", info.series_id),
        ("schedule", f"every {info.every}"),
        ("series_state", info.state_text + (f" ({info.reason})" if info.reason else "")),
        ("next_run", info.next_run if info.is_active else ""),
        ("series_checked", info.checked),
    ])


# --- the rules users call -----------------------------------------------------------------------
def _c2d_run(session: _Session, args: list[str]) -> None:
    """Run a task now: c2d_run(*config) with the logical path of a task config (JSON)."""
    config_path = _argument(args, "task config path", "*config='/tempZone/home/alice/task_config.json'")
    config = _read_config(session, config_path)
    # a task larger than one shard: its shards run here and through the delay server at once
    # one run whose compute resource is here runs in this rule at once; a task whose resource is
    # another host's is queued and handed to that host (remoteExec), as a submitted one
    outcome = session.service.run_now(config, _context(session, config, dispatch=_elsewhere(session)),
                                      _DelayServerRuns(session), session.user)
    record = session.service.read(outcome.collection)
    if record.state != TaskState.SUCCEEDED:
        details = [f"task {record.task_id} ended {record.state.value if record.state else 'in no known state'}"]
        if record.get(names.A_ERROR):
            details.append(f"error: {record.get(names.A_ERROR)}")
        details.append(f"task collection: {record.collection}")
        if record.get(names.A_REPORT):
            details.append(f"report: {record.get(names.A_REPORT)}")
        raise TaskFailedError("; ".join(details), irods_code=ACTION_FAILED_ERR)
    _print_record(session, record)


def _elsewhere(session: _Session) -> Callable[[Runner, Resource], bool]:
    """Whether a run chosen for ``resource`` runs on another host (then it is queued and handed
    over); a run here resolves its runner (Docker is asked only on the compute host)."""
    def elsewhere(runner: Runner, resource: Resource) -> bool:
        if not session.service.is_here(resource):
            return True
        if isinstance(runner, DeferredRunner):
            runner.resolve()
        return False
    return elsewhere


def _c2d_submit(session: _Session, args: list[str]) -> None:
    """Queue a task: c2d_submit(*config); validates now, returns the task id at once."""
    config_path = _argument(args, "task config path", "*config='/tempZone/home/alice/task_config.json'")
    config = _read_config(session, config_path)
    submitted, series = submit_and_queue(_scheduler(session), config, _context(session, config),
                                         _DelayServerRuns(session), session.user)
    outcome = submitted.outcome
    session.lines([
        ("task_id", outcome.task_id),
        ("state", TaskState.QUEUED.value),
        ("collection", outcome.collection),
        ("compute_resource", outcome.compute_resource),
        ("inputs", outcome.inputs),
        ("shards", len(outcome.shard_collections) or None),
    ])
    if series is not None:
        session.lines([("series", series.series_id), ("schedule", f"every {series.every}"), ("next_run", series.next_run)])
        session.out(f"the series runs until it is cancelled: c2d_cancel of {series.series_id}")
    session.out(
        f"follow it with: irule -r {NATIVE_INSTANCE} -F c2d_status.r \"*task='{outcome.task_id}'\"  (queued rules: iqstat)"
    )


def _c2d_status(session: _Session, args: list[str]) -> None:
    """State of a task: c2d_status(*task) with a task id or a task collection path."""
    task = _argument(args, "task id or task collection", "*task='20261122T020304Z-3f9a1c'")
    status = session.service.status(task)  # reaps a dead run when this is its host
    if status.effects:  # silent runs elsewhere: their hosts check them
        session.service.carry_out(status.effects, _DelayServerRuns(session))
    _print_record(session, session.service.read(status.record.collection))


def _c2d_cancel(session: _Session, args: list[str]) -> None:
    """Cancel a task: c2d_cancel(*task); a queued task never runs, a running one is stopped.
    The first task of a series stops the series: no further run, and its run queued or running
    now is cancelled too; any other task of a series is cancelled alone."""
    task = _argument(args, "task id or task collection", "*task='20261122T020304Z-3f9a1c'")
    cancellation = cancel_with_series(_scheduler(session), task, session.user)
    if cancellation.series is not None:
        session.lines([("series", cancellation.series.series_id), ("series_state", cancellation.series.state_text)])
        session.out("no further run of the series will start")
    elif cancellation.goes_on:
        session.out(f"(task of the series {cancellation.goes_on}, which goes on; cancel "
                    f"{cancellation.goes_on} to stop the series)")
    for cancelled in cancellation.cancelled:
        _print_cancelled(session, cancelled)
    for line in cancellation.skipped:
        session.out(line)


def _print_cancelled(session: _Session, cancelled: Cancelled) -> None:
    record = cancelled.record
    session.lines([("task_id", record.task_id), ("state", TaskState.CANCELLED.value), ("collection", record.collection)])
    lines = session.service.carry_out(cancelled.effects, _DelayServerRuns(session))
    if record.is_sharded:
        for line in lines:
            session.out(line)
        session.out(f"shards: {aggregate(session.service.shards(record)).describe()}")
        return
    if not cancelled.was_running:
        session.out("the queued run will exit without running when the delay server starts it (iqstat lists it until then)")
        return
    if not cancelled.effects:
        session.out("stopped: " + ("yes" if cancelled.stopped_here else "nothing of its run was left on this host"))
    for line in lines:
        session.out(line)


def _c2d_resume(session: _Session, args: list[str]) -> None:
    """Resume a failed or cancelled task: c2d_resume(*task); queued at once, runs via the delay server."""
    task = _argument(args, "task id or task collection", "*task='20261122T020304Z-3f9a1c'")
    resumed = session.service.resume(task, by=session.user)
    session.service.carry_out(resumed.effects, _DelayServerRuns(session))
    record = resumed.record
    session.lines([
        ("task_id", record.task_id),
        ("state", TaskState.QUEUED.value),
        ("collection", record.collection),
        ("resumed", record.get(names.A_RESUMED)),
        ("shards_queued", resumed.shards_queued if record.is_sharded else None),
    ])
    session.out(
        f"follow it with: irule -r {NATIVE_INSTANCE} -F c2d_status.r \"*task='{record.task_id}'\"  (queued rules: iqstat)"
    )


# --- the rules the rulebase calls itself ---------------------------------------------------------
def _c2d_run_task(session: _Session, args: list[str]) -> None:
    """Internal: start a queued task (the delayed run, or the run handed to the compute host)."""
    doc = _decode(_argument(args, "payload", "(internal rule)"))
    record = _execute_queued(session, str(doc.get("collection", "")), hops=int(doc.get("hops", 0)))
    _print_record(session, record)


def _c2d_series_step(session: _Session, args: list[str]) -> None:
    """Internal: a scheduled run of a series (queued with the delay server by the step before)."""
    doc = _decode(_argument(args, "payload", "(internal rule)"))
    outcome = _scheduler(session).step(str(doc.get("series", "")), str(doc.get("due", "")))
    log.info("%s", outcome.message)
    session.lines([("series", outcome.series_id), ("step", outcome.kind.value), ("task_id", outcome.task_id),
                   ("next_run", outcome.next_run)])


def _record_here(session: _Session, doc: dict[str, Any]) -> TaskRecord:
    record = session.service.read(str(doc.get("collection", "")))
    if record.task_id != doc.get("task_id"):
        raise TaskStateError("the task id does not match its collection")
    return record


def _c2d_cancel_here(session: _Session, args: list[str]) -> None:
    """Internal: stop a task's run on this host (called by c2d_cancel)."""
    record = _record_here(session, _decode(_argument(args, "payload", "(internal rule)")))
    stopped = session.service.stop_here(record)
    session.out("stopped: " + ("yes" if stopped else "nothing of its run was left on this host"))


def _c2d_reap_here(session: _Session, args: list[str]) -> None:
    """Internal: check a silent run on this host, its compute host (called by c2d_status)."""
    record = session.service.reap_here(_record_here(session, _decode(_argument(args, "payload", "(internal rule)"))))
    session.out(f"state: {record.display_state(session.service.lease_seconds)}")


def _c2d_replicate_chunk(session: _Session, args: list[str]) -> None:
    """Internal: one parallel replication agent of a running task (queued by its run)."""
    doc = _decode(_argument(args, "payload", "(internal rule)"))
    session.out(run_agent(session.grid, str(doc.get("manifest", ""))))


c2d_run = _entry("c2d_run", _c2d_run)
c2d_submit = _entry("c2d_submit", _c2d_submit)
c2d_status = _entry("c2d_status", _c2d_status)
c2d_cancel = _entry("c2d_cancel", _c2d_cancel)
c2d_resume = _entry("c2d_resume", _c2d_resume)
c2d_run_task = _entry("c2d_run_task", _c2d_run_task)
c2d_cancel_here = _entry("c2d_cancel_here", _c2d_cancel_here)
c2d_reap_here = _entry("c2d_reap_here", _c2d_reap_here)
c2d_replicate_chunk = _entry("c2d_replicate_chunk", _c2d_replicate_chunk)
c2d_series_step = _entry("c2d_series_step", _c2d_series_step)


# --- optional: submit a task when a *.c2d.json config is uploaded ----------------------------------
def c2d_upload_hook(rule_args: list, callback: Any, rei: Any) -> None:
    """Submit a task for an uploaded ``*.c2d.json`` config (as the uploader); cheap otherwise.

    Runs after every upload in the zone when enabled, so it returns at once for any other
    object, and it never fails the upload: the outcome is recorded on the config object itself
    (``c2d::task_id``, or ``c2d::submit_error`` with the reason) and in the server log. A config
    may omit ``inputs.collection``: it then defaults to the collection the config was put in.
    Enabled only when the settings say ``"upload_trigger_enabled": true``.
    """
    try:
        import session_vars  # provided by the Python rule engine plugin

        path = str(session_vars.get_map(rei).get("data_object", {}).get("object_path", ""))
    except Exception:  # noqa: BLE001 - not our business then
        return
    if not path.endswith(UPLOAD_SUFFIX):
        return
    handler = _ServerLogHandler(callback)
    logging.getLogger("compute_to_data").addHandler(handler)
    try:
        _upload_submit(path, callback, rei)
    except Exception:  # noqa: BLE001 - an upload never fails because of this hook
        log.exception("upload trigger for %s failed unexpectedly", path)
    finally:
        logging.getLogger("compute_to_data").removeHandler(handler)


def _upload_submit(path: str, callback: Any, rei: Any) -> None:
    try:
        settings = Settings.load()
    except ComputeToDataError as exc:
        log.error("upload trigger: %s", exc)
        return
    if not settings.upload_trigger_enabled:
        return
    session = _Session("c2d_upload_hook", callback, rei)
    try:
        config = _read_config(session, path, input_default=posixpath.dirname(path))
        submitted, _ = submit_and_queue(_scheduler(session), config, _context(session, config),
                                        _DelayServerRuns(session), session.user)
        outcome = submitted.outcome
    except ComputeToDataError as exc:
        log.warning("upload trigger: task config %s was not submitted: %s", path, exc)
        _note_on_config(session, path, [AVU(A_SUBMIT_ERROR, str(exc)[:2000] or type(exc).__name__)], names.A_TASK_ID)
        return
    log.info("upload trigger: %s submitted task %s (%s)", path, outcome.task_id, outcome.collection)
    _note_on_config(session, path, [AVU(names.A_TASK_ID, outcome.task_id)], A_SUBMIT_ERROR)


def _note_on_config(session: _Session, path: str, avus: list[AVU], clear: str) -> None:
    try:
        session.grid.set_avus(EntityType.DATA_OBJECT, path, avus, clear=[clear])
    except ComputeToDataError as exc:
        log.error("upload trigger: could not record the outcome on %s: %s", path, exc)


def acPostProcForPut(rule_args: list, callback: Any, rei: Any) -> None:  # noqa: N802 - iRODS PEP name
    """The upload PEP: enable with ``from compute_to_data.rules import acPostProcForPut`` in core.py
    (or call :func:`c2d_upload_hook` from an existing ``acPostProcForPut``). One hook for both
    the upload trigger and the ingest enrichment (:mod:`compute_to_data.rules_ingest`)."""
    c2d_upload_hook(rule_args, callback, rei)
    c2d_ingest_hook(rule_args, callback, rei)
