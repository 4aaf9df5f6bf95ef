"""Inputs streamed while the notebook runs (engine/pipelining.py): the run starts on the first
staged files while the rest arrive, and a staging failure or a cancel while it runs stops it."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import threading
from pathlib import Path

from compute_to_data.contract import inputs as contract
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import GridError
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.base import RunRequest, RunResult
from compute_to_data.runners.processes import ENV_TASK_ID, processes_with_env
from tests.faults.fault_runner import FaultRunner
from tests.support.engine_support import IMAGES, ScriptedRunner, make_config, make_grid, make_settings

#: make_grid's images, in the manifest's order: the last one is streamed last
LAST = f"{IMAGES}/img_05.png"


class StartSignallingRunner(ScriptedRunner):
    """The scripted notebook, saying when it has started."""

    def __init__(self, started: threading.Event, **kwargs) -> None:
        super().__init__(**kwargs)
        self.started = started

    def run(self, request: RunRequest) -> RunResult:
        self.started.set()
        return super().run(request)


def read_after_start(grid, started: threading.Event, path: str, *, fail: bool = False) -> list[str]:
    """``path`` is read only once the runner has started (never, without pipelining: the wait
    fails the read); ``fail``: it never reads. Returns the paths read, in order."""
    original = grid.read_to_file
    reads: list[str] = []

    def read_to_file(source: str, local_path: Path) -> int:
        reads.append(source)
        if source == path:
            if not started.wait(timeout=60):
                raise GridError("the runner never started while staging went on (not pipelined)")
            if fail:
                raise GridError(f"{source}: the connection dropped (injected)")
        return original(source, local_path)

    grid.read_to_file = read_to_file
    return reads


def run(tmp_path, grid, runner, **settings):
    context = TaskContext(grid=grid, settings=make_settings(tmp_path, **settings), runner=runner)
    task = create_task(make_config(), context)
    return task, task.run()


def staging(grid, collection: str) -> dict:
    return json.loads(TaskStateStore(grid).read(collection).get(names.A_STAGING))


def test_the_notebook_starts_before_the_last_input_is_streamed(tmp_path):
    admin, alice = make_grid(tmp_path)  # the images on another host: streamed
    started = threading.Event()
    reads = read_after_start(alice, started, LAST)
    manifests: list[list[str]] = []

    def inspect(request: RunRequest) -> None:
        manifests.append(contract.read_manifest(Path(request.parameters[contract.MANIFEST_PARAMETER])))

    task, outcome = run(tmp_path, alice, StartSignallingRunner(started, before_return=inspect))
    assert outcome.succeeded, outcome.error
    # the model and labels before the run; the last input could be read only once it had started
    assert sorted(reads[:2]) == sorted(f"{posixpath.dirname(IMAGES)}/models/{n}" for n in ("labels.txt", "model.pt"))
    assert len(reads) == 8 and LAST in reads
    assert manifests == [[f"img_{i:02d}.png" for i in range(6)]]
    record = staging(alice, task.collection)
    assert (record["streamed"], record["pipelined"], record["checksums_checked"]) == (8, True, 8)
    assert "stage.stream" in outcome.timings
    assert not (tmp_path / "staging" / task.run_key).exists()


def test_a_notebook_without_the_manifest_parameter_gets_every_input_before_it_starts(tmp_path, monkeypatch):
    """An older notebook would list /inputs at its start and miss what arrives later."""
    admin, alice = make_grid(tmp_path)
    started = threading.Event()
    order: list[str] = []
    original = alice.read_to_file

    def read_to_file(source: str, local_path: Path) -> int:
        order.append("started" if started.is_set() else "before")
        return original(source, local_path)

    alice.read_to_file = read_to_file
    monkeypatch.setattr("compute_to_data.engine.steps.reads_inputs_manifest", lambda notebook: False)
    task, outcome = run(tmp_path, alice, StartSignallingRunner(started))
    assert outcome.succeeded, outcome.error
    assert order == ["before"] * 8
    assert staging(alice, task.collection)["pipelined"] is False


def test_a_streaming_failure_mid_run_fails_the_task_with_the_staging_error_and_stops_the_run(tmp_path):
    """The in-process runner's notebook (the fault suite's stand-in, in its own session) is
    running when the last input fails twice: the run is stopped, nothing of it is left, and the
    task's error is the staging error, not what the notebook made of it."""
    admin, alice = make_grid(tmp_path)
    started = threading.Event()

    class Runner(FaultRunner):
        def start(self, active) -> None:  # noqa: ANN001
            super().start(active)
            started.set()

    read_after_start(alice, started, LAST, fail=True)
    task, outcome = run(tmp_path, alice, Runner(), allowed_runners=("faultproc",))
    assert outcome.state == TaskState.FAILED
    assert outcome.error.startswith(f"could not read 1 input(s) through iRODS: {LAST}: "), outcome.error
    record = TaskStateStore(alice).read(task.collection)
    assert record.state == TaskState.FAILED and record.get(names.A_ERROR) == outcome.error
    assert processes_with_env(ENV_TASK_ID, task.run_key) == []
    assert not (tmp_path / "staging" / task.run_key).exists()


def test_the_failed_marker_reaches_a_notebook_waiting_for_its_file(tmp_path):
    """A notebook in a process of its own (no poll hook here) waits for the last input; staging
    fails: the status file tells it, it fails, and the task's error is the staging error, not
    the notebook's consequent one."""
    admin, alice = make_grid(tmp_path)
    started = threading.Event()
    results: list[RunResult] = []

    class Unpolled(StartSignallingRunner):
        def run(self, request: RunRequest) -> RunResult:
            results.append(super().run(dataclasses.replace(request, on_poll=None)))
            return results[-1]

    read_after_start(alice, started, LAST, fail=True)
    task, outcome = run(tmp_path, alice, Unpolled(started))
    assert [r.error for r in results] == [f"staging the inputs failed: {outcome.error}"]
    assert outcome.state == TaskState.FAILED and outcome.error.startswith(f"could not read 1 input(s) through iRODS: {LAST}")
    assert TaskStateStore(alice).read(task.collection).get(names.A_ERROR) == outcome.error
    assert not (tmp_path / "staging" / task.run_key).exists()


def test_a_notebook_that_ignores_the_manifest_is_not_taken_at_its_word(tmp_path):
    """A container image older than its notebook's parameters cell lists /inputs at its start:
    it reports fewer images than the run was given, and the task fails saying why."""
    admin, alice = make_grid(tmp_path)
    started, listed = threading.Event(), threading.Event()

    class Unaware(ScriptedRunner):
        def run(self, request: RunRequest) -> RunResult:
            started.set()
            parameters = {k: v for k, v in request.parameters.items()
                          if k not in (contract.MANIFEST_PARAMETER, contract.STATUS_PARAMETER)}
            try:
                return super().run(dataclasses.replace(request, parameters=parameters, on_poll=None))
            finally:
                listed.set()

    original = alice.read_to_file

    def read_to_file(source: str, local_path: Path) -> int:
        if source == LAST:
            started.wait(timeout=60)
            listed.wait(timeout=60)  # the run has listed what was there
        return original(source, local_path)

    alice.read_to_file = read_to_file
    task, outcome = run(tmp_path, alice, Unaware())
    assert outcome.state == TaskState.FAILED
    assert re.match(r"the notebook took [0-5] of the run's 6 inputs: .* does not read the inputs manifest", outcome.error)
