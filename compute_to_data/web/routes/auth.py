"""Sign-in and sign-out (a zone: the user's own iRODS account; ``--local``: nobody signs in)."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compute_to_data.domain.errors import AuthenticationError, ComputeToDataError
from compute_to_data.web.deps import context, refuse_nul, safe_next
from compute_to_data.web.security import new_token

log = logging.getLogger(__name__)


async def signin_page(request: Request) -> Response:
    ctx = context(request)
    if not ctx.auth.needs_sign_in:
        return RedirectResponse("/tasks", 303)
    request.session.setdefault("pre_csrf", new_token())
    return ctx.render(request, "signin.html", {"next": request.query_params.get("next", "/tasks"), "error": None})


async def signin(request: Request) -> Response:
    """Log in to the zone as the user; a new session id afterwards (no session fixation)."""
    ctx = context(request)
    if not ctx.auth.needs_sign_in:
        return RedirectResponse("/tasks", 303)
    form = await request.form()
    refuse_nul(request, form)
    ctx.check_csrf(request, form, None)
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")), "/tasks")
    try:
        grid = await run_in_threadpool(ctx.auth.sign_in, username, password)
    except AuthenticationError as exc:
        log.info("sign-in refused for %r: %s", username, exc)
        return ctx.render(request, "signin.html", {"next": target, "error": str(exc), "username": username}, 401)
    except ComputeToDataError as exc:
        return ctx.render(request, "signin.html", {"next": target, "error": str(exc), "username": username}, 502)
    ctx.store.drop(request.session.get("sid"))
    request.session.clear()
    sid, _ = ctx.store.create(grid)
    request.session["sid"] = sid
    return RedirectResponse(target, 303)


async def signout(request: Request) -> Response:
    ctx = context(request)
    form = await request.form()
    session = ctx.store.get(request.session.get("sid"))
    ctx.check_csrf(request, form, session)
    ctx.store.drop(request.session.get("sid"))
    request.session.clear()
    return RedirectResponse("/signin" if ctx.auth.needs_sign_in else "/tasks", 303)


ROUTES = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
