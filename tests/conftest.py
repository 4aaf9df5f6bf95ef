"""Fixtures every part of the suite shares (pytest finds them here; no test imports them).

``docker_env`` and ``slurm_env`` start what the Docker and Slurm tests need, once per session:
they fail under CI (``CI`` set) when the daemon or the cluster cannot be had, and skip elsewhere
(tests/support/docker_env.py, tests/support/slurm_env.py).
"""

from __future__ import annotations

import pytest

from tests.support.docker_env import DockerEnv, get_docker_env
from tests.support.slurm_env import SlurmEnv, get_slurm_env


@pytest.fixture(scope="session")
def docker_env() -> DockerEnv:
    """Docker and the images: fails under CI, skips elsewhere if unavailable."""
    return get_docker_env()


@pytest.fixture(scope="session")
def slurm_env() -> SlurmEnv:
    """The one-node cluster: fails under CI, skips elsewhere if it cannot be started."""
    return get_slurm_env()
