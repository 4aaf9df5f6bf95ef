"""Reviewing a task's predictions: the images in review order, bursts, and agreement figures.

The people who validate camera-trap predictions look at thousands of frames a week, so the
report browser offers them the least certain predictions first (best score ascending, or the
smallest margin between the best two classes), and groups images into *bursts* as camera-trap
tools do (Wildlife Insights, Timelapse): a camera fires several frames at once, and a burst is
one event. A camera is a sub-collection; a burst is a run of its images whose EXIF times
(``exif::datetime``, when something recorded it) are within ``gap`` seconds of the previous one.
An image without an EXIF date is a burst of its own, in file order.

Everything here reads the catalog only (the AVUs the images carry and the task's predictions
file); decisions are written by the web app as validations (conventions: ``validated*``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import posixpath
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from compute_to_data.client.predictions import TaskPredictions
from compute_to_data.client.tasks import TaskClient
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import VALIDATION_ATTRIBUTES, AccessLevel, PredictionQuery, Validation
from compute_to_data.domain.errors import ConfigError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.grid.base import Grid

#: images read per catalog query when a task's review list is built.
PAGE = 5000
DEFAULT_BURST_GAP_SECONDS = 60
ORDERS = ("score", "margin")


def parse_exif_time(value: str) -> datetime | None:
    """``2026:11:22 02:03:04`` (EXIF) or ISO 8601, as a naive datetime (camera time; an ISO time
    with a zone is taken in UTC); None when unreadable."""
    text = value.strip()
    if not text:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], pattern)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass(frozen=True)
class ReviewItem:
    """One image carrying the task's prediction, with what a reviewer needs to judge it."""

    path: str
    predicted_class: str
    score: float | None
    #: the model's best classes, best first (from the task's predictions file; may be empty).
    top: tuple[tuple[str, float], ...] = ()
    #: the verdict the image carries (for this task's prediction or an earlier one), if any.
    validation: Validation | None = None
    taken: datetime | None = None
    latitude: str = ""
    longitude: str = ""
    #: the task whose prediction this is (a series' queue holds several tasks' images)
    task_id: str = ""

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def camera(self) -> str:
        """The sub-collection the image is in (a camera, for camera traps)."""
        return posixpath.dirname(self.path)

    @property
    def margin(self) -> float | None:
        """Best score minus the runner-up's (small: the model hesitated between two classes)."""
        if len(self.top) >= 2:
            return self.top[0][1] - self.top[1][1]
        return None

    def decided_for(self, task_id: str) -> bool:
        return self.validation is not None and self.validation.is_for(task_id)

    @property
    def decided(self) -> bool:
        """A person gave a verdict on this prediction (its own task's)."""
        return self.decided_for(self.task_id)


def load_items(grid: Grid, query: PredictionQuery, predictions: TaskPredictions | None = None) -> list[ReviewItem]:
    """Every image carrying the task's prediction (``query``), with its verdict and EXIF AVUs, and
    its top classes from the task's predictions file when given; sorted by path."""
    wanted = dataclasses.replace(query, extra_attributes=(*VALIDATION_ATTRIBUTES, *names.EXIF_ATTRIBUTES))
    listed = predictions.find if predictions is not None else (lambda path: None)
    items: list[ReviewItem] = []
    offset = 0
    while True:
        page = grid.query_predictions(wanted, offset, PAGE)
        for found in page.items:
            in_file = listed(found.path)
            items.append(ReviewItem(
                found.path, found.predicted_class, found.score,
                top=in_file.top if in_file is not None and in_file.predicted_class == found.predicted_class else (),
                validation=found.validation,
                taken=parse_exif_time(found.avu_value(names.EXIF_DATETIME)),
                latitude=found.avu_value(names.EXIF_LATITUDE), longitude=found.avu_value(names.EXIF_LONGITUDE),
                task_id=query.task_id,
            ))
        if not page.has_more or not page.items:
            break
        offset += len(page.items)
    return items


def readable_items(grid: Grid, query: PredictionQuery, predictions: TaskPredictions | None = None) -> list[ReviewItem]:
    """:func:`load_items` less the images the user may not read: what the review queue, the task
    page's agreement figures and ``c2d status`` all count (a zone's queries list only readable
    objects anyway; the check makes every catalog agree)."""
    if not query.input_collection:
        return []
    items = load_items(grid, query, predictions)
    hidden = set(grid.paths_lacking_access([i.path for i in items], AccessLevel.READ)) if items else set()
    return [i for i in items if i.path not in hidden]


