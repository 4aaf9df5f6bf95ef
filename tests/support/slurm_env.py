"""Slurm for the tests: run ``scripts/slurm-env`` once per session; helpers to break the node.

A test that needs Slurm takes the ``slurm_env`` fixture (or calls :func:`get_slurm_env`). When
a one-node cluster cannot be had, the test **fails** under CI (``$CI`` set) with the script's
message, and is skipped elsewhere, as the Docker tests are (tests/support/docker_env.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tests.support.setup_scripts import run_setup_script, unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-env"
SCRIPT_TIMEOUT = int(os.environ.get("C2D_SLURM_ENV_TIMEOUT", "900"))


@dataclass
class SlurmEnv:
    node: str

    def squeue(self, job_id: str) -> str:
        """The job's state as squeue prints it (``%T``), '' when unknown."""
        done = subprocess.run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.strip()

    def node_state(self) -> str:
        done = subprocess.run(["sinfo", "--noheader", "--Node", f"--nodes={self.node}", "--format=%T"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.strip()

    def submit_blocker(self, cpus: int, seconds: int = 600) -> str:
        """A job holding ``cpus`` CPUs of the node, so that the next job has to wait."""
        done = subprocess.run(["sbatch", "--parsable", f"--cpus-per-task={cpus}", "--mem=100M", "--output=/dev/null",
                               "--job-name=c2d-test-blocker", f"--wrap=sleep {seconds}"],
                              capture_output=True, text=True, timeout=30, check=True)
        return done.stdout.strip().split(";")[0]

    def cancel(self, *job_ids: str) -> None:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)

    def stop_slurmd(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop-slurmd"], capture_output=True, timeout=120, check=True)

    def restore(self) -> None:
        """slurmd running and the node idle again (after a node-failure test)."""
        _run_script.cache_clear()
        done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
        if done.returncode != 0:
            raise AssertionError(f"could not bring the Slurm node back: {done.stderr[-2000:]}")

    def wait_idle(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.node_state() == "idle":
                return
            time.sleep(0.5)
        raise AssertionError(f"node {self.node} is {self.node_state()!r}, not idle, after {seconds:.0f} s")


@lru_cache(maxsize=1)
def _run_script() -> tuple[str | None, str]:
    """(node name, '') or (None, why): the script runs at most once per test session."""
    return run_setup_script(SCRIPT, SCRIPT_TIMEOUT)


def get_slurm_env() -> SlurmEnv:
    node, why = _run_script()
    if node is None:
        unavailable("Slurm", why)
    assert node is not None
    return SlurmEnv(node)


