"""What every route of the report browser depends on: configuration, sessions, CSRF, templates.

One :class:`WebContext` is made per app (``create_app``) and kept in ``app.state.web``; route
modules (``web/routes/``) are plain functions that take it from the request, so each route is a
small function of its own, and the app factory only wires them together.

Grid calls are blocking (python-irodsclient, SQLite), so every page handler runs in Starlette's
thread pool (:func:`in_thread`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from compute_to_data.client.predictions import (
    Supersession,
    TaskPredictions,
    load_predictions,
    supersession,
)
from compute_to_data.client.review import ReviewIndex, readable_items, series_items
from compute_to_data.client.submitters import TASK_ID_RE
from compute_to_data.client.tasks import TaskClient, elapsed, format_duration
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    VALIDATION_ATTRIBUTES,
    DataObject,
    PredictionQuery,
    Validation,
)
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ComputeToDataError, SettingsError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.timings import format_seconds
from compute_to_data.grid.client import IrodsConnectionOptions
from compute_to_data.web.security import REPORT_SANDBOX, tokens_match
from compute_to_data.web.sessions import (
    Authenticator,
    IrodsAuthenticator,
    LocalAuthenticator,
    SessionStore,
    UserSession,
)
from compute_to_data.web.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_REPORT_BYTES = 512 * 1024 * 1024
TASKS_PER_PAGE = 50
MAX_PER_PAGE = 200


def administrator_settings(path: Path | None = None) -> Settings:
    """The server settings the browser follows (heartbeat lease, allowed host names): ``path``,
    else ``$C2D_SETTINGS`` (both must be readable), else the server's file if readable here
    (a researcher's account may not read it), else the defaults."""
    try:
        return Settings.load(path)
    except SettingsError:
        if path is not None or os.environ.get(names.SETTINGS_ENV):
            raise
        return Settings()


@dataclass
class WebConfig:
    authenticator: Authenticator
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "c2d" / "thumbnails")
    #: signs the session cookie; random per process, so a restart signs everybody out.
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    idle_seconds: float = 1800.0
    page_size: int = 48
    thumbnail_size: int = 192
    #: set when served over https (behind a TLS proxy): cookies then never travel in clear.
    https_only: bool = False
    counts_ttl: float = 120.0
    #: the administrator's settings file (None: ``$C2D_SETTINGS`` or the server's default path);
    #: with ``--local`` it is also what cancel and resume in the browser run tasks with.
    settings_file: Path | None = None
    #: the settings themselves (loaded from ``settings_file`` when not given).
    settings: Settings | None = None
    #: the address and port it listens on (``c2d serve --bind/--listen-port``): the Host and
    #: Origin it accepts (web/hosts.py). None: loopback, on a port not known (tests).
    bind: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = administrator_settings(self.settings_file)

    @classmethod
    def for_local(cls, root: Path, user: str, **kwargs: Any) -> "WebConfig":
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return cls(authenticator=LocalAuthenticator(Path(root), user), **kwargs)

    @classmethod
    def for_irods(
        cls, options: IrodsConnectionOptions, session_factory: Callable[..., Any] | None = None, **kwargs: Any
    ) -> "WebConfig":
        options.environment(require_user=False)  # fail at start-up if host/port/zone are unknown
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return cls(authenticator=IrodsAuthenticator(options, session_factory), **kwargs)

    @property
    def lease_seconds(self) -> float:
        assert self.settings is not None  # set in __post_init__
        return self.settings.heartbeat_lease_seconds


class NeedSignIn(Exception):
    """Raised where a page needs a signed-in user and the browser has none (redirected)."""


def make_templates(lease_seconds: float) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(q=lambda s: quote(str(s), safe=""), sandbox=REPORT_SANDBOX)
    templates.env.filters["duration"] = lambda record: format_duration(elapsed(record))
    templates.env.filters["seconds"] = format_seconds
    # "stale": a running task with no sign of life for longer than the administrator's lease
    templates.env.filters["shown_state"] = lambda record: record.display_state(lease_seconds)
    return templates


