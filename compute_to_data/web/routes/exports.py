"""Validated labels out: a task's or a series' predictions and verdicts as CSV or JSON (the same
file ``c2d export`` writes; client/export.py)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from compute_to_data.client import export
from compute_to_data.client.submitters import TASK_ID_RE
from compute_to_data.lifecycle import series as schedule
from compute_to_data.web.deps import WebContext, in_thread

MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _download(ctx: WebContext, request: Request, ident: str, series: bool) -> Response:
    session = ctx.user_session(request)
    if not TASK_ID_RE.fullmatch(ident):
        raise HTTPException(404, f"{ident!r} is not a {'series' if series else 'task'} id")
    fmt = request.query_params.get("format", "csv")
    if fmt not in export.FORMATS:
        raise HTTPException(400, f"format must be one of {', '.join(export.FORMATS)}, not {fmt[:20]!r}")
    client = ctx.client(session)
    if series and not schedule.is_head(client.find(ident)):
        raise HTTPException(404, f"{ident} is not the first task of a series")
    records, rows = export.export_rows(client, ident, whole_series=series)
    name = f"{ident}{'-series' if series else ''}-validations.{fmt}"
    return Response(export.render(records, rows, fmt), media_type=MEDIA[fmt], headers={
        "content-disposition": f'attachment; filename="{name}"',
        "content-security-policy": "sandbox; default-src 'none'",
        "cache-control": "private, no-store",
    })


def task_export(ctx: WebContext, request: Request) -> Response:
    return _download(ctx, request, request.path_params["task_id"], series=False)


def series_export(ctx: WebContext, request: Request) -> Response:
    return _download(ctx, request, request.path_params["series_id"], series=True)


ROUTES = [
    Route("/tasks/{task_id}/export", in_thread(task_export)),
    Route("/series/{series_id}/export", in_thread(series_export)),
]
