"""The notebook's side of predictions in parts (read by ``compute_to_data.engine.predictions``).

A notebook adds the entries of the images it finished (the entries of ``predictions.json``);
every ``part_size`` images, or ``part_seconds`` after the previous part, :class:`PartWriter`
renames a complete ``<output_dir>/.parts/part-NNNNNN.json`` into place, so the engine can tag it
while the notebook works on the next one, and a run that dies keeps what it finished. A resumed
task's notebook gets the earlier runs' entries (``previous_predictions``) and merges them in
with :func:`merged_with_previous`, so its files and report cover the whole task.

Standard library only: the container's notebooks use it through ``pipeline``, and light test
notebooks and stand-ins use it directly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_to_data.domain import conventions as names

log = logging.getLogger(__name__)


def prediction_entry(file: str, path: str, result: list[tuple[str, float]] | str,
                     score_threshold: float) -> dict[str, Any]:
    """One image as ``predictions.json`` (and every part) lists it."""
    entry: dict[str, Any] = {"file": file, "path": path}
    if isinstance(result, str):
        entry["error"] = result
    else:
        entry["classifications"] = [{"class": c, "score": round(s, 6)} for c, s in result]
        entry["below_threshold"] = result[0][1] < score_threshold
    return entry


# --- predictions in parts -----------------------------------------------------------------------
def check_part_settings(part_size: Any, part_seconds: Any) -> tuple[int, float]:
    """(part_size, part_seconds) as numbers, or ValueError naming the parameter."""
    if isinstance(part_size, bool) or not isinstance(part_size, (int, float)) or part_size != int(part_size) \
            or part_size < 1:
        raise ValueError(f"part_size must be a whole number >= 1, not {part_size!r}")
    if isinstance(part_seconds, bool) or not isinstance(part_seconds, (int, float)) or not part_seconds > 0 \
            or math.isinf(part_seconds):
        raise ValueError(f"part_seconds must be a number > 0, not {part_seconds!r}")
    return int(part_size), float(part_seconds)


class PartWriter:
    """Writes finished predictions to ``<outputs>/.parts/`` as the run goes.

    A part holds the complete entries of the images finished since the previous part, at most
    ``part_size`` of them; one is written when ``part_size`` are waiting or ``part_seconds``
    have passed since the last one, whichever comes first, and the rest when the run ends.
    Each is written to a hidden temporary name, fsynced and renamed, so a part file is complete
    at every moment; what a crash leaves is every part finished before it.
    """

    def __init__(self, output_dir: Path, *, task_id: str, total: int,
                 part_size: int = names.DEFAULT_PART_SIZE, part_seconds: float = names.DEFAULT_PART_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.part_size, self.part_seconds = check_part_settings(part_size, part_seconds)
        self.directory = Path(output_dir) / names.PARTS_DIR
        self.task_id, self.total = task_id, total
        self.clock = clock
        self.pending: list[dict[str, Any]] = []
        self.written: list[Path] = []
        self.done = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.iterdir():  # parts of an earlier attempt in this directory
            if stale.is_file() and stale.name.lstrip(".").startswith(names.PART_PREFIX):
                stale.unlink()
        self.last_written = clock()

    def add(self, entries: Iterable[dict[str, Any]]) -> list[Path]:
        """Queue finished entries; write the parts that are due. Returns the files written."""
        self.pending.extend(entries)
        written = []
        while len(self.pending) >= self.part_size:
            written.append(self._write(self.part_size))
        if self.pending and self.clock() - self.last_written >= self.part_seconds:
            written.append(self._write(len(self.pending)))
        return written

    def close(self) -> list[Path]:
        """Write what is still waiting (the run's last part)."""
        return [self._write(len(self.pending))] if self.pending else []

    def _write(self, count: int) -> Path:
        entries, self.pending = self.pending[:count], self.pending[count:]
        index = len(self.written)
        document = {"task_id": self.task_id, "part": index, "first": self.done, "count": len(entries),
                    "last": self.done + len(entries) >= self.total, "images": entries}
        target = self.directory / names.part_file_name(index)
        temporary = self.directory / f".{target.name}.tmp"
        with open(temporary, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(document, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
        self.done += len(entries)
        self.written.append(target)
        self.last_written = self.clock()
        return target


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


_PART_FILE = re.compile(re.escape(names.PART_PREFIX) + r"(\d{6})" + re.escape(names.PART_SUFFIX) + "$")


Entry = dict[str, Any]


@dataclass(frozen=True)
class Part:
    """One finished part: its number and its entries (as in ``predictions.json``)."""

    index: int
    images: list[Entry]


class PartReader:
    """Finds the finished parts in a run's ``.parts`` directory, each one once, in order."""

    def __init__(self, output_dir: Path) -> None:
        self.directory = Path(output_dir) / names.PARTS_DIR
        self.seen: set[int] = set()

    def new_parts(self) -> list[Part]:
        try:
            candidates = sorted(self.directory.iterdir())
        except OSError:  # not there (yet): nothing finished
            return []
        found = []
        for path in candidates:
            match = _PART_FILE.match(path.name)
            if match is None or int(match.group(1)) in self.seen or not path.is_file() or path.is_symlink():
                continue
            index = int(match.group(1))
            self.seen.add(index)
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                images = doc["images"]
                if not isinstance(images, list):
                    raise TypeError("images is not a list")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Parts are renamed into place whole, so this is a notebook bug; predictions.json
                # at the end still covers these images.
                log.warning("ignoring malformed part %s: %s", path.name, exc)
                continue
            found.append(Part(index, [e for e in images if isinstance(e, dict)]))
        return found
