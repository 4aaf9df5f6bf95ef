"""Faults of a task that runs as shards (LocalGrid, the in-process runner with the notebook
stand-in): one shard's process killed costs only that shard; the local dispatcher runs shards in
worker processes, at most N at once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from compute_to_data.client.local_dispatcher import LocalDispatcher
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.lifecycle.shard_records import shard_records
from tests.faults import fault_runner
from tests.faults.support import FILES, READABLE, REPO, FaultZone, build
from tests.support.engine_support import assert_no_half_pair, assert_tagged_once_by

SHARD = 5  # 13 files in one collection: shards of 5, 5 and 3


@pytest.fixture
def sharded_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FaultZone:
    from compute_to_data.domain.registry import runners

    monkeypatch.setitem(runners._items, fault_runner.NAME, fault_runner.FaultRunner)
    zone = build(tmp_path, max_shard_size=SHARD)
    monkeypatch.setenv(names.SETTINGS_ENV, str(zone.settings_file))
    for key in ("C2D_FAULT_IMAGE_SECONDS", "C2D_FAULT_LOG"):
        monkeypatch.setenv(key, zone.env[key])
    return zone


def test_sigkill_of_one_shard_costs_only_that_shard(sharded_zone: FaultZone) -> None:
    zone = sharded_zone
    task = zone.submit()
    assert task.is_sharded and task.get(names.A_SHARDS) == "3"
    first, second, third = zone.lifecycle.machine.queued_runs(task)
    assert zone.drive(first).code == 0
    killed = zone.drive(second, kill="progress:2")
    assert killed.code == -9, killed.log[-3000:]
    assert zone.drive(third).code == 0
    record = zone.truthful_within_two_leases(task.task_id, killed.ended_at)
    assert "1 of 3 shards did not succeed (shard 0002 on gpu_resc failed: no sign of life from" in record.get(names.A_ERROR)
    zone.assert_nothing_left(f"{task.task_id}-0002")  # its processes, its staging directory, no half pair
    before = list(zone.classified())
    resumed = zone.lifecycle.resume(task.task_id, "alice").record
    assert zone.lifecycle.machine.queued_runs(resumed) == [second]
    run = zone.drive(second)
    assert run.code == 0, run.log[-3000:]
    # the resumed run classified only the killed shard's images that no part had saved (here its
    # orphaned notebook finished them before the reaper stopped it: the salvage tagged them all)
    again = zone.classified()[len(before):]
    shard_inputs = set(zone.alice.read_data_object(f"{second}/{names.SHARD_INPUTS_FILE}").decode().splitlines())
    assert set(again) <= shard_inputs
    twice = {name for name in zone.classified() if zone.classified().count(name) > 1}
    assert twice <= shard_inputs
    final = zone.lifecycle.status(task.task_id).record
    assert final.state == TaskState.SUCCEEDED, final.get(names.A_ERROR)
    assert final.get(names.A_PROGRESS) == f"{len(FILES)}/{len(FILES)}" and final.get(names.A_IMAGES_FAILED) == "1"
    assert_tagged_once_by(zone.alice, task.task_id, expect=READABLE)
    assert_no_half_pair(zone.alice)


class DriverDispatcher(LocalDispatcher):
    """The local dispatcher with the fault suite's driver as its worker (the stand-in runner)."""

    def command(self, collection: str) -> list[str]:
        return [sys.executable, "-m", "tests.faults.driver", "--grid", str(self.grid_dir), "--collection",
                collection, "--mode", "local"]


def test_the_local_dispatcher_runs_at_most_n_shards_at_once(sharded_zone: FaultZone, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = sharded_zone
    monkeypatch.chdir(REPO)
    for key, value in zone.env.items():
        monkeypatch.setenv(key, value)
    task = zone.submit()
    dispatcher = DriverDispatcher(zone.root / "grid", "alice", workers=2)
    started = time.monotonic()
    codes = dispatcher.run(zone.lifecycle.machine.queued_runs(task))
    assert sorted(codes.values()) == [0, 0, 0] and dispatcher.most_at_once == 2, codes
    assert time.monotonic() - started < 60
    record = zone.lifecycle.status(task.task_id).record
    assert record.state == TaskState.SUCCEEDED, record.get(names.A_ERROR)
    assert [s.state for s in shard_records(zone.alice, task.collection)] == [TaskState.SUCCEEDED] * 3
    assert zone.alice.data_object_exists(f"{task.collection}/report.html")


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signalled_dispatcher_ends_the_task_failed_and_resumable(
    sharded_zone: FaultZone, monkeypatch: pytest.MonkeyPatch, signal_name: str
) -> None:
    """SIGTERM (or Ctrl-C) of the dispatcher of a sharded task while its first shard runs: the
    running shard records its end, the shards it never started are recorded failed (not left
    queued with nothing to run them), so the task ends failed and a resume completes it."""
    import os
    import signal
    import threading

    from compute_to_data.client.local_worker import DispatchedRuns
    from compute_to_data.engine.context import TaskContext
    from compute_to_data.engine.termination import Terminated

    zone = sharded_zone
    monkeypatch.chdir(REPO)
    for key, value in zone.env.items():
        monkeypatch.setenv(key, value)
    task = zone.submit()
    service = zone.lifecycle
    shards = service.machine.queued_runs(task)

    def signal_once_the_first_shard_runs() -> None:
        # once the first shard has started (running, or already ended: a run of six images can
        # start and end between two looks, and the signal then comes while a later one runs)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if zone.record(shards[0]).state != TaskState.QUEUED:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), getattr(signal, signal_name))

    dispatcher = DriverDispatcher(zone.root / "grid", "alice", workers=1)
    runs = DispatchedRuns(service, TaskContext(grid=zone.alice, settings=zone.settings), dispatcher)
    # Ctrl-C as in a terminal: a parent that started the suite in the background (nohup, ``&``
    # without job control) leaves SIGINT ignored, and Python then keeps it ignored
    interrupt_as_before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=signal_once_the_first_shard_runs, daemon=True).start()
        with pytest.raises((Terminated, KeyboardInterrupt)):
            runs.run_queued(shards)
    finally:
        signal.signal(signal.SIGINT, interrupt_as_before)
    states = [s.state for s in shard_records(zone.alice, task.collection)]
    assert TaskState.QUEUED not in states and TaskState.RUNNING not in states, states
    record = zone.record(task.collection)
    assert record.state == TaskState.FAILED, record.values
    assert "local dispatcher of its task was stopped" in record.get(names.A_ERROR)
    resumed = service.resume(task.task_id, "alice")
    again = [e.collection for e in resumed.effects]
    assert set(shards[1:]) <= set(again) <= set(shards)  # those never started, and the stopped one
    assert DriverDispatcher(zone.root / "grid", "alice", workers=2).run(again)
    final = service.status(task.task_id).record
    assert final.state == TaskState.SUCCEEDED, final.get(names.A_ERROR)
    assert_tagged_once_by(zone.alice, task.task_id, expect=READABLE)
    assert_no_half_pair(zone.alice)
