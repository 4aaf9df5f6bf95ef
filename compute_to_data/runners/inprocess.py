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
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_to_data.contract.inputs import MANIFEST_PARAMETER, STATUS_PARAMETER
from compute_to_data.contract.workdir import RUNTIME_DIR_ENV, TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import RunnerError
from compute_to_data.runners.base import (
    ActiveRun,
    Phase,
    RunRequest,
    RunStatus,
    SupervisedRunner,
    truncate_log,
)
from compute_to_data.runners.processes import (
    ENV_RUN_ID,
    ENV_TASK_ID,
    kill_tree,
    processes_with_env,
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
    for key in ("input_dir", "output_dir", "model_path", "labels_path", "previous_predictions",
                MANIFEST_PARAMETER, STATUS_PARAMETER):
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


#: a token in the environment of every process of one run (the kernel and its workers inherit it):
#: how another process finds what is left of the run when its parent is gone.
ENV_RUN_TOKEN = "C2D_RUN_TOKEN"


@dataclass
class _Child:
    process: subprocess.Popen
    python: str
    log_path: Path
    output_dir: Path


class InProcessRunner(SupervisedRunner):
    """Runs the notebook entrypoint as a supervised child process on this host."""

    name = "inprocess"
    log_name = names.RUNNER_LOG
    subject = "the notebook runner"
    #: the module the child runs (``python -m``); tests substitute a lighter stand-in.
    entrypoint_module = ENTRYPOINT_MODULE

    def __init__(self, settings: object | None = None, *, python: str | None = None,
                 poll_interval: float = 1.0, finalize_timeout: float = 120.0) -> None:
        """``settings`` is accepted for symmetry with other runners and not needed here."""
        super().__init__()
        self.python = python
        self.poll_interval = poll_interval
        self.finalize_timeout = finalize_timeout

    def describe(self) -> str:
        return f"inprocess ({self.python or find_python()}, no container)"

    # --- the lifecycle's steps ------------------------------------------------------------------
    def start(self, run: ActiveRun) -> None:
        request = run.request
        python = self.python or find_python()
        workdir = request.workdir.resolve()
        output_dir = request.output_dir.resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        params_path = workdir / PARAMS_FILE
        params_path.write_text(json.dumps(to_host_parameters(request.parameters, request), indent=2) + "\n")
        log_path = workdir / names.RUNNER_LOG
        command = [python, "-m", self.entrypoint_module, "--params", str(params_path),
                   "--notebook", str(Path(request.notebook_path).resolve()), "--output-dir", str(output_dir)]
        token = secrets.token_hex(8)
        env = self._child_env()
        # The kernel's connection file (with its HMAC key) goes into the run's own work
        # directory, so a run that is killed or cancelled (which never gets to clean up) leaves
        # nothing in /tmp: it goes with the staging directory (notebook/execute.py).
        scratch = TaskWorkdir(workdir.parent, workdir.name).runtime_dir
        scratch.mkdir(mode=0o700, exist_ok=True)
        env[RUNTIME_DIR_ENV] = str(scratch)
        env[ENV_TASK_ID] = request.task_id
        env[ENV_RUN_ID] = request.run_id or request.task_id
        env[ENV_RUN_TOKEN] = token
        with open(log_path, "wb") as log_file:
            try:
                process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, cwd=workdir, env=env,
                                           start_new_session=True)
            except OSError as exc:
                raise RunnerError(f"cannot start the notebook runner {python!r}: {exc}") from exc
        run.started_epoch = time.time()
        run.detail = _Child(process, python, log_path, output_dir)
        run.handle = f"{process.pid}:{token}"
        log.info("task %s: started %s (pid %d)", request.task_id, " ".join(command), process.pid)

    def poll(self, run: ActiveRun, wait: float) -> RunStatus:
        child: _Child = run.detail
        try:
            code = child.process.wait(timeout=max(0.0, wait))
        except subprocess.TimeoutExpired:
            return RunStatus(Phase.RUNNING)
        return RunStatus(Phase.EXITED, exit_code=code)

    def kill(self, run: ActiveRun) -> None:
        kill_tree(run.detail.process.pid)

    def collect_logs(self, run: ActiveRun) -> str:
        return _read_log(run.detail.log_path)

    def finalize(self, run: ActiveRun, message: str) -> str:
        """After a kill or a crash: render the partially executed notebook, write a failed result.json."""
        child: _Child = run.detail
        request = run.request
        command = [child.python, "-m", self.entrypoint_module, "--output-dir", str(child.output_dir),
                   "--interrupted", message, "--input-dir", str(request.input_dir.resolve()),
                   "--started", run.started]
        offset = child.log_path.stat().st_size if child.log_path.exists() else 0
        with open(child.log_path, "ab") as log_file:
            log_file.write(f"\n[inprocess runner] {message}; rendering the partial report\n".encode())
            log_file.flush()
            try:
                subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=self._child_env(), timeout=self.finalize_timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("task %s: could not render the interrupted report: %s", request.task_id, exc)
        with open(child.log_path, "rb") as log_file:
            log_file.seek(offset)
            return truncate_log(log_file.read(), MAX_LOG_BYTES)

    def cleanup(self, run: ActiveRun) -> None:
        child: _Child | None = run.detail
        if child is not None and child.process.poll() is None:  # interrupted: never leave it running
            kill_tree(child.process.pid)
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("task %s: pid %d survived SIGKILL", run.request.task_id, child.process.pid)

    # --- from another process ------------------------------------------------------------------
    def is_alive(self, handle: str) -> bool:
        """Whether any process of the run with this handle (``pid:token``) still runs on this host."""
        _, token = _parse_handle(handle)
        return bool(processes_with_env(ENV_RUN_TOKEN, token))

    def stop(self, handle: str, task_id: str | None = None, wait: float = 10.0, *, reason: str | None = None) -> bool:
        """Kill every process of the run (found by the token its environment carries) and, with
        ``task_id``, of any run of that task; the parent first, with all its descendants."""
        pid, token = _parse_handle(handle)
        roots = set(processes_with_env(ENV_RUN_TOKEN, token))
        if task_id is not None:
            roots |= set(processes_with_env(ENV_TASK_ID, task_id))
        if not roots:
            return False
        for root in sorted(roots, key=lambda p: (p != pid, p)):
            kill_tree(root)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (processes_with_env(ENV_RUN_TOKEN, token)
                                               or (task_id and processes_with_env(ENV_TASK_ID, task_id))):
            time.sleep(0.1)
        log.info("stopped %d process(es) of run %s", len(roots), handle)
        return True

    # --- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _child_env() -> dict[str, str]:
        """Our environment, plus our own package location when it is not installed site-wide."""
        env = dict(os.environ)
        for private in (ENV_TASK_ID, ENV_RUN_ID, ENV_RUN_TOKEN):
            env.pop(private, None)
        package_parent = str(Path(__file__).resolve().parents[2])
        if "site-packages" not in package_parent and "dist-packages" not in package_parent:
            existing = env.get("PYTHONPATH")
            env["PYTHONPATH"] = package_parent + (os.pathsep + existing if existing else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env


def _parse_handle(handle: str) -> tuple[int, str]:
    pid, _, token = handle.partition(":")
    if not pid.isdigit() or not token:
        raise RunnerError(f"not a handle of the inprocess runner: {handle!r} (expected pid:token)")
    return int(pid), token






def _read_log(path: Path) -> str:
    """The child's output; very long logs keep their beginning and their end."""
    try:
        return truncate_log(path.read_bytes(), MAX_LOG_BYTES)
    except OSError:
        return ""
