"""Real Slurm jobs on the one-node cluster of ``scripts/slurm-env`` (tests/support/slurm_env.py).

A whole task on LocalGrid through Slurm (tags in the catalog), a job that asks for more GPUs
than the node has, cancel of a pending and of a running job, Slurm's time limit, the container
mode through Docker, what another process can do with a run's handle, and -- last, because it
takes the node down for a while -- ``slurmd`` stopped while a job runs.

Most runs use the ``direct`` mode (the notebook in this Python on the node: quick); the
container mode is checked with the Docker test image.
"""

from __future__ import annotations

import json
import os
import posixpath
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.settings import (
    AllowedImage,
    ContainerLimits,
    Settings,
    SlurmResource,
    SlurmSettings,
)
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.base import RunRequest, RunResult
from compute_to_data.runners.docker_runner import LABEL_TASK_ID
from compute_to_data.runners.slurm_runner import JOB_DIR, STARTED_FILE, SlurmRunner
from tests.runners.test_inprocess_runner import alive
from tests.support.notebook_support import SLEEP_NOTEBOOK, tiny_model
from tests.support.runner_child import start_supervisor, wait_for_handle

pytestmark = [pytest.mark.slurm]

RESOURCE = "cluster_resc"
ZONE = "tempZone"
HOME = f"/{ZONE}/home/alice"
IMAGES = f"{HOME}/camera_traps"
RESULTS = f"{HOME}/results"




def settings_for(root: Path, **slurm: Any) -> Settings:
    values: dict[str, Any] = {"mode": "direct", "python": sys.executable, "poll_interval_seconds": 0.5,
                              "resources": {RESOURCE: SlurmResource(str(root / "staging"))}}
    values.update(slurm)
    return Settings(allowed_runners=("slurm",), staging_directory=str(root / "other-staging"),
                    limits=ContainerLimits(memory="2g", cpus=1.0, pids=256, shm_size="256m"),
                    slurm=SlurmSettings(**values), default_timeout_seconds=600, source="test settings")


def sleep_request(root: Path, task_id: str, *, steps: int = 120, step_seconds: float = 1.0, timeout: int = 600,
                  **fields: Any) -> RunRequest:
    workdir = root / "staging" / task_id
    for sub in ("inputs", "task", "outputs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    for directory in (root / "staging", workdir, workdir / "inputs", workdir / "task"):
        directory.chmod(0o755)
    params = {"task_id": task_id, "notebook": "sleep", "input_dir": names.CONTAINER_INPUT_DIR,
              "output_dir": names.CONTAINER_OUTPUT_DIR, "steps": steps, "step_seconds": step_seconds}
    (workdir / "task" / names.PARAMS_FILE).write_text(json.dumps(params))
    (workdir / "task" / names.PARAMS_FILE).chmod(0o644)
    return RunRequest(task_id=task_id, notebook_name="sleep", notebook_path=SLEEP_NOTEBOOK, workdir=workdir,
                      parameters=params, timeout_seconds=timeout, resource_name=RESOURCE, **fields)


def in_thread(runner: SlurmRunner, request: RunRequest) -> tuple[threading.Thread, list[RunResult]]:
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run(request)), daemon=True)
    thread.start()
    return thread, results


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds:.0f} s")


def kernel_pid(request: RunRequest) -> int:
    return int((request.output_dir / "kernel.pid").read_text())


