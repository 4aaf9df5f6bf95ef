"""The README's setup path on a stock Debian 12 machine: a virtual environment, never the system Python.

Debian marks its ``/usr/bin/python3`` as managed by apt (PEP 668), so ``pip install`` into it
fails; ``scripts/bootstrap`` must make and use a virtual environment instead. These tests run
the script against that interpreter into a fresh environment, as a new user would, and check
that the system Python is left exactly as it was. They need ``/usr/bin/python3`` (Debian's): in
CI its absence fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {why}", pytrace=False)
    pytest.skip(why)


def _site_snapshot(python: Path) -> dict[str, list[str]]:
    """The names in every site directory of ``python``: what an install would change."""
    code = (
        "import json, os, site, sys\n"
        "dirs = sorted(set(site.getsitepackages() + [site.getusersitepackages()]))\n"
        "print(json.dumps({d: sorted(os.listdir(d)) if os.path.isdir(d) else [] for d in dirs}))\n"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    import json

    return json.loads(done.stdout)


@pytest.mark.slow
def test_bootstrap_makes_a_virtual_environment_from_the_system_python(tmp_path: Path) -> None:
    _require(SYSTEM_PYTHON.exists(), f"{SYSTEM_PYTHON} (Debian's python3) is not installed")
    _require(
        Path("/usr/lib/python3.11/EXTERNALLY-MANAGED").exists(),
        "the system Python is not marked EXTERNALLY-MANAGED (not a stock Debian 12)",
    )
    before = _site_snapshot(SYSTEM_PYTHON)
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": str(SYSTEM_PYTHON), "C2D_VENV": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", str(REPO / "scripts" / "bootstrap")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "externally-managed-environment" not in done.stderr
    assert f"creating the virtual environment {venv}" in done.stderr
    assert f"{venv}/bin/c2d" in done.stderr  # says how to use c2d afterwards

    python = venv / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import os, sys, torch, compute_to_data, papermill;"
         "print(torch.__version__); print(os.path.realpath(sys._base_executable))"],
        capture_output=True, text=True, check=True,
    )
    torch_version, base = probe.stdout.split()
    assert torch_version.startswith("2.13.0")
    assert base == os.path.realpath(SYSTEM_PYTHON)
    c2d = subprocess.run([str(venv / "bin" / "c2d"), "--help"], capture_output=True, text=True)
    assert c2d.returncode == 0 and "validate" in c2d.stdout

    # Nothing went into the system Python.
    assert _site_snapshot(SYSTEM_PYTHON) == before
    system = subprocess.run([str(SYSTEM_PYTHON), "-c", "import compute_to_data"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert system.returncode != 0

    # A second run reuses the environment and installs nothing.
    again = subprocess.run(["bash", str(REPO / "scripts" / "bootstrap")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "creating the virtual environment" not in again.stderr
    assert "installing" not in again.stderr


def test_apt_get_waits_for_the_dpkg_lock_and_says_who_holds_it(tmp_path: Path) -> None:
    """An installer holding dpkg's lock makes the scripts wait (and say so), not fail at once."""
    lock = Path("/var/lib/dpkg/lock-frontend")
    _require(os.geteuid() == 0, "needs root to take dpkg's lock")
    _require(lock.exists(), f"{lock} does not exist (not a Debian machine)")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         f"f = open({str(lock)!r}, 'w')\n"
         "fcntl.lockf(f, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(6)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # `install bash` changes nothing (it is installed) but needs the lock like any install.
        done = subprocess.run(
            ["bash", "-c", "source scripts/lib.sh && C2D_APT_UPDATED=1 c2d_apt_install bash"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "C2D_APT_LOCK_TIMEOUT": "60"},
        )
    finally:
        holder.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "waiting up to 60s for the dpkg/apt lock" in done.stderr
    assert f"(pid {holder.pid})" in done.stderr  # the lock was seen held when apt-get started
