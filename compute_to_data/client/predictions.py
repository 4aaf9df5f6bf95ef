"""A task's own predictions, from the files in its task collection, and what became of them.

Predictions live as AVUs on the images, and a later task over the same images replaces them (by
design). The task collection keeps what the task predicted (``predictions.json``, or
``predictions.csv``), so its predictions can still be browsed, and comparing the file with the
AVUs the images carry now says how many were superseded, and by which task.

The files are output of the notebook, so they are read as untrusted: only entries under the
task's input collection, with a normalized logical path, are kept.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import posixpath
from collections import Counter
from dataclasses import dataclass, field

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import PredictionQuery, parse_score
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)

#: predictions files can be large (a line per image); read at most this much.
MAX_PREDICTIONS_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FilePrediction:
    """One image as the task's predictions file lists it."""

    path: str
    predicted_class: str
    score: float | None
    #: the task tagged it (a best score at or above the task's score_threshold).
    tagged: bool = True
    #: the model's best classes, best first, as (class, score): the review queue shows them and
    #: ranks by the margin between the first two.
    top: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass(frozen=True)
class TaskPredictions:
    """The classified images of one task's predictions file, sorted by path."""

    source: str  # logical path of the file read, "" when the task has none
    items: tuple[FilePrediction, ...] = ()

    @property
    def tagged(self) -> list[FilePrediction]:
        return [i for i in self.items if i.tagged]

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(i.predicted_class for i in self.items).items()))

    def select(self, predicted_class: str | None = None) -> list[FilePrediction]:
        return [i for i in self.items if predicted_class is None or i.predicted_class == predicted_class]

    def find(self, path: str) -> FilePrediction | None:
        return self._by_path.get(path)

    @functools.cached_property
    def _by_path(self) -> dict[str, FilePrediction]:
        return {i.path: i for i in self.items}


@dataclass(frozen=True)
class Supersession:
    """What became of a task's tagged predictions: still there, replaced by later tasks, gone."""

    tagged: int
    current: int
    #: later task id -> images whose prediction it replaced, most first.
    by_task: dict[str, int] = field(default_factory=dict)
    #: images that carry no task's prediction now (removed, or not visible to the reader).
    removed: int = 0
    #: path -> id of the task whose prediction the image carries now (only when superseded).
    owners: dict[str, str] = field(default_factory=dict)

    @property
    def superseded(self) -> int:
        return sum(self.by_task.values())

    @property
    def changed(self) -> bool:
        return self.current < self.tagged


def load_predictions(grid: Grid, record: TaskRecord, input_collection: str) -> TaskPredictions:
    """The task's predictions file: ``predictions.json``, else ``predictions.csv``; empty if neither."""
    threshold = _score_threshold(record)
    for name, parse in ((names.PREDICTIONS_JSON, _from_json), (names.PREDICTIONS_CSV, _from_csv)):
        path = posixpath.join(record.collection, name)
        if not grid.data_object_exists(path):
            continue
        try:
            text = grid.read_data_object(path, max_bytes=MAX_PREDICTIONS_BYTES).decode("utf-8", "replace")
            items = parse(text, threshold)
        except (ComputeToDataError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("cannot read %s: %s", path, exc)
            continue
        root = input_collection.rstrip("/") + "/"
        kept = {i.path: i for i in items if i.path.startswith(root) and posixpath.normpath(i.path) == i.path}
        return TaskPredictions(path, tuple(sorted(kept.values(), key=lambda i: i.path)))
    return TaskPredictions("")


def supersession(
    grid: Grid, query: PredictionQuery, predictions: TaskPredictions, current: int
) -> Supersession:
    """Compare the file's tagged predictions with the ``current`` count of this task's AVUs.

    Only when fewer images carry the task's prediction than it tagged are the images' present
    predictions looked up (one listing of the input collection, :meth:`Grid.prediction_owners`).
    """
    tagged = predictions.tagged
    if current >= len(tagged):
        return Supersession(len(tagged), len(tagged))
    owners = grid.prediction_owners(query)
    by_task: Counter[str] = Counter()
    still = removed = 0
    for item in tagged:
        owner = owners.get(item.path)
        if owner == query.task_id:
            still += 1
        elif owner:
            by_task[owner] += 1
        else:
            removed += 1
    return Supersession(len(tagged), still, dict(by_task.most_common()), removed, owners)


def _score_threshold(record: TaskRecord) -> float:
    try:
        value = json.loads(record.get(names.A_PARAMETERS) or "{}").get("score_threshold", 0.0)
        return float(value)
    except (ValueError, TypeError, AttributeError):
        return 0.0


def _from_json(text: str, threshold: float) -> list[FilePrediction]:
    items = []
    for entry in json.loads(text)["images"]:
        classifications = entry.get("classifications") if isinstance(entry, dict) else None
        if entry.get("error") or not classifications:
            continue
        best = classifications[0]
        score = parse_score(str(best.get("score", "")))
        below = entry.get("below_threshold")
        tagged = not below if isinstance(below, bool) else (score is not None and score >= threshold)
        top = tuple((str(c["class"]), float(c["score"])) for c in classifications
                    if isinstance(c, dict) and parse_score(str(c.get("score", ""))) is not None)
        items.append(FilePrediction(str(entry["path"]), str(best["class"]), score, tagged, top))
    return items


def _from_csv(text: str, threshold: float) -> list[FilePrediction]:
    items = []
    for row in csv.DictReader(io.StringIO(text)):
        if not row.get("class"):
            continue
        score = parse_score(row.get("score"))
        items.append(FilePrediction(row["path"], row["class"], score, score is not None and score >= threshold,
                                    _ranked(row.get("top_k") or "")))
    return items


def _ranked(text: str) -> tuple[tuple[str, float], ...]:
    """``cat:0.9000;dog:0.0700`` (the CSV's top_k column) as ((class, score), ...); bad parts are left out."""
    ranked = []
    for part in text.split(";"):
        label, _, value = part.rpartition(":")
        score = parse_score(value)
        if label and score is not None:
            ranked.append((label, score))
    return tuple(ranked)
