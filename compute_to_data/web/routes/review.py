"""The review queue: a task's least certain predictions first, one image large, keyboard-driven.

The app's pages run no script (``script-src 'none'``, web/security.py), and this page keeps that
rule: a report's scripts are kept out by the sandbox, and a page without script has nothing an
injected name or AVU could turn into code. So every decision is a form POST answered by a
redirect to the next image (one page load per decision, which is one catalog write and a few
reads: the task's list of images is read once per session and kept up to date by the decisions
made through it). The keyboard works without script:

* the page's key field has the focus: type a class's number (or its name), ``c`` (confirm),
  ``s`` (skip) or ``u`` (undo), then Enter;
* every button also has an ``accesskey`` (Alt+key in Chromium and Firefox on Linux and Windows).

A decision applies to the images ticked in the burst shown under the image (the whole burst by
default, each image getting its own AVUs; ``confirm`` confirms each image's own prediction), and
is written as the image page writes it (web/routes/validation.py): the task's units, the CSRF
token, write access checked.

The same queue runs over a task (``/tasks/<id>/review``) or over every task of a series the user
can read (``/series/<id>/review``): a scheduled series classifies new frames every day, and the
person validating them wants one queue, least certain first, not one per day. Each image is
decided as its own task's prediction (that task's units), and a burst may span two tasks (a
camera's frames around the time a run began).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from compute_to_data.client.review import (
    DEFAULT_BURST_GAP_SECONDS,
    ORDERS,
    ReviewFilter,
    ReviewIndex,
    ReviewItem,
)
from compute_to_data.client.submitters import TASK_ID_RE
from compute_to_data.client.tasks import TaskClient
from compute_to_data.domain.catalog import VALIDATION_ATTRIBUTES, AccessLevel, EntityType, Validation
from compute_to_data.domain.errors import AccessDeniedError, ConfigError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.web.deps import WebContext, in_thread, posted, safe_next
from compute_to_data.web.routes.validation import write_validation
from compute_to_data.web.sessions import ReviewMemory, UserSession

COMMANDS = {"c": "confirm", "s": "skip", "u": "undo"}
MAX_SELECTION = 500


@dataclass(frozen=True)
class QueueView:
    """What the review page is asked to show (from its query string)."""

    order: str
    flt: ReviewFilter
    gap: float
    at: str
    keep: dict[str, str]

    @classmethod
    def parse(cls, params: Any) -> tuple["QueueView", str | None]:
        """The view and an error for a bad field (the field is then ignored)."""
        error = None
        keep: dict[str, str] = {}
        order = params.get("order", "score")
        if order not in ORDERS:
            error, order = f"order must be one of {', '.join(ORDERS)}, not {order!r}", "score"
        keep["order"] = order
        days = {}
        for key, label in (("since", "from"), ("until", "to")):
            raw = params.get(key, "").strip()
            try:
                days[key] = ReviewFilter.parse_day(raw, label)
                if raw:
                    keep[key] = raw
            except ConfigError as exc:
                error, days[key] = str(exc), None
        gap = float(DEFAULT_BURST_GAP_SECONDS)
        raw_gap = params.get("gap", "").strip()
        if raw_gap:
            try:
                gap = float(raw_gap)
                if not 0 <= gap <= 86400:
                    raise ValueError
                keep["gap"] = raw_gap
            except ValueError:
                error, gap = f"burst gap must be a number of seconds from 0 to 86400, not {raw_gap!r}", float(DEFAULT_BURST_GAP_SECONDS)
        camera, predicted = params.get("camera", ""), params.get("cls", "")
        keep.update({k: v for k, v in (("camera", camera), ("cls", predicted)) if v})
        flt = ReviewFilter(camera, days["since"], days["until"], predicted)
        return cls(order, flt, gap, params.get("at", ""), keep), error

    def url(self, base: str, at: str = "") -> str:
        query = dict(self.keep, **({"at": at} if at else {}))
        return f"{base}?{urlencode(query)}"


@dataclass
class Scope:
    """What a queue reviews: one task, or the tasks of a series the user can read."""

    #: the task id, or the series id (its first task's)
    ident: str
    #: the queue's own address (its form posts there)
    base: str
    #: the tasks, by id
    records: dict[str, TaskRecord]
    listing: ReviewIndex
    labels: list[str]
    series: bool = False

    @property
    def memory_key(self) -> str:
        return f"series:{self.ident}" if self.series else self.ident

    def record_for(self, path: str) -> TaskRecord:
        """The task whose prediction the image at ``path`` is judged as; 404 outside the scope."""
        if not self.series:
            return next(iter(self.records.values()))
        item = self.listing.find(path)
        if item is None or item.task_id not in self.records:
            raise HTTPException(404, f"{path[:200]!r} is not an image of series {self.ident}")
        return self.records[item.task_id]


def task_scope(ctx: WebContext, session: UserSession, task_id: str) -> tuple[TaskClient, Scope]:
    client, record = ctx.task_of(session, task_id)
    scope = Scope(record.task_id, f"/tasks/{record.task_id}/review", {record.task_id: record},
                  ctx.review_list(session, client, record), ctx.labels(session, client, record))
    return client, scope


def series_scope(ctx: WebContext, session: UserSession, series_id: str) -> tuple[TaskClient, Scope]:
    """Every task of the series the user can read; the classes of their models (one model, as a
    rule: a series runs one task config), in the order their labels files give them."""
    if not TASK_ID_RE.fullmatch(series_id):
        raise HTTPException(404, f"{series_id!r} is not a series id (the id of its first task)")
    client = ctx.client(session)
    _, records = client.series(series_id)
    if not records:
        raise HTTPException(404, f"no task of series {series_id} is visible to {session.user}")
    labels: dict[str, None] = {}
    for record in records:
        labels.update(dict.fromkeys(ctx.labels(session, client, record)))
    scope = Scope(series_id, f"/series/{series_id}/review", {r.task_id: r for r in records},
                  ctx.series_review_list(session, client, records), list(labels), series=True)
    return client, scope


def memory(session: UserSession, key: str) -> ReviewMemory:
    return session.reviews.setdefault(key, ReviewMemory())


def current_item(queue: list[ReviewItem], mem: ReviewMemory, at: str) -> ReviewItem | None:
    """The image to show: the one asked for (``at``), else the first neither decided nor skipped."""
    if at:
        for item in queue:
            if item.path == at:
                return item
    return next((i for i in queue if not i.decided and i.path not in mem.skipped), None)


def _page(ctx: WebContext, request: Request, session: UserSession, scope: Scope) -> Response:
    """One image of the queue, large, with its top classes, its burst and the decision keys."""
    view, error = QueueView.parse(request.query_params)
    listing = scope.listing
    queue = listing.queue(view.flt, view.order)
    mem = memory(session, scope.memory_key)
    item = current_item(queue, mem, view.at)
    burst = listing.burst(item, view.gap) if item is not None else ()
    decided = sum(1 for i in queue if i.decided)
    skipped = sum(1 for i in queue if i.path in mem.skipped and not i.decided) if mem.skipped else 0
    return ctx.render(request, "review.html", {
        "scope": scope, "record": next(iter(scope.records.values())),
        "item": item, "burst": burst, "labels": scope.labels, "keys": list(enumerate(scope.labels, 1)),
        "view": view, "error": error, "orders": ORDERS, "cameras": listing.cameras,
        "decided": decided, "total": len(queue), "skipped": skipped, "left": len(queue) - decided - skipped,
        "can_undo": bool(mem.steps), "here": view.url(scope.base),
        "input_root": listing.input_collection.rstrip("/"),
    }, session=session)


def review_page(ctx: WebContext, request: Request) -> Response:
    """A task's queue."""
    session = ctx.user_session(request)
    _, scope = task_scope(ctx, session, request.path_params["task_id"])
    return _page(ctx, request, session, scope)