# --- a whole task ----------------------------------------------------------------------------------
def build_zone(root: Path, images: int, gpus: int = 0) -> LocalGrid:
    """lts_resc holds the images and the model; cluster_resc (GPU_COMPUTE) is the Slurm resource."""
    from compute_to_data.demo import data

    admin = LocalGrid.create(root / "grid", zone=ZONE)
    admin.make_resource("lts_resc")
    admin.make_resource(RESOURCE)
    operations = [
        MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, RESOURCE, AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ]
    if gpus:
        operations.append(MetadataOperation("add", EntityType.RESOURCE, RESOURCE, AVU(names.GPUS_ATTRIBUTE, str(gpus))))
    admin.apply_metadata(operations)
    admin.add_user("alice")
    alice = admin.as_user("alice")
    data.write_images(root / "src", images, split="test")
    alice.put_tree(root / "src", IMAGES, "lts_resc")
    model = tiny_model()
    alice.create_collection(f"{HOME}/models")
    alice.put_file(Path(model["model"]), f"{HOME}/models/digits.pt", "lts_resc")
    alice.put_file(Path(model["labels"]), f"{HOME}/models/labels.txt", "lts_resc")
    return alice


def task_config() -> TaskConfig:
    return TaskConfig.from_document({
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS},
        "compute": {"role": names.ROLE_GPU_COMPUTE},
        "parameters": {"model": f"{HOME}/models/digits.pt", "labels": f"{HOME}/models/labels.txt", "batch_size": 16},
        "timeout_seconds": 600,
    })


def test_a_task_runs_as_a_slurm_job_and_tags_the_images(slurm_env, tmp_path):
    alice = build_zone(tmp_path, 24)
    settings = settings_for(tmp_path)
    outcome = create_task(task_config(), TaskContext(grid=alice, settings=settings)).run()
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert outcome.runner == "slurm" and outcome.inputs == 24 and outcome.tagged == 24

    record = TaskStateStore(alice).read(outcome.collection)
    assert record.state == TaskState.SUCCEEDED
    assert record.get(names.A_RUNNER) == "slurm"
    job_id = record.get(names.A_RUN_HANDLE)
    assert job_id and job_id.isdigit()
    assert record.get(names.A_RUN_NODE) == slurm_env.node
    assert record.get(names.A_PROGRESS) == "24/24"
    assert slurm_env.squeue(job_id) == "COMPLETED"

    objects = alice.list_data_objects(IMAGES, recursive=True, avu_attributes=("predictedclass", "predictedscore"))
    assert len(objects) == 24
    for obj in objects:
        units = {a.attribute: a.units for a in obj.avus}
        assert units == {"predictedclass": f"c2d:{outcome.task_id}", "predictedscore": f"c2d:{outcome.task_id}"}
    stored = {o.name for o in alice.list_data_objects(outcome.collection)}
    assert {"report.html", "predictions.json", "predictions.csv", names.RUNNER_LOG} <= stored
    runner_log = alice.read_data_object(posixpath.join(outcome.collection, names.RUNNER_LOG)).decode()
    assert f"Slurm job {job_id}" in runner_log and "papermill" in runner_log
    assert not (tmp_path / "staging" / outcome.task_id).exists()  # staged on the resource's shared directory


def test_auto_runs_slurm_resources_as_jobs_and_the_servers_other_resources_without_slurm(slurm_env, tmp_path):
    """Allowing Slurm on a server must not take its other resources away: with runner ``auto``,
    a task on the resource listed under slurm.resources is a Slurm job, one on the other
    GPU_COMPUTE resource of the same server runs with the next runner the settings allow."""
    import dataclasses

    alice = build_zone(tmp_path, 6)
    admin = LocalGrid(tmp_path / "grid")
    admin.make_resource("local_resc")
    admin.apply_metadata([MetadataOperation("add", EntityType.RESOURCE, "local_resc",
                                            AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE))])
    settings = dataclasses.replace(settings_for(tmp_path), allowed_runners=("slurm", "inprocess"))
    ran = {}
    for resource in (RESOURCE, "local_resc"):
        doc = {**task_config().document, "compute": {"role": names.ROLE_GPU_COMPUTE, "resource": resource},
               "inputs": {"collection": IMAGES, "pattern": "*.png", "recursive": True, "skip_tagged": False}}
        assert TaskConfig.from_document(doc).runner == "auto"
        outcome = create_task(TaskConfig.from_document(doc), TaskContext(grid=alice, settings=settings)).run()
        assert outcome.state == TaskState.SUCCEEDED, (resource, outcome.error)
        assert outcome.compute_resource == resource and outcome.tagged == 6
        record = TaskStateStore(alice).read(outcome.collection)
        ran[resource] = (outcome.runner, record.get(names.A_RUNNER), (record.get(names.A_RUN_HANDLE) or "").isdigit())
    assert ran == {RESOURCE: ("slurm", "slurm", True), "local_resc": ("inprocess", "inprocess", False)}


