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
* ``c2d_status(*task)``    state, timings, progress, error, report of a task (id or collection).
* ``c2d_cancel(*task)``    a queued task never runs; a running one has its container stopped.

The rulebase calls two more rules by name itself: ``c2d_run_task`` (the delayed run, and the run
handed to the compute resource's host with ``remoteExec``) and ``c2d_cancel_here`` (stopping a
container on its host). Docker is only ever touched on the compute resource's host. Every rule
acts as the client user (``session_vars``), so iRODS permissions apply; no rule needs rodsadmin.

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
import dataclasses
import json
import logging
import posixpath
from collections.abc import Callable
from typing import Any

from . import conventions as names
from .conventions import TaskState
from .errors import (
    AccessDeniedError,
    ComputeToDataError,
    GridError,
    NotAllowedError,
    TaskFailedError,
    TaskStateError,
)
from .grid import hosts
from .grid.base import AVU, AccessLevel, EntityType, Resource
from .grid import irods_errors
from .grid.irods_errors import describe_code, parse_error_code
from .grid.rule_engine import RuleEngineGrid
from .registry import runners as runner_registry
from .runners import auto_candidates
from .runners.base import Runner, RunRequest, RunResult
from .settings import Settings
from .taskconfig import TaskConfig, parse_json, validate_document
from .tasks.state import TaskRecord, TaskStateStore, timings_summary

log = logging.getLogger(__name__)

__all__ = ["c2d_run", "c2d_submit", "c2d_status", "c2d_cancel", "c2d_run_task", "c2d_cancel_here"]

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
        self.store = TaskStateStore(self.grid)

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

    @property  # type: ignore[override]
    def name(self) -> str:
        return self._real.name if self._real is not None else self._planned

    @property  # type: ignore[override]
    def uses_container_paths(self) -> bool:
        if self._real is not None:
            return self._real.uses_container_paths
        try:
            return bool(getattr(runner_registry.get(self._planned), "uses_container_paths", False))
        except Exception:  # noqa: BLE001 - e.g. the docker SDK missing on this host
            return self._planned != "inprocess"

    def resolve(self) -> Runner:
        if self._real is None:
            from .runners import choose_runner

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


# --- steps shared by the rules --------------------------------------------------------------------
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


def _context(session: _Session, config: TaskConfig, dispatch: Callable[..., bool] | None = None) -> Any:
    from .tasks import TaskContext

    return TaskContext(
        grid=session.grid,
        settings=session.settings,
        runner=DeferredRunner(config.runner, session.settings),
        dispatch=dispatch,
    )


def _submit(session: _Session, config: TaskConfig) -> Any:
    """Validate and record ``queued`` (the engine's ``submit``): nothing changes if a check fails."""
    from .tasks import create_task

    return create_task(config, _context(session, config), submitted_by=session.user).submit()


def _queue(session: _Session, collection: str) -> None:
    """Queue ``c2d_run_task`` with the delay server, as the caller."""
    body = f'callback.c2d_run_task("{_encode({"collection": collection, "hops": 0})}")'
    if len(DELAY_HINTS) + len(body) > MAX_RULE_TEXT:
        raise ComputeToDataError(
            f"the task collection path {collection!r} is too long to queue (delayed rules are limited to "
            f"{MAX_RULE_TEXT} characters); choose a shorter output collection"
        )
    try:
        session.callback.delayExec(DELAY_HINTS, body, "")
    except RuntimeError as exc:
        code = parse_error_code(exc)
        raise GridError(
            f"could not queue the run with the delay server: {describe_code(code) if code else exc}",
            irods_code=code,
        ) from None


def _mark_failed_if_queued(session: _Session, collection: str, message: str) -> None:
    """A queued task that cannot start must not stay ``queued`` forever; record why."""
    try:
        record = session.store.read(collection)
        if record.state == TaskState.QUEUED:
            session.store.write(
                collection,
                {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message, names.A_STATE: TaskState.FAILED},
            )
    except ComputeToDataError as exc:
        log.error("could not record the failure of %s: %s", collection, exc)


def _check_may_change(session: _Session, record: TaskRecord) -> None:
    if not session.grid.has_access(record.collection, AccessLevel.MODIFY):
        raise AccessDeniedError(
            f"{session.user} may not change task {record.task_id} ({record.collection}); "
            f"it was submitted by {record.get(names.A_SUBMITTED_BY) or 'someone else'}"
        )


def _compute_resource(session: _Session, record: TaskRecord) -> Resource:
    name = record.get(names.A_COMPUTE_RESOURCE)
    if not name:
        raise TaskStateError(f"task {record.task_id} records no compute resource ({names.A_COMPUTE_RESOURCE})")
    return session.grid.get_resource(name)


def _is_here(session: _Session, resource: Resource) -> bool:
    return hosts.is_local_host(resource.host, session.settings.local_host_names)


