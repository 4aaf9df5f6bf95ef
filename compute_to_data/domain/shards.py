"""TODO docstring"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import DataObject
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.records import TaskRecord

#: errors of failed shards quoted in the task's c2d::error (the rest are counted)
_ERRORS_SHOWN = 3


@dataclass(frozen=True)
class ShardSpec:
    """Which shard a run works on."""

    collection: str
    number: int
    total: int

    @property
    def task_collection(self) -> str:
        return posixpath.dirname(posixpath.dirname(self.collection))

    @property
    def name(self) -> str:
        return names.shard_name(self.number)

    @property
    def label(self) -> str:
        """``0003/0020``: the ``c2d::shard`` value."""
        return f"{names.shard_name(self.number)}/{names.shard_name(self.total)}"

    @classmethod
    def of(cls, record: TaskRecord) -> "ShardSpec":
        number, total = parse_shard_label(record.get(names.A_SHARD))
        return cls(record.collection, number, total)


def parse_shard_label(text: str) -> tuple[int, int]:
    number, _, total = text.partition("/")
    if not (number.isdigit() and total.isdigit()):
        raise ComputeToDataError(f"malformed {names.A_SHARD} value {text!r} (expected NNNN/total)")
    return int(number), int(total)


def shards_collection(task_collection: str) -> str:
    return posixpath.join(task_collection, names.SHARDS_COLLECTION)


@dataclass(frozen=True)
class Aggregate:
    """What a task's shards add up to."""

    shards: int
    done: int
    total: int
    images_failed: int
    states: Mapping[str, int] = field(default_factory=dict)

    def count(self, state: TaskState) -> int:
        return int(self.states.get(state.value, 0))

    @property
    def finished(self) -> bool:
        """Every shard in a final state."""
        return self.shards > 0 and sum(self.count(s) for s in TaskState if s.is_final) == self.shards

    @property
    def all_succeeded(self) -> bool:
        return self.shards > 0 and self.count(TaskState.SUCCEEDED) == self.shards

    @property
    def progress(self) -> str:
        return f"{self.done}/{self.total}"

    def describe(self) -> str:
        """``20 shards: 18 succeeded, 1 running, 1 failed``."""
        parts = [f"{self.count(s)} {s.value}" for s in TaskState if self.count(s)]
        return f"{self.shards} shard{'s' if self.shards != 1 else ''}: " + ", ".join(parts)


def aggregate(records: Sequence[TaskRecord]) -> Aggregate:
    done = total = failed = 0
    states: Counter[str] = Counter()
    for record in records:
        progress = record.progress
        inputs = record.int_value(names.A_INPUTS)
        if progress is not None:
            done += progress[0]
            total += max(progress[1], inputs)
        else:
            total += inputs
        failed += record.int_value(names.A_IMAGES_FAILED)
        states[record.state.value if record.state else "unknown"] += 1
    return Aggregate(len(records), done, total, failed, dict(states))


def failure_message(records: Sequence[TaskRecord]) -> str:
    """The task's error when its shards ended and some did not succeed: which, and why."""
    bad = [r for r in records if r.state != TaskState.SUCCEEDED]
    shown = "; ".join(
        f"shard {r.get(names.A_SHARD).partition('/')[0]} on {r.get(names.A_COMPUTE_RESOURCE) or '?'} "
        f"{r.state.value if r.state else 'unknown'}: {r.get(names.A_ERROR) or 'no error recorded'}"
        for r in bad[:_ERRORS_SHOWN]
    )
    more = f"; and {len(bad) - _ERRORS_SHOWN} more" if len(bad) > _ERRORS_SHOWN else ""
    return f"{len(bad)} of {len(records)} shards did not succeed ({shown}{more}); resume the task to run them again"


def pages_of(first: list[Sequence[DataObject]], rest: Iterator[Sequence[DataObject]]) -> Iterator[Sequence[DataObject]]:
    """The pages a listing gave so far (buffered while deciding whether to shard), then the rest;
    each buffered page is let go of as it is handed out, so planning never holds more than a page."""
    while first:
        yield first.pop(0)
    yield from rest


@dataclass
class Refusals:
    """Paths lacking a permission, found page by page: the first few by name, the rest counted."""

    shown: list[str] = field(default_factory=list)
    count: int = 0
    limit: int = 5

    def add(self, paths: Sequence[str]) -> None:
        self.count += len(paths)
        self.shown.extend(paths[: max(0, self.limit - len(self.shown))])

    def text(self) -> str:
        more = f" and {self.count - len(self.shown)} more" if self.count > len(self.shown) else ""
        return ", ".join(self.shown) + more