class WebContext:
    """The app's shared parts and the helpers its routes share (one per app)."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.auth = config.authenticator
        self.store = SessionStore(config.idle_seconds)
        self.thumbs = ThumbnailCache(config.cache_dir, config.thumbnail_size)
        self.templates = make_templates(config.lease_seconds)

    # --- sessions and pages ---------------------------------------------------------------------
    def user_session(self, request: Request) -> UserSession:
        session = self.store.get(request.session.get("sid"))
        if session is None:
            if self.auth.needs_sign_in:
                raise NeedSignIn()
            sid, session = self.store.create(self.auth.anonymous_grid())
            request.session["sid"] = sid
        return session

    def render(self, request: Request, template: str, context: dict[str, Any], status: int = 200,
               session: UserSession | None = None) -> Response:
        flash = request.session.pop("flash", None)
        flash_error = request.session.pop("flash_error", None)
        base = {
            "flash_error": flash_error,
            "user": session.user if session else None,
            "csrf": session.csrf if session else request.session.get("pre_csrf", ""),
            "needs_sign_in": self.auth.needs_sign_in,
            "where": self.auth.describe() if hasattr(self.auth, "describe") else "",
            "flash": flash,
            "names": names,
        }
        return self.templates.TemplateResponse(request, template, {**base, **context}, status_code=status)

    def check_csrf(self, request: Request, form: Any, session: UserSession | None) -> None:
        """The session's token must come back with the form (constant-time compare). Its Origin
        was checked against the address served before (web/hosts.py), never against the
        request's own Host, which a DNS-rebinding page chooses."""
        expected = session.csrf if session else request.session.get("pre_csrf")
        if not tokens_match(expected, form.get("csrf")):
            raise HTTPException(403, "the form expired or did not come from this site; reload the page and try again")

    # --- tasks ------------------------------------------------------------------------------------
    def client(self, session: UserSession) -> TaskClient:
        return TaskClient(session.grid, lease_seconds=self.config.lease_seconds)

    def task_of(self, session: UserSession, task_id: str) -> tuple[TaskClient, TaskRecord]:
        if not TASK_ID_RE.fullmatch(task_id):
            raise HTTPException(404, f"{task_id!r} is not a task id")
        client = self.client(session)
        return client, client.find(task_id)

    def prediction_query(self, session: UserSession, client: TaskClient, record: TaskRecord,
                         **filters: Any) -> PredictionQuery:
        """The task's PredictionQuery; the tagging attribute names (from its recorded config)
        are read once per task and session."""
        attributes = session.cached(f"attributes:{record.collection}", 3600,
                                    lambda: client.class_attribute_names(record))
        return PredictionQuery(
            task_id=record.task_id, input_collection=record.get(names.A_INPUT_COLLECTION),
            class_attribute=attributes[0], score_attribute=attributes[1], **filters,
        )

    def counts(self, session: UserSession, record: TaskRecord, query: PredictionQuery) -> dict[str, int]:
        """Images per predicted class of the task (cached per session)."""
        if not query.input_collection:
            return {}
        key = f"counts:{record.task_id}:{record.get(names.A_STATE)}:{record.get(names.A_PROGRESS)}"
        # A finished task's predictions change only when a later task or a person changes them.
        ttl = self.config.counts_ttl * (5 if record.state is not None and record.state.is_final else 1)
        return session.cached(key, ttl, lambda: session.grid.count_predictions(query))

    def own_predictions(self, session: UserSession, record: TaskRecord, query: PredictionQuery) -> TaskPredictions:
        """The task's predictions file (cached: a finished task's file does not change)."""
        if record.state != TaskState.SUCCEEDED or not query.input_collection:
            return TaskPredictions("")
        key = f"predictions-file:{record.collection}"
        return session.cached(key, self.config.counts_ttl * 5,
                              lambda: load_predictions(session.grid, record, query.input_collection))

    def supersession(self, session: UserSession, record: TaskRecord, query: PredictionQuery,
                     current: int) -> Supersession | None:
        """What became of the task's predictions; None when it has no predictions file."""
        own = self.own_predictions(session, record, query)
        if not own.source:
            return None
        key = f"supersession:{record.collection}:{current}"
        return session.cached(key, self.config.counts_ttl * 5, lambda: supersession(session.grid, query, own, current))

    def labels(self, session: UserSession, client: TaskClient, record: TaskRecord) -> list[str]:
        """The model's classes (the task's labels file), for correcting a prediction."""

        def load() -> list[str]:
            try:
                labels_path = json.loads(record.get(names.A_PARAMETERS) or "{}").get("labels", "")
                if labels_path:
                    text = session.grid.read_data_object(labels_path, max_bytes=4 * 1024 * 1024).decode("utf-8", "replace")
                    labels = [line.strip() for line in text.splitlines() if line.strip()]
                    if labels:
                        return labels
            except (ComputeToDataError, ValueError, AttributeError):
                pass
            return sorted(self.counts(session, record, self.prediction_query(session, client, record)))

        return session.cached(f"labels:{record.task_id}", 3600, load)

    def review_list(self, session: UserSession, client: TaskClient, record: TaskRecord) -> ReviewIndex:
        """The task's images with their verdicts, EXIF AVUs and top classes, as the review queue
        and the agreement figures read them: read from the catalog once per session (until
        ``counts_ttl`` passes), then kept up to date by the decisions made through it, so a
        decision costs no listing of the task's images."""
        query = self.prediction_query(session, client, record)

        def load() -> ReviewIndex:
            if not query.input_collection:
                return ReviewIndex("", [])
            predictions = load_predictions(session.grid, record, query.input_collection)
            return ReviewIndex(query.input_collection, readable_items(session.grid, query, predictions))

        key = f"review:{record.task_id}:{record.get(names.A_STATE)}:{record.get(names.A_PROGRESS)}"
        return session.cached(key, self.config.counts_ttl, load)

    def series_review_list(self, session: UserSession, client: TaskClient, records: list[TaskRecord]) -> ReviewIndex:
        """The images of a series' tasks (``records``: those the user can read) as one review list:
        each task's list as :meth:`review_list` keeps it, merged oldest task first (an image two
        tasks predicted is reviewed as the newest's). Kept per session like a task's, and kept up
        to date by the decisions made through either (:meth:`note_verdict`)."""
        ordered = sorted(records, key=lambda r: (r.get(names.A_CREATED), r.task_id))

        def load() -> ReviewIndex:
            roots = [r.get(names.A_INPUT_COLLECTION) for r in ordered if r.get(names.A_INPUT_COLLECTION)]
            root = posixpath.commonpath(roots) if roots else ""
            return ReviewIndex(root, series_items(self.review_list(session, client, r).items for r in ordered))

        key = "series-review:" + ";".join(f"{r.task_id}:{r.get(names.A_STATE)}:{r.get(names.A_PROGRESS)}" for r in ordered)
        return session.cached(key, self.config.counts_ttl, load)

    @staticmethod
    def note_verdict(session: UserSession, path: str, verdict: Validation | None) -> None:
        """A decision changes the image's verdict in every review list the session keeps (its
        task's and its series'): the verdict is on the image, whichever queue wrote it."""
        for _, value in list(session.cache.values()):
            if isinstance(value, ReviewIndex):
                value.update(path, verdict)

    def task_image(self, session: UserSession, client: TaskClient, record: TaskRecord, path: str,
                   superseded_ok: bool = False) -> tuple[PredictionQuery, DataObject, dict[str, str]]:
        """The task's image at ``path`` with its prediction and validation AVUs, or 404.

        ``mine`` (the third value) holds the task's own prediction AVUs. With ``superseded_ok``,
        also an image the task's predictions file lists although a later task replaced its
        prediction (``mine`` is then empty).
        """
        query = self.prediction_query(session, client, record)
        root = query.input_collection.rstrip("/")
        if not path.startswith(root + "/") or posixpath.normpath(path) != path:
            raise HTTPException(404, "that object is not an image of this task")
        wanted = (query.class_attribute, query.score_attribute, *VALIDATION_ATTRIBUTES)
        obj = session.grid.get_data_object(path, avu_attributes=wanted)
        mine = {a.attribute: a.value for a in obj.avus
                if a.units == query.units and a.attribute not in VALIDATION_ATTRIBUTES}
        if query.class_attribute not in mine:
            if not (superseded_ok and self.own_predictions(session, record, query).find(path)):
                raise HTTPException(404, "that object carries no prediction of this task")
            mine = {}
        return query, obj, mine


