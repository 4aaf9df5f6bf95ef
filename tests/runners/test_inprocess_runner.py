"""InProcessRunner: the notebook as a supervised child process (result, progress, timeout, cancel)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.runners.base import RunRequest
from compute_to_data.runners.inprocess import InProcessRunner, to_host_parameters
from tests.support.notebook_support import (
    CLASSIFY_NOTEBOOK,
    SLEEP_NOTEBOOK,
    make_inputs,
    parameters,
    tiny_model,
)


def request(workdir: Path, notebook: Path, params: dict, *, timeout: int = 300, task_id: str = "t-1",
            progress=None) -> RunRequest:
    for sub in ("inputs", "task", "outputs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    return RunRequest(task_id=task_id, notebook_name=notebook.stem, notebook_path=notebook, workdir=workdir,
                      parameters=params, timeout_seconds=timeout, progress=progress)


def sleep_params(workdir: Path, **overrides) -> dict:
    return {"task_id": "t-1", "notebook": "sleep", "input_dir": str(workdir / "inputs"),
            "output_dir": str(workdir / "outputs"), **overrides}


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_classifies_with_container_style_parameters_and_reports_progress(tmp_path):
    model = tiny_model()
    make_inputs(tmp_path / "inputs", 24)
    model_dir = tmp_path / "task" / "model"
    model_dir.mkdir(parents=True)
    for key in ("model", "labels"):
        shutil.copy(model[key], model_dir)
    params = parameters(tmp_path, model, input_dir="/inputs", output_dir="/outputs", batch_size=8, num_workers=2,
                        model_path=f"/task/model/{Path(model['model']).name}",
                        labels_path=f"/task/model/{Path(model['labels']).name}")
    calls: list[tuple[int, int]] = []
    result = InProcessRunner(poll_interval=0.2).run(
        request(tmp_path, CLASSIFY_NOTEBOOK, params, progress=lambda d, t: calls.append((d, t))))

    assert result.status == "succeeded" and result.succeeded, result.error or result.log[-3000:]
    assert result.error is None
    assert (result.images_total, result.images_done) == (25, 25)
    assert (result.runner, result.log_name, result.image) == ("inprocess", names.RUNNER_LOG, None)
    assert "papermill" in result.log and (tmp_path / names.RUNNER_LOG).read_text() == result.log
    assert result.started <= result.finished and result.duration_seconds > 0
    assert {"papermill_seconds", "inference_seconds", "render_seconds"} <= set(result.timings)
    assert calls and calls[-1] == (25, 25)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    doc = json.loads((tmp_path / "outputs" / names.PREDICTIONS_JSON).read_text())
    assert len(doc["images"]) == 25 and sum("error" in e for e in doc["images"]) == 1
    used = json.loads((tmp_path / "params.inprocess.json").read_text())
    assert used["input_dir"] == str(tmp_path / "inputs") and used["model_path"].startswith(str(model_dir))


def test_progress_is_reported_while_the_notebook_runs(tmp_path):
    calls: list[tuple[int, int]] = []
    result = InProcessRunner(poll_interval=0.1).run(request(
        tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path, steps=4, step_seconds=0.7),
        progress=lambda d, t: calls.append((d, t))))
    assert result.succeeded, result.error
    assert (result.images_done, result.images_total) == (4, 4)
    assert len(calls) >= 3 and calls[-1] == (4, 4) and len(set(calls)) == len(calls)


def test_failing_notebook_is_a_failed_result_with_the_cell_error_and_a_report(tmp_path):
    result = InProcessRunner().run(request(tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path, steps=0, fail=True)))
    assert result.status == "failed"
    assert result.error == "RuntimeError: asked to fail"
    assert "asked to fail" in (tmp_path / "outputs" / names.REPORT_FILE).read_text()


def test_a_progress_callback_that_raises_does_not_stop_the_run(tmp_path):
    def broken(done, total):
        raise RuntimeError("catalog unavailable")

    result = InProcessRunner(poll_interval=0.1).run(
        request(tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path, steps=2, step_seconds=0.3), progress=broken))
    assert result.succeeded, result.error


@pytest.mark.slow
def test_timeout_kills_the_whole_process_tree_and_still_renders_a_report(tmp_path):
    started = time.monotonic()
    result = InProcessRunner(poll_interval=0.2).run(
        request(tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path, steps=1, step_seconds=300), timeout=8))
    elapsed = time.monotonic() - started
    assert result.status == "failed" and result.error == "timed out after 8 s"
    assert 8 <= elapsed < 60
    assert (result.images_done, result.images_total) == (0, 1)
    kernel = int((tmp_path / "outputs" / "kernel.pid").read_text())
    assert wait_for(lambda: not alive(kernel), 5), "the Jupyter kernel survived the timeout"
    out = tmp_path / "outputs"
    assert json.loads((out / names.RESULT_FILE).read_text())["error"] == "timed out after 8 s"
    assert "timed out after 8 s" in (out / names.REPORT_FILE).read_text()
    assert "timed out after 8 s" in result.log


@pytest.mark.slow
def test_cancel_stops_a_running_task(tmp_path):
    runner = InProcessRunner(poll_interval=0.2)
    results = []
    req = request(tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path, steps=1, step_seconds=300), task_id="t-cancel")
    thread = threading.Thread(target=lambda: results.append(runner.run(req)))
    thread.start()
    try:
        assert wait_for(lambda: (tmp_path / "outputs" / "kernel.pid").exists(), 90), "the notebook never started"
        assert runner.running() == ["t-cancel"]
        assert runner.cancel("some-other-task") is False
        assert runner.cancel("t-cancel") is True
    finally:
        thread.join(90)
    assert not thread.is_alive()
    (result,) = results
    assert result.status == "failed" and result.error == "cancelled on request"
    kernel = int((tmp_path / "outputs" / "kernel.pid").read_text())
    assert wait_for(lambda: not alive(kernel), 5), "the Jupyter kernel survived the cancel"
    assert runner.running() == [] and runner.cancel("t-cancel") is False
    assert "cancelled on request" in (tmp_path / "outputs" / names.REPORT_FILE).read_text()


def test_a_child_that_dies_without_result_json_is_a_clear_failure(tmp_path):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / names.RESULT_FILE).write_text('{"status": "succeeded"}')  # stale, from an earlier run
    result = InProcessRunner(python="/bin/false").run(request(tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path)))
    assert result.status == "failed"
    assert result.error == f"the notebook runner exited with code 1 without writing {names.RESULT_FILE}"


def test_container_paths_are_translated_to_the_task_workdir(tmp_path):
    req = request(tmp_path, SLEEP_NOTEBOOK, {})
    params = {"input_dir": "/inputs", "output_dir": "/outputs", "model_path": "/task/model/m.pt",
              "labels_path": "/elsewhere/labels.txt", "logical_root": "/inputs/is/a/logical/path", "top_k": 3}
    host = to_host_parameters(params, req)
    assert host["input_dir"] == str(tmp_path / "inputs")
    assert host["output_dir"] == str(tmp_path / "outputs")
    assert host["model_path"] == str(tmp_path / "task" / "model" / "m.pt")
    assert host["labels_path"] == "/elsewhere/labels.txt"
    assert host["logical_root"] == "/inputs/is/a/logical/path" and host["top_k"] == 3


def test_kill_tree_reaches_descendants_in_other_sessions(tmp_path):
    """Jupyter starts kernels with start_new_session: killing the child's group alone misses them."""
    import subprocess
    import sys

    from compute_to_data.runners.processes import kill_tree

    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
        grandchild = int(pid_file.read_text())
        assert alive(grandchild) and os.getpgid(grandchild) != os.getpgid(child.pid)
        kill_tree(child.pid)
        child.wait(10)
        assert wait_for(lambda: not alive(grandchild), 5), "the grandchild in its own session survived"
    finally:
        if child.poll() is None:
            child.kill()


