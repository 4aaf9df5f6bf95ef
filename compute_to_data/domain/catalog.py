"""TODO docstring"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import GridError
from compute_to_data.domain.irods_codes import USER_INPUT_PATH_ERR

#: objects per page of :meth:`Grid.iter_data_objects` (a GenQuery page holds 256 rows).
LISTING_PAGE_SIZE = 1000


class AccessLevel(IntEnum):
    """iRODS permission levels; comparable because iRODS numbers them that way."""

    NONE = 0
    READ_METADATA = 1040
    READ = 1050  # read_object
    MODIFY = 1120  # modify_object
    OWN = 1200

    @property
    def irods_name(self) -> str:
        return {
            AccessLevel.NONE: "null",
            AccessLevel.READ_METADATA: "read_metadata",
            AccessLevel.READ: "read_object",
            AccessLevel.MODIFY: "modify_object",
            AccessLevel.OWN: "own",
        }[self]

    @classmethod
    def from_irods(cls, text: str) -> "AccessLevel":
        """Accept the names iRODS 4.2 ("read object"), 4.3/5 ("read_object") and ichmod use."""
        key = text.strip().lower().replace(" ", "_")
        aliases = {
            "null": cls.NONE,
            "read_metadata": cls.READ_METADATA,
            "read": cls.READ,
            "read_object": cls.READ,
            "write": cls.MODIFY,
            "modify": cls.MODIFY,
            "modify_object": cls.MODIFY,
            "own": cls.OWN,
        }
        if key.isdigit():
            return cls(int(key))
        if key not in aliases:
            raise ValueError(f"unknown iRODS access level {text!r}")
        return aliases[key]


class EntityType(str, Enum):
    """What an AVU is attached to; the values are those of msi_atomic_apply_metadata_operations."""

    DATA_OBJECT = "data_object"
    COLLECTION = "collection"
    RESOURCE = "resource"
    USER = "user"

    @property
    def imeta_flag(self) -> str:
        """The ``-d/-C/-R/-u`` flag ``imeta`` and ``msiModAVUMetadata`` use for this type."""
        return {"data_object": "-d", "collection": "-C", "resource": "-R", "user": "-u"}[self.value]


@dataclass(frozen=True)
class AVU:
    attribute: str
    value: str
    units: str = ""


@dataclass(frozen=True)
class MetadataOperation:
    """One ``add`` or ``remove`` of one AVU on one entity (the atomic-metadata vocabulary)."""

    operation: str  # "add" | "remove"
    entity_type: EntityType
    entity_name: str
    avu: AVU

    def __post_init__(self) -> None:
        if self.operation not in ("add", "remove"):
            raise ValueError(f"metadata operation must be 'add' or 'remove', not {self.operation!r}")


@dataclass(frozen=True)
class Resource:
    name: str
    host: str
    vault_path: str
    type_name: str = "unixfilesystem"
    avus: tuple[AVU, ...] = ()

    def avu_values(self, attribute: str) -> list[str]:
        return [a.value for a in self.avus if a.attribute == attribute]

    def avu_int(self, attribute: str, default: int) -> int:
        """An integer resource AVU (``COMPUTE_RESOURCE_GPUS`` ...); ``default`` if absent."""
        values = self.avu_values(attribute)
        if not values:
            return default
        try:
            return int(values[0])
        except ValueError as exc:
            raise GridError(
                f"resource {self.name!r} has {attribute}={values[0]!r}, which is not an integer; "
                f"fix it with: imeta set -R {self.name} {attribute} <N>"
            ) from exc


@dataclass(frozen=True)
class Replica:
    number: int
    resource_name: str
    physical_path: str
    size: int
    checksum: str = ""
    good: bool = True


@dataclass(frozen=True)
class DataObject:
    path: str
    size: int
    checksum: str = ""
    replicas: tuple[Replica, ...] = ()
    avus: tuple[AVU, ...] = ()

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def collection(self) -> str:
        return posixpath.dirname(self.path)

    def good_replica_on(self, resource_name: str) -> Replica | None:
        for replica in self.replicas:
            if replica.resource_name == resource_name and replica.good:
                return replica
        return None

    def avu_values(self, attribute: str) -> list[str]:
        return [a.value for a in self.avus if a.attribute == attribute]


@dataclass(frozen=True)
class CollectionAVUs:
    """A collection with (a selection of) its AVUs, as task listings need them."""

    path: str
    avus: tuple[AVU, ...] = field(default_factory=tuple)

    def first(self, attribute: str, default: str = "") -> str:
        for avu in self.avus:
            if avu.attribute == attribute:
                return avu.value
        return default


@dataclass(frozen=True)
class PredictionQuery:
    """Which images of a task to list: those whose prediction AVU points to ``task_id``.

    A prediction belongs to a task through the units ``c2d:<task id>`` of its class and score
    AVUs (:mod:`compute_to_data.domain.conventions`); only objects under ``input_collection`` count, so a stray AVU with
    forged units elsewhere in the zone cannot smuggle objects into a task's view.
    """

    task_id: str
    input_collection: str
    class_attribute: str = "predictedclass"
    score_attribute: str = "predictedscore"
    #: only images predicted as this class (None: every class).
    predicted_class: str | None = None
    #: inclusive score range; an image without a score AVU is left out when either is set.
    min_score: float | None = None
    max_score: float | None = None
    #: further AVUs returned with each image (e.g. ``validated``, ``validatedclass``).
    extra_attributes: tuple[str, ...] = ()

    @property
    def units(self) -> str:
        """Units of this task's prediction AVUs, and of validations of them."""
        return names.task_units(self.task_id)

    def score_matches(self, score: float | None) -> bool:
        if self.min_score is None and self.max_score is None:
            return True
        if score is None:
            return False
        if self.min_score is not None and score < self.min_score:
            return False
        return self.max_score is None or score <= self.max_score