def test_more_gpus_than_the_node_has_is_a_clear_error_and_tags_nothing(slurm_env, tmp_path):
    alice = build_zone(tmp_path, 4, gpus=2)
    outcome = create_task(task_config(), TaskContext(grid=alice, settings=settings_for(tmp_path))).run()
    assert outcome.state == TaskState.FAILED
    assert outcome.error.startswith("Slurm refused the job: no node in the default partition has what it asks for "
                                    f"(2 GPU(s) from {names.GPUS_ATTRIBUTE} of resource {RESOURCE}")
    assert "Requested node configuration is not available" in outcome.error
    assert TaskStateStore(alice).read(outcome.collection).get(names.A_ERROR) == outcome.error
    objects = alice.list_data_objects(IMAGES, recursive=True, avu_attributes=("predictedclass",))
    assert all(not obj.avus for obj in objects)


# --- cancel ------------------------------------------------------------------------------------------
def test_cancel_of_a_pending_job(slurm_env, tmp_path):
    blocker = slurm_env.submit_blocker(cpus=os.cpu_count() or 2)
    try:
        statuses: list[tuple[str, str | None]] = []
        request = sleep_request(tmp_path, "t-pending", on_status=lambda p, r: statuses.append((p, r)))
        runner = SlurmRunner(settings_for(tmp_path))
        thread, results = in_thread(runner, request)
        wait_for(lambda: any(r and "Resources" in r for _, r in statuses), 60, "the job waiting for resources")
        assert statuses[-1] == ("queued", "waiting for free CPUs and memory on the cluster (Slurm job "
                                          f"{runner._runs['t-pending'].handle}: Resources)")
        assert runner.cancel("t-pending") is True
        thread.join(60)
    finally:
        slurm_env.cancel(blocker)
    [result] = results
    assert result.status == "failed" and result.error == "cancelled on request"
    assert slurm_env.squeue(result.handle) == "CANCELLED"
    assert not (request.workdir / JOB_DIR / STARTED_FILE).exists()  # it never ran
    assert all(phase == "queued" for phase, _ in statuses)


def test_cancel_of_a_running_job_from_another_runner(slurm_env, tmp_path):
    request = sleep_request(tmp_path, "t-running")
    thread, results = in_thread(SlurmRunner(settings_for(tmp_path)), request)
    wait_for(lambda: (request.output_dir / "kernel.pid").exists(), 120, "the notebook starting")
    kernel = kernel_pid(request)
    assert SlurmRunner(settings_for(tmp_path)).cancel("t-running") is True  # found by job name
    thread.join(120)
    [result] = results
    assert result.status == "failed" and result.error == "cancelled on request"
    assert slurm_env.squeue(result.handle) == "CANCELLED"
    wait_for(lambda: not alive(kernel), 30, "the kernel being killed")
    # the job's script rendered the partial report with the reason
    assert "cancelled on request" in (request.output_dir / names.REPORT_FILE).read_text()
    assert json.loads((request.output_dir / names.RESULT_FILE).read_text())["error"] == "cancelled on request"