def series_review_page(ctx: WebContext, request: Request) -> Response:
    """A series' queue: the images of every task of it the user can read, least certain first."""
    session = ctx.user_session(request)
    _, scope = series_scope(ctx, session, request.path_params["series_id"])
    return _page(ctx, request, session, scope)


def _action(form: Any, labels: list[str]) -> tuple[str, str]:
    """(action, class) from the pressed button or the typed key: ``confirm``, ``skip``,
    ``undo`` or ``correct`` (with the class)."""
    action = str(form.get("action", ""))
    if action.startswith("class:"):
        return "correct", action[len("class:"):]
    if action in ("confirm", "skip", "undo"):
        return action, ""
    key = str(form.get("key", "")).strip()
    if not key:
        raise HTTPException(400, "type a key first: a class's number, c (confirm), s (skip) or u (undo)")
    if key.lower() in COMMANDS:
        return COMMANDS[key.lower()], ""
    if key.isdigit() and 1 <= int(key) <= len(labels):
        return "correct", labels[int(key) - 1]
    named = [label for label in labels if label.lower() == key.lower()]
    if named:
        return "correct", named[0]
    raise HTTPException(
        400, f"key {key[:40]!r} means nothing here: 1 to {len(labels)} for a class, c (confirm), s (skip), u (undo)"
    )


def _selection(form: Any, fallback: str) -> list[str]:
    paths = [str(p) for p in form.getlist("paths")] or ([fallback] if fallback else [])
    if not paths:
        raise HTTPException(400, "no image chosen: tick at least one image of the burst")
    if len(paths) > MAX_SELECTION:
        raise HTTPException(400, f"at most {MAX_SELECTION} images per decision, not {len(paths)}")
    return list(dict.fromkeys(paths))


