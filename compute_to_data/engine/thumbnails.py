"""Thumbnails a classification run made (``parameters.thumbnail_size``), stored beside their images.

The run's DataLoader workers write each image's thumbnail from the pixels they decode anyway
(compute side, never the server's agent) under ``<outputs>/.thumbnails/<relative path>``.
Here each one becomes ``<image's collection>/thumbnails/<name>`` on the compute resource, and
the two are linked: ``c2d::thumbnail`` on the image, ``c2d::thumbnail_of`` on the thumbnail
(with the task's units), each set in one atomic batch. A thumbnail carrying ``c2d::thumbnail_of``
is never an input of a task nor enriched. A thumbnail that cannot be stored (no write access to
the image's collection) is counted and said, never a failed task: the predictions are the result.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)


@dataclass
class ThumbnailReport:
    stored: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def note(self) -> str | None:
        if not self.failed:
            return None
        path, reason = self.failed[0]
        return f"{len(self.failed)} thumbnail(s) could not be stored (first: {path}: {reason})"


def store_thumbnails(grid: Grid, output_dir: Path, input_collection: str, resource: str, task_id: str) -> ThumbnailReport:
    """Store and link every thumbnail the run wrote (none when it wrote none)."""
    report = ThumbnailReport()
    root = output_dir / names.THUMBNAILS_OUTPUT_DIR
    if not root.is_dir():
        return report
    units = names.task_units(task_id)
    made: set[str] = set()
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.is_symlink() or file.name.startswith("."):
            continue
        image = posixpath.join(input_collection, file.relative_to(root).as_posix())
        target = names.thumbnail_path(image)
        try:
            folder = posixpath.dirname(target)
            if folder not in made:
                grid.create_collection(folder)
                made.add(folder)
            grid.put_file(file, target, resource, overwrite=True)
            grid.set_avus(EntityType.DATA_OBJECT, target, [AVU(names.A_THUMBNAIL_OF, image, units)])
            grid.set_avus(EntityType.DATA_OBJECT, image, [AVU(names.A_THUMBNAIL, target, units)])
        except ComputeToDataError as exc:
            report.failed.append((image, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        report.stored += 1
    if report.failed:
        log.warning("task %s: %s", task_id, report.note())
    return report
