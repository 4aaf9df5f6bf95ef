"""Faults on LocalGrid with the in-process runner (the notebook stand-in in its own sessions).

Each case kills or breaks the process running a task at one point, then checks the promises in
``support.py``: truthful state within two leases, nothing left of the run, no half prediction,
and a resume that completes the task with every image tagged once.
"""

from __future__ import annotations

import time

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from tests.faults.support import PART_SIZE, FaultZone
from tests.support.engine_support import predictions_by_image

KILL_POINTS = [
    pytest.param("step:stage_inputs:start", id="stage"),
    pytest.param("progress:5", id="execute"),
    pytest.param("part:2", id="between-parts"),
    pytest.param("step:ingest_outputs:start", id="ingest"),
    pytest.param("step:finalize:start", id="finalize"),
]


@pytest.mark.parametrize("kill", KILL_POINTS)
def test_sigkill_at_a_step_boundary(fault_zone: FaultZone, kill: str) -> None:
    task = fault_zone.submit()
    run = fault_zone.drive(task.collection, kill=kill)
    assert run.code == -9, run.log[-3000:]
    record = fault_zone.truthful_within_two_leases(task.task_id, run.ended_at)
    assert record.get(names.A_ERROR).startswith(f"no sign of life from {record.get(names.A_RUN_HOST)} since ")
    fault_zone.assert_nothing_left(task.task_id)
    before = len(fault_zone.classified())
    fault_zone.resume_and_complete(task.task_id)
    redone = len(fault_zone.classified()) - len(set(fault_zone.classified()))
    assert redone <= 2 * PART_SIZE, (before, fault_zone.classified())


def test_sigterm_during_execute_is_recorded_at_once(fault_zone: FaultZone) -> None:
    task = fault_zone.submit()
    run = fault_zone.drive(task.collection, kill="progress:5", signal="TERM")
    assert run.code == 143, run.log[-3000:]
    record = fault_zone.record(task.collection)  # recorded by the run itself, no reaper needed
    assert record.state == TaskState.FAILED and record.get(names.A_ERROR) == "terminated (SIGTERM) on the compute host"
    fault_zone.assert_nothing_left(task.task_id)
    fault_zone.resume_and_complete(task.task_id)


def test_the_notebook_raising_half_way_keeps_the_finished_parts(fault_zone: FaultZone) -> None:
    task = fault_zone.submit()
    run = fault_zone.drive(task.collection, env={"C2D_FAULT_FAIL_AFTER": "7"})
    assert run.code == 1, run.log[-3000:]
    record = fault_zone.record(task.collection)
    assert record.state == TaskState.FAILED and "asked to fail after 7 images" in record.get(names.A_ERROR)
    tagged = [p for p, avus in predictions_by_image(fault_zone.alice).items() if avus]
    assert len(tagged) == 5  # two finished parts of three (broken.png among them: reported, not tagged)
    fault_zone.assert_nothing_left(task.task_id)
    fault_zone.resume_and_complete(task.task_id)
    assert len(fault_zone.classified()) == 7 + (13 - 6)  # again only what the parts did not cover


def test_cancel_of_a_running_local_task_stops_its_processes(fault_zone: FaultZone) -> None:
    """Observation 5 at the process level: the notebook's processes go, the cancel's error stays."""
    task = fault_zone.submit()
    process = fault_zone.start_driver(task.collection)
    deadline = time.monotonic() + 60
    while (fault_zone.record(task.collection).progress or (0, 0))[0] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    outcome = fault_zone.lifecycle.cancel(task.task_id, "alice")
    assert outcome.was_running and outcome.stopped_here
    run = fault_zone.finish(process)
    record = fault_zone.record(task.collection)
    assert record.state == TaskState.CANCELLED and record.get(names.A_ERROR) == "cancelled by alice"
    assert run.code == 1 and len(fault_zone.classified()) < 13, run.log[-3000:]
    fault_zone.assert_nothing_left(task.task_id)
    fault_zone.resume_and_complete(task.task_id)


def test_two_runs_of_the_same_task_at_once(fault_zone: FaultZone) -> None:
    task = fault_zone.submit()
    first = fault_zone.start_driver(task.collection)
    second = fault_zone.start_driver(task.collection)
    runs = sorted([fault_zone.finish(first), fault_zone.finish(second)], key=lambda r: r.code)
    assert [r.code for r in runs] == [0, 3], [r.log[-2000:] for r in runs]
    assert "being run by another process" in runs[1].log or "only a queued task can be started" in runs[1].log
    fault_zone.assert_complete(task.task_id)
    assert sorted(fault_zone.classified()) == sorted(set(fault_zone.classified()))  # nothing done twice