def series_items(per_task: Iterable[Sequence[ReviewItem]]) -> list[ReviewItem]:
    """The review items of a series' tasks (given oldest task first) as one list, by path. An
    image listed by two of them (a later task's prediction replaced an earlier one's) is
    reviewed once, as the newest task's prediction: the one it carries now."""
    by_path: dict[str, ReviewItem] = {}
    for items in per_task:
        for item in items:
            by_path[item.path] = item
    return sorted(by_path.values(), key=lambda item: item.path)


# --- the queue ------------------------------------------------------------------------------------------
def review_order(items: Iterable[ReviewItem], by: str = "score") -> list[ReviewItem]:
    """Least certain first: by best score ascending, or (``margin``) by the margin between the
    best two classes ascending (an image without a runner-up by its score). Ties in path order."""
    if by not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, not {by!r}")

    def certainty(item: ReviewItem) -> float:
        value = item.margin if by == "margin" and item.margin is not None else item.score
        return -1.0 if value is None else value  # no score at all: the least certain there is

    return sorted(items, key=lambda item: (certainty(item), item.path))


@dataclass(frozen=True)
class ReviewFilter:
    """Which images to review: a camera (sub-collection), an EXIF date range, a predicted class."""

    camera: str = ""
    since: date | None = None
    until: date | None = None
    predicted_class: str = ""

    def matches(self, item: ReviewItem) -> bool:
        if self.camera and item.camera != self.camera:
            return False
        if self.predicted_class and item.predicted_class != self.predicted_class:
            return False
        if self.since is not None or self.until is not None:
            if item.taken is None:
                return False  # a date range asks for dated images
            day = item.taken.date()
            if (self.since is not None and day < self.since) or (self.until is not None and day > self.until):
                return False
        return True

    @staticmethod
    def parse_day(text: str, field_name: str) -> date | None:
        text = text.strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{field_name} must be a date like 2026-11-22, not {text!r}") from None


def bursts(items: Sequence[ReviewItem], gap_seconds: float = DEFAULT_BURST_GAP_SECONDS) -> list[tuple[ReviewItem, ...]]:
    """The images grouped into bursts: per camera, in EXIF time order (then file order), a new
    burst wherever the time since the previous image exceeds ``gap_seconds``; an image without
    an EXIF date is a burst of its own."""
    if not gap_seconds >= 0 or math.isinf(gap_seconds):
        raise ConfigError(f"the burst gap must be a number of seconds >= 0, not {gap_seconds!r}")
    by_camera: dict[str, list[ReviewItem]] = {}
    for item in items:
        by_camera.setdefault(item.camera, []).append(item)
    groups: list[tuple[ReviewItem, ...]] = []
    for camera in sorted(by_camera):
        ordered = sorted(by_camera[camera], key=lambda i: (i.taken is None, i.taken or datetime.min, i.path))
        current: list[ReviewItem] = []
        for item in ordered:
            previous = current[-1] if current else None
            if previous is not None and (item.taken is None or previous.taken is None
                                         or (item.taken - previous.taken).total_seconds() > gap_seconds):
                groups.append(tuple(current))
                current = []
            current.append(item)
        if current:
            groups.append(tuple(current))
    return groups


