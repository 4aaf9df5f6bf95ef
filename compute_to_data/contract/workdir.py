"""A task's working directory on the compute host, as the engine builds it and the container sees it.

``<staging root>/<run key>/`` holds ``inputs/`` (the container's read-only ``/inputs``: this
task's inputs at their paths relative to the input collection), ``task/`` (``params.json``, the
model and the labels) and ``outputs/`` (the container's ``/outputs``). Inputs arrive either as
hard links to replicas (:meth:`TaskWorkdir.stage_input`) or read through iRODS
(:meth:`TaskWorkdir.incoming_file` then :meth:`TaskWorkdir.place_streamed`): a streamed file is
written outside ``inputs/`` and renamed into place once complete and checked, so whoever lists
``inputs/`` never sees half a file; ``task/inputs.json`` and ``task/staging.json`` say which
inputs the run will have and when they have all arrived (:mod:`.inputs`). Everything goes with the directory (:meth:`TaskWorkdir.remove`).
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from compute_to_data.contract.files import is_temporary
from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import StagingError

log = logging.getLogger(__name__)

#: Set by a runner for the notebook entrypoint: the run's private scratch directory (0700, in its
#: work directory), where the entrypoint has the kernel's connection file written (it holds the
#: kernel's HMAC key); a killed run never removes that file, but it goes with the work directory.
RUNTIME_DIR_ENV = "C2D_RUNTIME_DIR"


class TaskWorkdir:
    """``<staging root>/<task id>/{inputs,task,outputs}`` on the compute resource's host."""

    def __init__(self, staging_root: Path, task_id: str) -> None:
        self.root = Path(staging_root) / task_id
        self.report = StagingReport()
        self._made: set[Path] = set()  # folders staged into: made once, not once per file

    @property
    def input_dir(self) -> Path:
        return self.root / "inputs"

    @property
    def task_dir(self) -> Path:
        return self.root / "task"

    @property
    def model_dir(self) -> Path:
        return self.task_dir / "model"

    @property
    def labels_dir(self) -> Path:
        """Apart from the model: a labels object may have the model's name (another collection)."""
        return self.task_dir / "labels"

    @property
    def output_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def manifest_file(self) -> Path:
        """Every input the run will have, written before it starts (:mod:`.inputs`)."""
        return self.task_dir / names.INPUTS_MANIFEST_FILE

    @property
    def status_file(self) -> Path:
        """How staging ended (:mod:`.inputs`); absent while inputs still arrive."""
        return self.task_dir / names.STAGING_STATUS_FILE

    @property
    def runtime_dir(self) -> Path:
        """The notebook runner's private scratch (see :data:`RUNTIME_DIR_ENV`)."""
        return self.root / "runtime"

    def create(self) -> None:
        self._made.clear()
        try:
            if self.root.exists():
                # A previous attempt of the same task (e.g. a retried delayed run): start clean.
                shutil.rmtree(self.root)
            for directory in (self.input_dir, self.model_dir, self.labels_dir, self.output_dir):
                directory.mkdir(parents=True, exist_ok=True)
            # Readable by the container's uid (the service account, or the uid the admin chose).
            for directory in (self.root, self.input_dir, self.task_dir, self.model_dir, self.labels_dir):
                directory.chmod(0o755)
        except OSError as exc:
            log.error("cannot create the staging directory %s: %s", self.root, exc)
            raise StagingError(
                f"cannot create the task's staging directory on the compute host ({exc.strerror}); the "
                "administrator finds the details in the server log (staging_directory in the server settings)"
            ) from exc

    def stage_input(self, physical_path: str, relative_path: str, shown: str = "") -> Path:
        """Hard-link one replica at ``inputs/<relative_path>`` (``shown``: its logical path)."""
        return self._place(physical_path, self.input_dir, relative_path, shown or relative_path)

    def stage_model_file(self, physical_path: str, name: str, shown: str = "") -> Path:
        return self._place(physical_path, self.model_dir, name, shown or name)

    def stage_labels_file(self, physical_path: str, name: str, shown: str = "") -> Path:
        return self._place(physical_path, self.labels_dir, name, shown or name)

    @property
    def incoming_dir(self) -> Path:
        """Where streamed files are written until complete (never seen by the container)."""
        return self.root / ".incoming"

    def incoming_file(self, key: str) -> Path:
        """A fresh file name in :attr:`incoming_dir` for one streamed object (``key``: unique per object)."""
        self.incoming_dir.mkdir(mode=0o700, exist_ok=True)
        return self.incoming_dir / key

    def place_streamed(self, incoming: Path, base: Path, relative_path: str) -> Path:
        """Move a complete streamed file to ``base/<relative_path>`` (one rename: it appears
        whole or not at all), readable by the container's uid. Called from several readers at
        once: it keeps no count (the streamer does, under its lock)."""
        target = self._target(base, relative_path)
        try:
            self._make_parent(target)
            incoming.chmod(0o644)
            os.replace(incoming, target)
        except OSError as exc:
            log.error("cannot move streamed %s to %s: %s", incoming, target, exc)
            raise StagingError(
                f"cannot stage {relative_path} on the compute host ({exc.strerror}); the administrator finds the "
                "details in the server log"
            ) from exc
        return target

    def _make_parent(self, target: Path) -> None:
        """The folder a staged file goes in: made the first time (a task of 20,000 images in
        20 folders asked the filesystem 20,000 times before). Several readers may ask at once:
        both make it, ``exist_ok``."""
        parent = target.parent
        if parent not in self._made:
            parent.mkdir(parents=True, exist_ok=True)
            self._made.add(parent)

    @staticmethod
    def _target(base: Path, relative_path: str) -> Path:
        normalized = posixpath.normpath(relative_path)
        if normalized.startswith(("/", "../")) or normalized in (".", ".."):
            raise StagingError(f"refusing to stage {relative_path!r}: it leaves the staging directory")
        return base / normalized

    def _place(self, physical_path: str, base: Path, relative_path: str, shown: str) -> Path:
        target = self._target(base, relative_path)
        try:
            self._make_parent(target)
            os.link(physical_path, target)
            self.report.linked += 1
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                log.error("cannot link %s to %s: %s", physical_path, target, exc)
                raise StagingError(
                    f"cannot stage {shown} on the compute host ({exc.strerror}); the administrator finds the "
                    "details in the server log"
                ) from exc
            if not self.report.copied:
                note = (
                    f"staging area {self.root} cannot hard-link {physical_path} ({exc.strerror}); "
                    "copying inputs instead: put the staging directory on the vault's filesystem to avoid copies"
                )
                log.warning(note)
                self.report.notes.append(note)
            try:
                shutil.copyfile(physical_path, target)
            except OSError as copy_exc:
                log.error("cannot copy %s to %s: %s", physical_path, target, copy_exc)
                target.unlink(missing_ok=True)
                if copy_exc.errno == errno.ENOSPC:  # which directory: the host path is the administrator's
                    raise StagingError(
                        f"cannot stage {shown} on the compute host: No space left on device in the task's staging "
                        "directory; the administrator finds which in the server log and must free space there (or "
                        "stage on the vault's filesystem, where inputs are hard links)"
                    ) from copy_exc
                raise StagingError(
                    f"cannot stage {shown} on the compute host ({copy_exc.strerror}); the administrator finds "
                    "the details in the server log"
                ) from copy_exc
            target.chmod(0o644)
            self.report.copied += 1
            self.report.copied_bytes += target.stat().st_size
        return target

    def output_files(self) -> list[Path]:
        """Files the run produced, sorted; hidden files (``.progress``) are bookkeeping, not results,
        and temporary ones (``result.json.tmp``, left by a write that failed) never are."""
        if not self.output_dir.is_dir():
            return []
        files = []
        for path in sorted(self.output_dir.rglob("*")):
            relative = path.relative_to(self.output_dir)
            if (path.is_file() and not path.is_symlink() and not is_temporary(path.name)
                    and not any(p.startswith(".") for p in relative.parts)):
                files.append(path)
        return files

    def remove(self) -> None:
        self._made.clear()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class StagingReport:
    linked: int = 0
    copied: int = 0
    copied_bytes: int = 0
    notes: list[str] = field(default_factory=list)