def test_a_full_staging_filesystem(tmp_path, monkeypatch) -> None:
    """Staging on a small tmpfs (not the vault's filesystem: inputs are copied) fills up."""
    import os
    import subprocess

    from compute_to_data.domain.registry import runners
    from tests.faults import fault_runner
    from tests.faults.support import build

    staging = tmp_path / "small"
    staging.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(staging)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small tmpfs for the staging directory: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        monkeypatch.setitem(runners._items, fault_runner.NAME, fault_runner.FaultRunner)
        zone = build(tmp_path, staging_directory=str(staging))
        monkeypatch.setenv(names.SETTINGS_ENV, str(zone.settings_file))
        task = zone.submit()
        run = zone.drive(task.collection)
        assert run.code == 1, run.log[-3000:]
        record = zone.record(task.collection)
        error = record.get(names.A_ERROR)
        assert record.state == TaskState.FAILED and "No space left on device" in error, (error, run.log[-4000:])
        assert error.startswith("cannot stage /tempZone/home/alice/") and str(tmp_path) not in error
        zone.assert_nothing_left(task.task_id)
        subprocess.run(["mount", "-o", "remount,size=4m", str(staging)], check=True)
        zone.resume_and_complete(task.task_id)
    finally:
        subprocess.run(["umount", "-l", str(staging)], capture_output=True)


def test_sigkill_during_a_real_notebook(tmp_path, monkeypatch) -> None:
    """papermill and a Jupyter kernel in its own session (the in-process runner as deployed):
    after the engine's death the kernel is no longer in the tree of the child it started."""
    from compute_to_data.domain.registry import runners
    from tests.faults import fault_runner
    from tests.faults.support import build
    from tests.support.docker_env import TEST_NOTEBOOKS

    monkeypatch.setitem(runners._items, fault_runner.NAME, fault_runner.FaultRunner)
    zone = build(tmp_path, allowed_runners=["inprocess"], notebook_directory=str(TEST_NOTEBOOKS))
    monkeypatch.setenv(names.SETTINGS_ENV, str(zone.settings_file))
    task = zone.submit(container={"runner": "inprocess"}, notebook="parts")
    run = zone.drive(task.collection, kill="progress:4")
    assert run.code == -9, run.log[-3000:]
    kernel = int((zone.staging(task.task_id) / "outputs" / "kernel.pid").read_text())
    assert __import__("os").path.exists(f"/proc/{kernel}")  # what kill -9 leaves: the kernel goes on
    zone.truthful_within_two_leases(task.task_id, run.ended_at)
    zone.assert_nothing_left(task.task_id)
    zone.resume_and_complete(task.task_id)


def test_cancel_then_resume_of_a_running_task(fault_zone: FaultZone) -> None:
    """``c2d cancel T; c2d resume T`` at once: the resume is refused while the cancelled run is
    still stopping here (truthfully), then runs; the stopping run never records a state over the
    resumed task, and its stop never reaches the new run's processes."""
    from compute_to_data.domain.errors import TaskBusyError

    task = fault_zone.submit()
    old = fault_zone.start_driver(task.collection)
    deadline = time.monotonic() + 60
    while (fault_zone.record(task.collection).progress or (0, 0))[0] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    fault_zone.lifecycle.cancel(task.task_id, "alice")
    refused = 0
    while True:
        try:
            resumed = fault_zone.lifecycle.resume(task.task_id, "alice").record
            break
        except TaskBusyError as exc:
            assert "still stopping on this host" in str(exc)
            refused += 1
            assert time.monotonic() < deadline, "the cancelled run never stopped"
            time.sleep(0.02)
    assert resumed.state == TaskState.QUEUED
    new = fault_zone.start_driver(resumed.collection)
    first = fault_zone.finish(old)
    assert fault_zone.record(task.collection).state in (TaskState.QUEUED, TaskState.RUNNING)  # not failed by the old run
    second = fault_zone.finish(new)
    assert second.code == 0, second.log[-4000:]
    assert "queued -> failed" not in first.log and "running -> failed" not in first.log, first.log[-3000:]
    fault_zone.assert_complete(task.task_id)


def test_a_stop_by_run_never_reaches_another_run_of_the_task(fault_zone: FaultZone) -> None:
    """The cancel's stop kills the processes of the run it cancelled (its C2D_RUN_ID), never a
    process of the same task that belongs to another run."""
    import subprocess
    import sys

    from compute_to_data.runners.processes import ENV_RUN_ID, ENV_TASK_ID, processes_with_env, run_id

    task = fault_zone.submit()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={ENV_TASK_ID: task.task_id, ENV_RUN_ID: run_id(task.task_id, "a-later-run")})
    try:
        record = fault_zone.record(task.collection)
        fault_zone.lifecycle.reaper.stop_run(record, whole_task=False)
        assert processes_with_env(ENV_TASK_ID, task.task_id) == [other.pid]  # untouched
        fault_zone.lifecycle.reaper.stop_run(record, whole_task=True)  # a reaper's sweep takes the task's
        other.wait(10)
    finally:
        other.kill()
