"""Docker for the tests: run ``scripts/docker-env`` once per session, hand out a client and images.

A test that needs Docker takes a fixture returning :func:`get_docker_env` (or imports the
``docker_env`` fixture from here). When Docker cannot be made
available, the test **fails** under CI (``$CI`` set) with the script's message, and is skipped
elsewhere (a laptop without Docker can still run the rest of the suite).

Two images are involved:

* ``compute-to-data/classifier:<version>``: the production image, built by the script;
* ``compute-to-data/classifier-test:<version>``: the same plus the test notebooks of
  ``tests/data/notebooks`` baked in next to the real ones (a notebook is never mounted into a
  task container, so test notebooks must be in an image too). Rebuilt when they change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from compute_to_data import __version__
from compute_to_data.domain.settings import AllowedImage, ContainerLimits, Settings
from tests.support.setup_scripts import run_setup_script
from tests.support.setup_scripts import unavailable as setup_unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "docker-env"
TEST_NOTEBOOKS = REPO / "tests" / "data" / "notebooks"
TEST_IMAGE = f"compute-to-data/classifier-test:{__version__}"
#: a non-root uid:gid for containers when the tests run as root (they do in CI).
TEST_CONTAINER_USER = "65534:65534"
SCRIPT_TIMEOUT = int(os.environ.get("C2D_DOCKER_ENV_TIMEOUT", "3000"))


@dataclass
class DockerEnv:
    client: Any
    image: str  # the production classifier image
    test_image: str  # the production image + test notebooks

    def settings(self, *, image: str | None = None, **overrides: Any) -> Settings:
        """Server settings allowing the test image (as root: a non-root container user)."""
        image = image or self.test_image
        values: dict[str, Any] = {
            "allowed_images": (AllowedImage(image),),
            "default_image": image,
            "container_user": TEST_CONTAINER_USER if os.geteuid() == 0 else None,
            "limits": ContainerLimits(memory="2g", cpus=2.0, pids=256, shm_size="256m"),
            "allowed_runners": ("docker", "inprocess"),
            "source": "test settings",
        }
        values.update(overrides)
        return Settings(**values)


def unavailable(message: str) -> None:
    """Fail under CI, skip elsewhere."""
    setup_unavailable("Docker", message)


@lru_cache(maxsize=1)
def _run_script() -> tuple[str | None, str]:
    """(image tag, '') or (None, why): the script runs at most once per test session."""
    return run_setup_script(SCRIPT, SCRIPT_TIMEOUT)


def build_test_image(client: Any, base_tag: str, tag: str = TEST_IMAGE) -> str:
    """``base_tag`` + the test notebooks; reused while both are unchanged."""
    base = client.images.get(base_tag)
    digest = hashlib.sha256(base.id.encode())
    notebooks = sorted(TEST_NOTEBOOKS.glob("*.ipynb"))
    for path in notebooks:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    wanted = digest.hexdigest()[:20]
    previous_id = None
    try:
        existing = client.images.get(tag)
        if (existing.labels or {}).get("org.c2d.test-hash") == wanted:
            return tag
        previous_id = existing.id
    except Exception:  # not built yet
        pass
    with tempfile.TemporaryDirectory(prefix="c2d-test-image-") as tmp:
        context = Path(tmp)
        for path in notebooks:
            shutil.copyfile(path, context / path.name)
        (context / "Dockerfile").write_text(
            f"FROM {base_tag}\nCOPY *.ipynb /opt/c2d/notebooks/\n"
        )
        image, _ = client.images.build(path=str(context), tag=tag, labels={"org.c2d.test-hash": wanted},
                                       rm=True, forcerm=True, pull=False, network_mode="none")
    if previous_id and previous_id != image.id:
        try:  # the outdated test image, now untagged
            client.images.remove(previous_id)
        except Exception:
            pass
    return tag


@lru_cache(maxsize=1)
def _environment() -> tuple[DockerEnv | None, str]:
    tag, why = _run_script()
    if tag is None:
        return None, why
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
        test_image = build_test_image(client, tag)
    except Exception as exc:
        return None, f"the daemon answered the script but not the tests: {exc}"
    return DockerEnv(client, tag, test_image), ""


def get_docker_env() -> DockerEnv:
    env, why = _environment()
    if env is None:
        unavailable(why)
    assert env is not None
    return env


