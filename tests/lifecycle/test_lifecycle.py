"""The task lifecycle: one writer of c2d::state, signs of life, the reaper, parts and resume.

On LocalGrid with the scripted runner (tests/support/engine_support.py), which writes its predictions in
parts and calls the task's poll hook as a real runner's supervise loop does.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import AccessDeniedError, TaskBusyError, TaskStateError
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.predictions import stored_parts
from compute_to_data.grid import hosts
from compute_to_data.lifecycle.machine import TRANSITIONS
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.processes import ENV_TASK_ID, processes_with_env
from compute_to_data.service.tasks import TaskService
from tests.support.engine_support import (
    IMAGES,
    RESULTS,
    ScriptedRunner,
    assert_no_half_pair,
    assert_tagged_once_by,
    make_config,
    make_grid,
    make_settings,
)

TWELVE = {f"img_{i:02d}.png": str(i % 3).encode() for i in range(12)}


@pytest.fixture
def grid(tmp_path):
    return make_grid(tmp_path, TWELVE)


def settings_for(tmp_path, **overrides):
    values = {"heartbeat_interval_seconds": 0.2, "heartbeat_lease_seconds": 1.0, "part_size": 4,
              "lock_directory": str(tmp_path / "locks")}
    values.update(overrides)
    return make_settings(tmp_path, **values)


def context_for(tmp_path, grid, runner, **settings):
    return TaskContext(grid=grid, settings=settings_for(tmp_path, **settings), runner=runner, progress_interval=0.0)


def record_of(grid, collection):
    return TaskStateStore(grid).read(collection)


# --- one writer, one table ------------------------------------------------------------------------
def test_only_the_lifecycle_writes_a_state(tmp_path, grid):
    _, alice = grid
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    with pytest.raises(TaskStateError, match="written by the task lifecycle only"):
        TaskStateStore(alice).write(submitted.collection, {names.A_STATE: TaskState.SUCCEEDED})
    source = Path(__file__).resolve().parents[2] / "compute_to_data"
    writers = [p.relative_to(source).as_posix() for p in source.rglob("*.py")
               if "A_STATE:" in p.read_text() or "names.A_STATE, TaskState" in p.read_text()]
    assert writers == ["lifecycle/machine.py"], writers  # nothing else builds a state write


def test_transitions_outside_the_table_are_refused_with_a_clear_message(tmp_path, grid):
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path))
    context = context_for(tmp_path, alice, ScriptedRunner())
    done = create_task(make_config(), context).run()
    assert done.succeeded
    with pytest.raises(TaskStateError, match=rf"task {done.task_id} is succeeded; only a failed or cancelled task can be resumed"):
        lifecycle.resume(done.task_id, "alice")
    with pytest.raises(TaskStateError, match="is already succeeded; nothing to cancel"):
        lifecycle.cancel(done.task_id, "alice")
    for state, allowed in TRANSITIONS.items():
        for target in TaskState:
            assert (target in allowed) == (
                (state, target) in {
                    (None, TaskState.QUEUED), (TaskState.QUEUED, TaskState.RUNNING), (TaskState.QUEUED, TaskState.FAILED),
                    (TaskState.QUEUED, TaskState.CANCELLED), (TaskState.RUNNING, TaskState.SUCCEEDED),
                    (TaskState.RUNNING, TaskState.FAILED), (TaskState.RUNNING, TaskState.CANCELLED),
                    (TaskState.FAILED, TaskState.QUEUED), (TaskState.CANCELLED, TaskState.QUEUED),
                }
            ), (state, target)
    with pytest.raises(TaskStateError, match="cannot become running"):
        lifecycle.machine.transition(done.collection, TaskState.RUNNING)
    assert record_of(alice, done.collection).state == TaskState.SUCCEEDED


def test_a_writer_that_lost_a_race_does_not_overwrite(tmp_path, grid):
    """The engine finishing after a reaper recorded failed (or another run took over) is refused."""
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path))

    def reaped_meanwhile(request):
        collection = posixpath.join(RESULTS, request.task_id)
        started = record_of(alice, collection).get(names.A_STARTED)
        lifecycle.machine.transition(collection, TaskState.FAILED, {names.A_ERROR: "no sign of life from x since y"},
                             expect_started=started)

    task = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner(before_return=reaped_meanwhile)))
    outcome = task.run()
    record = record_of(alice, task.collection)
    assert record.state == TaskState.FAILED and record.get(names.A_ERROR) == "no sign of life from x since y"
    assert outcome.state == TaskState.FAILED and "no sign of life" in outcome.error
    assert_tagged_once_by(alice, task.task_id, expect=0)  # it stopped: tagged nothing after losing the task

    # A stale read is caught by the claim: the token it read was replaced by the cancel.
    queued = create_task(make_config(inputs__skip_tagged=False), context_for(tmp_path, alice, ScriptedRunner())).submit()
    stale = record_of(alice, queued.collection)
    lifecycle.cancel(queued.collection, "alice")  # meanwhile, someone cancels it
    reads = []
    real_read = lifecycle.machine.writer.store.read

    def read_stale_once(collection):
        reads.append(collection)
        return stale if len(reads) == 1 else real_read(collection)

    lifecycle.machine.writer.store.read = read_stale_once  # type: ignore[method-assign]
    with pytest.raises(TaskStateError, match="only a queued task can be started"):
        lifecycle.machine.begin_run(queued.collection, {})
    assert len(reads) == 2 and real_read(queued.collection).state == TaskState.CANCELLED


def test_two_runs_of_the_same_task_at_once_one_refuses(tmp_path, grid):
    """Both find the task queued (the first waits for a free slot): the run lock decides."""
    from compute_to_data.engine.slots import ResourceSlot

    _, alice = grid
    context = context_for(tmp_path, alice, ScriptedRunner())
    submitted = create_task(make_config(), context).submit()
    lifecycle = TaskService(alice, context.settings)
    busy = ResourceSlot(tmp_path / "locks", "gpu_resc", 1)
    assert busy.acquire()  # another task holds the resource's only slot
    first: list = []
    thread = threading.Thread(target=lambda: first.append(lifecycle.start(submitted.collection, context)))
    thread.start()
    try:
        time.sleep(1.0)
        assert record_of(alice, submitted.collection).state == TaskState.QUEUED
        second = context_for(tmp_path, alice, ScriptedRunner())
        with pytest.raises(TaskBusyError, match="being run by another process on this host"):
            TaskService(alice, second.settings).start(submitted.collection, second)
        assert record_of(alice, submitted.collection).state == TaskState.QUEUED  # the refusal recorded nothing
    finally:
        busy.release()
        thread.join(20)
    assert first[0].succeeded and second.runner.requests == []
    with pytest.raises(TaskStateError, match="is succeeded; only a queued task can be started"):
        lifecycle.start(submitted.collection, second)
    assert_tagged_once_by(alice, submitted.task_id, expect=12)


# --- signs of life --------------------------------------------------------------------------------
def test_a_running_task_records_its_host_handle_and_heartbeat(tmp_path, grid):
    _, alice = grid
    seen = []

    def look(request, i):
        if i in (1, 12):
            time.sleep(0.25)
            request.on_poll()
            seen.append(dict(record_of(alice, posixpath.join(RESULTS, request.task_id)).values))

    task = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner(after_image=look)))
    assert task.run().succeeded
    first, last = seen
    assert first[names.A_STATE] == "running" and first[names.A_RUN_HOST] == "localhost"
    assert first[names.A_RUN_HANDLE] == "scripted:1" and first[names.A_HEARTBEAT] >= first[names.A_STARTED]
    assert last[names.A_PROGRESS] == "12/12" and last[names.A_HEARTBEAT] >= first[names.A_HEARTBEAT]


def test_a_cancelled_run_stops_at_its_next_sign_of_life_and_keeps_the_cancel(tmp_path, grid):
    """Observation 5: the cancel stops the run (it tags nothing more) and its error stays."""
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path))

    def cancel_at_six(request, i):
        if i == 6:
            lifecycle.cancel(request.task_id, "alice")
            time.sleep(0.25)  # the next heartbeat is due

    runner = ScriptedRunner(part_size=4, after_image=cancel_at_six)
    task = create_task(make_config(), context_for(tmp_path, alice, runner))
    outcome = task.run()
    record = record_of(alice, task.collection)
    assert record.state == TaskState.CANCELLED and record.get(names.A_ERROR) == "cancelled by alice"
    assert outcome.state == TaskState.CANCELLED
    assert len(runner.classified) == 6  # the run went no further
    assert_tagged_once_by(alice, task.task_id, expect=4)  # the first part: tagged before the cancel
    assert_no_half_pair(alice)


def marked_sleeper(task_id: str) -> subprocess.Popen:
    """What a dead engine leaves behind: a notebook process carrying the task's marker."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                            env={**os.environ, names.TASK_ID_ENV: task_id}, start_new_session=True)


