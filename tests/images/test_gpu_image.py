"""Which container image a task runs in: the settings' gpu_image on resources that declare GPUs.

The engine picks the image with the compute resource (``COMPUTE_RESOURCE_GPUS`` > 0 and no
image named: ``gpu_image``; else ``default_image``), both from the allowlist; what no resource
could run is refused before the task collection exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from compute_to_data.contract.inputs import MANIFEST_PARAMETER, STATUS_PARAMETER
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import NotAllowedError
from compute_to_data.domain.settings import AllowedImage
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.runners.base import RunRequest, RunResult
from tests.support.engine_support import (
    RESULTS,
    ScriptedRunner,
    make_config,
    make_grid,
    make_settings,
)

CPU_IMAGE, CUDA_IMAGE = "compute-to-data/classifier:1", "compute-to-data/classifier-cuda:1"


@dataclass
class ContainerRunner(ScriptedRunner):
    """A runner whose notebook sees the container paths, as the docker runner's does."""

    uses_container_paths = True

    def run(self, request: RunRequest) -> RunResult:
        params = dict(request.parameters, input_dir=str(request.input_dir), output_dir=str(request.output_dir), **{
            MANIFEST_PARAMETER: str(request.task_dir / names.INPUTS_MANIFEST_FILE),  # the container's /task, on the host
            STATUS_PARAMETER: str(request.task_dir / names.STAGING_STATUS_FILE)})
        return super().run(replace(request, parameters=params))


def settings(tmp_path: Path, **overrides: object):
    values: dict = {"allowed_images": (AllowedImage(CPU_IMAGE), AllowedImage(CUDA_IMAGE)),
                    "default_image": CPU_IMAGE, "gpu_image": CUDA_IMAGE}
    values.update(overrides)
    return make_settings(tmp_path, **values)


def declare_gpus(admin, count: int) -> None:
    admin.apply_metadata([MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.GPUS_ATTRIBUTE, str(count)))])


def run(tmp_path: Path, alice, config=None, **overrides):
    runner = ContainerRunner()
    task = create_task(config or make_config(), TaskContext(grid=alice, settings=settings(tmp_path, **overrides), runner=runner))
    return task, task.run(), runner


def test_a_resource_with_gpus_gets_the_gpu_image(tmp_path):
    admin, alice = make_grid(tmp_path)
    declare_gpus(admin, 2)
    task, outcome, runner = run(tmp_path, alice)
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert [(r.image, r.gpus) for r in runner.requests] == [(CUDA_IMAGE, 2)]


def test_a_resource_without_gpus_gets_the_default_image(tmp_path):
    _, alice = make_grid(tmp_path)
    _, outcome, runner = run(tmp_path, alice)
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert [(r.image, r.gpus) for r in runner.requests] == [(CPU_IMAGE, 0)]


def test_an_image_the_task_names_wins_over_the_gpu_image(tmp_path):
    admin, alice = make_grid(tmp_path)
    declare_gpus(admin, 1)
    _, outcome, runner = run(tmp_path, alice, make_config(container={"image": CPU_IMAGE}))
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert runner.requests[0].image == CPU_IMAGE


def test_gpu_image_alone_refuses_a_resource_without_gpus_before_anything_is_written(tmp_path):
    _, alice = make_grid(tmp_path)
    with pytest.raises(NotAllowedError, match="define no default_image"):
        run(tmp_path, alice, default_image=None, allowed_images=(AllowedImage(CUDA_IMAGE),))
    assert not alice.collection_exists(RESULTS)


def test_an_image_off_the_allowlist_is_refused_in_validation(tmp_path):
    admin, alice = make_grid(tmp_path)
    declare_gpus(admin, 1)
    runner = ContainerRunner()
    task = create_task(make_config(container={"image": "evil:latest"}),
                       TaskContext(grid=alice, settings=settings(tmp_path), runner=runner))
    with pytest.raises(NotAllowedError, match="'evil:latest' is not allowed"):
        task.validate()
    assert task.outcome.compute_resource is None and not runner.requests  # refused before a resource was chosen
