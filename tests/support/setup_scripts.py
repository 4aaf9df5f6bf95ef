"""Running the setup scripts (scripts/docker-env, scripts/slurm-env) from the tests.

A test that needs what a script sets up **fails** under CI (``$CI`` set) with the script's
message when it cannot be had, and is skipped elsewhere (a laptop without Docker or Slurm can
still run the rest of the suite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def unavailable(what: str, message: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but could not be made available: {message}", pytrace=False)
    pytest.skip(f"{what} not available: {message}")


def run_setup_script(script: Path, timeout: int, *args: str) -> tuple[str | None, str]:
    """(the script's last line of output, '') or (None, why it failed, its errors first)."""
    if shutil.which("bash") is None:
        return None, "bash is not installed"
    try:
        done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"{script} did not finish within {timeout} s"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        errors = [line for line in lines if "ERROR" in line][-3:]
        tail = "\n".join(lines[-15:])
        return None, f"{script} exited with {done.returncode}: {' '.join(errors)}\n--- last output ---\n{tail}"
    lines = done.stdout.strip().splitlines()
    if not lines:
        return None, f"{script} printed nothing on its last line"
    return lines[-1].strip(), ""