def test_c2d_cancel_of_a_running_task_keeps_the_partial_report_the_job_wrote(slurm_env, tmp_path):
    """c2d_cancel on the compute host (another process than the run's): the job's script renders
    the partial report saying it was cancelled on request, and it lands in the task collection
    as a Docker run's does; the job log says the same."""
    import dataclasses

    from compute_to_data.service.tasks import TaskService

    alice = build_zone(tmp_path, 4)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    slow = SLEEP_NOTEBOOK.read_text().replace('"steps = 3\\n"', '"steps = 600\\n"')
    assert slow != SLEEP_NOTEBOOK.read_text()
    (notebooks / "slow.ipynb").write_text(slow)
    settings = dataclasses.replace(settings_for(tmp_path), notebook_directory=str(notebooks),
                                   heartbeat_interval_seconds=0.5, heartbeat_lease_seconds=30.0)
    config = TaskConfig.from_document({**task_config().document, "notebook": "slow"})
    task = create_task(config, TaskContext(grid=alice, settings=settings, progress_interval=0.0))
    outcomes: list[Any] = []
    thread = threading.Thread(target=lambda: outcomes.append(task.run()), daemon=True)
    thread.start()
    staging = tmp_path / "staging" / task.task_id / "outputs"
    wait_for(lambda: (staging / "kernel.pid").exists(), 120, "the notebook starting")
    cancelled = TaskService(alice, settings).cancel(task.task_id, "alice")  # as the c2d_cancel rule does
    assert cancelled.stopped_here
    thread.join(180)
    [outcome] = outcomes
    assert outcome.state == TaskState.CANCELLED
    record = TaskStateStore(alice).read(task.collection)
    assert record.state == TaskState.CANCELLED and record.get(names.A_ERROR) == "cancelled by alice"
    report = posixpath.join(task.collection, names.REPORT_FILE)
    assert record.get(names.A_REPORT) == report
    assert "cancelled on request" in alice.read_data_object(report).decode()
    job_log = alice.read_data_object(posixpath.join(task.collection, names.RUNNER_LOG)).decode()
    assert "cancelled on request" in job_log and "cancelled or preempted" not in job_log
    assert not (tmp_path / "staging" / task.task_id).exists()


# --- from another process ----------------------------------------------------------------------
def test_a_job_left_by_a_killed_supervisor_is_stopped_by_its_handle(slurm_env, tmp_path):
    settings = settings_for(tmp_path)
    request = sleep_request(tmp_path, "t-orphan")
    child = start_supervisor(tmp_path / "spec.json", "slurm", settings, request)
    try:
        job_id = wait_for_handle(tmp_path / "spec.json", child)
        wait_for(lambda: (request.output_dir / "kernel.pid").exists(), 120, "the notebook starting")
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    runner = SlurmRunner(settings)  # a later status call: it did not start the run
    assert runner.is_alive(job_id) is True  # the supervisor is gone, the job is not
    kernel = kernel_pid(request)
    assert runner.stop(job_id, task_id="t-orphan") is True
    assert runner.is_alive(job_id) is False and slurm_env.squeue(job_id) == "CANCELLED"
    wait_for(lambda: not alive(kernel), 30, "the kernel being killed")
    assert runner.stop(job_id) is False  # nothing left


# --- Slurm's time limit ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_job_killed_by_slurms_time_limit(slurm_env, tmp_path):
    request = sleep_request(tmp_path, "t-limit", timeout=20)  # --time=1: Slurm kills it after 60-90 s
    started = time.monotonic()
    result = SlurmRunner(settings_for(tmp_path)).run(request)
    elapsed = time.monotonic() - started
    expected = f"timed out after 20 s: Slurm job {result.handle} reached its time limit (1 min)"
    assert result.status == "failed" and result.error == expected
    assert 55 < elapsed < 180
    assert slurm_env.squeue(result.handle) == "TIMEOUT"
    assert not alive(kernel_pid(request))
    assert expected in (request.output_dir / names.REPORT_FILE).read_text()
    assert 0 < result.images_done < result.images_total == 120