class ReviewIndex:
    """A task's review items with the orders, filters and bursts the queue asks for, each
    computed once (a queue of 20,000 images is sorted once, not at every decision). Decisions
    replace an item's verdict (:meth:`update`); orders and bursts do not depend on verdicts."""

    def __init__(self, input_collection: str, items: list[ReviewItem]) -> None:
        self.input_collection = input_collection
        self.items = items
        self._position = {item.path: n for n, item in enumerate(items)}
        self._lock = threading.Lock()
        self._queues: dict[tuple[ReviewFilter, str], list[int]] = {}
        self._bursts: dict[float, dict[str, tuple[int, ...]]] = {}

    def update(self, path: str, verdict: Validation | None) -> None:
        with self._lock:
            n = self._position.get(path)
            if n is not None:
                self.items[n] = dataclasses.replace(self.items[n], validation=verdict)

    def find(self, path: str) -> ReviewItem | None:
        """The item of the image at ``path`` (current verdict), or None when it is not listed."""
        n = self._position.get(path)
        return self.items[n] if n is not None else None

    @functools.cached_property
    def cameras(self) -> list[str]:
        return sorted({item.camera for item in self.items})

    def queue(self, flt: ReviewFilter, order: str) -> list[ReviewItem]:
        """The filtered items in review order (the order is kept; the items are current)."""
        key = (flt, order)
        with self._lock:
            positions = self._queues.get(key)
        if positions is None:
            ranked = review_order((item for item in self.items if flt.matches(item)), order)
            positions = [self._position[item.path] for item in ranked]
            with self._lock:
                self._queues[key] = positions
                if len(self._queues) > 32:
                    self._queues.pop(next(iter(self._queues)))
        items = self.items
        return [items[n] for n in positions]

    def burst(self, item: ReviewItem, gap_seconds: float = DEFAULT_BURST_GAP_SECONDS) -> tuple[ReviewItem, ...]:
        """The burst ``item`` belongs to, among all the task's images."""
        with self._lock:
            groups = self._bursts.get(gap_seconds)
        if groups is None:
            groups = {}
            for group in bursts(self.items, gap_seconds):
                positions = tuple(self._position[i.path] for i in group)
                for i in group:
                    groups[i.path] = positions
            with self._lock:
                self._bursts[gap_seconds] = groups
                if len(self._bursts) > 8:
                    self._bursts.pop(next(iter(self._bursts)))
        items = self.items
        return tuple(items[n] for n in groups.get(item.path, (self._position[item.path],)))


# --- agreement ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """How the people who validated a task's predictions agreed with the model."""

    images: int
    validated: int
    confirmed: int
    #: (predicted, validated) -> images
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    #: the least certain tenth of the images (by best score), how many of them were validated,
    #: and how many of those the model got wrong.
    decile: int = 0
    decile_validated: int = 0
    decile_wrong: int = 0

    @property
    def share_confirmed(self) -> float | None:
        return self.confirmed / self.validated if self.validated else None

    @property
    def predicted_classes(self) -> list[str]:
        return sorted({p for p, _ in self.confusion})

    @property
    def validated_classes(self) -> list[str]:
        return sorted({v for _, v in self.confusion})

    def as_dict(self) -> dict[str, object]:
        """The figures as ``c2d status --json`` prints them."""
        return {
            "images": self.images, "validated": self.validated, "confirmed": self.confirmed,
            "share_confirmed": None if self.share_confirmed is None else round(self.share_confirmed, 4),
            "confusion": [{"predicted": p, "validated": v, "images": n} for (p, v), n in sorted(self.confusion.items())],
            "least_certain_decile": {"images": self.decile, "validated": self.decile_validated, "wrong": self.decile_wrong},
        }

    def describe(self) -> str:
        if not self.validated:
            return f"none of the {self.images} images validated yet"
        share = f"{100 * (self.share_confirmed or 0):.0f}%"
        text = f"{self.validated} of {self.images} images validated, {self.confirmed} confirmed ({share})"
        if self.decile_validated:
            text += (f"; of the {self.decile} least certain, {self.decile_validated} validated and "
                     f"{self.decile_wrong} of those wrong")
        return text


def agreement(items: Sequence[ReviewItem], task_id: str) -> Agreement:
    """Agreement figures over the verdicts given for this task's predictions."""
    verdicts = [(i, i.validation) for i in items if i.decided_for(task_id) and i.validation is not None]
    confusion = Counter((i.predicted_class, v.validated_class) for i, v in verdicts)
    confirmed = sum(n for (p, v), n in confusion.items() if p == v)
    decile = math.ceil(len(items) / 10) if items else 0
    least = review_order(items, "score")[:decile]
    judged = [i for i in least if i.decided_for(task_id) and i.validation is not None]
    wrong = sum(1 for i in judged if i.validation is not None and i.validation.validated_class != i.predicted_class)
    return Agreement(len(items), len(verdicts), confirmed, dict(confusion), decile, len(judged), wrong)


def task_agreement(client: TaskClient, record: TaskRecord, items: Sequence[ReviewItem] | None = None) -> Agreement | None:
    """The agreement figures of an ended task, as the task page and ``c2d status`` show them;
    None while it has not ended (people validate what a task tagged, and a running task's list
    of images changes at every part). ``items``: the task's review items when already read (the
    report browser keeps them per session), else read now."""
    if record.state is None or not record.state.is_final:
        return None
    if items is None:
        items = readable_items(client.grid, client.prediction_query(record))
    return agreement(items, record.task_id)
