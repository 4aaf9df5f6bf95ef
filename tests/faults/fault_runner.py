"""The in-process runner with the fault suite's notebook stand-in (shared by the driver and tests)."""

from __future__ import annotations

from compute_to_data.domain.registry import runners
from compute_to_data.runners.inprocess import InProcessRunner

NAME = "faultproc"


class FaultRunner(InProcessRunner):
    """The real InProcessRunner (supervision, marker, kill tree), running ``fake_entrypoint``."""

    name = NAME
    entrypoint_module = "tests.faults.fake_entrypoint"

    def __init__(self, settings: object | None = None, **kwargs: object) -> None:
        kwargs.setdefault("poll_interval", 0.2)
        super().__init__(settings, **kwargs)  # type: ignore[arg-type]


def register() -> None:
    runners.register(NAME, FaultRunner)