def context(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


def here(request: Request) -> str:
    """The request's path and query, to come back to after a form."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(value: str | None, default: str) -> str:
    """Where a form may send the browser afterwards: only a page of this app."""
    if value and value.startswith(("/tasks", "/series/")) and "//" not in value and "\\" not in value:
        return value
    return default


def refuse_nul(request: Request, form: Any = None) -> None:
    """400 for a NUL character in the URL's parameters or a form field: no iRODS or LocalGrid
    name holds one, and the grid would only answer with an error of its own (shown as 502)."""
    fields = [*request.query_params.multi_items(), *request.path_params.items()]
    if form is not None:
        fields += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    for name, value in fields:
        if "\x00" in str(value):
            raise HTTPException(400, f"{name} contains a NUL character, which no name in the grid holds; check the link")


Page = Callable[[WebContext, Request], Response]


def in_thread(page: Page) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running the blocking ``page(ctx, request)`` in the thread pool; a
    page that needs a signed-in user sends the browser to the sign-in page, then back."""

    async def endpoint(request: Request) -> Response:
        refuse_nul(request)
        try:
            return await run_in_threadpool(page, context(request), request)
        except NeedSignIn:
            return RedirectResponse("/signin?" + urlencode({"next": here(request)}), 303)

    endpoint.__name__ = page.__name__
    endpoint.__doc__ = page.__doc__
    return endpoint


def posted(page: Callable[[WebContext, Request, Any], Response]) -> Callable[[Request], Awaitable[Response]]:
    """Like :func:`in_thread` for a form POST: the form is read first (asynchronously)."""

    async def endpoint(request: Request) -> Response:
        form = await request.form()
        refuse_nul(request, form)
        try:
            return await run_in_threadpool(page, context(request), request, form)
        except NeedSignIn:
            return RedirectResponse("/signin?" + urlencode({"next": here(request)}), 303)

    endpoint.__name__ = page.__name__
    endpoint.__doc__ = page.__doc__
    return endpoint


def bounded_int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        value = default
    return max(low, min(high, value))


def paginate(items: list, raw_page: str | None, per_page: int) -> tuple[int, int, list]:
    pages = max(1, math.ceil(len(items) / per_page))
    page = bounded_int(raw_page, 1, 1, pages)
    return page, pages, items[(page - 1) * per_page : page * per_page]