@dataclass(frozen=True)
class PredictedObject:
    """One image with the prediction a task made for it."""

    path: str
    predicted_class: str
    score: float | None = None
    avus: tuple[AVU, ...] = ()

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def avu_value(self, attribute: str, default: str = "") -> str:
        for avu in self.avus:
            if avu.attribute == attribute:
                return avu.value
        return default

    @property
    def validation(self) -> "Validation | None":
        """The person's verdict among this image's AVUs (ask for them in ``extra_attributes``)."""
        return Validation.from_avus(self.avus)


@dataclass(frozen=True)
class Validation:
    """A person's verdict on one prediction: the ``validated*`` AVUs of an image.

    Each carries the units ``c2d:<task id>`` of the prediction it confirmed or corrected
    (conventions), so after a later task replaced that prediction the verdict is still known to
    be about the earlier one. ``task_id`` is None for verdicts written without it.
    """

    validated_class: str
    validated_by: str
    validated_at: str
    task_id: str | None = None

    def avus(self) -> list[AVU]:
        """The four AVUs to write (``set`` semantics: they replace earlier verdicts)."""
        units = names.task_units(self.task_id) if self.task_id else ""
        return [
            AVU(names.VALIDATED, "true", units),
            AVU(names.VALIDATED_CLASS, self.validated_class, units),
            AVU(names.VALIDATED_BY, self.validated_by, units),
            AVU(names.VALIDATED_AT, self.validated_at, units),
        ]

    def is_for(self, task_id: str) -> bool:
        return self.task_id == task_id

    @classmethod
    def from_avus(cls, avus: Iterable[AVU]) -> "Validation | None":
        found = {a.attribute: a for a in avus if a.attribute in VALIDATION_ATTRIBUTES}
        flag = found.get(names.VALIDATED)
        if flag is None or flag.value != "true":
            return None

        def value(attribute: str) -> str:
            avu = found.get(attribute)
            return avu.value if avu is not None else ""

        return cls(value(names.VALIDATED_CLASS), value(names.VALIDATED_BY), value(names.VALIDATED_AT),
                   names.task_id_of_units(flag.units))


#: the AVUs of a validation, to ask for with a prediction query (``extra_attributes``).
VALIDATION_ATTRIBUTES = (names.VALIDATED, names.VALIDATED_CLASS, names.VALIDATED_BY, names.VALIDATED_AT)