# --- the container mode, through Docker ----------------------------------------------------------------
def test_container_mode_runs_the_locked_down_image_on_the_node(slurm_env, tmp_path):
    from tests.support.docker_env import TEST_CONTAINER_USER, get_docker_env

    docker_env = get_docker_env()
    settings = settings_for(tmp_path, mode="container", container_engine="docker")
    settings = Settings(**{**settings.__dict__, "allowed_images": (AllowedImage(docker_env.test_image),),
                           "default_image": docker_env.test_image,
                           "container_user": TEST_CONTAINER_USER if os.geteuid() == 0 else None})
    request = sleep_request(tmp_path, "t-container", steps=1, step_seconds=0.1, image=docker_env.test_image)
    (request.input_dir / "a.png").write_text("a")
    (request.task_dir / names.PARAMS_FILE).write_text(json.dumps({
        **request.parameters, "notebook": "isolation_probe", "probe_paths": [str(tmp_path)]}))
    request.notebook_name = "isolation_probe"
    result = SlurmRunner(settings).run(request)
    assert result.status == "succeeded", (result.error, result.log[-3000:])
    probe = json.loads((request.output_dir / "probe.json").read_text())
    assert probe["inputs"] == ["a.png"] and probe["interfaces"] == ["lo"]
    assert probe["paths_exist"] == {str(tmp_path): False}
    assert probe["write_new_input"] in ("EROFS", "EACCES") and probe["write_root_fs"] == "EROFS"
    assert probe["uid"] != 0 and probe["status"]["CapEff"] == "0000000000000000"
    assert result.image == docker_env.test_image
    assert result.image_digest == docker_env.client.images.get(docker_env.test_image).id
    assert result.log_name == names.CONTAINER_LOG and result.node == slurm_env.node
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=t-container"}) == []
    for path in [request.output_dir, *request.output_dir.rglob("*")]:
        assert path.stat().st_uid == os.getuid()  # handed back to the service account


def test_container_mode_cancel_removes_the_container(slurm_env, tmp_path):
    from tests.support.docker_env import TEST_CONTAINER_USER, get_docker_env

    docker_env = get_docker_env()
    base = settings_for(tmp_path, mode="container")
    settings = Settings(**{**base.__dict__, "allowed_images": (AllowedImage(docker_env.test_image),),
                           "default_image": docker_env.test_image,
                           "container_user": TEST_CONTAINER_USER if os.geteuid() == 0 else None})
    request = sleep_request(tmp_path, "t-ctr-cancel", image=docker_env.test_image)
    runner = SlurmRunner(settings)
    thread, results = in_thread(runner, request)
    wait_for(lambda: (request.output_dir / names.PROGRESS_FILE).exists(), 120, "the container starting")
    assert runner.cancel("t-ctr-cancel") is True
    thread.join(120)
    [result] = results
    assert result.status == "failed" and result.error == "cancelled on request"
    assert "cancelled on request" in (request.output_dir / names.REPORT_FILE).read_text()
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=t-ctr-cancel"}) == []


# --- node failure (last: the node is down for a while) ----------------------------------------------
@pytest.mark.slow
def test_slurmd_stopped_while_a_job_runs_is_a_node_failure(slurm_env, tmp_path):
    request = sleep_request(tmp_path, "t-node")
    thread, results = in_thread(SlurmRunner(settings_for(tmp_path)), request)
    try:
        wait_for(lambda: (request.output_dir / "kernel.pid").exists(), 120, "the notebook starting")
        kernel = kernel_pid(request)
        slurm_env.stop_slurmd()
        thread.join(180)
        assert not thread.is_alive(), "the runner did not notice the node failure"
    finally:
        slurm_env.restore()
    [result] = results
    assert result.status == "failed"
    assert result.error.startswith(f"node failure: node {slurm_env.node} stopped answering while Slurm job "
                                   f"{result.handle} ran (Slurm: NODE_FAIL)"), result.error
    # back with slurmd, the node kills what was left of the job
    wait_for(lambda: not alive(kernel), 120, "the orphaned notebook being killed")
    slurm_env.wait_idle()
