"""Which inputs a run will have, and whether they have all arrived: the notebook starts on the
first staged files while the rest are still being read through iRODS.

The engine writes two files into the task directory (``/task`` in the container), both
atomically (a temporary file renamed into place):

* ``inputs.json`` (:data:`~compute_to_data.domain.conventions.INPUTS_MANIFEST_FILE`), before the
  run starts: ``{"inputs": [...]}``, every input the run will have, as paths relative to the
  input directory, in the order the notebook reports them and the engine stages them;
* ``staging.json`` (:data:`~compute_to_data.domain.conventions.STAGING_STATUS_FILE`), when
  staging ends: ``{"state": "done"}``, or ``{"state": "failed", "reason": "..."}`` (one line).
  Absent: files are still arriving.

A file appears in the input directory only complete (renamed into place), so a notebook that
finds it may read it. :class:`StagedInputs` is what a notebook uses: the list of files, and
:meth:`StagedInputs.wait` for one of them, which returns once it is there, returns False once
staging ended without it (that image gets an error entry), and raises :class:`StagingFailedError`
once staging failed (the run fails with the engine's reason). Without the manifest (an older
engine, a notebook run by hand) every file under the input directory is there already: the list
is its listing, and nothing waits.

Pure Python (no torch): imported by the notebook, the engine and the test runners alike.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_to_data.contract.files import located, temporary_path

#: staging has ended with every input in place / has failed (``staging.json``'s ``state``)
DONE = "done"
FAILED = "failed"
#: how often a waiting reader looks again for its file (seconds)
POLL_SECONDS = 0.02
#: the parameters naming both files (container paths for a container, host paths otherwise)
MANIFEST_PARAMETER = "inputs_manifest"
STATUS_PARAMETER = "staging_status"


class StagingFailedError(Exception):
    """Staging failed while the notebook ran: the run cannot have all its inputs.

    One message argument only, so that torch's DataLoader re-raises it by its type in the main
    process when a worker raises it."""


@dataclass(frozen=True)
class StagingStatus:
    state: str
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.state == FAILED


def _write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Whole or absent, readable by the container's uid (the engine may run under umask 077)."""
    tmp = temporary_path(path)
    try:
        tmp.write_text(json.dumps(document) + "\n", encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise located(exc, path) from exc


def write_manifest(path: Path, relatives: Sequence[str]) -> None:
    _write_json_atomic(path, {"inputs": list(relatives)})


def read_manifest(path: Path) -> list[str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ValueError(f"{path} is not an inputs manifest ({{\"inputs\": [relative paths]}})")
    return inputs


def write_status(path: Path, status: StagingStatus) -> None:
    document = {"state": status.state}
    if status.reason:
        document["reason"] = " ".join(status.reason.split())  # one line
    _write_json_atomic(path, document)


def read_status(path: Path) -> StagingStatus | None:
    """The status staging ended with; None while it goes on."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return StagingStatus(str(document.get("state", "")), str(document.get("reason", "")))


def listed_inputs(input_dir: Path) -> list[str]:
    """Every file under ``input_dir``, relative to it, sorted (what is there when nothing arrives)."""
    found: list[str] = []
    for directory, subdirectories, files in os.walk(input_dir):
        subdirectories.sort()
        found.extend(Path(directory, name).relative_to(input_dir).as_posix() for name in files)
    return sorted(found)


def reads_inputs_manifest(notebook: Path) -> bool:
    """Whether a notebook's parameters cell declares :data:`MANIFEST_PARAMETER`: a notebook that
    does not would list ``/inputs`` at its start and miss what arrives later, so its inputs are
    all staged before it starts."""
    try:
        document = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for cell in document.get("cells", []) if isinstance(document, dict) else []:
        if "parameters" in (cell.get("metadata", {}).get("tags") or []):
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else str(source)
            if any(line.split("=")[0].strip() == MANIFEST_PARAMETER for line in text.splitlines()):
                return True
    return False


class StagedInputs:
    """The run's inputs as the notebook sees them: which files, and waiting for each."""

    def __init__(self, input_dir: Path, relatives: Sequence[str], status_file: Path | None) -> None:
        self.input_dir = Path(input_dir)
        self.relatives = list(relatives)
        self.status_file = status_file

    @classmethod
    def from_parameters(cls, input_dir: str | os.PathLike[str], manifest: str | None = None,
                        status: str | None = None) -> "StagedInputs":
        """From the notebook's parameters; without a manifest, whatever the input directory holds."""
        root = Path(input_dir)
        if not manifest:
            return cls(root, listed_inputs(root), None)
        return cls(root, read_manifest(Path(manifest)), Path(status) if status else None)

    @property
    def files(self) -> list[Path]:
        return [self.input_dir / r for r in self.relatives]

    def status(self) -> StagingStatus | None:
        return read_status(self.status_file) if self.status_file is not None else StagingStatus(DONE)

    def raise_if_failed(self) -> None:
        status = self.status()
        if status is not None and status.failed:
            raise StagingFailedError(f"staging the inputs failed: {status.reason or 'no reason given'}")

    def wait(self, path: str | os.PathLike[str], *, poll: float = POLL_SECONDS,
             on_wait: Callable[[], object] | None = None) -> bool:
        """Until ``path`` is there (True) or staging ended without it (False); raises
        :class:`StagingFailedError` once staging failed. ``on_wait`` is called between looks
        (a runner's poll hook: when it returns True it had work, and the next look is at once)."""
        while True:
            if os.path.exists(path):
                return True
            status = self.status()
            if status is not None:
                if status.failed:
                    self.raise_if_failed()
                return os.path.exists(path)  # placed just before the status was written
            if on_wait is not None and on_wait():
                continue
            time.sleep(poll)


#: the error entry of an input staging ended without (the run goes on: one image, one error)
NOT_STAGED = "staging ended without this file"
