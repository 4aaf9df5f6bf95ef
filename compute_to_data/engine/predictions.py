"""Predictions in parts: what survives a crash, and what a resumed run builds on.

The notebook writes its predictions in parts while it runs (``/outputs/.parts/part-NNNNNN.json``,
each renamed into place when complete: :mod:`compute_to_data.contract.parts` writes them). The
engine picks up each finished part from the runner's poll loop, stores it in the task collection
(``<task>/parts/runRR-part-NNNNNN.json``, filtered to this task's own inputs) and then tags its
images, while the notebook works on the next part. A run that dies keeps every part it stored
and tagged; a resumed run reads them back to skip what is done and to hand the notebook the
earlier predictions, so the final ``predictions.json``, ``.csv`` and report cover the whole task.

The part files are untrusted output of the notebook: a part is read as JSON, only entries for
files this run staged are kept, one per file.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import tempfile
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from compute_to_data.contract.parts import Entry
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, DataObject
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)

_STORED_PART = re.compile(r"run(\d{2,})-(?:part-(\d{6})|final)\.json$")







# --- a prediction on an image: complete, incomplete, or none ---------------------------------------
class Pair(str, Enum):
    NONE = "none"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"


def prediction_pair(obj: DataObject, class_attribute: str, score_attribute: str) -> tuple[Pair, str]:
    """(state, units) of the prediction an image carries.

    Complete: exactly one class and one score AVU, with the same units (the task that made
    them). Anything else that carries one of the attributes (a class without a score, the crash
    window of a two-call tag, units of two tasks) is incomplete: it counts as no prediction and is
    replaced atomically when the image is tagged.
    """
    classes = [a for a in obj.avus if a.attribute == class_attribute]
    scores = [a for a in obj.avus if a.attribute == score_attribute]
    if not classes and not scores:
        return Pair.NONE, ""
    if len(classes) == 1 and len(scores) == 1 and classes[0].units == scores[0].units:
        return Pair.COMPLETE, classes[0].units
    return Pair.INCOMPLETE, ""


def has_complete_prediction(obj: DataObject, class_attribute: str, score_attribute: str, units: str | None = None) -> bool:
    state, found = prediction_pair(obj, class_attribute, score_attribute)
    return state == Pair.COMPLETE and (units is None or found == units)


def unclassified_mark(reason: str, obj: DataObject, task_id: str) -> AVU:
    """The mark of an image this task looked at and did not tag (``names.A_UNCLASSIFIED``)."""
    return AVU(names.A_UNCLASSIFIED, f"{reason}:{obj.size}", names.task_units(task_id))


def unclassified_marks(obj: DataObject) -> list[AVU]:
    return [a for a in obj.avus if a.attribute == names.A_UNCLASSIFIED]


def is_marked_unclassified(obj: DataObject) -> bool:
    """An earlier task found this very file unreadable or under its threshold: a mark whose size
    is the object's size now (a file replaced since, by another of another size, is tried again)."""
    for mark in unclassified_marks(obj):
        _, _, size = mark.value.rpartition(":")
        if size == str(obj.size):
            return True
    return False


# --- parts stored in the task collection -----------------------------------------------------------
def parts_collection(task_collection: str) -> str:
    return posixpath.join(task_collection, names.TASK_PARTS_COLLECTION)


def stored_part_name(run: int, index: int | None) -> str:
    """``run00-part-000003.json``; ``run00-final.json`` for what the run's last step tagged."""
    return f"run{run:02d}-final.json" if index is None else f"run{run:02d}-part-{index:06d}.json"


def put_json(grid: Grid, logical: str, resource: str, doc: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="c2d-part-") as tmp:
        local = Path(tmp) / posixpath.basename(logical)
        local.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")
        grid.put_file(local, logical, resource, overwrite=True)


def store_part(grid: Grid, task_collection: str, resource: str, task_id: str, run: int, index: int | None,
               entries: Sequence[Entry]) -> str:
    """Store a part's entries in the task collection (before its images are tagged)."""
    folder = parts_collection(task_collection)
    grid.create_collection(folder)
    logical = posixpath.join(folder, stored_part_name(run, index))
    put_json(grid, logical, resource, {"task_id": task_id, "run": run, "part": index, "images": list(entries)})
    return logical


def stored_parts(grid: Grid, task_collection: str) -> list[tuple[str, list[Entry]]]:
    """(name, entries) of every part stored in the task collection, oldest run and part first."""
    folder = parts_collection(task_collection)
    if not grid.collection_exists(folder):
        return []
    keyed = []
    for obj in grid.list_data_objects(folder):
        match = _STORED_PART.match(obj.name)
        if match is None:
            continue
        keyed.append(((int(match.group(1)), int(match.group(2)) if match.group(2) else 10**9), obj))
    found = []
    for _, obj in sorted(keyed, key=lambda item: item[0]):
        try:
            doc = json.loads(grid.read_data_object(obj.path, max_bytes=256 * 1024 * 1024))
            images = [e for e in doc.get("images", []) if isinstance(e, dict) and isinstance(e.get("file"), str)]
        except (ComputeToDataError, ValueError, AttributeError) as exc:
            log.warning("ignoring stored part %s: %s", obj.path, exc)
            continue
        found.append((obj.name, images))
    return found


def merge_entries(parts: Iterable[Sequence[Entry]]) -> dict[str, Entry]:
    """One entry per file, the latest part winning (a re-classified image replaces its entry)."""
    merged: dict[str, Entry] = {}
    for entries in parts:
        for entry in entries:
            merged[str(entry["file"])] = entry
    return merged


# --- the task's input selection, recorded once ------------------------------------------------------
def store_selection(grid: Grid, task_collection: str, resource: str, relative_paths: Sequence[str]) -> None:
    """The inputs the task selected, so a resumed run works on the same ones."""
    folder = parts_collection(task_collection)
    grid.create_collection(folder)
    put_json(grid, posixpath.join(folder, names.TASK_SELECTION_FILE), resource, {"inputs": list(relative_paths)})


def load_selection(grid: Grid, task_collection: str) -> list[str] | None:
    """The recorded selection, or None for a task that recorded none (an older task)."""
    logical = posixpath.join(parts_collection(task_collection), names.TASK_SELECTION_FILE)
    if not grid.data_object_exists(logical):
        return None
    try:
        doc = json.loads(grid.read_data_object(logical, max_bytes=256 * 1024 * 1024))
        return [str(p) for p in doc["inputs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ComputeToDataError(f"the task's recorded input selection {logical} is unreadable: {exc}") from exc
