"""LocalGrid's efficient answer to :meth:`Grid.query_predictions` (web app pagination).

A mixin of :class:`~compute_to_data.grid.local.LocalGrid`: one SQL query per page and one for
the total, whatever the task's size, using the catalog's AVU indexes; the caller's read access
is checked in the same query (what a user cannot read is not listed).
"""

from __future__ import annotations

from typing import Any

from compute_to_data.domain.catalog import (
    AVU,
    AccessLevel,
    PredictedObject,
    PredictionPage,
    PredictionQuery,
    parse_score,
)


class LocalPredictionQueries:
    """Mixed into LocalGrid; uses its ``_transaction``, ``_check_path`` and ``_acl_clause``."""

    def _prediction_where(self: Any, query: PredictionQuery) -> tuple[str, str, tuple]:
        """FROM/WHERE of the matching objects; alias ``d`` (object), ``c`` (class AVU)."""
        root = query.input_collection.rstrip("/")
        self._check_path(root)
        # Every path strictly under root: root + "/" <= path < root + "0" ('0' follows '/').
        where = (
            "c.entity_type = 'd' AND c.attribute = ? AND c.units = ? "
            "AND d.path >= ? AND d.path < ?"
        )
        params: tuple = (query.class_attribute, query.units, root + "/", root + "0")
        if query.predicted_class is not None:
            where += " AND c.value = ?"
            params += (query.predicted_class,)
        score = (
            "(SELECT s.value FROM avus s WHERE s.entity_type = 'd' AND s.entity_id = d.id "
            "AND s.attribute = ? AND s.units = ? ORDER BY s.id LIMIT 1)"
        )
        score_params: tuple = (query.score_attribute, query.units)
        if query.min_score is not None:
            where += f" AND CAST({score} AS REAL) >= ?"
            params += (*score_params, float(query.min_score))
        if query.max_score is not None:
            where += f" AND CAST({score} AS REAL) <= ?"
            params += (*score_params, float(query.max_score))
        acl, acl_params = self._acl_clause("d", "d", AccessLevel.READ)
        where += f" AND {acl}"
        params += acl_params
        source = "avus c JOIN data_objects d ON d.id = c.entity_id"
        return source, where, params

    def query_predictions(self: Any, query: PredictionQuery, offset: int = 0, limit: int = 50) -> PredictionPage:
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, not {offset} and {limit}")
        source, where, params = self._prediction_where(query)
        score = (
            "(SELECT s.value FROM avus s WHERE s.entity_type = 'd' AND s.entity_id = d.id "
            "AND s.attribute = ? AND s.units = ? ORDER BY s.id LIMIT 1)"
        )
        with self._transaction(write=False) as conn:
            total = conn.execute(f"SELECT COUNT(DISTINCT d.id) FROM {source} WHERE {where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT d.id, d.path, MIN(c.value), {score} FROM {source} WHERE {where} "
                "GROUP BY d.id ORDER BY d.path LIMIT ? OFFSET ?",
                (query.score_attribute, query.units, *params, limit, offset),
            ).fetchall()
            extra: dict[int, list[AVU]] = {}
            attributes = list(dict.fromkeys(query.extra_attributes))
            if rows and attributes:
                ids = [int(r[0]) for r in rows]
                for entity_id, attribute, value, units in conn.execute(
                    "SELECT entity_id, attribute, value, units FROM avus WHERE entity_type = 'd' "
                    f"AND entity_id IN ({','.join('?' * len(ids))}) "
                    f"AND attribute IN ({','.join('?' * len(attributes))}) ORDER BY attribute, id",
                    (*ids, *attributes),
                ):
                    extra.setdefault(int(entity_id), []).append(AVU(attribute, value, units))
        items = tuple(
            PredictedObject(path, cls, parse_score(score_text), tuple(extra.get(int(data_id), ())))
            for data_id, path, cls, score_text in rows
        )
        return PredictionPage(items, offset, limit, offset + len(items) < int(total), int(total))

    def count_predictions(self: Any, query: PredictionQuery) -> dict[str, int]:
        source, where, params = self._prediction_where(query)
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT c.value, COUNT(DISTINCT d.id) FROM {source} WHERE {where} GROUP BY c.value ORDER BY c.value",
                params,
            ).fetchall()
        return {cls: int(n) for cls, n in rows}