def test_the_reaper_stops_what_a_dead_run_left_and_records_why(tmp_path, grid):
    _, alice = grid
    # a lease long enough that the first look, however loaded the machine, finds the heartbeat fresh
    settings = settings_for(tmp_path, heartbeat_lease_seconds=3.0)
    lifecycle = TaskService(alice, settings)
    context = context_for(tmp_path, alice, ScriptedRunner())
    submitted = create_task(make_config(), context).submit()
    lifecycle.machine.begin_run(submitted.collection, {names.A_PROGRESS: "4/12", names.A_RUN_HOST: "localhost",
                                               names.A_RUNNER: "inprocess", names.A_RUN_HANDLE: "1:nosuchtoken"})
    staging = Path(settings.staging_directory) / submitted.task_id
    (staging / "outputs").mkdir(parents=True)
    leftover = marked_sleeper(submitted.task_id)
    try:
        assert lifecycle.status(submitted.task_id).display_state == "running"  # alive: a fresh heartbeat
        lock = lifecycle.machine.run_lock(alice.get_resource("gpu_resc"), submitted.task_id)
        assert lock.acquire()
        time.sleep(3.1)
        held = lifecycle.status(submitted.task_id)  # silent, but its lock is held: alive, only slow
        assert held.display_state == names.STALE and held.record.state == TaskState.RUNNING
        lock.release()
        status = lifecycle.status(submitted.task_id)
        assert status.record.state == TaskState.FAILED and status.display_state == "failed"
        error = status.record.get(names.A_ERROR)
        assert error.startswith("no sign of life from localhost since ") and error.endswith("; 4/12 images done")
        assert leftover.wait(5) == -9 and not staging.exists()
        assert processes_with_env(ENV_TASK_ID, submitted.task_id) == []
    finally:
        if leftover.poll() is None:
            leftover.kill()