# --- from another process: what is left of a run whose supervisor died ------------------------------
def test_a_run_left_by_a_killed_supervisor_is_stopped_by_its_handle(tmp_path):
    import signal

    from compute_to_data.domain.settings import Settings
    from compute_to_data.runners.processes import processes_with_env
    from tests.support.runner_child import start_supervisor, wait_for_handle

    req = request(tmp_path, SLEEP_NOTEBOOK, sleep_params(tmp_path, steps=1, step_seconds=300), task_id="t-orphan")
    spec = tmp_path / "spec.json"
    child = start_supervisor(spec, "inprocess", Settings(allowed_runners=("inprocess",)), req)
    try:
        handle = wait_for_handle(spec, child)
        assert wait_for(lambda: (tmp_path / "outputs" / "kernel.pid").exists(), 90), "the notebook never started"
    finally:
        os.kill(child.pid, signal.SIGKILL)  # the supervisor only: its notebook child has its own session
        child.wait(30)
    kernel = int((tmp_path / "outputs" / "kernel.pid").read_text())
    runner = InProcessRunner()  # a later status call, in a process that did not start the run
    assert alive(kernel) and runner.is_alive(handle) is True
    assert runner.stop(handle, task_id="t-orphan") is True
    assert wait_for(lambda: not alive(kernel), 5), "the kernel survived stop()"
    assert runner.is_alive(handle) is False and processes_with_env("C2D_TASK_ID", "t-orphan") == []
    assert runner.stop(handle) is False  # nothing left


