"""Cancel and resume a task from its page: a form POST (CSRF) that calls what ``c2d cancel`` and
``c2d resume`` call (the task client and its submitter: the rules on a zone, the task lifecycle
on a LocalGrid), as the signed-in user, so the refusals are the same: someone else's task, a
task already ended, a task that is not failed or cancelled."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compute_to_data.client.connect import ClientOptions, client_for
from compute_to_data.client.submitters import TASK_ID_RE
from compute_to_data.client.tasks import TaskClient
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.web.deps import WebContext, posted
from compute_to_data.web.sessions import UserSession

log = logging.getLogger(__name__)


def acting_client(ctx: WebContext, session: UserSession) -> TaskClient:
    """The user's task client with a submitter, as the CLI makes it for the same grid."""
    return client_for(session.grid, ClientOptions(settings=ctx.config.settings_file))


def _act(ctx: WebContext, request: Request, form: Any, what: str) -> Response:
    session = ctx.user_session(request)
    ctx.check_csrf(request, form, session)
    task_id = request.path_params["task_id"]
    if not TASK_ID_RE.fullmatch(task_id):
        raise HTTPException(404, f"{task_id!r} is not a task id")
    client = acting_client(ctx, session)
    try:
        record: TaskRecord = client.cancel(task_id) if what == "cancel" else client.resume(task_id)
    except ComputeToDataError as exc:  # refused (the rules' words) or failed: said on the task page
        log.info("%s of %s by %s refused: %s", what, task_id, session.user, exc)
        request.session["flash_error"] = f"{what} refused: {exc}"
    else:
        shown = client.display_state(record)
        request.session["flash"] = (f"task {task_id} cancelled (now {shown})" if what == "cancel"
                                    else f"task {task_id} resumed (now {shown}): it runs what is not done yet")
    session.cache.clear()  # counts and lists change with the task's state
    return RedirectResponse(f"/tasks/{task_id}", 303)


def cancel(ctx: WebContext, request: Request, form: Any) -> Response:
    return _act(ctx, request, form, "cancel")


def resume(ctx: WebContext, request: Request, form: Any) -> Response:
    return _act(ctx, request, form, "resume")


ROUTES = [
    Route("/tasks/{task_id}/cancel", posted(cancel), methods=["POST"]),
    Route("/tasks/{task_id}/resume", posted(resume), methods=["POST"]),
]
