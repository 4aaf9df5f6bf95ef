"""The notebook's side of predictions in parts (read by ``compute_to_data.tasks.parts``).

A notebook adds one entry per image as it goes (the entries of ``predictions.json``); every
``part_size`` images, or ``part_seconds`` after the first entry of a part, the writer renames a
complete ``<output_dir>/.parts/part-NNNNNN.json`` into place, so the engine can tag it while the
notebook works on the next one, and a run that dies keeps what it finished. ``part_size`` 0
writes a single part at :meth:`PartWriter.close`.

Standard library only: it runs inside the container and in the in-process runner's child.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .. import conventions as names


class PartWriter:
    def __init__(self, output_dir: str | os.PathLike[str], part_size: int = names.DEFAULT_PART_SIZE,
                 part_seconds: float = names.DEFAULT_PART_SECONDS, task_id: str = "") -> None:
        self.directory = Path(output_dir) / names.PARTS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.part_size = int(part_size)
        self.part_seconds = float(part_seconds)
        self.task_id = task_id
        self.written = 0
        self._entries: list[dict[str, Any]] = []
        self._opened = 0.0

    def add(self, entry: dict[str, Any]) -> None:
        if not self._entries:
            self._opened = time.monotonic()
        self._entries.append(entry)
        if self.part_size and (
            len(self._entries) >= self.part_size or time.monotonic() - self._opened >= self.part_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write what was added since the last part as the next part (nothing if empty)."""
        if not self._entries:
            return
        self.written += 1
        doc = {"task_id": self.task_id, "part": self.written, "images": self._entries}
        final = self.directory / names.part_name(self.written)
        tmp = self.directory / f".{final.name}.tmp"
        tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
        os.replace(tmp, final)
        self._entries = []

    close = flush


def prediction_entry(relative: str, logical: str, result: Any, score_threshold: float) -> dict[str, Any]:
    """An entry of ``predictions.json`` and of the parts: the image (path relative to the inputs
    and its logical path) and its ranked classifications, or the error that kept it from being
    read. ``result`` is a list of ``(class, score)``, best first, or an error string."""
    entry: dict[str, Any] = {"file": relative, "path": logical}
    if isinstance(result, str) or result is None:
        entry["error"] = result or "not classified"
    else:
        entry["classifications"] = [{"class": c, "score": round(float(s), 6)} for c, s in result]
        entry["below_threshold"] = bool(result[0][1] < score_threshold)
    return entry


def previous_entries(path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """A resumed run's earlier predictions (``/task/previous_predictions.json``), or none."""
    if not path or not Path(path).is_file():
        return []
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return [e for e in doc.get("images", []) if isinstance(e, dict) and "file" in e]


def merged_with_previous(images: list[dict[str, Any]], previous_path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """This run's entries plus the earlier runs' for files this run did not classify, by file."""
    mine = {e["file"] for e in images}
    merged = [e for e in previous_entries(previous_path) if e["file"] not in mine] + list(images)
    return sorted(merged, key=lambda e: e["file"])