def test_stop_finds_processes_of_a_task_by_its_id_and_spares_others(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "C2D_TASK_ID": "t-left", "C2D_RUN_TOKEN": "other"}
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=env, start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                 env={**os.environ, "C2D_TASK_ID": "t-other"}, start_new_session=True)
    try:
        assert wait_for(lambda: InProcessRunner().is_alive(f"{left.pid}:other"), 10)
        assert InProcessRunner().stop("1:unknown-token", task_id="t-left") is True
        left.wait(10)
        assert bystander.poll() is None  # another task's process is untouched
    finally:
        for proc in (left, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with pytest.raises(Exception, match="not a handle of the inprocess runner"):
        InProcessRunner().is_alive("container-id")


def kernel_connection_file(kernel_pid: int) -> Path:
    """The connection file a running kernel was started with (``ipykernel_launcher -f FILE``)."""
    argv = Path(f"/proc/{kernel_pid}/cmdline").read_bytes().decode().split("\0")
    return Path(argv[argv.index("-f") + 1])


@pytest.mark.slow
def test_the_kernel_connection_file_lives_in_the_run_s_work_directory(tmp_path):
    """Issue 20 item 7: a killed or cancelled run never cleans up its kernel's connection file
    (with its HMAC key); it must lie in the work directory, removed with the staging directory,
    not in the system's /tmp."""
    runner = InProcessRunner(poll_interval=0.2)
    workdir = tmp_path / "staging" / "t-conn"
    req = request(workdir, SLEEP_NOTEBOOK, sleep_params(workdir, steps=1, step_seconds=300), task_id="t-conn")
    results: list = []
    thread = threading.Thread(target=lambda: results.append(runner.run(req)))
    thread.start()
    try:
        assert wait_for(lambda: (workdir / "outputs" / "kernel.pid").exists(), 90), "the notebook never started"
        connection = kernel_connection_file(int((workdir / "outputs" / "kernel.pid").read_text()))
        assert connection.is_file()
        assert connection.resolve().is_relative_to(workdir.resolve()), connection
        assert (connection.parent.stat().st_mode & 0o077) == 0  # nobody else reads its key
        assert runner.cancel("t-conn") is True
    finally:
        thread.join(90)
    assert not thread.is_alive() and results[0].error == "cancelled on request"
    shutil.rmtree(workdir)  # what the engine and the reaper do with a run's staging directory
    assert not connection.exists()