def _execute_queued(session: _Session, collection: str, hops: int) -> TaskRecord:
    """Run the queued task of ``collection`` on its compute resource's host; the final record.

    Here when this is that host; otherwise handed over with ``remoteExec`` (synchronously).
    A task that cannot even start is recorded ``failed`` with the reason, never left queued.
    """
    record = session.store.read(collection)
    if record.state == TaskState.CANCELLED:
        log.info("task %s was cancelled before it started; not running it", record.task_id)
        return record
    if record.state != TaskState.QUEUED:
        raise TaskStateError(
            f"task {record.task_id} is {record.state.value if record.state else 'in no known state'}; "
            "only a queued task can be started"
        )
    _check_may_change(session, record)
    resource = _compute_resource(session, record)
    if not _is_here(session, resource):
        if hops >= 1:
            message = (
                f"the run was handed to {resource.host} (host of {resource.name}), but that server does not "
                "recognise the name as its own; the administrator can add it to local_host_names in the "
                "compute_to_data settings of that server"
            )
            _mark_failed_if_queued(session, collection, message)
            raise ComputeToDataError(message)
        payload = _encode({"collection": collection, "hops": hops + 1})
        log.info("task %s: running on %s (host of %s)", record.task_id, resource.host, resource.name)
        try:
            session.callback.remoteExec(resource.host, "", f'c2d_run_task("{payload}")', "")
        except RuntimeError as exc:
            code = parse_error_code(exc)
            reason = describe_code(code) if code is not None else "unknown error"
            _mark_failed_if_queued(
                session, collection, f"could not start the task on {resource.host} ({resource.name}): {reason}"
            )
        return session.store.read(collection)
    return _run_here(session, record, resource)


def _run_here(session: _Session, record: TaskRecord, resource: Resource) -> TaskRecord:
    from .tasks import TaskCancelled, create_task

    collection = record.collection
    try:
        stored = session.grid.read_data_object(
            posixpath.join(collection, names.TASK_CONFIG_FILE), max_bytes=MAX_CONFIG_BYTES
        )
        config = TaskConfig.from_json(stored, source=posixpath.join(collection, names.TASK_CONFIG_FILE))
        config = dataclasses.replace(config, compute_resource=resource.name)
    except ComputeToDataError as exc:
        _mark_failed_if_queued(session, collection, f"cannot read the task's config: {exc}")
        raise

    def stay_here(task: Any, chosen: Resource) -> bool:
        if chosen.name != resource.name or not _is_here(session, chosen):
            raise ComputeToDataError(f"task {record.task_id} was about to run on {chosen.name}, not on {resource.name}")
        if isinstance(task.runner, DeferredRunner):
            task.runner.resolve()  # on the compute host: the only place Docker is asked
        return False

    task = create_task(
        config,
        _context(session, config, dispatch=stay_here),
        task_id=record.task_id,
        submitted_by=record.get(names.A_SUBMITTED_BY) or session.user,
    )
    try:
        task.run()
    except TaskCancelled:
        pass
    except ComputeToDataError as exc:  # refused before the engine took the task over
        _mark_failed_if_queued(session, collection, str(exc))
        raise
    return session.store.read(collection)


def _print_record(session: _Session, record: TaskRecord) -> None:
    progress = record.get(names.A_PROGRESS)
    session.lines([
        ("task_id", record.task_id),
        ("state", record.state.value if record.state else "unknown"),
        ("collection", record.collection),
        ("report", record.get(names.A_REPORT)),
        ("submitted_by", record.get(names.A_SUBMITTED_BY)),
        ("created", record.get(names.A_CREATED)),
        ("started", record.get(names.A_STARTED)),
        ("finished", record.get(names.A_FINISHED)),
        ("progress", progress),
        ("inputs", record.get(names.A_INPUTS)),
        ("compute_resource", record.get(names.A_COMPUTE_RESOURCE)),
        ("runner", record.get(names.A_RUNNER)),
        ("error", record.get(names.A_ERROR)),
        ("timings", timings_summary(record.timings)),
    ])


# --- the rules users call -----------------------------------------------------------------------
def _c2d_run(session: _Session, args: list[str]) -> None:
    """Run a task now: c2d_run(*config) with the logical path of a task config (JSON)."""
    config_path = _argument(args, "task config path", "*config='/tempZone/home/alice/task_config.json'")
    config = _read_config(session, config_path)
    outcome = _submit(session, config)
    record = _execute_queued(session, outcome.collection, hops=0)
    if record.state != TaskState.SUCCEEDED:
        details = [f"task {record.task_id} ended {record.state.value if record.state else 'in no known state'}"]
        if record.get(names.A_ERROR):
            details.append(f"error: {record.get(names.A_ERROR)}")
        details.append(f"task collection: {record.collection}")
        if record.get(names.A_REPORT):
            details.append(f"report: {record.get(names.A_REPORT)}")
        raise TaskFailedError("; ".join(details), irods_code=ACTION_FAILED_ERR)
    _print_record(session, record)