def _decide(ctx: WebContext, session: UserSession, client: TaskClient, scope: Scope, paths: list[str],
            chosen: str) -> list[tuple[str, Validation | None]]:
    """Write the verdict on every path, each as its own task's prediction (``chosen`` '' =
    confirm each image's own prediction); every image is checked first, so a refusal writes
    nothing."""
    checked = []
    for path in paths:
        record = scope.record_for(path)
        query, obj, mine = ctx.task_image(session, client, record, path)
        checked.append((path, record, query, Validation.from_avus(obj.avus), mine[query.class_attribute]))
    lacking = session.grid.paths_lacking_access(paths, AccessLevel.MODIFY)
    if lacking:
        raise AccessDeniedError(
            f"{session.user} may not validate {lacking[0]}" + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else "")
            + ": validating writes AVUs on the image, which needs write access (modify_object); ask its owner for: "
            f"ichmod write {session.user} {lacking[0]}"
        )
    done = []
    for path, record, query, before, predicted in checked:
        verdict = write_validation(session, record, query, path, chosen or predicted)
        done.append((path, before))
        ctx.note_verdict(session, path, verdict)
    return done


def _undo(ctx: WebContext, session: UserSession, client: TaskClient, scope: Scope, mem: ReviewMemory) -> tuple[str, str]:
    """Take the last step back: a skip is forgotten, a decision's images get their earlier
    verdict again (or none). (flash, path to show)."""
    if not mem.steps:
        raise HTTPException(400, "nothing to undo in this session")
    kind, changes = mem.steps.pop()
    if kind == "skip":
        for path, _ in changes:
            mem.skipped.discard(path)
        return f"{posixpath.basename(changes[0][0])}: no longer skipped", changes[0][0]
    for path, before in changes:
        ctx.task_image(session, client, scope.record_for(path), path)
        if not session.grid.has_access(path, AccessLevel.MODIFY):
            raise AccessDeniedError(f"{session.user} may no longer change {path}; its verdict stays")
        if before is None:
            session.grid.set_avus(EntityType.DATA_OBJECT, path, [], clear=VALIDATION_ATTRIBUTES)
        else:
            session.grid.set_avus(EntityType.DATA_OBJECT, path, before.avus(), clear=VALIDATION_ATTRIBUTES)
        ctx.note_verdict(session, path, before)
    what = posixpath.basename(changes[0][0]) if len(changes) == 1 else f"{len(changes)} images"
    return f"{what}: decision undone", changes[0][0]


def _decided(ctx: WebContext, request: Request, form: Any, session: UserSession, client: TaskClient,
             scope: Scope) -> Response:
    """A decision on the shown image (or the ticked images of its burst), a skip, or an undo."""
    back = safe_next(str(form.get("next", "")), scope.base)
    labels = scope.labels
    try:
        action, chosen = _action(form, labels)
    except HTTPException as exc:  # a mistyped key: say so on the same image
        request.session["flash_error"] = str(exc.detail)
        path = str(form.get("path", ""))
        return RedirectResponse(back + (("&" if "?" in back else "?") + urlencode({"at": path}) if path else ""), 303)
    mem = memory(session, scope.memory_key)
    show = ""
    if action == "undo":
        flash, show = _undo(ctx, session, client, scope, mem)
    else:
        paths = _selection(form, str(form.get("path", "")))
        if action == "skip":
            fresh = [p for p in paths if p not in mem.skipped]
            mem.skipped.update(paths)
            mem.push("skip", [(p, None) for p in fresh or paths])
            flash = f"{posixpath.basename(paths[0])}: skipped" if len(paths) == 1 else f"{len(paths)} images skipped"
        else:
            if action == "correct" and (not chosen or (labels and chosen not in labels)):
                raise HTTPException(400, f"choose one of the model's classes, not {chosen[:80]!r}")
            mem.push("decide", _decide(ctx, session, client, scope, paths, chosen))
            word = f"corrected to {chosen}" if action == "correct" else "confirmed"
            flash = (f"{posixpath.basename(paths[0])}: {word}" if len(paths) == 1 else f"{len(paths)} images: {word}")
    request.session["flash"] = flash
    if show:
        back += ("&" if "?" in back else "?") + urlencode({"at": show})
    return RedirectResponse(back, 303)


def decide(ctx: WebContext, request: Request, form: Any) -> Response:
    """A decision in a task's queue."""
    session = ctx.user_session(request)
    ctx.check_csrf(request, form, session)
    client, scope = task_scope(ctx, session, request.path_params["task_id"])
    return _decided(ctx, request, form, session, client, scope)


def series_decide(ctx: WebContext, request: Request, form: Any) -> Response:
    """A decision in a series' queue: each image written as its own task's prediction."""
    session = ctx.user_session(request)
    ctx.check_csrf(request, form, session)
    client, scope = series_scope(ctx, session, request.path_params["series_id"])
    return _decided(ctx, request, form, session, client, scope)


ROUTES = [
    Route("/tasks/{task_id}/review", in_thread(review_page)),
    Route("/tasks/{task_id}/review", posted(decide), methods=["POST"]),
    Route("/series/{series_id}/review", in_thread(series_review_page)),
    Route("/series/{series_id}/review", posted(series_decide), methods=["POST"]),
]
