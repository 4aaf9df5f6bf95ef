"""A task's images: the gallery by class and score, one image's page, thumbnails, the file."""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import VALIDATION_ATTRIBUTES, AccessLevel, DataObject, Validation
from compute_to_data.domain.errors import AccessDeniedError, ComputeToDataError
from compute_to_data.web.deps import (
    MAX_IMAGE_BYTES,
    MAX_PER_PAGE,
    WebContext,
    bounded_int,
    here,
    in_thread,
    safe_next,
)
from compute_to_data.web.filters import filtered_page, parse_filters
from compute_to_data.web.photo_header import photo_header
from compute_to_data.web.security import IMAGE_CSP
from compute_to_data.web.sessions import UserSession
from compute_to_data.web.thumbnails import browser_image

log = logging.getLogger(__name__)

PLACEHOLDER_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="192" height="192"><rect width="100%" height="100%" '
    b'fill="#eee"/><text x="50%" y="50%" text-anchor="middle" fill="#999" font-size="14">unreadable</text></svg>'
)


def score_filters(params: Any) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """(PredictionQuery keywords, the query string to keep, an error) from ?cls=&min=&max=."""
    filters: dict[str, Any] = {}
    keep: dict[str, str] = {}
    error = None
    cls = params.get("cls", "")
    if cls:
        filters["predicted_class"] = cls
        keep["cls"] = cls
    for key, field_name in (("min", "min_score"), ("max", "max_score")):
        raw = params.get(key, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise ValueError
        except ValueError:
            error = f"{key} score must be a number between 0 and 1, not {raw!r}"
            continue
        filters[field_name] = value
        keep[key] = raw
    return filters, keep, error


def images(ctx: WebContext, request: Request) -> Response:
    """One page of the task's images (a bounded query), hiding those the user cannot read."""
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    params = request.query_params
    filters, keep, error = score_filters(params)
    per_page = bounded_int(params.get("per_page"), ctx.config.page_size, 1, MAX_PER_PAGE)
    page = bounded_int(params.get("page"), 1, 1, 10**9)
    query = ctx.prediction_query(session, client, record, extra_attributes=VALIDATION_ATTRIBUTES, **filters)
    conditions, kept, where_error = parse_filters(params)  # date taken, any metadata condition
    keep.update(kept)
    error = error or where_error
    if conditions:
        result = filtered_page(session.grid, query, conditions, (page - 1) * per_page, per_page)
    else:
        result = session.grid.query_predictions(query, (page - 1) * per_page, per_page)
    hidden = set(session.grid.paths_lacking_access([i.path for i in result.items], AccessLevel.READ)) if result.items else set()
    items = [i for i in result.items if i.path not in hidden]
    counts = ctx.counts(session, record, ctx.prediction_query(session, client, record))
    pages = math.ceil(result.total / per_page) if result.total is not None else None
    if per_page != ctx.config.page_size:
        keep["per_page"] = str(per_page)
    return ctx.render(request, "images.html", {
        "record": record, "items": items, "hidden": len(hidden), "page": page, "pages": pages,
        "has_more": result.has_more, "total": result.total, "per_page": per_page, "keep": keep,
        "classes": sorted(counts), "counts": counts, "cls": params.get("cls", ""),
        "min": keep.get("min", ""), "max": keep.get("max", ""), "error": error,
        "taken_from": keep.get("taken_from", ""), "taken_to": keep.get("taken_to", ""), "where": keep.get("where", ""),
        "urlencode": urlencode, "input_root": query.input_collection, "here": here(request),
    }, session=session)


def image_page(ctx: WebContext, request: Request) -> Response:
    """One image large, with the task's prediction, its validation and the forms to validate."""
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    path = request.query_params.get("path", "")
    query, obj, mine = ctx.task_image(session, client, record, path, superseded_ok=True)
    validation = Validation.from_avus(obj.avus)
    superseded = None
    if mine:
        predicted, score = mine.get(query.class_attribute, ""), mine.get(query.score_attribute, "")
        can_validate = session.grid.has_access(path, AccessLevel.MODIFY)
    else:  # a later task's prediction replaced this task's: shown, not validated here
        listed = ctx.own_predictions(session, record, query).find(path)
        predicted = listed.predicted_class if listed else ""
        score = f"{listed.score:.4f}" if listed and listed.score is not None else ""
        now = next((a for a in obj.avus if a.attribute == query.class_attribute), None)
        superseded = {"task_id": names.task_id_of_units(now.units) if now else None, "value": now.value if now else None}
        can_validate = False
    return ctx.render(request, "image.html", {
        "record": record, "obj": obj, "predicted": predicted, "score": score, "validation": validation,
        "labels": ctx.labels(session, client, record) if can_validate else [], "superseded": superseded,
        "can_validate": can_validate, "header": photo_header(session.grid, path),
        "back": safe_next(request.query_params.get("back"), f"/tasks/{record.task_id}/images"),
    }, session=session)


def readable_image(ctx: WebContext, request: Request) -> tuple[UserSession, DataObject]:
    """The task's image at ``?path=``, if the user may read it."""
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    path = request.query_params.get("path", "")
    _, obj, _ = ctx.task_image(session, client, record, path, superseded_ok=True)
    if session.grid.paths_lacking_access([path], AccessLevel.READ):
        raise AccessDeniedError(f"{session.user} cannot read {path}")
    return session, obj


def thumbnail(ctx: WebContext, request: Request) -> Response:
    session, obj = readable_image(ctx, request)
    key = ctx.thumbs.key(obj.path, obj.checksum, obj.size)
    data = ctx.thumbs.get(key)
    if data is None:
        try:
            data = ctx.thumbs.render(session.grid.read_data_object(obj.path, max_bytes=MAX_IMAGE_BYTES))
        except ComputeToDataError as exc:
            log.info("no thumbnail for %s: %s", obj.path, exc)
            return Response(PLACEHOLDER_SVG, media_type="image/svg+xml", headers={"content-security-policy": IMAGE_CSP})
        ctx.thumbs.put(key, data)
    return Response(data, media_type="image/jpeg", headers={
        "cache-control": "private, max-age=3600", "content-security-policy": IMAGE_CSP,
    })


def full_image(ctx: WebContext, request: Request) -> Response:
    session, obj = readable_image(ctx, request)
    data, media = browser_image(session.grid.read_data_object(obj.path, max_bytes=MAX_IMAGE_BYTES))
    return Response(data, media_type=media, headers={
        "cache-control": "private, max-age=600", "content-security-policy": IMAGE_CSP,
    })


ROUTES = [
    Route("/tasks/{task_id}/images", in_thread(images)),
    Route("/tasks/{task_id}/image", in_thread(image_page)),
    Route("/tasks/{task_id}/thumbnail", in_thread(thumbnail)),
    Route("/tasks/{task_id}/file", in_thread(full_image)),
]