def _c2d_submit(session: _Session, args: list[str]) -> None:
    """Queue a task: c2d_submit(*config); validates now, returns the task id at once."""
    config_path = _argument(args, "task config path", "*config='/tempZone/home/alice/task_config.json'")
    config = _read_config(session, config_path)
    outcome = _submit(session, config)
    try:
        _queue(session, outcome.collection)
    except ComputeToDataError as exc:
        _mark_failed_if_queued(session, outcome.collection, str(exc))
        raise
    session.lines([
        ("task_id", outcome.task_id),
        ("state", TaskState.QUEUED.value),
        ("collection", outcome.collection),
        ("compute_resource", outcome.compute_resource),
        ("inputs", outcome.inputs),
    ])
    session.out(
        f"follow it with: irule -r {NATIVE_INSTANCE} -F c2d_status.r \"*task='{outcome.task_id}'\"  (queued rules: iqstat)"
    )


def _c2d_status(session: _Session, args: list[str]) -> None:
    """State of a task: c2d_status(*task) with a task id or a task collection path."""
    task = _argument(args, "task id or task collection", "*task='20261122T020304Z-3f9a1c'")
    _print_record(session, session.store.find(task))


def _c2d_cancel(session: _Session, args: list[str]) -> None:
    """Cancel a task: c2d_cancel(*task); a queued task never runs, a running one is stopped."""
    task = _argument(args, "task id or task collection", "*task='20261122T020304Z-3f9a1c'")
    record = session.store.find(task)
    _check_may_change(session, record)
    state = record.state
    if state is not None and state.is_final:
        raise TaskStateError(f"task {record.task_id} is already {state.value}; nothing to cancel")
    values: dict[str, object] = {names.A_ERROR: f"cancelled by {session.user}", names.A_STATE: TaskState.CANCELLED}
    if state != TaskState.RUNNING:
        values = {names.A_FINISHED: names.iso_utc(), **values}
    session.store.write(record.collection, values)
    session.lines([("task_id", record.task_id), ("state", TaskState.CANCELLED.value), ("collection", record.collection)])
    if state != TaskState.RUNNING:
        session.out("the queued run will exit without running when the delay server starts it (iqstat lists it until then)")
        return
    resource = _compute_resource(session, record)
    payload = _encode({
        "collection": record.collection,
        "task_id": record.task_id,
        "runner": record.get(names.A_RUNNER) or "docker",
    })
    if _is_here(session, resource):
        stopped = _cancel_here(session, _decode(payload))
        session.out("stopped: " + ("yes" if stopped else "no running container found on this host"))
        return
    try:
        session.callback.remoteExec(resource.host, "", f'c2d_cancel_here("{payload}")', "")
    except RuntimeError as exc:
        code = parse_error_code(exc)
        raise GridError(
            f"task {record.task_id} is marked cancelled, but stopping its container on {resource.host} failed: "
            f"{describe_code(code) if code is not None else exc}; it will not be tagged, and ends when the run ends",
            irods_code=code,
        ) from None
    session.out(f"stopped: requested on {resource.host}")


# --- the rules the rulebase calls itself ---------------------------------------------------------
def _c2d_run_task(session: _Session, args: list[str]) -> None:
    """Internal: start a queued task (the delayed run, or the run handed to the compute host)."""
    doc = _decode(_argument(args, "payload", "(internal rule)"))
    collection = str(doc.get("collection", ""))
    record = _execute_queued(session, collection, hops=int(doc.get("hops", 0)))
    _print_record(session, record)


def _cancel_here(session: _Session, doc: dict[str, Any]) -> bool:
    from .runners import create_runner

    record = session.store.read(str(doc.get("collection", "")))
    if record.task_id != doc.get("task_id"):
        raise TaskStateError("the task id does not match its collection")
    _check_may_change(session, record)
    runner = create_runner(str(doc.get("runner") or "docker"), session.settings)
    return bool(runner.cancel(record.task_id))


def _c2d_cancel_here(session: _Session, args: list[str]) -> None:
    """Internal: stop a task's container on this host (called by c2d_cancel)."""
    stopped = _cancel_here(session, _decode(_argument(args, "payload", "(internal rule)")))
    session.out("stopped: " + ("yes" if stopped else "no running container found on this host"))


c2d_run = _entry("c2d_run", _c2d_run)
c2d_submit = _entry("c2d_submit", _c2d_submit)
c2d_status = _entry("c2d_status", _c2d_status)
c2d_cancel = _entry("c2d_cancel", _c2d_cancel)
c2d_run_task = _entry("c2d_run_task", _c2d_run_task)
c2d_cancel_here = _entry("c2d_cancel_here", _c2d_cancel_here)


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
        outcome = _submit(session, config)
        try:
            _queue(session, outcome.collection)
        except ComputeToDataError as exc:
            _mark_failed_if_queued(session, outcome.collection, str(exc))
            raise
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
    (or call :func:`c2d_upload_hook` from an existing ``acPostProcForPut``)."""
    c2d_upload_hook(rule_args, callback, rei)
