"""The images page's metadata filters: a date range on ``exif::datetime`` and any one condition
the task config's ``inputs.where`` can express (``detectedclass = animal``, ``detectedscore >= 0.8``).

Kept apart from the routes: :func:`parse_filters` turns the query string into
:class:`AVUCondition` s (or one clear error), and :func:`filtered_page` pages through the task's
predictions (the adapter's own paged query) keeping the images that meet them, asked per
collection with :meth:`Grid.paths_meeting` (GenQuery on a zone). It reads the predictions up to
the requested page, so memory is bounded by the page; a filtered view says no total.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    AVUCondition,
    PredictedObject,
    PredictionPage,
    PredictionQuery,
)
from compute_to_data.engine.where import WhereFilter
from compute_to_data.grid.base import Grid

_CONDITION = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.:-]{0,63})\s*(!=|<=|>=|=|<|>)\s*(.+?)\s*")
#: predictions read per step while a filtered page is filled
SCAN = 500


def _condition(text: str) -> AVUCondition:
    match = _CONDITION.fullmatch(text)
    if match is None:
        raise ValueError(f"condition {text!r} is not 'attribute op value' (op: =, !=, <, <=, >, >=), e.g. detectedclass = animal")
    attribute, op, raw = match.groups()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return AVUCondition(attribute, op, raw[1:-1])  # quoted: compared as text
    try:
        return AVUCondition(attribute, op, float(raw))
    except ValueError:
        return AVUCondition(attribute, op, raw)


def _day(raw: str, key: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{key} must be a date like 2026-06-01, not {raw!r}") from None


def parse_filters(params: Mapping[str, str]) -> tuple[list[AVUCondition], dict[str, str], str | None]:
    """(conditions, the query string to keep, an error) from ``?taken_from=&taken_to=&where=``."""
    conditions: list[AVUCondition] = []
    keep: dict[str, str] = {}
    try:
        start, end = params.get("taken_from", "").strip(), params.get("taken_to", "").strip()
        if start:
            conditions.append(AVUCondition(names.A_EXIF_DATETIME, ">=", _day(start, "taken from").isoformat()))
            keep["taken_from"] = start
        if end:  # the whole last day: before the next one
            conditions.append(AVUCondition(names.A_EXIF_DATETIME, "<", (_day(end, "taken to") + timedelta(days=1)).isoformat()))
            keep["taken_to"] = end
        where = params.get("where", "").strip()
        if where:
            conditions.append(_condition(where))
            keep["where"] = where
    except ValueError as exc:
        return [], {}, str(exc)
    return conditions, keep, None


def filtered_page(grid: Grid, query: PredictionQuery, conditions: list[AVUCondition], offset: int, limit: int,
                  scan: int = SCAN) -> PredictionPage:
    """The page at ``offset`` of the task's images that meet ``conditions``."""
    where = WhereFilter(grid, conditions)
    kept: list[PredictedObject] = []
    start = 0
    while True:
        page = grid.query_predictions(query, start, scan)
        for item in page.items:
            if where.keeps_path(item.path):
                kept.append(item)
                if len(kept) > offset + limit:
                    return PredictionPage(tuple(kept[offset : offset + limit]), offset, limit, True, None)
        if not page.has_more or not page.items:
            return PredictionPage(tuple(kept[offset : offset + limit]), offset, limit, False, len(kept))
        start += len(page.items)