@dataclass(frozen=True)
class PredictionPage:
    """One page of a task's predicted images, sorted by path."""

    items: tuple[PredictedObject, ...]
    offset: int
    limit: int
    has_more: bool
    #: how many images match in all; None when the adapter cannot count them cheaply.
    total: int | None = None


def parse_score(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def check_page_size(page_size: int) -> None:
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, not {page_size}")


def in_pages(objects: Sequence[DataObject], page_size: int) -> Iterator[list[DataObject]]:
    """A collection's listing handed out ``page_size`` objects at a time."""
    for start in range(0, len(objects), page_size):
        yield list(objects[start : start + page_size])


def check_logical_path(path: str, zone: str, user: str = "<you>") -> str:
    """Reject relative, unnormalized or out-of-zone paths with a message naming the path.

    Every adapter checks paths the same way before they reach a catalog query.
    """

    def refuse(why: str) -> GridError:
        return GridError(f"invalid logical path {path!r}: {why}", irods_code=USER_INPUT_PATH_ERR)

    if not isinstance(path, str) or not path:
        raise refuse("it must be a non-empty string")
    if "\x00" in path:
        raise refuse("it contains a NUL character")
    if not path.startswith("/"):
        raise refuse(f"it must be absolute, e.g. /{zone}/home/{user}/...")
    if posixpath.normpath(path) != path or path.startswith("//"):
        raise refuse(
            f"write it normalized, as {posixpath.normpath(path)!r} (no trailing '/', '//', '.' or '..')"
        )
    zone_root = f"/{zone}"
    if path != zone_root and not path.startswith(zone_root + "/"):
        raise GridError(
            f"logical path {path!r} is outside the zone {zone!r}; paths start with {zone_root}/",
            irods_code=USER_INPUT_PATH_ERR,
        )
    return path


#: the comparison operators an ``inputs.where`` condition may use (the task config schema's enum)
CONDITION_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class AVUCondition:
    """One ``inputs.where`` condition: an image qualifies when one of its AVUs named
    ``attribute`` (with ``units``, when given) compares to ``value`` as ``op`` says.

    The type of ``value`` chooses the comparison, so the task config says it and not the data:
    a number compares numerically (an AVU value that is not a number never qualifies, whatever
    the operator); a string compares as text, which orders ISO 8601 timestamps
    (``exif::datetime``) by time. Several values of one attribute: any one qualifying is enough.
    """

    attribute: str
    op: str
    value: str | float
    units: str | None = None

    def __post_init__(self) -> None:
        if self.op not in CONDITION_OPERATORS:
            raise ValueError(f"condition operator must be one of {', '.join(CONDITION_OPERATORS)}, not {self.op!r}")

    @property
    def numeric(self) -> bool:
        return not isinstance(self.value, str)

    def holds(self, value: str, units: str = "") -> bool:
        """Whether one AVU (its value and units) meets the condition."""
        if self.units is not None and units != self.units:
            return False
        if self.numeric:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            if number != number:  # NaN: compares as nothing
                return False
            return _compare(self.op, number, float(self.value))
        return _compare(self.op, value, str(self.value))

    def met_by(self, avus: Iterable[AVU]) -> bool:
        return any(a.attribute == self.attribute and self.holds(a.value, a.units) for a in avus)

    def describe(self) -> str:
        """``detectedclass = 'animal'`` (units shown when given), for messages and listings."""
        shown = repr(self.value) if isinstance(self.value, str) else f"{self.value:g}"
        return f"{self.attribute} {self.op} {shown}" + (f" (units {self.units!r})" if self.units is not None else "")

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "AVUCondition":
        value = doc["value"]
        return cls(doc["attribute"], doc["op"], value if isinstance(value, str) else float(value), doc.get("units"))


def _compare(op: str, left: Any, right: Any) -> bool:
    """``left op right`` for two values of one type (floats, or strings)."""
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def meets_all(avus: Iterable[AVU], conditions: Sequence[AVUCondition]) -> bool:
    """Whether AVUs meet every condition (``inputs.where`` is a conjunction)."""
    held = tuple(avus)
    return all(c.met_by(held) for c in conditions)
