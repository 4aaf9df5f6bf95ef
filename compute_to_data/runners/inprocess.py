"""Run the notebook on the compute host itself, without a container (development and tests).

The notebook still runs in a child process (``python -m compute_to_data.notebook.entrypoint``):
that keeps papermill, torch and the Jupyter kernel out of the calling process (possibly the
iRODS server), lets a wall-clock timeout or a cancel kill everything the run started, and gives
a log of everything it printed. It is *not* a sandbox: the notebook runs with the caller's
rights, which is why the server settings allow only the docker runner by default.

This module imports nothing heavy; it is safe to import from server code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import conventions as names
from ..errors import RunnerError
from .base import (
    RunRequest,
    RunResult,
    Runner,
    marked_environment,
    poll,
    read_progress,
    report_progress,
    report_started,
    stop_marked_processes,
)

log = logging.getLogger(__name__)

ENTRYPOINT_MODULE = "compute_to_data.notebook.entrypoint"
PARAMS_FILE = "params.inprocess.json"
MAX_LOG_BYTES = 2_000_000


def find_python() -> str:
    """The interpreter for the child: ours, unless we are embedded (e.g. in the iRODS server)."""
    exe = sys.executable
    if exe and Path(exe).name.startswith("python") and os.access(exe, os.X_OK):
        return exe
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise RunnerError(
            "the in-process runner cannot find a Python interpreter (sys.executable is "
            f"{exe!r} and no python3 on PATH); pass python=... to InProcessRunner"
        )
    return found


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux ``/proc``), parents before children.

    Jupyter starts the kernel in its own session, so killing the child's process group alone
    would leave the kernel (and its DataLoader workers) running.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(children.get(pid, []))
    return tree


def kill_tree(root: int) -> None:
    """SIGKILL ``root``, every descendant and their process groups (never our own group).

    The tree is frozen with SIGSTOP first, so nothing can fork a process we would miss.
    """
    own_group = os.getpgid(0)
    frozen: set[int] = set()
    if Path("/proc").is_dir():
        for _ in range(5):
            new = [pid for pid in process_tree(root) if pid not in frozen]
            if not new:
                break
            for pid in new:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except (ProcessLookupError, PermissionError):
                    pass
                frozen.add(pid)
    for pid in frozen | {root}:
        try:
            group = os.getpgid(pid)
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def to_host_parameters(parameters: dict[str, Any], request: RunRequest) -> dict[str, Any]:
    """Translate container paths (``/inputs``, ``/outputs``, ``/task``) into this task's workdir.

    The task may build parameters as a container would see them; here the notebook runs on the
    host, so ``/task/model/m.pt`` becomes ``<workdir>/task/model/m.pt``. Host paths pass through.
    """
    mounts = {
        names.CONTAINER_INPUT_DIR: request.input_dir,
        names.CONTAINER_OUTPUT_DIR: request.output_dir,
        names.CONTAINER_TASK_DIR: request.task_dir,
    }
    translated = dict(parameters)
    for key in ("input_dir", "output_dir", "model_path", "labels_path", "previous_predictions"):
        value = translated.get(key)
        if not isinstance(value, str):
            continue
        for mount, host in mounts.items():
            if value == mount or value.startswith(mount + "/"):
                translated[key] = str(host.resolve() / value[len(mount):].lstrip("/"))
                break
    translated["output_dir"] = str(request.output_dir.resolve())
    translated.setdefault("input_dir", str(request.input_dir.resolve()))
    return translated


@dataclass
class _Run:
    process: subprocess.Popen
    stop_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class InProcessRunner(Runner):
    """Runs the notebook entrypoint as a supervised child process on this host."""

    name = "inprocess"

    #: the module the child runs (``python -m``); tests substitute a lighter stand-in.
    entrypoint_module = ENTRYPOINT_MODULE

    def __init__(self, settings: object | None = None, *, python: str | None = None,
                 poll_interval: float = 1.0, finalize_timeout: float = 120.0) -> None:
        """``settings`` is accepted for symmetry with other runners and not needed here."""
        self.python = python
        self.poll_interval = poll_interval
        self.finalize_timeout = finalize_timeout
        self._runs: dict[str, _Run] = {}
        self._runs_lock = threading.Lock()

    def describe(self) -> str:
        return f"inprocess ({self.python or find_python()}, no container)"

    # --- the run ----------------------------------------------------------------------------
    def run(self, request: RunRequest) -> RunResult:
        python = self.python or find_python()
        workdir = request.workdir.resolve()
        output_dir = request.output_dir.resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        for stale in (names.RESULT_FILE, names.PROGRESS_FILE):  # never report an earlier run's
            (output_dir / stale).unlink(missing_ok=True)
        params_path = workdir / PARAMS_FILE
        params_path.write_text(json.dumps(to_host_parameters(request.parameters, request), indent=2) + "\n")
        log_path = workdir / names.RUNNER_LOG
        command = [python, "-m", self.entrypoint_module, "--params", str(params_path),
                   "--notebook", str(Path(request.notebook_path).resolve()), "--output-dir", str(output_dir)]

        started_at, started = time.monotonic(), names.iso_utc()
        with open(log_path, "wb") as log_file:
            try:
                process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, cwd=workdir,
                                           env=self._child_env(request.task_id), start_new_session=True)
            except OSError as exc:
                raise RunnerError(f"cannot start the notebook runner {python!r}: {exc}") from exc
            run = _Run(process)
            with self._runs_lock:
                if request.task_id in self._runs:
                    kill_tree(process.pid)
                    process.wait()
                    raise RunnerError(f"task {request.task_id} is already running in this runner")
                self._runs[request.task_id] = run
            log.info("task %s: started %s (pid %d)", request.task_id, " ".join(command), process.pid)
            try:
                report_started(request, f"pid:{process.pid}")
                self._supervise(request, run, started_at, output_dir)
            except BaseException:  # the task's poll hook raised, Ctrl-C, SIGTERM: nothing outlives us
                with run.lock:
                    run.stop_reason = run.stop_reason or "interrupted"
                kill_tree(process.pid)
                process.wait()
                stop_marked_processes(request.task_id)
                raise
            finally:
                with self._runs_lock:
                    self._runs.pop(request.task_id, None)

        if run.stop_reason is not None:
            self._finalize(python, run.stop_reason, request, output_dir, started, log_path)
        result = self._result(request, run, output_dir, started, started_at, log_path)
        log.info("task %s: %s%s", request.task_id, result.status, f" ({result.error})" if result.error else "")
        return result

    def _supervise(self, request: RunRequest, run: _Run, started_at: float, output_dir: Path) -> None:
        """Wait for the child, report progress, kill it at the deadline."""
        deadline = started_at + request.timeout_seconds
        last: tuple[int, int] | None = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                run.process.wait(timeout=max(0.0, min(self.poll_interval, remaining)))
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
            last = report_progress(request, last, output_dir)
            if exited:
                return
            poll(request)
            if time.monotonic() >= deadline:
                with run.lock:
                    run.stop_reason = run.stop_reason or f"timed out after {request.timeout_seconds} s"
                kill_tree(run.process.pid)
                run.process.wait()
                report_progress(request, last, output_dir)
                return

    def _finalize(self, python: str, reason: str, request: RunRequest, output_dir: Path, started: str,
                  log_path: Path) -> None:
        """After a kill: render the partially executed notebook and write a failed result.json."""
        command = [python, "-m", ENTRYPOINT_MODULE, "--output-dir", str(output_dir), "--interrupted", reason,
                   "--input-dir", str(request.input_dir.resolve()), "--started", started]
        with open(log_path, "ab") as log_file:
            log_file.write(f"\n[inprocess runner] {reason}; process tree killed\n".encode())
            log_file.flush()
            try:
                subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=self._child_env(request.task_id), timeout=self.finalize_timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("task %s: could not render the interrupted report: %s", request.task_id, exc)

    def _result(self, request: RunRequest, run: _Run, output_dir: Path, started: str, started_at: float,
                log_path: Path) -> RunResult:
        text = _read_log(log_path)
        base = dict(started=started, finished=names.iso_utc(), duration_seconds=round(time.monotonic() - started_at, 3),
                    log=text, log_name=names.RUNNER_LOG, runner=self.name)
        doc: dict[str, Any] | None
        try:
            doc = json.loads((output_dir / names.RESULT_FILE).read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                doc = None
        except (OSError, ValueError):
            doc = None
        progress = read_progress(output_dir)
        timings = {k: float(v) for k, v in (doc or {}).get("timings", {}).items() if isinstance(v, (int, float))}

        if run.stop_reason is not None:
            total = int((doc or {}).get("images_total") or (progress[1] if progress else 0))
            done = int((doc or {}).get("images_done") or (progress[0] if progress else 0))
            return RunResult(status="failed", images_total=total, images_done=done, error=run.stop_reason,
                             timings=timings, **base)
        code = run.process.returncode
        if doc is None:
            last_line = next((line for line in reversed(text.splitlines()) if line.strip()), "")
            detail = f"; last output: {last_line.strip()[:300]}" if last_line else ""
            return RunResult(
                status="failed",
                images_total=progress[1] if progress else 0,
                images_done=progress[0] if progress else 0,
                error=f"the notebook runner exited with code {code} without writing {names.RESULT_FILE}{detail}",
                timings=timings, **base,
            )
        status = "succeeded" if doc.get("status") == "succeeded" else "failed"
        error = doc.get("error") or None
        if status == "succeeded" and code != 0:
            status, error = "failed", f"the notebook runner exited with code {code} after reporting success"
        elif status == "failed" and not error:
            error = f"the notebook run failed (exit code {code}); see {names.RUNNER_LOG}"
        return RunResult(status=status, images_total=int(doc.get("images_total") or 0),
                         images_done=int(doc.get("images_done") or 0), error=error, timings=timings, **base)

    # --- cancel -----------------------------------------------------------------------------
    def cancel(self, task_id: str) -> bool:
        """Kill the run of ``task_id`` if this runner is executing it; ``run`` then returns failed."""
        with self._runs_lock:
            run = self._runs.get(task_id)
        if run is None or run.process.poll() is not None:
            return False
        with run.lock:
            run.stop_reason = run.stop_reason or "cancelled on request"
        kill_tree(run.process.pid)
        log.info("task %s: cancelled", task_id)
        return True

    def running(self) -> list[str]:
        with self._runs_lock:
            return sorted(self._runs)

    # --- runs of other processes -------------------------------------------------------------
    def is_alive(self, handle: str) -> bool:
        pid = _pid_of(handle)
        if pid is None:
            return False
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                return fh.read().rpartition(")")[2].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def stop(self, handle: str, task_id: str) -> bool:
        """The child's tree (if it is still ours to find) and every process marked with the task."""
        stopped = False
        pid = _pid_of(handle)
        if pid is not None and self.is_alive(handle) and _carries_marker(pid, task_id):
            kill_tree(pid)
            stopped = True
        return bool(stop_marked_processes(task_id)) or stopped

    # --- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _child_env(task_id: str) -> dict[str, str]:
        """Our environment, the task marker (``C2D_TASK_ID``), and our own package location when
        it is not installed site-wide."""
        env = marked_environment(task_id)
        package_parent = str(Path(__file__).resolve().parents[2])
        if "site-packages" not in package_parent and "dist-packages" not in package_parent:
            existing = env.get("PYTHONPATH")
            env["PYTHONPATH"] = package_parent + (os.pathsep + existing if existing else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env


def _pid_of(handle: str) -> int | None:
    kind, _, value = handle.partition(":")
    return int(value) if kind == "pid" and value.isdigit() else None


def _carries_marker(pid: int, task_id: str) -> bool:
    """A recorded pid may have been reused by an unrelated process since: check the marker."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"{names.TASK_ID_ENV}={task_id}".encode() in fh.read().split(b"\0")
    except OSError:
        return False


def _read_log(path: Path) -> str:
    """The child's output; very long logs keep their beginning and their end."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    if len(data) > MAX_LOG_BYTES:
        half = MAX_LOG_BYTES // 2
        data = data[:half] + b"\n[... log truncated ...]\n" + data[-half:]
    return data.decode("utf-8", errors="replace")
