"""The ingest enrichment's side of the upload PEP (``acPostProcForPut`` in :mod:`.rules`).

``acPostProcForPut`` runs after every upload in the zone, so this returns before any catalog
call for an object that is not a photo (by name) or when the settings list no collection; it
runs as the uploader (their rights, their AVUs) and never fails the upload: whatever goes wrong
is written to the server log. The work itself is :func:`compute_to_data.engine.ingest.on_upload`.
"""

from __future__ import annotations

import logging
from typing import Any

from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.settings import Settings
from compute_to_data.engine import ingest
from compute_to_data.grid.rule_engine import RuleEngineGrid

log = logging.getLogger(__name__)


def c2d_ingest_hook(rule_args: list, callback: Any, rei: Any) -> None:
    """Enrich an uploaded photo when the settings ask for it (``ingest.collections``)."""
    try:
        import session_vars  # provided by the Python rule engine plugin

        path = str(session_vars.get_map(rei).get("data_object", {}).get("object_path", ""))
    except Exception:  # noqa: BLE001 - not our business then
        return
    if not ingest.is_photo_name(path) or ingest.is_thumbnail_path(path):
        return
    try:
        settings = Settings.load()
        if not settings.ingest.covers(path):
            return
        header = ingest.on_upload(RuleEngineGrid(callback, rei), settings, path)
        if header is not None:
            _server_log(callback, f"compute_to_data ingest: {path} enriched ({len(header.avus())} AVU(s))")
    except ComputeToDataError as exc:
        _server_log(callback, f"compute_to_data ingest: {path} was not enriched: {exc}")
    except Exception as exc:  # noqa: BLE001 - an upload never fails because of this hook
        _server_log(callback, f"compute_to_data ingest: {path}: unexpected {type(exc).__name__}: {exc}")


def _server_log(callback: Any, message: str) -> None:
    try:
        callback.writeLine("serverLog", message)
    except Exception:  # noqa: BLE001 - logging must never break an upload
        pass