def test_elsewhere_a_silent_task_is_shown_stale_and_left_alone(tmp_path, grid, monkeypatch):
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path))
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    lifecycle.machine.begin_run(submitted.collection, {})
    monkeypatch.setattr(hosts, "is_local_host", lambda host, extra=(): False)
    time.sleep(2.1)
    status = lifecycle.status(submitted.task_id)
    assert status.display_state == names.STALE and status.record.state == TaskState.RUNNING
    assert record_of(alice, submitted.collection).get(names.A_STATE) == "running"  # "stale" is never written


# --- parts and resume -----------------------------------------------------------------------------
def test_parts_are_tagged_while_the_notebook_works_on_the_next(tmp_path, grid):
    _, alice = grid
    tagged_at: dict[int, int] = {}

    def count(request, i):
        tagged_at[i] = sum(1 for o in alice.list_data_objects(IMAGES, avu_attributes=("predictedclass",)) if o.avus)

    task = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner(part_size=4, after_image=count)))
    outcome = task.run()
    assert outcome.succeeded and outcome.parts_tagged == 3 and outcome.tagged == 12
    assert tagged_at[4] == 0 and tagged_at[5] == 4 and tagged_at[9] == 8  # each part right after it was written
    assert [name for name, _ in stored_parts(alice, task.collection)] == [
        "run00-part-000000.json", "run00-part-000001.json", "run00-part-000002.json"]
    assert_tagged_once_by(alice, task.task_id, expect=12)


