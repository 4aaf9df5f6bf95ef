"""Runners execute the notebook; they are registered by name (``registry.runners``)."""

from __future__ import annotations

import logging

from compute_to_data.domain.errors import NotAllowedError, RunnerError
from compute_to_data.domain.registry import runners
from compute_to_data.domain.settings import Settings
from compute_to_data.runners.base import Runner, RunRequest, RunResult

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


def auto_candidates(settings: Settings, resource: str | None = None) -> list[str]:
    """What ``auto`` tries, in order: Slurm for a resource the settings list under
    ``slurm.resources``, Docker, then the in-process runner — each only where the settings allow it.

    ``resource`` None (not chosen yet, e.g. while a config is validated): Slurm is a candidate
    wherever the settings configure a cluster; once the resource is known, only for its own
    resources, so allowing Slurm on a server never takes its Docker resources away."""
    order = []
    if "slurm" in settings.allowed_runners and settings.slurm.configured:
        if resource is None or settings.slurm.resource(resource) is not None:
            order.append("slurm")
    order += [name for name in ("docker", "inprocess") if name in settings.allowed_runners]
    return order


def choose_runner(requested: str, settings: Settings, resource: str | None = None) -> Runner:
    """``auto``: Slurm for a Slurm resource (of ``resource``, when known), Docker where a daemon
    answers, else in-process (each if allowed); any other name: that runner, if allowed."""
    if requested != "auto":
        return create_runner(requested, settings)
    for candidate in auto_candidates(settings, resource):
        if candidate == "docker" and not docker_available():
            continue
        return create_runner(candidate, settings)
    if "docker" in settings.allowed_runners:
        raise RunnerError(
            "no Docker daemon answers on this host and the server settings allow no other runner; "
            "start Docker (or ask the administrator to)"
        )
    where = f" for resource {resource!r}" if resource is not None else ""
    raise NotAllowedError(f"the server settings ({settings.source}) allow no runner usable here{where}"
                          + (" (Slurm runs only the resources listed under slurm.resources)"
                             if resource is not None and "slurm" in settings.allowed_runners else ""))


__all__ = ["Runner", "RunRequest", "RunResult", "auto_candidates", "choose_runner", "create_runner", "docker_available"]
