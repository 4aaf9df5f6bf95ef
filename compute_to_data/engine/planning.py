"""Shard planning and placement: pure functions over what a listing says, no catalog calls.

A task larger than one shard (``compute.shard_size``, default 5,000 images, capped by the
settings) is split into shards as the listing's pages come, so planning never holds the whole
task: :class:`ShardPlanner` keeps at most the shard being filled and the sub-collection being
read, writes each closed shard's inputs (one relative path per line) to a file of its own and
remembers only a :class:`ShardDraft` (counts and bytes per resource) of it.

Grouping: the objects of one sub-collection stay in one shard unless the sub-collection is
larger than a shard (then it is cut into full shards, in name order); consecutive small
sub-collections share a shard while they fit.

Placement (:func:`place_shards`): without ``spread`` each shard goes to the resource holding
most of its bytes (data locality: the compute moves, the images do not). With ``spread`` (or
``compute.resources``) the shards are balanced over the resources: each resource takes a share
of the images in proportion to its capacity (``COMPUTE_RESOURCE_MAX_TASKS`` x
max(1, ``COMPUTE_RESOURCE_GPUS``)), and within that share a shard still goes where most of its
bytes are. Among equally good resources the one with a free slot wins (its load: tasks and
shards queued or running there that the caller can see, plus this plan's own shards), then the
less loaded one for its capacity, then the name, so a plan is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import DataObject, Resource


@dataclass(frozen=True)
class Candidate:
    """What planning keeps of one input: its path relative to the input collection, the
    collection it lies in, its size, and the resources holding a good replica of it."""

    relative: str
    collection: str
    size: int
    resources: tuple[str, ...]

    @classmethod
    def of(cls, obj: DataObject, relative: str) -> "Candidate":
        return cls(relative, obj.collection, obj.size, tuple(sorted({r.resource_name for r in obj.replicas if r.good})))


@dataclass
class ShardDraft:
    """A planned shard: how many images, how many bytes, and how many of them each resource holds."""

    number: int
    count: int = 0
    size: int = 0
    bytes_on: dict[str, int] = field(default_factory=dict)
    first: str = ""
    last: str = ""

    def add(self, candidate: Candidate) -> None:
        if not self.count:
            self.first = candidate.relative
        self.last = candidate.relative
        self.count += 1
        self.size += candidate.size
        for resource in candidate.resources:
            self.bytes_on[resource] = self.bytes_on.get(resource, 0) + candidate.size


class ShardPlanner:
    """Cuts a stream of candidates (collection by collection) into shards of at most ``shard_size``.

    Each closed shard's relative paths go to ``<directory>/NNNN.txt`` at once; memory holds at
    most the open shard and the sub-collection being read (2 x ``shard_size`` candidates).
    """

    def __init__(self, shard_size: int, directory: Path) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, not {shard_size}")
        self.shard_size = shard_size
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.drafts: list[ShardDraft] = []
        self._open: list[Candidate] = []
        self._group: list[Candidate] = []
        self._group_collection: str | None = None
        self.total = 0

    def add(self, candidate: Candidate) -> None:
        if candidate.collection != self._group_collection:
            self._close_group()
            self._group_collection = candidate.collection
        self._group.append(candidate)
        self.total += 1
        if len(self._group) >= self.shard_size:  # a sub-collection larger than a shard: cut it
            self._emit_open()
            self._emit(self._group)
            self._group = []

    def add_all(self, candidates: Iterable[Candidate]) -> None:
        for candidate in candidates:
            self.add(candidate)

    def finish(self) -> list[ShardDraft]:
        self._close_group()
        self._emit_open()
        return self.drafts

    def inputs_file(self, number: int) -> Path:
        return self.directory / f"{names.shard_name(number)}.txt"

    def _close_group(self) -> None:
        if not self._group:
            return
        if len(self._open) + len(self._group) > self.shard_size:
            self._emit_open()
        self._open.extend(self._group)
        self._group = []

    def _emit_open(self) -> None:
        if self._open:
            self._emit(self._open)
            self._open = []

    def _emit(self, candidates: Sequence[Candidate]) -> None:
        draft = ShardDraft(len(self.drafts) + 1)
        with open(self.inputs_file(draft.number), "w", encoding="utf-8") as out:
            for candidate in candidates:
                draft.add(candidate)
                out.write(candidate.relative + "\n")
        self.drafts.append(draft)


def read_inputs_text(text: str) -> list[str]:
    """The relative paths of a shard's ``inputs.txt`` (one per line, blank lines ignored)."""
    return [line for line in text.splitlines() if line.strip()]


# --- placement ---------------------------------------------------------------------------------------
def capacity(resource: Resource, default_max_tasks: int = 1) -> int:
    """How many runs a resource takes at once, weighted by its GPUs: MAX_TASKS x max(1, GPUS)."""
    return max(1, resource.avu_int(names.MAX_TASKS_ATTRIBUTE, default_max_tasks)) * max(
        1, resource.avu_int(names.GPUS_ATTRIBUTE, 0))


def tie_key(resource: Resource, load: Mapping[str, int], slots: int) -> tuple[bool, float]:
    """Among resources equally good for locality: one with a free slot first, then the less loaded."""
    busy = load.get(resource.name, 0)
    return busy >= slots, busy / slots


def place_shards(
    drafts: Sequence[ShardDraft],
    resources: Sequence[Resource],
    *,
    spread: bool = False,
    load: Mapping[str, int] | None = None,
    default_max_tasks: int = 1,
) -> list[str]:
    """The resource of each shard (in the drafts' order); see the module docstring."""
    if not resources:
        raise ValueError("no resource to place shards on")
    ordered = sorted(resources, key=lambda r: r.name)
    slots = {r.name: capacity(r, default_max_tasks) for r in ordered}
    busy = {r.name: int((load or {}).get(r.name, 0)) for r in ordered}
    assigned = {r.name: 0 for r in ordered}
    total = sum(d.count for d in drafts)
    weight = sum(slots.values())
    share = {name: total * slots[name] / weight for name in slots}
    placed: list[str] = []
    for draft in drafts:
        def key(r: Resource, draft: ShardDraft = draft) -> tuple:
            return (-draft.bytes_on.get(r.name, 0), *tie_key(r, busy, slots[r.name]), r.name)

        choices = sorted(ordered, key=key)
        if spread:
            fitting = [r for r in choices if assigned[r.name] == 0 or assigned[r.name] + draft.count <= share[r.name]]
            if fitting:
                choices = fitting
            else:  # every share is full (shards are not divisible): the least filled for its capacity
                choices = sorted(ordered, key=lambda r: (assigned[r.name] / slots[r.name], *key(r)))
        chosen = choices[0].name
        placed.append(chosen)
        assigned[chosen] += draft.count
        busy[chosen] += 1
    return placed
