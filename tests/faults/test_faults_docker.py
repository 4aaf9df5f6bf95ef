"""Faults with the Docker runner: the engine killed while its container runs, and the container
killed from outside. The test notebook ``tests/data/notebooks/parts.ipynb`` runs in the test
image (the production image plus the test notebooks, tests/support/docker_env.py)."""

from __future__ import annotations

import time

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.registry import runners
from compute_to_data.runners.docker_runner import LABEL_TASK_ID
from tests.faults import fault_runner
from tests.faults.support import FaultZone, build
from tests.support.docker_env import TEST_NOTEBOOKS, get_docker_env


@pytest.fixture
def docker_zone(tmp_path, monkeypatch) -> tuple[FaultZone, object]:
    env = get_docker_env()
    monkeypatch.setitem(runners._items, fault_runner.NAME, fault_runner.FaultRunner)
    doc = env.settings().to_document()
    doc.update(allowed_runners=["docker"], notebook_directory=str(TEST_NOTEBOOKS))
    zone = build(tmp_path, **{k: v for k, v in doc.items() if k in (
        "allowed_images", "default_image", "container_user", "limits", "allowed_runners", "notebook_directory")})
    monkeypatch.setenv(names.SETTINGS_ENV, str(zone.settings_file))
    return zone, env.client


def containers_of(client, task_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}={task_id}"})


def submit(zone: FaultZone):
    return zone.submit(container={"runner": "docker"}, notebook="parts")


def test_sigkill_of_the_engine_while_its_container_runs(docker_zone) -> None:
    zone, client = docker_zone
    task = submit(zone)
    run = zone.drive(task.collection, kill="progress:4")
    assert run.code == -9, run.log[-3000:]
    assert [c.status for c in containers_of(client, task.task_id)] == ["running"]  # what kill -9 leaves
    record = zone.truthful_within_two_leases(task.task_id, run.ended_at)
    assert record.get(names.A_ERROR).startswith(f"no sign of life from {record.get(names.A_RUN_HOST)} since ")
    assert containers_of(client, task.task_id) == [], "the container outlived its task's state"
    zone.assert_nothing_left(task.task_id)
    zone.resume_and_complete(task.task_id)
    assert containers_of(client, task.task_id) == []


def test_the_container_killed_from_outside(docker_zone) -> None:
    zone, client = docker_zone
    task = submit(zone)
    process = zone.start_driver(task.collection)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = zone.record(task.collection).progress
        running = [c for c in containers_of(client, task.task_id) if c.status == "running"]
        if running and progress and progress[0] >= 4:
            running[0].kill()
            break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the task's container never got going")
    run = zone.finish(process)
    assert run.code == 1, run.log[-3000:]
    record = zone.record(task.collection)  # recorded by the run itself
    assert record.state == TaskState.FAILED and "the container was killed" in record.get(names.A_ERROR)
    assert containers_of(client, task.task_id) == []
    zone.assert_nothing_left(task.task_id)
    zone.resume_and_complete(task.task_id)