def test_a_failed_run_keeps_its_parts_and_a_resume_does_only_the_rest(tmp_path, grid):
    _, alice = grid
    runner = ScriptedRunner(part_size=4, fail_after=7)
    context = context_for(tmp_path, alice, runner)
    task = create_task(make_config(), context)
    outcome = task.run()
    assert outcome.state == TaskState.FAILED and "failed after 7 images" in outcome.error
    assert_tagged_once_by(alice, task.task_id, expect=4)  # the one finished part
    assert_no_half_pair(alice)

    lifecycle = TaskService(alice, context.settings)
    resumed = lifecycle.resume(task.task_id, "alice").record
    assert resumed.state == TaskState.QUEUED and resumed.get(names.A_RESUMED) == "1"
    assert names.A_ERROR not in resumed.values and names.A_FINISHED not in resumed.values
    again = ScriptedRunner(part_size=4)
    final = lifecycle.start(task.collection, context_for(tmp_path, alice, again))
    assert final.succeeded, final.error
    assert len(again.classified) == 8 and final.done_before == 4  # only what was not done
    record = record_of(alice, task.collection)
    assert record.get(names.A_PROGRESS) == "12/12" and record.get(names.A_INPUTS) == "12"
    assert_tagged_once_by(alice, task.task_id, expect=12)
    predictions = json.loads(alice.read_data_object(f"{task.collection}/predictions.json"))
    assert len(predictions["images"]) == 12  # the whole task, earlier run included
    assert {n for n, _ in stored_parts(alice, task.collection)} >= {"run00-part-000000.json", "run01-part-000000.json"}
    with pytest.raises(TaskStateError, match="is succeeded; only a failed or cancelled task can be resumed"):
        lifecycle.resume(task.task_id, "alice")


def test_an_image_stored_but_not_tagged_by_a_dead_run_is_tagged_by_the_resume(tmp_path, grid):
    """The crash window between storing a part and tagging it costs nothing twice."""
    _, alice = grid
    context = context_for(tmp_path, alice, ScriptedRunner(part_size=4, fail_after=5))
    task = create_task(make_config(), context)
    task.run()
    first_part = [o for o in alice.list_data_objects(IMAGES, avu_attributes=("predictedclass", "predictedscore")) if o.avus]
    victim = first_part[0]
    alice.apply_metadata([MetadataOperation("remove", EntityType.DATA_OBJECT, victim.path, a) for a in victim.avus])
    lifecycle = TaskService(alice, context.settings)
    lifecycle.resume(task.task_id, "alice")
    again = ScriptedRunner(part_size=4)
    assert lifecycle.start(task.collection, context_for(tmp_path, alice, again)).succeeded
    assert victim.name not in again.classified and len(again.classified) == 8
    assert_tagged_once_by(alice, task.task_id, expect=12)


def test_resume_replaces_an_incomplete_pair_of_the_task_atomically(tmp_path, grid):
    _, alice = grid
    context = context_for(tmp_path, alice, ScriptedRunner(part_size=0, fail_after=0))
    task = create_task(make_config(), context)
    task.run()
    units = names.task_units(task.task_id)
    alice.set_avus(EntityType.DATA_OBJECT, f"{IMAGES}/img_03.png", [AVU("predictedclass", "0", units)])
    lifecycle = TaskService(alice, context.settings)
    lifecycle.resume(task.task_id, "alice")
    again = ScriptedRunner()
    assert lifecycle.start(task.collection, context_for(tmp_path, alice, again)).succeeded
    assert "img_03.png" in again.classified
    assert_tagged_once_by(alice, task.task_id, expect=12)


