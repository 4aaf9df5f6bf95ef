"""Supervise one run in a separate process, so that a test can kill that process (``kill -9``)
and check what another process can still do with the run's handle (``is_alive``, ``stop``).

    python -m tests.runner_child SPEC.json

SPEC holds the runner name, the settings document and the request's fields; the handle the run
gets is written to ``SPEC.json.handle`` as soon as it exists (the ``on_started`` callback).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from compute_to_data.domain.registry import runners
from compute_to_data.domain.settings import Settings
from compute_to_data.runners.base import RunRequest

REPO = Path(__file__).resolve().parents[2]


def start_supervisor(spec_path: Path, runner: str, settings: Settings, request: RunRequest) -> subprocess.Popen:
    """Start the child; :func:`wait_for_handle` then returns the run's handle."""
    spec = {
        "runner": runner, "settings": settings.to_document(),
        "request": {"task_id": request.task_id, "notebook_name": request.notebook_name,
                    "notebook_path": str(request.notebook_path), "workdir": str(request.workdir),
                    "parameters": request.parameters, "timeout_seconds": request.timeout_seconds,
                    "image": request.image, "gpus": request.gpus, "resource_name": request.resource_name},
    }
    spec_path.write_text(json.dumps(spec))
    return subprocess.Popen([sys.executable, "-m", "tests.support.runner_child", str(spec_path)], cwd=REPO,
                            start_new_session=True)


def wait_for_handle(spec_path: Path, child: subprocess.Popen, seconds: float = 120) -> str:
    handle_file = Path(str(spec_path) + ".handle")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if handle_file.exists() and handle_file.read_text().strip():
            return handle_file.read_text().strip()
        if child.poll() is not None:
            raise AssertionError(f"the supervising process exited with {child.returncode} before its run started")
        time.sleep(0.1)
    raise AssertionError("the run never got a handle")


def main(spec_file: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_file).read_text())
    settings = Settings.from_document(spec["settings"], "test settings")
    fields = dict(spec["request"])
    fields["notebook_path"] = Path(fields["notebook_path"])
    fields["workdir"] = Path(fields["workdir"])
    handle_file = Path(spec_file + ".handle")
    request = RunRequest(**fields, on_started=lambda host, handle: handle_file.write_text(handle))
    result = runners.get(spec["runner"])(settings=settings).run(request)
    print(json.dumps({"status": result.status, "error": result.error}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
