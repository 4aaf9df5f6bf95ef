"""Building the classifier image: requirements, wheel selection, staleness, the CLI, CI behaviour."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_to_data import __version__, images
from compute_to_data.cli.main import app
from tests import docker_env as docker_env_module
from tests.docker_env import DockerEnv, get_docker_env

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docker_env() -> DockerEnv:
    """Docker and the images (tests/docker_env.py): fails under CI, skips elsewhere if unavailable."""
    return get_docker_env()


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