def test_resume_refuses_a_running_task_and_someone_elses(tmp_path, grid):
    admin, alice = grid
    admin.add_user("bob")
    lifecycle = TaskService(alice, settings_for(tmp_path))
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    run_lock = lifecycle.machine.run_lock(alice.get_resource("gpu_resc"), submitted.task_id)
    assert run_lock.acquire()  # a live run holds its lock from before it is running
    lifecycle.machine.begin_run(submitted.collection, {})
    with pytest.raises(TaskStateError, match="is running; only a failed or cancelled task can be resumed"):
        lifecycle.resume(submitted.task_id, "alice")
    lifecycle.cancel(submitted.task_id, "alice")
    run_lock.release()
    alice.set_acl("read", "bob", RESULTS, recursive=True)
    with pytest.raises(AccessDeniedError, match="bob may not change task"):
        TaskService(admin.as_user("bob"), settings_for(tmp_path)).resume(submitted.collection, "bob")
    assert record_of(alice, submitted.collection).state == TaskState.CANCELLED


# --- issue 20 item 9: a run that is certainly gone is dead now, on its compute host ----------------
LOCK_HOLDER = """
import sys, time
from compute_to_data.lifecycle.runlock import RunLock
lock = RunLock(sys.argv[1], sys.argv[2])
assert lock.acquire()
print("held", flush=True)
time.sleep(300)
"""


def test_a_killed_run_on_its_compute_host_is_resumable_at_once(tmp_path, grid):
    """``kill -9`` of ``c2d run --local``: its lock is free and none of its processes is left, so
    on its compute host ``resume`` (and ``status``) reap it there and then, not a lease later."""
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path, heartbeat_lease_seconds=3600.0))
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "locks"), submitted.task_id],
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == b"held"
        lifecycle.machine.begin_run(submitted.collection, {names.A_PROGRESS: "4/12", names.A_RUNNER: "inprocess"})
        with pytest.raises(TaskStateError, match="its run is alive on this host"):
            lifecycle.resume(submitted.task_id, "alice")  # it holds its lock: alive
        assert lifecycle.status(submitted.task_id).record.state == TaskState.RUNNING
    finally:
        holder.kill()
        holder.wait(10)
    resumed = lifecycle.resume(submitted.task_id, "alice")  # right away, a lease of an hour notwithstanding
    assert resumed.record.state == TaskState.QUEUED
    history = [e for e in (tmp_path / "locks").iterdir() if e.name.startswith("task-")]
    assert history == []  # the reaper removed the lock file it held
    failed = alice.get_avus(EntityType.COLLECTION, submitted.collection)
    assert any(a.attribute == names.A_RESUMED and a.value == "1" for a in failed)


def test_status_on_the_compute_host_records_a_gone_run_failed_at_once(tmp_path, grid):
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path, heartbeat_lease_seconds=3600.0))
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    lifecycle.machine.begin_run(submitted.collection, {names.A_PROGRESS: "4/12", names.A_RUNNER: "inprocess",
                                                       names.A_RUN_HANDLE: "1:nosuchtoken"})
    status = lifecycle.status(submitted.task_id)
    assert status.record.state == TaskState.FAILED
    error = status.record.get(names.A_ERROR)
    assert error.startswith("no sign of life from localhost since ") and error.endswith(
        " (its run is gone: nothing holds its run lock and none of its processes is left); 4/12 images done")


def test_a_gone_run_whose_processes_live_waits_for_the_lease(tmp_path, grid):
    """Its lock is free, but a process of the task still runs (a notebook left by its engine):
    not certainly gone, so only the lease says it is dead."""
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path, heartbeat_lease_seconds=3600.0))
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    lifecycle.machine.begin_run(submitted.collection, {names.A_RUNNER: "inprocess"})
    leftover = marked_sleeper(submitted.task_id)
    try:
        assert lifecycle.status(submitted.task_id).record.state == TaskState.RUNNING
        with pytest.raises(TaskStateError, match="is running"):
            lifecycle.resume(submitted.task_id, "alice")
    finally:
        leftover.kill()
        leftover.wait(10)


def test_a_live_run_without_processes_is_never_reaped_while_it_runs(tmp_path, grid):
    """The scripted runner runs no process: the run's lock alone (taken before ``running``) says it lives."""
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path, heartbeat_lease_seconds=3600.0))
    seen = []

    def look(request, i):
        if i in (1, 12):
            seen.append(lifecycle.status(request.task_id).record.state)

    task = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner(after_image=look),
                                                  heartbeat_lease_seconds=3600.0))
    assert task.run().succeeded
    assert seen == [TaskState.RUNNING, TaskState.RUNNING]


