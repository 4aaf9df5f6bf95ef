"""Validated labels out: a task's (or a series') predictions and verdicts as CSV or JSON.

The training set for the next model and the table for statistics: one row per image carrying
the task's prediction, with the predicted class and score, the verdict a person gave (class,
who, when, and which task's prediction it judged) and the EXIF date and position where recorded.
Used by ``c2d export`` and by the report browser's download, so both give the same file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from compute_to_data.client.predictions import load_predictions
from compute_to_data.client.review import ReviewItem, load_items
from compute_to_data.client.tasks import TaskClient
from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import ConfigError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.lifecycle import series as schedule

FORMATS = ("csv", "json")
COLUMNS = (
    "task_id", "path", "predicted_class", "score", "validated_class", "validated_by", "validated_at",
    "validated_for_task", "exif_datetime", "latitude", "longitude",
)


@dataclass(frozen=True)
class ExportRow:
    task_id: str
    path: str
    predicted_class: str
    score: float | None
    validated_class: str
    validated_by: str
    validated_at: str
    #: the task whose prediction the verdict judged ('' when the verdict does not say)
    validated_for_task: str
    exif_datetime: str
    latitude: str
    longitude: str

    @classmethod
    def of(cls, task_id: str, item: ReviewItem) -> "ExportRow":
        verdict = item.validation
        return cls(
            task_id, item.path, item.predicted_class, item.score,
            verdict.validated_class if verdict else "", verdict.validated_by if verdict else "",
            verdict.validated_at if verdict else "", (verdict.task_id or "") if verdict else "",
            item.taken.isoformat() if item.taken else "", item.latitude, item.longitude,
        )


def task_rows(client: TaskClient, record: TaskRecord) -> list[ExportRow]:
    """The rows of one task: the images that carry its prediction, by path."""
    query = client.prediction_query(record)
    if not query.input_collection:
        return []
    predictions = load_predictions(client.grid, record, query.input_collection)
    return [ExportRow.of(record.task_id, item) for item in load_items(client.grid, query, predictions)]


def export_rows(client: TaskClient, task: str, whole_series: bool = True) -> tuple[list[TaskRecord], list[ExportRow]]:
    """(the tasks exported, their rows) for a task id or collection; the first task of a series
    stands for the whole series (every task of it the caller can read, oldest first) unless
    ``whole_series`` is False."""
    record = client.find(task)
    if whole_series and schedule.is_head(record):
        _, records = client.series(record.task_id)
        records = sorted(records, key=lambda r: r.get(names.A_CREATED))
    else:
        records = [record]
    rows: list[ExportRow] = []
    for each in records:
        rows.extend(task_rows(client, each))
    return records, rows


def to_csv(rows: Iterable[ExportRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        values = asdict(row)
        values["score"] = "" if row.score is None else f"{row.score:.4f}"
        writer.writerow([values[c] for c in COLUMNS])
    return out.getvalue()


def to_json(records: Sequence[TaskRecord], rows: Iterable[ExportRow]) -> str:
    doc = {"tasks": [r.task_id for r in records], "columns": list(COLUMNS), "images": [asdict(r) for r in rows]}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def render(records: Sequence[TaskRecord], rows: Sequence[ExportRow], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return to_csv(rows) if fmt == "csv" else to_json(records, rows)
