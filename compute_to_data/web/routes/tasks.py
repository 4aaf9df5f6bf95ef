"""The task list, a task's page, a series' page and a task's own predictions file."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compute_to_data.client.review import Agreement, task_agreement
from compute_to_data.client.submitters import TASK_ID_RE
from compute_to_data.client.tasks import TaskClient, parse_since
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ComputeToDataError, ConfigError, ObjectNotFoundError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.shards import aggregate
from compute_to_data.domain.timings import timing_rows
from compute_to_data.lifecycle import series as schedule
from compute_to_data.web.deps import (
    MAX_PER_PAGE,
    TASKS_PER_PAGE,
    WebContext,
    bounded_int,
    here,
    in_thread,
    paginate,
)
from compute_to_data.web.sessions import UserSession

log = logging.getLogger(__name__)


async def home(request: Request) -> Response:
    return RedirectResponse("/tasks", 303)


def _state_filter(text: str) -> tuple[TaskState | None, str | None]:
    try:
        return (TaskState(text) if text else None), None
    except ValueError:
        return None, f"unknown state {text!r}"


def tasks(ctx: WebContext, request: Request) -> Response:
    """The tasks the user can read, newest first, filtered by state, age, text and owner."""
    session = ctx.user_session(request)
    params = request.query_params
    state_text = params.get("state", "")
    since_text = params.get("since", "").strip()
    text = params.get("q", "").strip()
    mine = params.get("mine", "") == "1"
    state, error = _state_filter(state_text)
    try:
        since = parse_since(since_text) if since_text else None
    except ConfigError as exc:
        since, error = None, str(exc)
    records = ctx.client(session).list(state=state, since=since, mine_only=mine)
    if text:
        records = [r for r in records if text.lower() in (r.task_id + " " + r.collection).lower()]
    page, pages, shown = paginate(records, params.get("page"), TASKS_PER_PAGE)
    query = {k: v for k, v in (("state", state_text), ("since", since_text), ("q", text), ("mine", "1" if mine else "")) if v}
    return ctx.render(request, "tasks.html", {
        "records": shown, "page": page, "pages": pages, "total": len(records), "states": [s.value for s in TaskState],
        "state": state_text, "since": since_text, "text": text, "mine": mine, "error": error, "query": query,
    }, session=session)


def _pretty_parameters(record: TaskRecord) -> str:
    parameters = record.get(names.A_PARAMETERS)
    try:
        return json.dumps(json.loads(parameters), indent=2, sort_keys=True) if parameters else ""
    except ValueError:
        return parameters


def series_of(client: TaskClient, record: TaskRecord) -> schedule.SeriesInfo | None:
    """The series a task belongs to, for its page (None: of no series, or its first task is gone)."""
    try:
        return client.series_info(record)
    except ComputeToDataError as exc:
        log.info("task %s: its series cannot be read: %s", record.task_id, exc)
        return None


def task(ctx: WebContext, request: Request) -> Response:
    """A task: its state, classes, timings, shards, files and provenance."""
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    query = ctx.prediction_query(session, client, record)
    counts = ctx.counts(session, record, query)
    fate = ctx.supersession(session, record, query, sum(counts.values()))
    timings = timing_rows(record.timings)
    try:
        files = session.grid.list_data_objects(record.collection)
    except ObjectNotFoundError:
        files = []
    shown_apart = (names.A_PARAMETERS, names.A_TIMINGS)  # shown as their own sections
    provenance = sorted((k, v) for k, v in record.values.items() if k not in shown_apart)
    report_path = client.report_path(record)
    shards = client.shards(record)
    return ctx.render(request, "task.html", {
        "shards": shards, "shard_totals": aggregate(shards) if shards else None,
        "record": record, "counts": counts, "total_predicted": sum(counts.values()),
        "parameters": _pretty_parameters(record), "provenance": provenance, "files": files,
        "has_report": any(f.path == report_path for f in files), "query": query,
        "fate": fate, "timings": timings, "longest": max((t.seconds for t in timings), default=0.0),
        "series": series_of(client, record), "chain": client.chain(record), "agreement": _agreement(ctx, session, client, record),
        "may_change": _may_change(session, record),
    }, session=session)


def _agreement(ctx: WebContext, session: UserSession, client: TaskClient, record: TaskRecord) -> Agreement | None:
    """Agreement figures of an ended task, computed as ``c2d status`` does, from the images the
    review queue keeps for this session."""
    if record.state is None or not record.state.is_final:
        return None
    return task_agreement(client, record, ctx.review_list(session, client, record).items)


def _may_change(session: UserSession, record: TaskRecord) -> bool:
    """Whether to offer cancel/resume: the user may change the task collection (its owner); the
    rules (or the lifecycle) check again and refuse with their own words."""
    try:
        return session.grid.has_access(record.collection, AccessLevel.MODIFY)
    except ComputeToDataError:
        return False


def series_page(ctx: WebContext, request: Request) -> Response:
    session = ctx.user_session(request)
    series_id = request.path_params["series_id"]
    if not TASK_ID_RE.fullmatch(series_id):
        raise HTTPException(404, f"{series_id!r} is not a series id (the id of its first task)")
    info, records = ctx.client(session).series(series_id)
    return ctx.render(request, "series.html", {"info": info, "records": records}, session=session)


def predictions(ctx: WebContext, request: Request) -> Response:
    """What the task predicted, as its predictions file says (whatever the images carry now)."""
    session = ctx.user_session(request)
    client, record = ctx.task_of(session, request.path_params["task_id"])
    query = ctx.prediction_query(session, client, record)
    own = ctx.own_predictions(session, record, query)
    if not own.source:
        raise HTTPException(404, f"task {record.task_id} has no predictions file ({names.PREDICTIONS_JSON} or {names.PREDICTIONS_CSV})")
    params = request.query_params
    cls = params.get("cls", "")
    per_page = bounded_int(params.get("per_page"), ctx.config.page_size, 1, MAX_PER_PAGE)
    selected = own.select(cls or None)
    page, pages, shown = paginate(selected, params.get("page"), per_page)
    fate = ctx.supersession(session, record, query, sum(ctx.counts(session, record, query).values()))
    keep = {k: v for k, v in (("cls", cls), ("per_page", str(per_page) if per_page != ctx.config.page_size else "")) if v}
    return ctx.render(request, "predictions.html", {
        "record": record, "items": shown, "page": page, "pages": pages, "total": len(selected),
        "counts": own.counts(), "cls": cls, "keep": keep, "fate": fate, "source": own.source,
        "urlencode": urlencode, "input_root": query.input_collection.rstrip("/"),
        "here": here(request),
    }, session=session)


ROUTES = [
    Route("/", home),
    Route("/tasks", in_thread(tasks)),
    Route("/tasks/{task_id}", in_thread(task)),
    Route("/tasks/{task_id}/predictions", in_thread(predictions)),
    Route("/series/{series_id}", in_thread(series_page)),
]
