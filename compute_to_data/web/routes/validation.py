"""Validating a prediction: confirm it or correct it, as AVUs on the image (conventions).

A validation is about the prediction the image carries now, and records that prediction's task
in its units; it needs write access on the image (the grid checks it too).
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compute_to_data.client.tasks import TaskClient
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel, EntityType, PredictionQuery, Validation
from compute_to_data.domain.errors import AccessDeniedError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.web.deps import WebContext, posted, safe_next
from compute_to_data.web.sessions import UserSession


def chosen_class(ctx: WebContext, session: UserSession, client: TaskClient, record: TaskRecord,
                 form: Any, predicted: str) -> tuple[str, str]:
    """(decision, class) from the form: ``confirm`` the prediction or ``correct`` it to one of
    the model's classes."""
    decision = str(form.get("decision", ""))
    if decision == "confirm":
        return decision, predicted
    if decision == "correct":
        chosen = str(form.get("class", "")).strip()
        labels = ctx.labels(session, client, record)
        if not chosen or len(chosen) > 256 or (labels and chosen not in labels):
            raise HTTPException(400, f"choose one of the model's classes, not {chosen!r}")
        return decision, chosen
    raise HTTPException(400, "decision must be confirm or correct")


def write_validation(session: UserSession, record: TaskRecord, query: PredictionQuery, path: str,
                     chosen: str) -> Validation:
    """Write the verdict's AVUs on the image, after checking the user may (modify_object)."""
    if not session.grid.has_access(path, AccessLevel.MODIFY):
        raise AccessDeniedError(
            f"{session.user} may not validate {path}: validating writes AVUs on the image, which needs "
            "write access (modify_object); ask its owner for: ichmod write " + session.user + " " + path
        )
    # The units name the task whose prediction was confirmed or corrected (conventions).
    verdict = Validation(chosen, session.user, names.iso_utc(), task_id=record.task_id)
    session.grid.set_avus(EntityType.DATA_OBJECT, path, verdict.avus())
    return verdict


def validate(ctx: WebContext, request: Request, form: Any) -> Response:
    session = ctx.user_session(request)
    ctx.check_csrf(request, form, session)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    path = str(form.get("path", ""))
    query, _, mine = ctx.task_image(session, client, record, path)
    decision, chosen = chosen_class(ctx, session, client, record, form, mine[query.class_attribute])
    ctx.note_verdict(session, path, write_validation(session, record, query, path, chosen))
    word = "confirmed" if decision == "confirm" else "corrected to"
    request.session["flash"] = f"{posixpath.basename(path)}: {word} {chosen}"
    default = f"/tasks/{record.task_id}/image?path={quote(path, safe='')}"
    return RedirectResponse(safe_next(str(form.get("next", "")), default), 303)


ROUTES = [
    Route("/tasks/{task_id}/validate", posted(validate), methods=["POST"]),
]
