"""The report browser's app factory (Starlette): routes, middleware and error pages wired together.

Pages are rendered on the server with Jinja2 (autoescaped) and run no script. The routes live in
``web/routes/`` (one module per concern) and share a :class:`~compute_to_data.web.deps.WebContext`
(sessions, CSRF, templates, the administrator's settings). Routes that take an object path check
that it belongs to the task (it carries the task's prediction AVU, under the task's input
collection) and let the grid enforce the caller's access. An image whose prediction a later task
replaced still belongs to the task when the task's own predictions file lists it: it can be
looked at, not validated (a validation is about the prediction the image carries, and records
that prediction's task in its units).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from compute_to_data.domain.errors import (
    AccessDeniedError,
    AuthenticationError,
    ComputeToDataError,
    ObjectNotFoundError,
    TaskStateError,
)
from compute_to_data.web.deps import HERE, NeedSignIn, WebConfig, WebContext, context
from compute_to_data.web.hosts import ServedHosts, TrustedHosts
from compute_to_data.web.routes import actions, auth, exports, images, reports, review, tasks, validation
from compute_to_data.web.security import SecurityHeaders

__all__ = ["WebConfig", "create_app"]


def error_status(exc: Exception) -> tuple[int, str]:
    """The HTTP status and the one-line message a failed page shows."""
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    if isinstance(exc, (ObjectNotFoundError, TaskStateError)):
        return 404, str(exc)
    if isinstance(exc, AccessDeniedError):
        return 403, str(exc)
    if isinstance(exc, ComputeToDataError):
        return 502, str(exc)
    return 500, "unexpected error; see the server log"  # pragma: no cover - only these types are registered


async def on_error(request: Request, exc: Exception) -> Response:
    ctx = context(request)
    if isinstance(exc, NeedSignIn):
        return RedirectResponse("/signin", 303)
    if isinstance(exc, AuthenticationError):  # the zone no longer accepts the session: sign in again
        ctx.store.drop(request.session.get("sid"))
        request.session.clear()
        return RedirectResponse("/signin", 303)
    status, message = error_status(exc)
    session = ctx.store.get(request.session.get("sid"))
    return ctx.render(request, "error.html", {"status": status, "message": message}, status, session=session)


def all_routes() -> list[BaseRoute]:
    return [
        *tasks.ROUTES, *auth.ROUTES, *reports.ROUTES, *images.ROUTES, *validation.ROUTES, *review.ROUTES,
        *actions.ROUTES, *exports.ROUTES,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]


def create_app(config: WebConfig) -> Starlette:
    web = WebContext(config)
    assert config.settings is not None  # loaded by WebConfig
    served = ServedHosts.of(config.bind, config.port, config.settings.web.allowed_hosts)
    middleware = [
        Middleware(TrustedHosts, served=served),
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware, secret_key=config.secret_key, session_cookie="c2d_session",
            max_age=None, same_site="strict", https_only=config.https_only,
        ),
    ]
    handlers: dict[Any, Callable] = {HTTPException: on_error, ComputeToDataError: on_error, NeedSignIn: on_error}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        web.store.close_all()

    app = Starlette(routes=all_routes(), middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
    app.state.web = web
    app.state.sessions = web.store
    app.state.config = config
    app.state.served = served
    return app
