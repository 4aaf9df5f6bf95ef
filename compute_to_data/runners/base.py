"""The runner port, and the one lifecycle every runner shares.

A runner never talks to the grid. It gets directories on the compute host laid out as the
container contract says (``inputs/``, ``task/params.json``, ``outputs/``) and returns a
:class:`RunResult`; the task turns that into catalog entries, tags and state.

:class:`Runner` is the port the task engine sees. :class:`SupervisedRunner` is the lifecycle
(as papermill's ``Engine`` wraps ``execute_managed_notebook``): it owns the deadline, the
polling, progress from ``.progress``, the kill on timeout or cancel, the interrupted report,
the logs and the one parser that turns ``outputs/result.json`` into a :class:`RunResult`. A
concrete runner implements only how a run is started, polled, killed and how its logs are
collected (plus, where it has them, a preflight, a finalize and a cleanup).

Every run has a **handle** (container id, process handle, Slurm job id) from the moment it
exists: the request's ``on_started`` callback receives it with the host that can act on it,
and :meth:`Runner.is_alive` / :meth:`Runner.stop` take it in *another* process — one that did
not start the run, e.g. a later status call after the supervising process died.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from compute_to_data.contract.results import read_progress, read_result
from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import RunnerError, TaskCancelled

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with (images done, images total) while the notebook runs."""

StatusCallback = Callable[[str, "str | None"], None]
"""Called with (phase, reason) when a run's phase or its reason changes: ``("queued", "waiting
for a GPU (Slurm job 42: Resources)")`` while a scheduler holds it back, ``("running", None)``
once it runs. A task stays ``queued`` while its run is queued."""

PollCallback = Callable[[], "bool | None"]
"""Called at every poll while the run goes on, from the supervising loop (the caller's thread):
the task writes its heartbeat, tags the parts the notebook finished and, where the grid must be
called from one thread only, reads the next inputs there. It returns True while it has work left
(the loop then polls again without waiting). An exception it raises stops the run (it is killed
like an interrupted one) and propagates to the caller; TaskCancelled stops it as a cancel does."""

StartedCallback = Callable[[str, str], None]
"""Called once with (host, handle) as soon as the run exists: the host whose runner can act on
the handle, and the handle :meth:`Runner.is_alive` and :meth:`Runner.stop` accept."""


