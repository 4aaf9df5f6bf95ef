"""The fault suite's zone, engine process and checks.

A LocalGrid with twelve "digit" images and one unreadable file, settings with a short heartbeat
lease, and a driver process (``tests/faults/driver.py``) that runs a queued task and is killed.
After each fault the same promises are checked: within two leases the state is truthful, nothing
of the run is left (process marked with the task id, container, staging directory), no image
carries half a prediction, and a resume completes the task with each image tagged once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import Settings
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.processes import ENV_TASK_ID, processes_with_env
from compute_to_data.service.tasks import TaskService
from tests.faults import fault_runner
from tests.support.engine_support import (
    IMAGES,
    assert_no_half_pair,
    assert_tagged_once_by,
    make_config,
    make_grid,
)

REPO = Path(__file__).resolve().parents[2]
LEASE = 1.5
INTERVAL = 0.3
PART_SIZE = 3
IMAGE_SECONDS = 0.15
#: twelve readable images (3 classes) and one the "notebook" cannot read
FILES = {**{f"img_{i:02d}.png": str(i % 3).encode() for i in range(12)}, "broken.png": b"\x89garbage"}
READABLE = 12


@dataclass
class Run:
    """One driver process: how it ended and what it said."""

    code: int
    log: str
    ended_at: float


@dataclass
class FaultZone:
    root: Path
    admin: LocalGrid
    alice: LocalGrid
    settings_file: Path
    settings: Settings
    env: dict[str, str] = field(default_factory=dict)

    # --- the zone ---------------------------------------------------------------------------
    @property
    def lifecycle(self) -> TaskService:
        return TaskService(self.alice, self.settings)

    def submit(self, **config: Any) -> TaskRecord:
        """A queued task, as ``c2d submit`` leaves it (the run is the driver's)."""
        config.setdefault("container", {"runner": fault_runner.NAME})
        context = TaskContext(grid=self.alice, settings=self.settings)
        outcome = self.lifecycle.submit(make_config(**config), context).outcome
        return self.record(outcome.collection)

    def record(self, collection: str) -> TaskRecord:
        return TaskStateStore(self.alice).read(collection)

    def staging(self, task_id: str) -> Path:
        return self.settings.staging_directory_for("localhost") / task_id

    # --- the engine's process -----------------------------------------------------------------
    def start_driver(self, collection: str, *, kill: str | None = None, signal: str = "KILL", mode: str = "local",
                     env: dict[str, str] | None = None) -> subprocess.Popen:
        command = [sys.executable, "-m", "tests.faults.driver", "--grid", str(self.root / "grid"), "--collection",
                   collection, "--mode", mode, "--signal", signal]
        if kill:
            command += ["--kill", kill]
        log = open(self.root / f"driver-{time.monotonic_ns()}.log", "w+")
        process = subprocess.Popen(command, cwd=REPO, env={**self.env, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        process.log_file = log  # type: ignore[attr-defined]
        return process

    def finish(self, process: subprocess.Popen, timeout: float = 120) -> Run:
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        ended = time.monotonic()
        log_file = process.log_file  # type: ignore[attr-defined]
        log_file.seek(0)
        text = log_file.read()
        log_file.close()
        return Run(code, text, ended)

    def drive(self, collection: str, **kwargs: Any) -> Run:
        return self.finish(self.start_driver(collection, **kwargs))

    # --- the promises ---------------------------------------------------------------------------
    def truthful_within_two_leases(self, task_id: str, since: float, want: TaskState = TaskState.FAILED) -> TaskRecord:
        """Readers on the compute host (status) see the run's end within two leases of its death."""
        while True:
            record = self.lifecycle.status(task_id).record
            if record.state is not None and record.state.is_final:
                break
            assert time.monotonic() - since < 2 * LEASE, f"still {record.state} {2 * LEASE} s after the run died"
            time.sleep(0.05)
        assert record.state == want, (record.state, record.get(names.A_ERROR))
        return record

    def assert_nothing_left(self, task_id: str) -> None:
        deadline = time.monotonic() + 2
        while processes_with_env(ENV_TASK_ID, task_id) and time.monotonic() < deadline:
            time.sleep(0.05)  # killed processes may take a moment to go
        assert processes_with_env(ENV_TASK_ID, task_id) == [], "a process of the run outlived its state"
        assert not self.staging(task_id).exists(), "the run's staging directory is left"
        assert_no_half_pair(self.alice, IMAGES)

    def resume_and_complete(self, task_id: str, **driver: Any) -> Run:
        """A resume completes the task: each image tagged once, the results cover the whole task."""
        resumed = self.lifecycle.resume(task_id, "alice").record
        assert resumed.state == TaskState.QUEUED
        run = self.drive(resumed.collection, **driver)
        assert run.code == 0, run.log[-4000:]
        self.assert_complete(task_id)
        return run

    def assert_complete(self, task_id: str) -> None:
        record = self.lifecycle.status(task_id).record
        assert record.state == TaskState.SUCCEEDED, record.get(names.A_ERROR)
        assert record.get(names.A_PROGRESS) == f"{len(FILES)}/{len(FILES)}", record.values
        assert record.get(names.A_IMAGES_FAILED) == "1", record.values
        assert_tagged_once_by(self.alice, task_id, IMAGES, expect=READABLE)
        predictions = json.loads(self.alice.read_data_object(f"{record.collection}/{names.PREDICTIONS_JSON}"))
        assert sorted(e["file"] for e in predictions["images"]) == sorted(FILES)
        self.assert_nothing_left(task_id)

    def classified(self) -> list[str]:
        """Every input the stand-in notebook classified, over all runs (work done twice shows)."""
        log = Path(self.env["C2D_FAULT_LOG"])
        return log.read_text().split() if log.exists() else []


def build(root: Path, **settings: Any) -> FaultZone:
    values: dict[str, Any] = {
        "allowed_runners": [fault_runner.NAME],
        "staging_directory": str(root / "staging"),
        "lock_directory": str(root / "locks"),
        "heartbeat_interval_seconds": INTERVAL,
        "heartbeat_lease_seconds": LEASE,
        "part_size": PART_SIZE,
    }
    values.update(settings)
    settings_file = root / "settings.json"
    settings_file.write_text(json.dumps(values))
    env = {
        **os.environ,
        names.SETTINGS_ENV: str(settings_file),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "C2D_FAULT_IMAGE_SECONDS": str(IMAGE_SECONDS),
        "C2D_FAULT_LOG": str(root / "classified.log"),
    }
    env.pop("C2D_FAULT_FAIL_AFTER", None)
    admin, alice = make_grid(root, FILES)
    return FaultZone(root, admin, alice, settings_file, Settings.load(settings_file), env)


@pytest.fixture
def fault_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FaultZone:
    from compute_to_data.domain.registry import runners

    monkeypatch.setitem(runners._items, fault_runner.NAME, fault_runner.FaultRunner)
    zone = build(tmp_path)
    monkeypatch.setenv(names.SETTINGS_ENV, str(zone.settings_file))
    for key in ("C2D_FAULT_IMAGE_SECONDS", "C2D_FAULT_LOG"):
        monkeypatch.setenv(key, zone.env[key])
    monkeypatch.delenv("C2D_FAULT_FAIL_AFTER", raising=False)
    return zone
