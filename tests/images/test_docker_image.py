"""Building the classifier image: requirements, wheel selection, staleness, the CLI, CI behaviour."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_to_data import __version__, images
from compute_to_data.cli.main import app
from tests.support import docker_env as docker_env_module

REPO = Path(__file__).resolve().parents[2]




def test_image_requirements_pin_torch_and_cover_the_notebook_extra():
    requirements = images.image_requirements(REPO)
    assert "torch==2.13.0" in requirements
    assert not any(r.startswith("torch") and r != "torch==2.13.0" for r in requirements)
    for name in ("papermill", "nbconvert", "ipykernel", "pillow", "numpy", "jsonschema"):
        assert any(r.lower().startswith(name) for r in requirements), name


def test_torch_requirement_can_be_overridden(monkeypatch):
    monkeypatch.setenv(images.TORCH_REQUIREMENT_ENV, "torch==2.14.0")
    assert "torch==2.14.0" in images.image_requirements(REPO)


def test_wheels_are_chosen_for_the_image_python_not_the_host():
    target = images.TargetPython("3.11.2", "2.36")
    args = target.pip_arguments()
    assert args[:8] == ["--only-binary=:all:", "--python-version", "3.11.2", "--implementation", "cp",
                        "--abi", "cp311", "--platform"]
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert "manylinux2014_x86_64" in platforms and "manylinux_2_37_x86_64" not in platforms
    assert images.wheelhouse_key(["a"], target) != images.wheelhouse_key(["a"], images.TargetPython("3.11.9", "2.36"))


def test_a_cuda_torch_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(images.ALLOW_NON_CPU_TORCH_ENV, raising=False)
    (tmp_path / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / "nvidia_cudnn_cu12-9.1-py3-none-manylinux_2_27_x86_64.whl").write_bytes(b"")
    with pytest.raises(images.ImageBuildError, match="not the CPU build"):
        images._check_torch_wheel(tmp_path)
    for wheel in tmp_path.iterdir():
        wheel.unlink()
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    images._check_torch_wheel(tmp_path)


def test_content_hash_follows_sources_and_notebooks(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO / "compute_to_data", root / "compute_to_data", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "notebooks"))
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    dockerfile = REPO / "containers" / "classifier" / "Dockerfile"
    notebook = tmp_path / "n.ipynb"
    notebook.write_text("{}")

    def digest() -> str:
        return images.content_hash(root, dockerfile, ["torch==2.13.0"], "key", "sha256:base", [("n.ipynb", notebook)])

    first = digest()
    assert digest() == first
    (root / "compute_to_data" / "__pycache__").mkdir(exist_ok=True)
    (root / "compute_to_data" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert digest() == first
    notebook.write_text('{"changed": true}')
    second = digest()
    assert second != first
    (root / "compute_to_data" / "errors.py").write_text("# changed\n")
    assert digest() != second


def test_docker_unavailable_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        docker_env_module.unavailable("no daemon")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        docker_env_module.unavailable("no daemon")


@pytest.mark.docker
def test_image_commands_report_the_built_image(docker_env):
    listing = CliRunner().invoke(app, ["image", "ls"])
    assert listing.exit_code == 0, listing.output
    assert f"compute-to-data/classifier:{__version__}" in listing.output
    built = CliRunner().invoke(app, ["image", "build", "--if-stale", "--quiet",
                                     "--wheelhouse", str(images.default_cache_dir() / "wheelhouse")])
    assert built.exit_code == 0, built.output
    image = docker_env.client.images.get(docker_env.image)
    assert "up to date" in built.output and image.id in built.output
    assert f"{image.attrs['Size'] / 1e6:.0f} MB" in built.output
    labels = image.labels
    assert labels[images.LABEL_VERSION] == __version__ and labels[images.LABEL_CONTENT_HASH]


# --- the CUDA twin (`c2d image build --cuda`): not built in CI, its plan and refusals are -------
def test_cuda_build_takes_the_same_dockerfile_with_its_own_tag_wheelhouse_and_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("C2D_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(images.CUDA_TORCH_REQUIREMENT_ENV, raising=False)
    monkeypatch.setenv(images.TORCH_REQUIREMENT_ENV, "torch==2.13.0+cpu")  # the CPU setting does not leak in
    plan = images.plan_build(REPO, cuda=True)
    assert plan.dockerfile == REPO / "containers" / "classifier" / "Dockerfile"
    assert plan.tag == f"compute-to-data/classifier-cuda:{__version__}"
    assert plan.wheelhouse == tmp_path / "wheelhouse-cuda"
    assert "torch==2.14.1" in plan.requirements and not any("+cpu" in r for r in plan.requirements)
    assert plan.build_args("base:1", "build:1") == {"BASE_IMAGE": "base:1", "BUILD_IMAGE": "build:1",
                                                    "TORCH_VARIANT": "cuda"}
    cpu = images.plan_build(REPO)
    assert (cpu.tag, cpu.wheelhouse, cpu.dockerfile) == (images.default_tag(), tmp_path / "wheelhouse", plan.dockerfile)
    assert cpu.build_args("b", "b")["TORCH_VARIANT"] == "cpu"
    monkeypatch.setenv(images.CUDA_TORCH_REQUIREMENT_ENV, "torch==2.13.0+cu130")
    assert "torch==2.13.0+cu130" in images.plan_build(REPO, cuda=True).requirements


def test_the_dockerfile_builds_both_variants():
    text = (REPO / "containers" / "classifier" / "Dockerfile").read_text()
    assert text.count("ARG TORCH_VARIANT") == 3  # declared, then in both stages
    assert 'if [ "$TORCH_VARIANT" = cpu ] && command -v strip' in text  # CUDA libraries stay as shipped
    assert "ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility" in text


def test_cuda_and_cpu_wheelhouses_and_images_are_told_apart():
    target = images.TargetPython("3.11.2", "2.36")
    same = ["torch==2.13.0", "numpy"]
    assert images.wheelhouse_key(same, target, images.CUDA_VARIANT) != images.wheelhouse_key(same, target)
    assert images.wheelhouse_key(same, target, images.CPU_VARIANT) == images.wheelhouse_key(same, target)
    dockerfile = REPO / "containers" / "classifier" / "Dockerfile"
    args = (REPO, dockerfile, same, "key", "sha256:base", [])
    assert images.content_hash(*args, variant=images.CUDA_VARIANT) != images.content_hash(*args)


def test_a_cuda_build_refuses_a_wheelhouse_without_a_cuda_torch(tmp_path):
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    with pytest.raises(images.ImageBuildError, match=r"holds torch-2\.13\.0\+cpu-.*the CPU build of torch, not a CUDA build"):
        images._check_torch_wheel(tmp_path, images.CUDA_VARIANT)
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").unlink()
    (tmp_path / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    with pytest.raises(images.ImageBuildError, match="none of the nvidia-\\* wheels"):
        images._check_torch_wheel(tmp_path, images.CUDA_VARIANT)
    (tmp_path / "nvidia_cudnn_cu13-9.20.0.48-py3-none-manylinux_2_27_x86_64.whl").write_bytes(b"")
    images._check_torch_wheel(tmp_path, images.CUDA_VARIANT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(images.ImageBuildError, match="no torch wheel"):
        images._check_torch_wheel(tmp_path / "empty", images.CUDA_VARIANT)


class _FakeImages:
    def get(self, reference):
        from types import SimpleNamespace

        import docker.errors

        if reference.startswith("compute-to-data/"):
            raise docker.errors.ImageNotFound(reference)
        return SimpleNamespace(id=f"sha256:{reference}", labels={}, attrs={})


class _FakeClient:
    images = _FakeImages()

    class api:  # noqa: N801 - the docker SDK's attribute name
        @staticmethod
        def build(**kwargs):
            raise AssertionError("docker build must not start with a CPU torch in the CUDA wheelhouse")


def test_build_cuda_stops_before_docker_build_when_the_wheelhouse_has_the_cpu_torch(tmp_path, monkeypatch):
    """A reused, stamped wheelhouse holding the CPU torch (what pip picks here) is refused."""
    import json

    target = images.TargetPython("3.11.2", "2.36")
    monkeypatch.setattr(images, "probe_base_python", lambda client, base: target)
    wheelhouse = tmp_path / "wheelhouse-cuda"
    wheelhouse.mkdir()
    (wheelhouse / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    key = images.wheelhouse_key(images.image_requirements(REPO, images.CUDA_VARIANT), target, images.CUDA_VARIANT)
    (wheelhouse / images.WHEELHOUSE_STAMP).write_text(json.dumps({"key": key}))
    with pytest.raises(images.ImageBuildError, match="the CPU build of torch, not a CUDA build.*c2d image build --cuda"):
        images.build_image(base_image="base:1", build_image_ref="base:1", wheelhouse=wheelhouse,
                           client=_FakeClient(), cuda=True)


def test_image_build_cuda_on_the_command_line(monkeypatch, tmp_path):
    from types import SimpleNamespace

    monkeypatch.setenv("C2D_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(images, "docker_client", lambda timeout=600: object())
    monkeypatch.setattr(images, "choose_base_image", lambda client: "base:1")

    def fake_build(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(tag=images.default_tag(cuda=kwargs["cuda"]), reused=False, seconds=1.0, id="sha256:x",
                               size=7e9, base_image="base:1")

    monkeypatch.setattr(images, "build_image", fake_build)
    result = CliRunner().invoke(app, ["image", "build", "--cuda", "--quiet"])
    assert result.exit_code == 0, result.output
    assert calls[0]["cuda"] is True and calls[0]["wheelhouse"] == tmp_path / "wheelhouse-cuda"
    assert f"compute-to-data/classifier-cuda:{__version__}: built" in result.output and "gpu_image" in result.output
    assert CliRunner().invoke(app, ["image", "build", "--quiet"]).exit_code == 0
    assert calls[1]["cuda"] is False and calls[1]["wheelhouse"] == tmp_path / "wheelhouse"


# --- one set of versions for both images: containers/classifier/constraints.txt -------------------
def test_both_images_take_the_same_requirements_and_pins_but_torch(monkeypatch):
    for env in (images.TORCH_REQUIREMENT_ENV, images.CUDA_TORCH_REQUIREMENT_ENV):
        monkeypatch.delenv(env, raising=False)
    cpu, cuda = images.plan_build(REPO), images.plan_build(REPO, cuda=True)
    assert cpu.constraints == cuda.constraints == REPO / "containers" / "classifier" / "constraints.txt"
    assert [r for r in cpu.requirements if not r.startswith("torch")] == \
        [r for r in cuda.requirements if not r.startswith("torch")]
    assert ({r for r in cpu.requirements if r.startswith("torch")},
            {r for r in cuda.requirements if r.startswith("torch")}) == ({"torch==2.13.0"}, {"torch==2.14.1"})
    pins = images.read_constraints(cpu.constraints)
    for requirement in cpu.requirements:  # every direct requirement but torch is pinned, none of torch's stack
        name = images.normalized_name(requirement.split(">")[0].split("=")[0].split("<")[0].strip())
        assert (name in pins) != images.is_torch_stack(name), requirement
    assert not [name for name in pins if images.is_torch_stack(name)]
    for name in ("sympy", "networkx", "filelock", "jinja2", "fsspec", "typing-extensions", "setuptools"):
        assert name in pins, f"{name}: torch's own dependencies are pinned too, so both torches get the same"


def test_the_torch_stack_is_told_apart_by_name():
    assert images.wheel_name_version("nvidia_cudnn_cu13-9.24.0.43-py3-none-manylinux_2_27_x86_64.whl") == (
        "nvidia-cudnn-cu13", "9.24.0.43")
    assert images.wheel_name_version("typing_extensions-4.16.0-py3-none-any.whl") == ("typing-extensions", "4.16.0")
    for name in ("torch", "triton", "nvidia_cublas", "cuda-toolkit", "cuda_bindings", "cuda-pathfinder"):
        assert images.is_torch_stack(name), name
    for name in ("numpy", "sympy", "networkx", "jinja2", "nbconvert"):
        assert not images.is_torch_stack(name), name
    with pytest.raises(images.ImageBuildError, match="not a wheel file name"):
        images.wheel_name_version("numpy-2.4.6.tar.gz")


def test_constraints_are_written_without_the_torch_stack_and_read_back(tmp_path):
    path = tmp_path / "constraints.txt"
    count = images.write_constraints(path, ["numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
                                            "Jinja2-3.1.6-py3-none-any.whl",
                                            "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                                            "nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_x86_64.whl",
                                            "triton-3.8.0-cp311-cp311-manylinux_2_28_x86_64.whl"])
    assert count == 2
    assert images.read_constraints(path) == {"jinja2": "3.1.6", "numpy": "2.4.6"}
    path.write_text("numpy>=2\n")
    with pytest.raises(images.ImageBuildError, match=r"constraints.txt:1: 'numpy>=2' is not name==version.*images lock"):
        images.read_constraints(path)


def _fake_pip(wheels: list[str], calls: list[list[str]]):
    """subprocess.run standing in for ``pip download``: drops the named (empty) wheels into --dest."""
    import subprocess

    def run(command, **kwargs):
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        for wheel in wheels:
            (dest / wheel).write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


CPU_TORCH = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_a_wheelhouse_with_a_package_the_constraints_do_not_pin_is_refused(tmp_path, monkeypatch):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("numpy==2.4.6\n")
    calls: list[list[str]] = []
    monkeypatch.setattr(images.subprocess, "run", _fake_pip(
        [CPU_TORCH, "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "newdep-1.0-py3-none-any.whl"], calls))
    target = images.TargetPython("3.11.2", "2.36")
    with pytest.raises(images.ImageBuildError, match=r"does not pin: newdep 1.0 \(not pinned\).*images lock"):
        images.ensure_wheelhouse(tmp_path / "wh", target, ["numpy", "newdep", "torch==2.13.0"], constraints=constraints)
    assert calls[0][-2:] == ["-c", str(constraints)]
    assert not (tmp_path / "wh").exists()  # nothing half-made is left to be reused


def test_a_reused_wheelhouse_that_drifted_from_the_pins_is_downloaded_again(tmp_path, monkeypatch):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("numpy==2.4.6\n")
    calls: list[list[str]] = []
    monkeypatch.setattr(images.subprocess, "run", _fake_pip(
        [CPU_TORCH, "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"], calls))
    target, requirements = images.TargetPython("3.11.2", "2.36"), ["numpy", "torch==2.13.0"]
    wheelhouse = tmp_path / "wh"
    key = images.ensure_wheelhouse(wheelhouse, target, requirements, constraints=constraints)
    assert images.ensure_wheelhouse(wheelhouse, target, requirements, constraints=constraints) == key
    assert len(calls) == 1  # unchanged: reused
    constraints.write_text("numpy==2.5.0\n")
    monkeypatch.setattr(images.subprocess, "run", _fake_pip(
        [CPU_TORCH, "numpy-2.5.0-cp311-cp311-manylinux_2_28_x86_64.whl"], calls))
    assert images.ensure_wheelhouse(wheelhouse, target, requirements, constraints=constraints) == key
    assert len(calls) == 2
    assert sorted(p.name for p in wheelhouse.glob("numpy-*")) == ["numpy-2.5.0-cp311-cp311-manylinux_2_28_x86_64.whl"]


def test_the_image_is_rebuilt_when_the_pins_change():
    dockerfile = REPO / "containers" / "classifier" / "Dockerfile"
    args = (REPO, dockerfile, ["torch==2.13.0"], "key", "sha256:base", [])
    assert images.content_hash(*args, constraints="numpy==2.4.6\n") != images.content_hash(*args, constraints="numpy==2.5.0\n")


def test_lock_pins_what_the_cpu_requirements_resolve_to(tmp_path, monkeypatch):
    (tmp_path / "containers" / "classifier").mkdir(parents=True)
    shutil.copyfile(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.delenv(images.TORCH_REQUIREMENT_ENV, raising=False)
    monkeypatch.setattr(images, "probe_base_python", lambda client, base: images.TargetPython("3.11.2", "2.36"))
    calls: list[list[str]] = []
    monkeypatch.setattr(images.subprocess, "run", _fake_pip(
        [CPU_TORCH, "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "sympy-1.14.0-py3-none-any.whl"], calls))
    path, count = images.lock_constraints(base_image="base:1", client=object(), root=tmp_path)
    assert path == tmp_path / "containers" / "classifier" / "constraints.txt" and count == 2
    assert images.read_constraints(path) == {"numpy": "2.4.6", "sympy": "1.14.0"}
    assert "-c" not in calls[0]  # resolved afresh: the old pins do not hold the new resolution back