class Phase(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    EXITED = "exited"


@dataclass
class RunRequest:
    task_id: str
    notebook_name: str
    #: host path of the notebook (in-process runner); containers use their baked-in copy.
    notebook_path: Path
    #: directory holding ``inputs/``, ``task/`` and ``outputs/`` for this task on the compute host.
    workdir: Path
    #: notebook parameters exactly as the container sees them in ``/task/params.json``.
    parameters: dict[str, Any]
    timeout_seconds: int
    image: str | None = None
    gpus: int = 0
    resource_name: str = ""
    max_concurrent: int = 1
    #: this one run's identity (``runners.processes.run_id``): marks its processes, so stopping it
    #: never reaches another run of the same task
    run_id: str = ""
    progress: ProgressCallback | None = None
    on_started: StartedCallback | None = None
    on_status: StatusCallback | None = None
    on_poll: PollCallback | None = None

    @property
    def input_dir(self) -> Path:
        return self.workdir / "inputs"

    @property
    def task_dir(self) -> Path:
        return self.workdir / "task"

    @property
    def output_dir(self) -> Path:
        return self.workdir / "outputs"


@dataclass
class RunResult:
    status: str  # "succeeded" | "failed"
    started: str
    finished: str
    duration_seconds: float
    images_total: int = 0
    images_done: int = 0
    error: str | None = None
    log: str = ""
    log_name: str = "runner.log"
    runner: str = ""
    image: str | None = None
    image_digest: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: the host whose runner could act on ``handle`` (where the run was supervised).
    host: str | None = None
    #: container id, process handle or scheduler job id (provenance; ``Runner.stop`` takes it).
    handle: str | None = None
    #: where the notebook actually ran, when that is another machine (a Slurm node).
    node: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Runner(ABC):
    """Executes one notebook run. Implementations register themselves by name."""

    name: str = "abstract"
    #: True when the notebook sees the contract's container paths (/inputs, /task, /outputs);
    #: False when it runs on the host and params.json must hold the host paths.
    uses_container_paths: bool = False

    @abstractmethod
    def run(self, request: RunRequest) -> RunResult:
        """Run to completion (or failure, timeout); never raise for a failing notebook.

        Raise :class:`~compute_to_data.domain.errors.RunnerError` only when the run could not be
        started or supervised at all.
        """

    def preflight(self, image: str | None) -> None:
        """Refuse, before any input is replicated, what this runner cannot run on this host
        (e.g. an allowed image that is not built here). Called on the compute host."""

    def describe(self) -> str:
        return self.name

    def cancel(self, task_id: str) -> bool:
        """Stop the run of ``task_id`` if this runner is executing it; True if it was stopped."""
        return False

    def is_alive(self, handle: str) -> bool:
        """Whether the run with this handle still runs (or waits in a queue), asked from any process."""
        raise RunnerError(f"the {self.name} runner cannot look up a run by its handle")

    def stop(self, handle: str, task_id: str | None = None, *, reason: str | None = None) -> bool:
        """Stop and remove whatever is left of the run with this handle, from any process on its
        host; with ``task_id``, also what this runner finds of that task by its own labels.
        ``reason`` (e.g. :data:`CANCELLED_ON_REQUEST`): why, for a runner whose run says it in its
        report and log (Slurm's job script); None: a run stopped without a word (a dead run's).

        Returns True when something was left and has been stopped. Never raises for a run that
        is already gone.
        """
        raise RunnerError(f"the {self.name} runner cannot stop a run by its handle")


#: why a run stopped when its task was cancelled (c2d_cancel): its report, log and result say it
CANCELLED_ON_REQUEST = "cancelled on request"


# --- the shared lifecycle ----------------------------------------------------------------------
@dataclass
class RunStatus:
    """What a runner's :meth:`SupervisedRunner.poll` saw."""

    phase: Phase
    #: queued: why it waits (the scheduler's reason, in words); exited: why it ended abnormally
    #: (out of memory, node failure, preemption, the scheduler's time limit), else None.
    reason: str | None = None
    exit_code: int | None = None
    node: str | None = None


@dataclass
class ActiveRun:
    """One run in a :class:`SupervisedRunner`; ``detail`` is the concrete runner's own state."""

    request: RunRequest
    started: str = ""
    handle: str = ""
    host: str = ""
    node: str | None = None
    detail: Any = None
    image: str | None = None
    image_digest: str | None = None
    stop_reason: str | None = None
    killed: bool = False
    status: RunStatus | None = None
    #: wall-clock times (time.time()) of submission, notebook start and notebook end.
    submitted_epoch: float = 0.0
    started_epoch: float | None = None
    ended_epoch: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def exited(self) -> bool:
        return self.status is not None and self.status.phase is Phase.EXITED


class SupervisedRunner(Runner):
    """The lifecycle: start, poll until the run exits (deadline, progress, cancel), logs, result.

    Subclasses implement :meth:`start`, :meth:`poll`, :meth:`kill` and :meth:`collect_logs`;
    :meth:`finalize`, :meth:`cleanup` and :meth:`exit_message` have defaults.
    """

    #: seconds between polls while the run is alive.
    poll_interval: float = 1.0
    #: seconds to wait for a killed run to end before giving up on it.
    stop_timeout: float = 60.0
    #: seconds past the task's timeout before the lifecycle kills the run itself (a scheduler
    #: that enforces its own time limit gets this long to do it first).
    timeout_grace: float = 0.0
    #: name of the log the task stores with its outputs.
    log_name: str = names.RUNNER_LOG
    #: who "exited with code N" in messages.
    subject: str = "the notebook runner"
    exit_code_label: str = "exit code"

    def __init__(self) -> None:
        self._runs: dict[str, ActiveRun] = {}
        self._runs_lock = threading.Lock()

    # --- what a concrete runner implements -------------------------------------------------------
    @abstractmethod
    def start(self, run: ActiveRun) -> None:
        """Start the run and set ``run.handle`` (and ``run.detail``); raise RunnerError if it
        cannot start. Whatever it created before failing must be in ``run.detail`` for
        :meth:`cleanup`."""

    @abstractmethod
    def poll(self, run: ActiveRun, wait: float) -> RunStatus:
        """Wait up to ``wait`` seconds for the run to end, then say where it is."""

    @abstractmethod
    def kill(self, run: ActiveRun) -> None:
        """Stop the computation now (timeout, cancel, interrupt); :meth:`poll` then sees it end."""

    @abstractmethod
    def collect_logs(self, run: ActiveRun) -> str:
        """Everything the run printed, after it ended."""

    def finalize(self, run: ActiveRun, message: str) -> str:
        """After a kill or a crash without ``result.json``: render the partially executed notebook
        and write a failed ``result.json`` with ``message``. Returns text for the log."""
        return ""

    def cleanup(self, run: ActiveRun) -> None:
        """Remove what the run left on the host (always called, also after a failed start)."""

    def exit_message(self, exit_code: int, logs: str) -> str:
        """Why a run ended without ``result.json``."""
        return f"{self.subject} exited with code {exit_code} without writing {names.RESULT_FILE}" + last_line(logs)

    # --- the template -------------------------------------------------------------------------------
    def run(self, request: RunRequest) -> RunResult:
        run = ActiveRun(request, started=names.iso_utc(), host=socket.gethostname(), submitted_epoch=time.time())
        started_at = time.monotonic()
        self._register(run)
        logs = ""
        try:
            if request.output_dir.is_dir():
                for stale in (names.RESULT_FILE, names.PROGRESS_FILE):  # never report an earlier run's
                    (request.output_dir / stale).unlink(missing_ok=True)
            try:
                self.start(run)
                self._announce(run)
                self._supervise(run)
            except BaseException:  # Ctrl-C, or the supervision failed: never leave the run behind
                with run.lock:
                    run.stop_reason = run.stop_reason or "interrupted"
                self._kill_quietly(run)
                raise
            logs = self.collect_logs(run)
        finally:
            try:
                self.cleanup(run)
            finally:
                self._unregister(run)

        doc = read_result(request.output_dir)
        exit_code = run.status.exit_code if run.status and run.status.exit_code is not None else -1
        reason = run.stop_reason or (run.status.reason if run.status else None)
        crashed = self.exit_message(exit_code, logs) if doc is None else None
        if reason is not None or doc is None:
            logs += self.finalize(run, reason or crashed or "")
            doc = read_result(request.output_dir)
        result = self._result(run, doc, reason, crashed, exit_code, logs, started_at)
        log.info("task %s: %s%s", request.task_id, result.status, f" ({result.error})" if result.error else "")
        return result

    def _supervise(self, run: ActiveRun) -> None:
        """Poll until the run exits; report progress and phase; kill it at the deadline or on cancel."""
        request = run.request
        last: tuple[int, int] | None = None
        deadline: float | None = None
        kill_deadline: float | None = None
        busy = False  # the poll callback has work left: poll without waiting
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                with run.lock:
                    run.stop_reason = run.stop_reason or f"timed out after {request.timeout_seconds} s"
            if run.stop_reason is not None:
                if not run.killed:
                    log.warning("task %s: %s; stopping %s", request.task_id, run.stop_reason, run.handle)
                self._kill_once(run)
                if kill_deadline is None:
                    kill_deadline = now + self.stop_timeout
                elif now >= kill_deadline:
                    log.error("task %s: %s did not end within %.0f s of being stopped", request.task_id,
                              run.handle, self.stop_timeout)
                    run.status = RunStatus(Phase.EXITED, exit_code=None)
                    return
            wait = 0.0 if busy else self.poll_interval
            if deadline is not None and kill_deadline is None:
                wait = min(wait, max(0.0, deadline - now))
            status = self.poll(run, wait)
            last = report_progress(request, last)
            previous, run.status = run.status, status
            if status.node:
                run.node = status.node
            if status.phase is Phase.EXITED:
                if run.ended_epoch is None:
                    run.ended_epoch = time.time()
                return
            if status.phase is Phase.RUNNING and deadline is None:
                if run.started_epoch is None:
                    run.started_epoch = time.time()
                deadline = time.monotonic() + request.timeout_seconds + self.timeout_grace
            if previous is None or (previous.phase, previous.reason) != (status.phase, status.reason):
                self._notify_status(run, status)
            busy = False
            if request.on_poll is not None and run.stop_reason is None:
                try:
                    busy = bool(request.on_poll())
                except TaskCancelled:
                    # c2d_cancel: stop the run as a cancel does and let it end, so that its partial
                    # report is rendered and the task keeps it; the engine then ends cancelled
                    log.info("task %s: cancelled; stopping %s", request.task_id, run.handle)
                    with run.lock:
                        run.stop_reason = run.stop_reason or CANCELLED_ON_REQUEST

    def _result(self, run: ActiveRun, doc: dict[str, Any] | None, reason: str | None, crashed: str | None,
                exit_code: int, logs: str, started_at: float) -> RunResult:
        """The one place ``result.json`` becomes a :class:`RunResult`."""
        request = run.request
        progress = read_progress(request.output_dir)
        timings = {k: float(v) for k, v in (doc or {}).get("timings", {}).items() if isinstance(v, (int, float))}
        timings.update(run.timings)
        finished_epoch = time.time()
        if run.started_epoch is not None:
            timings["submit_to_start_seconds"] = round(max(0.0, run.started_epoch - run.submitted_epoch), 3)
        if run.ended_epoch is not None:
            timings["end_to_result_seconds"] = round(max(0.0, finished_epoch - run.ended_epoch), 3)
        base: dict[str, Any] = dict(
            started=run.started, finished=names.iso_utc(), duration_seconds=round(time.monotonic() - started_at, 3),
            log=logs, log_name=self.log_name, runner=self.name, image=run.image, image_digest=run.image_digest,
            timings=timings, host=run.host or None, handle=run.handle or None, node=run.node,
            images_total=_count(doc, "images_total", progress[1] if progress else 0),
            images_done=_count(doc, "images_done", progress[0] if progress else 0),
        )
        if reason is not None:
            return RunResult(status="failed", error=reason, **base)
        if doc is None:
            return RunResult(status="failed", error=crashed or self.exit_message(exit_code, logs), **base)
        status = "succeeded" if doc.get("status") == "succeeded" else "failed"
        error = doc.get("error") or None
        if status == "succeeded" and exit_code != 0:
            status, error = "failed", f"{self.subject} exited with code {exit_code} after reporting success"
        elif status == "failed" and not error:
            error = f"the notebook run failed ({self.exit_code_label} {exit_code}); see {self.log_name}"
        return RunResult(status=status, error=error, **base)

    # --- cancel, bookkeeping ----------------------------------------------------------------------------
    def cancel(self, task_id: str) -> bool:
        """Stop the run of ``task_id`` if this runner supervises it; ``run`` then returns failed."""
        with self._runs_lock:
            run = self._runs.get(task_id)
        if run is None or run.exited:
            return False
        with run.lock:
            run.stop_reason = run.stop_reason or CANCELLED_ON_REQUEST
        self._kill_once(run)
        log.info("task %s: cancelled", task_id)
        return True

    def running(self) -> list[str]:
        with self._runs_lock:
            return sorted(self._runs)

    def _register(self, run: ActiveRun) -> None:
        with self._runs_lock:
            if run.request.task_id in self._runs:
                raise RunnerError(f"task {run.request.task_id} is already running in this runner")
            self._runs[run.request.task_id] = run

    def _unregister(self, run: ActiveRun) -> None:
        with self._runs_lock:
            if self._runs.get(run.request.task_id) is run:
                del self._runs[run.request.task_id]

    def _kill_once(self, run: ActiveRun) -> None:
        """Kill a started run once (a run still starting is killed by the loop when it starts)."""
        with run.lock:
            if run.killed or not run.handle or run.exited:
                return
            run.killed = True
        self.kill(run)

    def _kill_quietly(self, run: ActiveRun) -> None:
        try:
            self._kill_once(run)
        except Exception as exc:  # keep the error that brought us here
            log.error("task %s: could not stop %s: %s", run.request.task_id, run.handle, exc)

    def _announce(self, run: ActiveRun) -> None:
        callback = run.request.on_started
        if callback is None:
            return
        try:
            callback(run.host, run.handle)
        except Exception:
            log.exception("task %s: on_started callback failed", run.request.task_id)

    def _notify_status(self, run: ActiveRun, status: RunStatus) -> None:
        callback = run.request.on_status
        if callback is None:
            return
        try:
            callback(status.phase.value, status.reason)
        except Exception:
            log.exception("task %s: status callback failed", run.request.task_id)




def report_progress(
    request: RunRequest, last: tuple[int, int] | None, output_dir: Path | None = None
) -> tuple[int, int] | None:
    """Call ``request.progress`` when ``.progress`` changed since ``last``; return the current value.

    Runners poll this while the notebook runs; a failing callback never ends the computation.
    """
    current = read_progress(output_dir if output_dir is not None else request.output_dir)
    if current is None:
        return last
    if current != last and request.progress is not None:
        try:
            request.progress(*current)
        except Exception:
            log.exception("task %s: progress callback failed", request.task_id)
    return current




def last_line(logs: str) -> str:
    """``"; last output: ..."`` from the last non-empty log line, for error messages."""
    line = next((line for line in reversed(logs.splitlines()) if line.strip()), "")
    return f"; last output: {line.strip()[:300]}" if line else ""


def truncate_log(data: bytes | str, limit: int = 2_000_000) -> str:
    """Very long logs keep their beginning and their end."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > limit:
        half = limit // 2
        data = data[:half] + b"\n[... log truncated ...]\n" + data[-half:]
    return data.decode("utf-8", errors="replace")


def _count(doc: dict[str, Any] | None, key: str, fallback: int) -> int:
    try:
        return int((doc or {}).get(key) or fallback)
    except (TypeError, ValueError):
        return fallback