def test_elsewhere_resume_says_when_a_silent_task_will_be_seen_dead(tmp_path, grid, monkeypatch):
    _, alice = grid
    lifecycle = TaskService(alice, settings_for(tmp_path, heartbeat_lease_seconds=600.0))
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    lifecycle.machine.begin_run(submitted.collection, {})
    monkeypatch.setattr(hosts, "is_local_host", lambda host, extra=(): False)
    beat = record_of(alice, submitted.collection).get(names.A_HEARTBEAT)
    until = names.iso_utc(names.parse_iso_utc(beat) + timedelta(seconds=600))
    with pytest.raises(TaskStateError) as caught:
        lifecycle.resume(submitted.task_id, "alice")
    assert f"no sign of life since {beat}; resumable after {until}, or cancel it now" in str(caught.value)
    assert record_of(alice, submitted.collection).state == TaskState.RUNNING


# --- issue 20 item 7: no run lock file is left behind -----------------------------------------------
def test_no_run_lock_file_is_left_after_a_run_or_a_reap(tmp_path, grid):
    _, alice = grid
    context = context_for(tmp_path, alice, ScriptedRunner())
    task = create_task(make_config(), context)
    assert task.run().succeeded
    locks = tmp_path / "locks"
    assert sorted(p.name for p in locks.iterdir() if p.name.startswith("task-")) == []
    lifecycle = TaskService(alice, context.settings)
    again = make_config(inputs={"collection": IMAGES, "pattern": "*.png", "skip_tagged": False})
    submitted = create_task(again, context_for(tmp_path, alice, ScriptedRunner())).submit()
    lifecycle.machine.begin_run(submitted.collection, {})
    time.sleep(1.2)  # a lease (1 s) without a heartbeat
    assert lifecycle.status(submitted.task_id).record.state == TaskState.FAILED
    assert sorted(p.name for p in locks.iterdir() if p.name.startswith("task-")) == []


def test_a_run_lock_removed_under_an_acquirer_is_taken_again_not_shared(tmp_path, monkeypatch):
    """The holder removes its lock file while holding it; an acquirer that opened the old file
    just before must notice it locked a removed file, and lock the path's file instead."""
    from compute_to_data.lifecycle import runlock

    first, second, third = (runlock.RunLock(tmp_path, "t") for _ in range(3))
    assert first.acquire() and not second.acquire()
    real_flock = runlock.fcntl.flock
    calls = []

    def flock_after_the_holder_let_go(fd, operation):
        if not calls:  # the holder releases (removing the file) between our open and our lock
            first.release()
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(runlock.fcntl, "flock", flock_after_the_holder_let_go)
    assert second.acquire() and len(calls) == 2  # the first lock was on a removed file: taken again
    monkeypatch.setattr(runlock.fcntl, "flock", real_flock)
    assert second.path.exists() and second.held
    assert not third.acquire()  # one holder only
    second.release()
    assert not second.path.exists()
    assert third.acquire()
    third.release()


# --- issue 20 item 4: progress counts what is tagged, after every salvage ---------------------------
def test_a_failed_run_s_progress_counts_the_parts_it_tagged(tmp_path, grid):
    _, alice = grid
    task = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner(part_size=4, fail_after=7)))
    assert task.run().state == TaskState.FAILED
    assert_tagged_once_by(alice, task.task_id, expect=4)
    assert record_of(alice, task.collection).get(names.A_PROGRESS) == "4/12"


