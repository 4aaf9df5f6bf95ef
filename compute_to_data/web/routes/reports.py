"""A task's notebook report (sandboxed), its shards' reports and its files as downloads."""

from __future__ import annotations

import posixpath
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from compute_to_data.domain import conventions as names
from compute_to_data.web.deps import MAX_REPORT_BYTES, WebContext, in_thread
from compute_to_data.web.security import REPORT_CSP

#: a report may carry scripts: it runs sandboxed in an opaque origin (web/security.py).
REPORT_HEADERS = {
    "content-security-policy": REPORT_CSP,
    "x-frame-options": "SAMEORIGIN",
    "cache-control": "private, no-store",
}


def report_page(ctx: WebContext, request: Request) -> Response:
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    return ctx.render(request, "report.html", {"record": record, "report_path": client.report_path(record)}, session=session)


def report_content(ctx: WebContext, request: Request) -> Response:
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    data = session.grid.read_data_object(client.report_path(record), max_bytes=MAX_REPORT_BYTES)
    return Response(data, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)


def shard_report(ctx: WebContext, request: Request) -> Response:
    """A shard's own report, where the task's report links to it (``shards/NNNN/report.html``
    relative to the report): served sandboxed like the task's."""
    session = ctx.user_session(request)
    _, record = ctx.task_of(session, request.path_params["task_id"])
    shard = request.path_params["shard"]
    if not (shard.isdigit() and len(shard) == 4) or not record.is_sharded:
        raise HTTPException(404, "no such shard")
    path = posixpath.join(record.collection, names.SHARDS_COLLECTION, shard, names.REPORT_FILE)
    data = session.grid.read_data_object(path, max_bytes=MAX_REPORT_BYTES)
    return Response(data, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)


def download(ctx: WebContext, request: Request) -> Response:
    """A file of the task collection (``?name=``), as an attachment that never renders here."""
    session = ctx.user_session(request)
    _, record = ctx.task_of(session, request.path_params["task_id"])
    name = request.query_params.get("name", "")
    if not name or "/" in name or name in (".", ".."):
        raise HTTPException(404, "no such file in the task collection")
    data = session.grid.read_data_object(posixpath.join(record.collection, name), max_bytes=MAX_REPORT_BYTES)
    return Response(data, media_type="application/octet-stream", headers={
        "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "content-security-policy": "sandbox; default-src 'none'",
        "cache-control": "private, no-store",
    })


ROUTES = [
    Route("/tasks/{task_id}/report", in_thread(report_page)),
    Route("/tasks/{task_id}/report/content", in_thread(report_content)),
    Route("/tasks/{task_id}/report/shards/{shard}/report.html", in_thread(shard_report)),
    Route("/tasks/{task_id}/download", in_thread(download)),
]
