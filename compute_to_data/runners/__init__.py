"""Runners execute the notebook; they are registered by name (``registry.runners``)."""

from __future__ import annotations

import logging

from ..errors import NotAllowedError, RunnerError
from ..registry import runners
from ..settings import Settings
from .base import Runner, RunRequest, RunResult

log = logging.getLogger(__name__)


def docker_available() -> bool:
    """Whether a Docker daemon answers here (imports the docker SDK only when asked)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:  # no SDK, no socket, no permission: all mean "no Docker here"
        log.debug("docker not available: %s", exc)
        return False


def create_runner(name: str, settings: Settings) -> Runner:
    settings.check_runner(name)
    runner_class = runners.get(name)
    return runner_class(settings=settings)


def choose_runner(requested: str, settings: Settings) -> Runner:
    """``auto``: Docker where the settings allow it and a daemon answers, else in-process if allowed."""
    if requested != "auto":
        return create_runner(requested, settings)
    if "docker" in settings.allowed_runners and docker_available():
        return create_runner("docker", settings)
    if "inprocess" in settings.allowed_runners:
        return create_runner("inprocess", settings)
    if "docker" in settings.allowed_runners:
        raise RunnerError(
            "no Docker daemon answers on this host and the server settings allow no other runner; "
            "start Docker (or ask the administrator to)"
        )
    raise NotAllowedError(f"the server settings ({settings.source}) allow no runner usable here")


__all__ = ["Runner", "RunRequest", "RunResult", "choose_runner", "create_runner", "docker_available"]
