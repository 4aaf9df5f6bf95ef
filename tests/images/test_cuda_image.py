"""The CUDA image (``c2d image build --cuda``), built and run for real where its wheelhouse is.

Its wheelhouse (torch's CUDA build and the ``nvidia-*``, ``cuda-*`` and ``triton`` wheels it
loads: about 3 GB) is made by ``c2d image build --cuda``, as these tests build the image: under
CI (``$CI`` set) always, the wheelhouse included when it is missing (about 20 s from this
machine's package index, then about 4.5 minutes for the image), and they **fail** if that does;
elsewhere only where the wheelhouse is present (``images.default_wheelhouse(cuda=True)``, or
``$C2D_CUDA_WHEELHOUSE``), skipping with how to make it otherwise (3 GB is not fetched for a
developer unasked). The image is reused while its content hash is unchanged. It then runs a
real classification task:
on a host without a GPU (this one, CI) the runner asks Docker for none and torch's CUDA build runs
on the CPU; on a GPU host the same test runs on the GPU.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path

import pytest

from compute_to_data import images
from compute_to_data.demo.run import INPUTS, LABELS, MODEL, RESULTS, USER, build_zone
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.settings import AllowedImage, Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import create_task
from compute_to_data.engine.task import TaskContext
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.docker_runner import DockerRunner, visible_gpus
from tests.support.docker_env import TEST_CONTAINER_USER, DockerEnv

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGES = 48
WHEELHOUSE_ENV = "C2D_CUDA_WHEELHOUSE"


def cuda_wheelhouse() -> Path:
    return Path(os.environ.get(WHEELHOUSE_ENV) or images.default_wheelhouse(cuda=True))




@pytest.fixture(scope="module")
def cuda_image(docker_env: DockerEnv) -> str:
    """The CUDA twin on the CPU image's base, built (or found up to date) from the wheelhouse."""
    wheelhouse = cuda_wheelhouse()
    if not any(wheelhouse.glob("torch-*.whl")) and not os.environ.get("CI"):
        pytest.skip(f"no CUDA wheelhouse at {wheelhouse} (set {WHEELHOUSE_ENV} to use another): "
                    "c2d image build --cuda makes it (about 3 GB of wheels) and these tests then build and run the image; "
                    "under CI they make it themselves")
    base = docker_env.client.images.get(docker_env.image).labels[images.LABEL_BASE_IMAGE]
    try:
        built = images.build_image(base_image=base, wheelhouse=wheelhouse, if_stale=True, cuda=True,
                                   client=images.docker_client(timeout=1800))
    except images.ImageBuildError as exc:
        pytest.fail(f"c2d image build --cuda failed (wheelhouse {wheelhouse}): {exc}")
    return built.tag


def run_python(docker_env: DockerEnv, image: str, *args: str) -> str:
    """Run ``python`` in ``image`` as the runner would: no network, read-only, unprivileged."""
    output = docker_env.client.containers.run(
        image, list(args), entrypoint="python", remove=True, network_mode="none", read_only=True,
        tmpfs={"/tmp": "rw,size=256m"}, user=TEST_CONTAINER_USER, cap_drop=["ALL"])
    return output.decode()


def test_the_cuda_image_carries_torch_cuda_build_and_runs_it_without_a_gpu(docker_env, cuda_image):
    image = docker_env.client.images.get(cuda_image)
    assert image.labels[images.LABEL_TORCH_VARIANT] == "cuda"
    probe = ("import json, torch; x = torch.ones(64, 64); "
             "print(json.dumps([torch.__version__, torch.version.cuda, torch.cuda.is_available(), float((x @ x).sum())]))")
    version, cuda, available, total = json.loads(run_python(docker_env, cuda_image, "-c", probe).strip().splitlines()[-1])
    assert version.split("+")[0] == images.DEFAULT_CUDA_TORCH_REQUIREMENT.split("==")[1]
    assert version.endswith("+cu130") and cuda == "13.0"  # the build reports the CUDA it was made for
    assert available is False  # no GPU device was passed in: the CPU computes
    assert total == 64.0 ** 3


def pip_freeze(docker_env: DockerEnv, image: str) -> set[str]:
    return set(run_python(docker_env, image, "-m", "pip", "freeze", "--all", "--disable-pip-version-check").split())


def test_the_cpu_and_cuda_images_have_the_same_notebook_environment_but_for_torch(docker_env, cuda_image):
    cpu, cuda = pip_freeze(docker_env, docker_env.image), pip_freeze(docker_env, cuda_image)

    def name(line: str) -> str:
        return line.split("==")[0].split(" @ ")[0]

    def shared(lines: set[str]) -> set[str]:
        return {line for line in lines if not images.is_torch_stack(name(line))}

    assert shared(cpu) == shared(cuda)
    assert len(shared(cpu)) > 80 and any(line.startswith("compute_to_data") for line in shared(cpu))
    assert {line for line in cpu - shared(cpu)} == {"torch==2.13.0+cpu"}
    cuda_only = {name(line) for line in cuda - shared(cuda)}
    assert {"torch", "triton", "nvidia-cudnn-cu13", "nvidia-cublas"} <= {images.normalized_name(n) for n in cuda_only}


def test_a_task_on_a_gpu_resource_runs_in_the_cuda_image(docker_env, cuda_image, tmp_path):
    """The whole engine: the resource declares a GPU, the CUDA image is chosen, the task tags every image."""
    alice, _ = build_zone(tmp_path, IMAGES)
    admin = LocalGrid(tmp_path / "grid", user="rods")
    admin.apply_metadata([MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.GPUS_ATTRIBUTE, "1"))])
    settings = Settings(
        allowed_images=(AllowedImage(docker_env.image), AllowedImage(cuda_image)),
        default_image=docker_env.image, gpu_image=cuda_image,
        container_user=TEST_CONTAINER_USER if os.geteuid() == 0 else None,
        allowed_runners=("docker",), staging_directory=str(tmp_path / "staging"), source="test settings")
    config = TaskConfig.from_document({
        "task_type": "image_classification",
        "inputs": {"collection": INPUTS, "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS},
        "compute": {"role": names.ROLE_GPU_COMPUTE},
        "container": {"runner": "docker"},
        "parameters": {"model": MODEL, "labels": LABELS, "batch_size": 16},
        "timeout_seconds": 1200,
    }, source="test")
    outcome = create_task(config, TaskContext(grid=alice, settings=settings, runner=DockerRunner(settings))).run()
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert outcome.inputs == IMAGES and outcome.tagged == IMAGES

    record = TaskStateStore(LocalGrid(tmp_path / "grid", user=USER)).read(outcome.collection)
    assert record.get(names.A_IMAGE) == cuda_image
    assert record.get(names.A_IMAGE_DIGEST) == docker_env.client.images.get(cuda_image).id
    timings = json.loads(alice.read_data_object(posixpath.join(outcome.collection, "timings.json")))
    assert str(timings["device"]).startswith("cuda" if visible_gpus() else "cpu"), timings
    tagged = alice.list_data_objects(INPUTS, recursive=True, avu_attributes=("predictedclass",))
    assert len(tagged) == IMAGES and all(o.avus for o in tagged)