def test_the_reaper_s_salvage_counts_in_the_progress(tmp_path, grid):
    """The agent was killed after its notebook finished two parts: the reaper tags them, and the
    task's progress says 8/12, not the 0/12 of its last heartbeat."""
    from compute_to_data.contract.parts import PartWriter
    from compute_to_data.engine.predictions import store_selection

    _, alice = grid
    settings = settings_for(tmp_path)
    lifecycle = TaskService(alice, settings)
    submitted = create_task(make_config(), context_for(tmp_path, alice, ScriptedRunner())).submit()
    lifecycle.machine.begin_run(submitted.collection, {names.A_PROGRESS: "0/12", names.A_RUN_HOST: "localhost"})
    names_ = sorted(TWELVE)
    store_selection(alice, submitted.collection, "gpu_resc", names_)
    outputs = Path(settings.staging_directory) / submitted.task_id / "outputs"
    writer = PartWriter(outputs, task_id=submitted.task_id, total=12, part_size=4, part_seconds=3600)
    writer.add([{"file": n, "path": f"{IMAGES}/{n}",
                 "classifications": [{"class": "1", "score": 0.9}, {"class": "2", "score": 0.1}]} for n in names_[:8]])
    time.sleep(1.3)
    record = lifecycle.status(submitted.task_id).record
    assert record.state == TaskState.FAILED and "2 part(s) it had finished are tagged now" in record.get(names.A_ERROR)
    assert record.get(names.A_PROGRESS) == "8/12"
    assert_tagged_once_by(alice, submitted.task_id, expect=8)


# --- issue 20 item 2: a resumed run checks what the task pinned --------------------------------------
@pytest.mark.parametrize("what", ["labels", "model"])
def test_a_resume_after_the_model_or_labels_changed_fails_naming_it(tmp_path, grid, what):
    _, alice = grid
    context = context_for(tmp_path, alice, ScriptedRunner(part_size=4, fail_after=5))
    task = create_task(make_config(), context)
    assert task.run().state == TaskState.FAILED
    path = {"model": task.config.model, "labels": task.config.labels}[what]
    pinned = record_of(alice, task.collection).get(
        {"model": names.A_MODEL_CHECKSUM, "labels": names.A_LABELS_CHECKSUM}[what])
    assert pinned == alice.get_data_object(path).checksum
    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"0\n1\n2\n3\n" if what == "labels" else b"another model")
    alice.put_file(replacement, path, "lts_resc", overwrite=True)
    lifecycle = TaskService(alice, context.settings)
    lifecycle.resume(task.task_id, "alice")
    again = ScriptedRunner()
    outcome = lifecycle.start(task.collection, context_for(tmp_path, alice, again))
    now = alice.get_data_object(path).checksum
    assert outcome.state == TaskState.FAILED and again.requests == []
    assert outcome.error.startswith(f"the {what} {path} changed since the task was submitted ({pinned}, now {now})")
    assert record_of(alice, task.collection).get(names.A_ERROR) == outcome.error
    # the failed run kept the pin: a second resume is refused as well
    attribute = {"model": names.A_MODEL_CHECKSUM, "labels": names.A_LABELS_CHECKSUM}[what]
    assert record_of(alice, task.collection).get(attribute) == pinned
    lifecycle.resume(task.task_id, "alice")
    third = ScriptedRunner()
    assert lifecycle.start(task.collection, context_for(tmp_path, alice, third)).state == TaskState.FAILED
    assert third.requests == []


def test_a_resume_after_the_notebook_changed_fails_naming_it(tmp_path, grid):
    _, alice = grid
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    source = Path(__file__).resolve().parents[2] / "compute_to_data" / "notebooks" / "classify_images.ipynb"
    (notebooks / "classify_images.ipynb").write_bytes(source.read_bytes())
    context = context_for(tmp_path, alice, ScriptedRunner(fail_after=0), notebook_directory=str(notebooks))
    task = create_task(make_config(), context)
    assert task.run().state == TaskState.FAILED
    pinned = record_of(alice, task.collection).get(names.A_NOTEBOOK_CHECKSUM)
    assert pinned.startswith("sha2:")
    (notebooks / "classify_images.ipynb").write_bytes(source.read_bytes() + b"\n")
    lifecycle = TaskService(alice, context.settings)
    lifecycle.resume(task.task_id, "alice")
    outcome = lifecycle.start(task.collection, context_for(tmp_path, alice, ScriptedRunner(),
                                                             notebook_directory=str(notebooks)))
    assert outcome.state == TaskState.FAILED
    assert outcome.error.startswith("the notebook classify_images changed since the task was submitted "
                                    f"({pinned}, now sha2:")
