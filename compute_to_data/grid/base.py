"""The grid port: the iRODS operations a compute-to-data task needs, in iRODS terms.

Task logic talks only to :class:`Grid`; adapters implement it on top of the Python rule engine
plugin (inside the server), python-irodsclient (on a client) or the embedded LocalGrid (for
development and tests). Nothing here needs rodsadmin rights when the caller is an ordinary user.

Paths are logical iRODS paths (``/zone/home/alice/x.png``). Every adapter raises the project's
typed errors (:mod:`compute_to_data.errors`), never its library's own exceptions.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from pathlib import Path

from .. import conventions as names
from .irods_errors import USER_INPUT_PATH_ERR

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
            from ..errors import GridError

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
    AVUs (:mod:`compute_to_data.conventions`); only objects under ``input_collection`` count, so a stray AVU with
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
    from ..errors import GridError

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


class Grid(ABC):
    """Port to a data grid. One instance acts for one user (the caller)."""

    #: registry name (``local``, ``rule_engine``, ``irods``).
    kind: str = "abstract"
    #: whether one instance may be called from several threads at once (LocalGrid: one catalog
    #: connection per thread). The rule engine's ``callback`` must never be: parallel work there
    #: is done by separate rules.
    concurrent_calls: bool = False
    #: whether :meth:`replicate_collection` is one catalog operation (``msiCollRepl``) rather
    #: than this port's loop over the objects, so that it is worth planning for.
    replicates_collections: bool = False

    # --- identity ---------------------------------------------------------------------------------
    @property
    @abstractmethod
    def zone(self) -> str:
        """Zone name, the first element of every logical path."""

    @property
    @abstractmethod
    def user(self) -> str:
        """The client user every operation is performed as."""

    def home(self) -> str:
        return f"/{self.zone}/home/{self.user}"

    # --- resources ---------------------------------------------------------------------------------
    @abstractmethod
    def find_resources(self, attribute: str, value: str | None = None) -> list[Resource]:
        """Resources carrying ``attribute`` (with ``value`` if given), with all their AVUs, by name."""

    @abstractmethod
    def get_resource(self, name: str) -> Resource:
        """One resource with its AVUs; ObjectNotFoundError if there is none by that name."""

    # --- namespace -------------------------------------------------------------------------------
    @abstractmethod
    def collection_exists(self, path: str) -> bool: ...

    @abstractmethod
    def data_object_exists(self, path: str) -> bool: ...

    @abstractmethod
    def get_data_object(self, path: str, avu_attributes: Sequence[str] = ()) -> DataObject:
        """One object with its replicas (and those of its AVUs named in ``avu_attributes``)."""

    @abstractmethod
    def list_data_objects(
        self, collection: str, recursive: bool = False, avu_attributes: Sequence[str] = ()
    ) -> list[DataObject]:
        """All objects the caller can see in ``collection`` with their replicas, sorted by path.

        ``avu_attributes`` names the AVUs to return with each object (e.g. earlier predictions);
        adapters fetch them in bulk, never with one query per object.
        """

    @abstractmethod
    def list_collections(self, parent: str) -> list[str]:
        """Direct sub-collections of ``parent`` (paths, sorted)."""

    # --- permissions -----------------------------------------------------------------------------
    @abstractmethod
    def has_access(self, path: str, level: AccessLevel) -> bool:
        """Whether the caller holds at least ``level`` on a data object or collection.

        ObjectNotFoundError when the path does not exist or the caller cannot see it.
        """

    def paths_lacking_access(self, paths: Iterable[str], level: AccessLevel) -> list[str]:
        """Paths on which the caller lacks ``level``; adapters may answer with one bulk query."""
        return [p for p in paths if not self.has_access(p, level)]

    # --- changes ---------------------------------------------------------------------------------
    @abstractmethod
    def replicate(self, path: str, resource: str) -> None:
        """Make a good replica of ``path`` on ``resource`` (no-op when one is there)."""

    def replicate_collection(self, collection: str, resource: str) -> None:
        """Make a good replica on ``resource`` of every object under ``collection``, recursively.

        This default replicates the objects one by one; the rule-engine adapter makes it one
        ``msiCollRepl`` call (15 objects/s against 13 for one call per object on the measured zone).
        """
        for obj in self.list_data_objects(collection, recursive=True):
            if obj.good_replica_on(resource) is None:
                self.replicate(obj.path, resource)

    @abstractmethod
    def create_collection(self, path: str) -> None:
        """Create ``path`` and missing parents; no error if it exists."""

    @abstractmethod
    def put_file(self, local_path: Path, logical_path: str, resource: str, overwrite: bool = False) -> DataObject:
        """Bring a file produced on the resource's host into the catalog, owned by the caller."""

    @abstractmethod
    def apply_metadata(self, operations: Sequence[MetadataOperation]) -> None:
        """Apply AVU operations; all-or-nothing for each entity at the least.

        LocalGrid applies the whole sequence in one transaction. The rule-engine adapter uses
        ``msi_atomic_apply_metadata_operations`` once per entity. Callers order operations so a
        partially applied sequence still leaves every entity complete or untouched.
        """

    @abstractmethod
    def get_avus(self, entity_type: EntityType, name: str) -> list[AVU]: ...

    @abstractmethod
    def read_data_object(self, path: str, max_bytes: int = 16 * 1024 * 1024) -> bytes:
        """Content of a small object (a task config, a labels file)."""

    @abstractmethod
    def find_collections_with_avu(
        self, attribute: str, value: str | None = None, under: str | None = None
    ) -> list[CollectionAVUs]:
        """Collections carrying ``attribute`` (=``value``), optionally under a path, with all
        their AVUs (used to list tasks by their ``c2d::`` AVUs)."""

    # --- helpers built on the primitives ----------------------------------------------------------
    def set_avus(
        self, entity_type: EntityType, name: str, avus: Sequence[AVU], clear: Iterable[str] = ()
    ) -> None:
        """Make ``avus`` the only values of their attributes, and drop every value of the
        attributes in ``clear``, in one atomic batch (iRODS ``set`` semantics for many AVUs)."""
        named = {a.attribute for a in avus} | set(clear)
        current = [a for a in self.get_avus(entity_type, name) if a.attribute in named]
        operations = [MetadataOperation("remove", entity_type, name, a) for a in current if a not in avus]
        operations += [MetadataOperation("add", entity_type, name, a) for a in avus if a not in current]
        if operations:
            self.apply_metadata(operations)

    def iter_data_objects(
        self,
        collection: str,
        recursive: bool = False,
        avu_attributes: Sequence[str] = (),
        page_size: int = LISTING_PAGE_SIZE,
    ) -> Iterator[list[DataObject]]:
        """What :meth:`list_data_objects` returns, in pages of at most ``page_size`` objects.

        Planning a task of a million images must never hold them all: callers check
        permissions, select and assign each page as it comes. Pages come collection by
        collection (each collection's objects sorted by name, the collections in the adapter's
        order), so the objects of one sub-collection arrive together. This default walks the
        collections with :meth:`list_collections` and lists each one; adapters page with their
        own queries (LocalGrid by key ranges, the iRODS adapters with one listing per
        collection, which bounds memory by the largest single collection).
        """
        check_page_size(page_size)
        pending = [collection]
        while pending:
            current = pending.pop(0)
            yield from in_pages(self.list_data_objects(current, False, avu_attributes), page_size)
            if recursive:
                pending[:0] = self.list_collections(current)

    def add_new_avus(self, entity_type: EntityType, avus_by_entity: Mapping[str, Sequence[AVU]]) -> None:
        """Add AVUs to entities that carry none of them yet (fast path for tagging many images).

        All or nothing per entity, like :meth:`apply_metadata`; the caller guarantees that no
        entity already has one of these AVUs (e.g. no earlier prediction). This default is one
        ``apply_metadata`` batch; the rule-engine adapter overrides it with cheaper catalog calls
        (measured ~300 objects/s against ~54 for atomic batches on iRODS 5.0.2).
        """
        operations = [
            MetadataOperation("add", entity_type, name, avu) for name, avus in avus_by_entity.items() for avu in avus
        ]
        if operations:
            self.apply_metadata(operations)

    # --- optional: a task's predictions, paginated (web app, ``c2d`` client) -------------------
    def query_predictions(self, query: PredictionQuery, offset: int = 0, limit: int = 50) -> PredictionPage:
        """One page of the images carrying a prediction of ``query.task_id``, sorted by path.

        This default lists the whole input collection (correct on any adapter, but it reads
        every object); LocalGrid and the python-irodsclient adapter override it with queries
        that touch only the page.
        """
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, not {offset} and {limit}")
        matches = self._all_predictions(query)
        items = tuple(matches[offset : offset + limit])
        return PredictionPage(items, offset, limit, offset + limit < len(matches), len(matches))

    def prediction_owners(self, query: PredictionQuery) -> dict[str, str]:
        """Path -> id of the task whose prediction each object under ``query.input_collection``
        carries now (``query.class_attribute`` with units ``c2d:<task id>``), whatever task that is.

        Tells which later task superseded an earlier task's predictions. This default is one
        listing of the input collection (like :meth:`query_predictions`'s default); objects
        whose class AVU names no task are left out.
        """
        owners: dict[str, str] = {}
        for obj in self.list_data_objects(query.input_collection, recursive=True, avu_attributes=(query.class_attribute,)):
            for avu in obj.avus:
                task_id = names.task_id_of_units(avu.units) if avu.attribute == query.class_attribute else None
                if task_id:
                    owners[obj.path] = task_id
                    break
        return owners

    def count_predictions(self, query: PredictionQuery) -> dict[str, int]:
        """Images per predicted class for ``query.task_id`` (class filter and score range apply)."""
        counts: dict[str, int] = {}
        for item in self._all_predictions(query):
            counts[item.predicted_class] = counts.get(item.predicted_class, 0) + 1
        return dict(sorted(counts.items()))

    def _all_predictions(self, query: PredictionQuery) -> list[PredictedObject]:
        units = query.units
        wanted = (query.class_attribute, query.score_attribute, *query.extra_attributes)
        found: list[PredictedObject] = []
        for obj in self.list_data_objects(query.input_collection, recursive=True, avu_attributes=wanted):
            classes = [a.value for a in obj.avus if a.attribute == query.class_attribute and a.units == units]
            if not classes:
                continue
            if query.predicted_class is not None and classes[0] != query.predicted_class:
                continue
            scores = [a.value for a in obj.avus if a.attribute == query.score_attribute and a.units == units]
            score = parse_score(scores[0]) if scores else None
            if not query.score_matches(score):
                continue
            extra = tuple(a for a in obj.avus if a.attribute in query.extra_attributes)
            found.append(PredictedObject(obj.path, classes[0], score, extra))
        found.sort(key=lambda item: item.path)
        return found
