"""The report browser's routes (Starlette).

Pages are rendered on the server with Jinja2 (autoescaped) and run no script. Grid calls are
blocking (python-irodsclient, SQLite), so every handler does its work in Starlette's thread
pool. Routes that take an object path check that it belongs to the task (it carries the task's
prediction AVU, under the task's input collection) and let the grid enforce the caller's access.
An image whose prediction a later task replaced still belongs to the task when the task's own
predictions file lists it: it can be looked at, not validated (a validation is about the
prediction the image carries, and records that prediction's task in its units).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import posixpath
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from compute_to_data.client.predictions import (
    Supersession,
    TaskPredictions,
    load_predictions,
    supersession,
)
from compute_to_data.client.submitters import TASK_ID_RE
from compute_to_data.client.tasks import (
    TaskClient,
    elapsed,
    format_duration,
    parse_since,
)
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    VALIDATION_ATTRIBUTES,
    AccessLevel,
    EntityType,
    PredictionQuery,
    Validation,
)
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AuthenticationError,
    ComputeToDataError,
    ConfigError,
    ObjectNotFoundError,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.shards import aggregate
from compute_to_data.domain.timings import format_seconds, timing_rows
from compute_to_data.grid.client import IrodsConnectionOptions
from compute_to_data.lifecycle import series as schedule
from compute_to_data.web.filters import filtered_page, parse_filters
from compute_to_data.web.photo_header import photo_header
from compute_to_data.web.security import (
    IMAGE_CSP,
    REPORT_CSP,
    REPORT_SANDBOX,
    SecurityHeaders,
    new_token,
    tokens_match,
)
from compute_to_data.web.sessions import (
    Authenticator,
    IrodsAuthenticator,
    LocalAuthenticator,
    SessionStore,
    UserSession,
)
from compute_to_data.web.thumbnails import ThumbnailCache, browser_image

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_REPORT_BYTES = 512 * 1024 * 1024
TASKS_PER_PAGE = 50
MAX_PER_PAGE = 200


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


class NeedSignIn(Exception):
    pass


def create_app(config: WebConfig) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(q=lambda s: quote(str(s), safe=""), sandbox=REPORT_SANDBOX)
    templates.env.filters["duration"] = lambda record: format_duration(elapsed(record))
    templates.env.filters["seconds"] = format_seconds
    # "stale": a running task with no sign of life for longer than the heartbeat lease (never written)
    lease = Settings().heartbeat_lease_seconds
    templates.env.filters["shown_state"] = lambda record: record.display_state(lease)
    store = SessionStore(config.idle_seconds)
    thumbs = ThumbnailCache(config.cache_dir, config.thumbnail_size)
    auth = config.authenticator

    # --- sessions ---------------------------------------------------------------------------------
    def user_session(request: Request) -> UserSession:
        session = store.get(request.session.get("sid"))
        if session is None:
            if auth.needs_sign_in:
                raise NeedSignIn()
            sid, session = store.create(auth.anonymous_grid())
            request.session["sid"] = sid
        return session

    def render(request: Request, template: str, context: dict[str, Any], status: int = 200,
               session: UserSession | None = None) -> Response:
        flash = request.session.pop("flash", None)
        base = {
            "user": session.user if session else None,
            "csrf": session.csrf if session else request.session.get("pre_csrf", ""),
            "needs_sign_in": auth.needs_sign_in,
            "where": auth.describe() if hasattr(auth, "describe") else "",
            "flash": flash,
        }
        return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)

    def check_csrf(request: Request, form: Any, session: UserSession | None) -> None:
        expected = session.csrf if session else request.session.get("pre_csrf")
        if not tokens_match(expected, form.get("csrf")):
            raise HTTPException(403, "the form expired or did not come from this site; reload the page and try again")
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "cross-site form submission refused")

    def prediction_query(session: UserSession, client: TaskClient, record: TaskRecord, **filters: Any) -> PredictionQuery:
        """The task's PredictionQuery; the tagging attribute names (from its recorded config)
        are read once per task and session."""
        attributes = session.cached(f"attributes:{record.collection}", 3600, lambda: client.class_attribute_names(record))
        return PredictionQuery(
            task_id=record.task_id, input_collection=record.get(names.A_INPUT_COLLECTION),
            class_attribute=attributes[0], score_attribute=attributes[1], **filters,
        )

    def task_of(session: UserSession, task_id: str) -> tuple[TaskClient, TaskRecord]:
        if not TASK_ID_RE.fullmatch(task_id):
            raise HTTPException(404, f"{task_id!r} is not a task id")
        client = TaskClient(session.grid)
        return client, client.find(task_id)

    def safe_next(value: str | None, default: str) -> str:
        if value and value.startswith("/tasks") and "//" not in value and "\\" not in value:
            return value
        return default

    async def threaded(request: Request, fn: Callable[..., Response], *args: Any) -> Response:
        try:
            return await run_in_threadpool(fn, *args)
        except NeedSignIn:
            target = "/signin?" + urlencode({"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")})
            return RedirectResponse(target, 303)

    # --- sign-in ----------------------------------------------------------------------------------
    async def signin_page(request: Request) -> Response:
        if not auth.needs_sign_in:
            return RedirectResponse("/tasks", 303)
        request.session.setdefault("pre_csrf", new_token())
        return render(request, "signin.html", {"next": request.query_params.get("next", "/tasks"), "error": None})

    async def signin(request: Request) -> Response:
        if not auth.needs_sign_in:
            return RedirectResponse("/tasks", 303)
        form = await request.form()
        check_csrf(request, form, None)
        username = str(form.get("username", ""))
        password = str(form.get("password", ""))
        target = safe_next(str(form.get("next", "")), "/tasks")
        try:
            grid = await run_in_threadpool(auth.sign_in, username, password)
        except AuthenticationError as exc:
            log.info("sign-in refused for %r: %s", username, exc)
            return render(request, "signin.html", {"next": target, "error": str(exc), "username": username}, 401)
        except ComputeToDataError as exc:
            return render(request, "signin.html", {"next": target, "error": str(exc), "username": username}, 502)
        store.drop(request.session.get("sid"))
        request.session.clear()  # a new session id after sign-in: no session fixation
        sid, _ = store.create(grid)
        request.session["sid"] = sid
        return RedirectResponse(target, 303)

    async def signout(request: Request) -> Response:
        form = await request.form()
        session = store.get(request.session.get("sid"))
        check_csrf(request, form, session)
        store.drop(request.session.get("sid"))
        request.session.clear()
        return RedirectResponse("/signin" if auth.needs_sign_in else "/tasks", 303)

    # --- tasks ------------------------------------------------------------------------------------
    async def home(request: Request) -> Response:
        return RedirectResponse("/tasks", 303)

    def _tasks(request: Request) -> Response:
        session = user_session(request)
        params = request.query_params
        state_text = params.get("state", "")
        since_text = params.get("since", "").strip()
        text = params.get("q", "").strip()
        mine = params.get("mine", "") == "1"
        error = None
        try:
            state = TaskState(state_text) if state_text else None
        except ValueError:
            state, error = None, f"unknown state {state_text!r}"
        try:
            since = parse_since(since_text) if since_text else None
        except ConfigError as exc:
            since, error = None, str(exc)
        records = TaskClient(session.grid).list(state=state, since=since, mine_only=mine)
        if text:
            records = [r for r in records if text.lower() in (r.task_id + " " + r.collection).lower()]
        page, pages, shown = _paginate(records, params.get("page"), TASKS_PER_PAGE)
        query = {k: v for k, v in (("state", state_text), ("since", since_text), ("q", text), ("mine", "1" if mine else "")) if v}
        return render(request, "tasks.html", {
            "records": shown, "page": page, "pages": pages, "total": len(records), "states": [s.value for s in TaskState],
            "state": state_text, "since": since_text, "text": text, "mine": mine, "error": error,
            "query": query, "names": names,
        }, session=session)

    async def tasks(request: Request) -> Response:
        return await threaded(request, _tasks, request)

    def _task(request: Request, task_id: str) -> Response:
        session = user_session(request)
        client, record = task_of(session, task_id)
        query = prediction_query(session, client, record)
        counts = _counts(session, client, record, query)
        fate = _supersession(session, record, query, sum(counts.values()))
        timings = timing_rows(record.timings)
        parameters = record.get(names.A_PARAMETERS)
        try:
            parameters_pretty = json.dumps(json.loads(parameters), indent=2, sort_keys=True) if parameters else ""
        except ValueError:
            parameters_pretty = parameters
        try:
            files = session.grid.list_data_objects(record.collection)
        except ObjectNotFoundError:
            files = []
        shown_apart = (names.A_PARAMETERS, names.A_TIMINGS)  # shown as their own sections
        provenance = sorted((k, v) for k, v in record.values.items() if k not in shown_apart)
        report_path = client.report_path(record)
        shards = client.shards(record)
        return render(request, "task.html", {
            "shards": shards, "shard_totals": aggregate(shards) if shards else None,
            "record": record, "counts": counts, "total_predicted": sum(counts.values()),
            "parameters": parameters_pretty, "provenance": provenance, "files": files,
            "has_report": any(f.path == report_path for f in files), "query": query, "names": names,
            "fate": fate, "timings": timings, "longest": max((t.seconds for t in timings), default=0.0),
            "series": _series_of(client, record), "chain": client.chain(record),
        }, session=session)

    async def task(request: Request) -> Response:
        return await threaded(request, _task, request, request.path_params["task_id"])

    def _series_of(client: TaskClient, record: TaskRecord) -> schedule.SeriesInfo | None:
        """The series a task belongs to, for its page (None: of no series, or its first task is gone)."""
        try:
            return client.series_info(record)
        except ComputeToDataError as exc:
            log.info("task %s: its series cannot be read: %s", record.task_id, exc)
            return None

    def _series_page(request: Request, series_id: str) -> Response:
        session = user_session(request)
        if not TASK_ID_RE.fullmatch(series_id):
            raise HTTPException(404, f"{series_id!r} is not a series id (the id of its first task)")
        info, records = TaskClient(session.grid).series(series_id)
        return render(request, "series.html", {"info": info, "records": records, "names": names}, session=session)

    async def series_page(request: Request) -> Response:
        return await threaded(request, _series_page, request, request.path_params["series_id"])

    def _counts(session: UserSession, client: TaskClient, record: TaskRecord, query: PredictionQuery) -> dict[str, int]:
        if not query.input_collection:
            return {}
        key = f"counts:{record.task_id}:{record.get(names.A_STATE)}:{record.get(names.A_PROGRESS)}"
        # A finished task's predictions change only when a later task or a person changes them.
        ttl = config.counts_ttl * (5 if record.state is not None and record.state.is_final else 1)
        return session.cached(key, ttl, lambda: session.grid.count_predictions(query))

    def _own_predictions(session: UserSession, record: TaskRecord, query: PredictionQuery) -> TaskPredictions:
        """The task's predictions file (cached: a finished task's file does not change)."""
        if record.state != TaskState.SUCCEEDED or not query.input_collection:
            return TaskPredictions("")
        key = f"predictions-file:{record.collection}"
        return session.cached(key, config.counts_ttl * 5, lambda: load_predictions(session.grid, record, query.input_collection))

    def _supersession(session: UserSession, record: TaskRecord, query: PredictionQuery, current: int) -> Supersession | None:
        """What became of the task's predictions; None when it has no predictions file."""
        own = _own_predictions(session, record, query)
        if not own.source:
            return None
        key = f"supersession:{record.collection}:{current}"
        return session.cached(key, config.counts_ttl * 5, lambda: supersession(session.grid, query, own, current))

    def _predictions(request: Request, task_id: str) -> Response:
        session = user_session(request)
        client, record = task_of(session, task_id)
        query = prediction_query(session, client, record)
        own = _own_predictions(session, record, query)
        if not own.source:
            raise HTTPException(404, f"task {task_id} has no predictions file ({names.PREDICTIONS_JSON} or {names.PREDICTIONS_CSV})")
        params = request.query_params
        cls = params.get("cls", "")
        per_page = _int(params.get("per_page"), config.page_size, 1, MAX_PER_PAGE)
        selected = own.select(cls or None)
        page, pages, shown = _paginate(selected, params.get("page"), per_page)
        fate = _supersession(session, record, query, sum(_counts(session, client, record, query).values()))
        keep = {k: v for k, v in (("cls", cls), ("per_page", str(per_page) if per_page != config.page_size else "")) if v}
        return render(request, "predictions.html", {
            "record": record, "items": shown, "page": page, "pages": pages, "total": len(selected),
            "counts": own.counts(), "cls": cls, "keep": keep, "fate": fate, "source": own.source,
            "urlencode": urlencode, "input_root": query.input_collection.rstrip("/"), "names": names,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        }, session=session)

    async def predictions(request: Request) -> Response:
        return await threaded(request, _predictions, request, request.path_params["task_id"])

    # --- the report -------------------------------------------------------------------------------
    def _report_page(request: Request, task_id: str) -> Response:
        session = user_session(request)
        client, record = task_of(session, task_id)
        return render(request, "report.html", {"record": record, "report_path": client.report_path(record)}, session=session)

    async def report_page(request: Request) -> Response:
        return await threaded(request, _report_page, request, request.path_params["task_id"])

    def _report_content(request: Request, task_id: str) -> Response:
        session = user_session(request)
        client, record = task_of(session, task_id)
        data = session.grid.read_data_object(client.report_path(record), max_bytes=MAX_REPORT_BYTES)
        return Response(data, media_type="text/html; charset=utf-8", headers={
            "content-security-policy": REPORT_CSP,
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "private, no-store",
        })

    async def report_content(request: Request) -> Response:
        return await threaded(request, _report_content, request, request.path_params["task_id"])

    def _shard_report(request: Request, task_id: str, shard: str) -> Response:
        """A shard's own report, where the task's report links to it (``shards/NNNN/report.html``
        relative to the report): served sandboxed like the task's."""
        session = user_session(request)
        _, record = task_of(session, task_id)
        if not (shard.isdigit() and len(shard) == 4) or not record.is_sharded:
            raise HTTPException(404, "no such shard")
        path = posixpath.join(record.collection, names.SHARDS_COLLECTION, shard, names.REPORT_FILE)
        data = session.grid.read_data_object(path, max_bytes=MAX_REPORT_BYTES)
        return Response(data, media_type="text/html; charset=utf-8", headers={
            "content-security-policy": REPORT_CSP,
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "private, no-store",
        })

    async def shard_report(request: Request) -> Response:
        params = request.path_params
        return await threaded(request, _shard_report, request, params["task_id"], params["shard"])

    def _download(request: Request, task_id: str) -> Response:
        session = user_session(request)
        _, record = task_of(session, task_id)
        name = request.query_params.get("name", "")
        if not name or "/" in name or name in (".", ".."):
            raise HTTPException(404, "no such file in the task collection")
        data = session.grid.read_data_object(posixpath.join(record.collection, name), max_bytes=MAX_REPORT_BYTES)
        return Response(data, media_type="application/octet-stream", headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            "content-security-policy": "sandbox; default-src 'none'",
            "cache-control": "private, no-store",
        })

    async def download(request: Request) -> Response:
        return await threaded(request, _download, request, request.path_params["task_id"])

    # --- images -----------------------------------------------------------------------------------
    def _filters(params: Any) -> tuple[dict[str, Any], dict[str, str], str | None]:
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

    def _images(request: Request, task_id: str) -> Response:
        session = user_session(request)
        client, record = task_of(session, task_id)
        params = request.query_params
        filters, keep, error = _filters(params)
        per_page = _int(params.get("per_page"), config.page_size, 1, MAX_PER_PAGE)
        page = _int(params.get("page"), 1, 1, 10**9)
        query = prediction_query(session, client, record, extra_attributes=VALIDATION_ATTRIBUTES, **filters)
        conditions, kept, where_error = parse_filters(params)  # date taken, any metadata condition
        keep.update(kept)
        error = error or where_error
        if conditions:
            result = filtered_page(session.grid, query, conditions, (page - 1) * per_page, per_page)
        else:
            result = session.grid.query_predictions(query, (page - 1) * per_page, per_page)
        hidden = set(session.grid.paths_lacking_access([i.path for i in result.items], AccessLevel.READ)) if result.items else set()
        items = [i for i in result.items if i.path not in hidden]
        counts = _counts(session, client, record, prediction_query(session, client, record))
        pages = math.ceil(result.total / per_page) if result.total is not None else None
        if per_page != config.page_size:
            keep["per_page"] = str(per_page)
        return render(request, "images.html", {
            "record": record, "items": items, "hidden": len(hidden), "page": page, "pages": pages,
            "has_more": result.has_more, "total": result.total, "per_page": per_page, "keep": keep,
            "classes": sorted(counts), "counts": counts, "cls": params.get("cls", ""),
            "min": keep.get("min", ""), "max": keep.get("max", ""), "error": error,
            "taken_from": keep.get("taken_from", ""), "taken_to": keep.get("taken_to", ""), "where": keep.get("where", ""),
            "urlencode": urlencode, "input_root": query.input_collection, "names": names,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        }, session=session)

    async def images(request: Request) -> Response:
        return await threaded(request, _images, request, request.path_params["task_id"])

    def _task_image(session: UserSession, client: TaskClient, record: TaskRecord, path: str,
                    superseded_ok: bool = False):  # noqa: ANN202
        """The task's image at ``path`` with its prediction and validation AVUs, or 404.

        With ``superseded_ok``, also an image the task's predictions file lists although a
        later task replaced its prediction (``mine`` is then empty).
        """
        query = prediction_query(session, client, record)
        root = query.input_collection.rstrip("/")
        if not path.startswith(root + "/") or posixpath.normpath(path) != path:
            raise HTTPException(404, "that object is not an image of this task")
        wanted = (query.class_attribute, query.score_attribute, *VALIDATION_ATTRIBUTES)
        obj = session.grid.get_data_object(path, avu_attributes=wanted)
        mine = {a.attribute: a.value for a in obj.avus if a.units == query.units and a.attribute not in VALIDATION_ATTRIBUTES}
        if query.class_attribute not in mine:
            if not (superseded_ok and _own_predictions(session, record, query).find(path)):
                raise HTTPException(404, "that object carries no prediction of this task")
            mine = {}
        return query, obj, mine

    def _image_page(request: Request, task_id: str) -> Response:
        session = user_session(request)
        client, record = task_of(session, task_id)
        path = request.query_params.get("path", "")
        query, obj, mine = _task_image(session, client, record, path, superseded_ok=True)
        validation = Validation.from_avus(obj.avus)
        superseded = None
        if mine:
            predicted, score = mine.get(query.class_attribute, ""), mine.get(query.score_attribute, "")
            can_validate = session.grid.has_access(path, AccessLevel.MODIFY)
        else:  # a later task's prediction replaced this task's: shown, not validated here
            listed = _own_predictions(session, record, query).find(path)
            predicted = listed.predicted_class if listed else ""
            score = f"{listed.score:.4f}" if listed and listed.score is not None else ""
            now = next((a for a in obj.avus if a.attribute == query.class_attribute), None)
            superseded = {"task_id": names.task_id_of_units(now.units) if now else None, "value": now.value if now else None}
            can_validate = False
        return render(request, "image.html", {
            "record": record, "obj": obj, "predicted": predicted, "score": score, "validation": validation,
            "labels": _labels(session, client, record) if can_validate else [], "superseded": superseded,
            "can_validate": can_validate, "back": safe_next(request.query_params.get("back"), f"/tasks/{task_id}/images"),
            "names": names, "header": photo_header(session.grid, path),
        }, session=session)

    async def image_page(request: Request) -> Response:
        return await threaded(request, _image_page, request, request.path_params["task_id"])

    def _labels(session: UserSession, client: TaskClient, record: TaskRecord) -> list[str]:
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
            return sorted(_counts(session, client, record, prediction_query(session, client, record)))

        return session.cached(f"labels:{record.task_id}", 3600, load)

    def _readable_image(request: Request, task_id: str) -> tuple[UserSession, Any]:
        session = user_session(request)
        client, record = task_of(session, task_id)
        path = request.query_params.get("path", "")
        _, obj, _ = _task_image(session, client, record, path, superseded_ok=True)
        if session.grid.paths_lacking_access([path], AccessLevel.READ):
            raise AccessDeniedError(f"{session.user} cannot read {path}")
        return session, obj

    def _thumbnail(request: Request, task_id: str) -> Response:
        session, obj = _readable_image(request, task_id)
        key = thumbs.key(obj.path, obj.checksum, obj.size)
        data = thumbs.get(key)
        if data is None:
            try:
                data = thumbs.render(session.grid.read_data_object(obj.path, max_bytes=MAX_IMAGE_BYTES))
            except ComputeToDataError as exc:
                log.info("no thumbnail for %s: %s", obj.path, exc)
                return Response(_PLACEHOLDER_SVG, media_type="image/svg+xml", headers={"content-security-policy": IMAGE_CSP})
            thumbs.put(key, data)
        return Response(data, media_type="image/jpeg", headers={
            "cache-control": "private, max-age=3600", "content-security-policy": IMAGE_CSP,
        })

    async def thumbnail(request: Request) -> Response:
        return await threaded(request, _thumbnail, request, request.path_params["task_id"])

    def _full_image(request: Request, task_id: str) -> Response:
        session, obj = _readable_image(request, task_id)
        data, media = browser_image(session.grid.read_data_object(obj.path, max_bytes=MAX_IMAGE_BYTES))
        return Response(data, media_type=media, headers={
            "cache-control": "private, max-age=600", "content-security-policy": IMAGE_CSP,
        })

    async def full_image(request: Request) -> Response:
        return await threaded(request, _full_image, request, request.path_params["task_id"])

    # --- validation -------------------------------------------------------------------------------
    def _validate(request: Request, task_id: str, form: Any) -> Response:
        session = user_session(request)
        check_csrf(request, form, session)
        client, record = task_of(session, task_id)
        path = str(form.get("path", ""))
        query, obj, mine = _task_image(session, client, record, path)
        decision = str(form.get("decision", ""))
        if decision == "confirm":
            chosen = mine[query.class_attribute]
        elif decision == "correct":
            chosen = str(form.get("class", "")).strip()
            labels = _labels(session, client, record)
            if not chosen or len(chosen) > 256 or (labels and chosen not in labels):
                raise HTTPException(400, f"choose one of the model's classes, not {chosen!r}")
        else:
            raise HTTPException(400, "decision must be confirm or correct")
        if not session.grid.has_access(path, AccessLevel.MODIFY):
            raise AccessDeniedError(
                f"{session.user} may not validate {path}: validating writes AVUs on the image, which needs "
                "write access (modify_object); ask its owner for: ichmod write " + session.user + " " + path
            )
        # The units name the task whose prediction was confirmed or corrected (conventions).
        verdict = Validation(chosen, session.user, names.iso_utc(), task_id=record.task_id)
        session.grid.set_avus(EntityType.DATA_OBJECT, path, verdict.avus())
        word = "confirmed" if decision == "confirm" else "corrected to"
        request.session["flash"] = f"{posixpath.basename(path)}: {word} {chosen}"
        default = f"/tasks/{task_id}/image?path={quote(path, safe='')}"
        return RedirectResponse(safe_next(str(form.get("next", "")), default), 303)

    async def validate(request: Request) -> Response:
        form = await request.form()
        return await threaded(request, _validate, request, request.path_params["task_id"], form)

    # --- errors -----------------------------------------------------------------------------------
    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NeedSignIn):
            return RedirectResponse("/signin", 303)
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, AuthenticationError):
            store.drop(request.session.get("sid"))
            request.session.clear()
            return RedirectResponse("/signin", 303)
        elif isinstance(exc, (ObjectNotFoundError, TaskStateError)):
            status, message = 404, str(exc)
        elif isinstance(exc, AccessDeniedError):
            status, message = 403, str(exc)
        elif isinstance(exc, ComputeToDataError):
            status, message = 502, str(exc)
        else:  # pragma: no cover - only the three types above are registered
            status, message = 500, "unexpected error; see the server log"
        session = store.get(request.session.get("sid"))
        return render(request, "error.html", {"status": status, "message": message}, status, session=session)

    routes = [
        Route("/", home),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/tasks", tasks),
        Route("/tasks/{task_id}", task),
        Route("/tasks/{task_id}/report", report_page),
        Route("/tasks/{task_id}/report/content", report_content),
        Route("/tasks/{task_id}/report/shards/{shard}/report.html", shard_report),
        Route("/tasks/{task_id}/download", download),
        Route("/tasks/{task_id}/images", images),
        Route("/tasks/{task_id}/predictions", predictions),
        Route("/tasks/{task_id}/image", image_page),
        Route("/tasks/{task_id}/thumbnail", thumbnail),
        Route("/tasks/{task_id}/file", full_image),
        Route("/tasks/{task_id}/validate", validate, methods=["POST"]),
        Route("/series/{series_id}", series_page),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware, secret_key=config.secret_key, session_cookie="c2d_session",
            max_age=None, same_site="strict", https_only=config.https_only,
        ),
    ]
    handlers: dict[Any, Callable] = {HTTPException: on_error, ComputeToDataError: on_error, NeedSignIn: on_error}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202
        yield
        store.close_all()

    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
    app.state.sessions = store
    app.state.config = config
    return app


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        value = default
    return max(low, min(high, value))


def _paginate(items: list, raw_page: str | None, per_page: int) -> tuple[int, int, list]:
    pages = max(1, math.ceil(len(items) / per_page))
    page = _int(raw_page, 1, 1, pages)
    return page, pages, items[(page - 1) * per_page : page * per_page]


_PLACEHOLDER_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="192" height="192"><rect width="100%" height="100%" '
    b'fill="#eee"/><text x="50%" y="50%" text-anchor="middle" fill="#999" font-size="14">unreadable</text></svg>'
)
