"""Replicating a task's inputs to its compute resource: by the run alone or by several agents.

Replication is bound by catalog transactions, not bytes: on the measured iRODS 5.0.2 zone one
rule replicated 13 objects/s with one ``msiDataObjRepl`` each, 15/s with one ``msiCollRepl``
for a whole collection, and four rules at once 25/s in total (docs/irods-behaviour.md). So a
large task is replicated by several agents at once, the run being one of them:

* the objects are split into one chunk per agent, contiguous in path order (a sub-collection's
  objects stay together), and a collection whose every object is needed (nothing else in it
  would be replicated needlessly) becomes one ``replicate_collection`` call (``msiCollRepl``);
* inside the iRODS server a rule must never call ``callback`` from two threads, so each other
  agent is a rule of its own queued with the delay server (``c2d_replicate_chunk``), told its
  chunk by a *manifest*, a JSON data object in ``<task collection>/staging/``; it records on
  the manifest that it started, its progress and its result (AVUs, :mod:`..conventions`). On a
  grid that may be called from several threads (LocalGrid) the agents are threads;
* the run replicates its own chunk, then supervises, beating the task's heartbeat: a chunk
  whose agent has not started by then (the delay server polls every 30 s by default and may be
  busy), failed, or stopped reporting progress for ``replication.stall_seconds`` is *taken over*
  (marked on the manifest, so a late agent stops) and replicated by the run itself;
* at the end the run checks the catalog and replicates what still lacks a good replica (one
  more try for each), so the outcome never depends on an agent having done its part.

Few objects are replicated by the run alone (``replication.parallel_minimum``): an agent queued
with the delay server would start only when the run has nearly finished anyway.
"""

from __future__ import annotations

import json
import logging
import posixpath
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, DataObject, EntityType
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ComputeToDataError, StagingError
from compute_to_data.domain.settings import Settings
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.store import TaskStateStore

log = logging.getLogger(__name__)

#: measured msiCollRepl speed (objects/s), to size how long a collection call may stay silent
COLLECTION_OBJECTS_PER_SECOND = 15.0
#: an agent reads its markers and reports its progress every this many objects
AGENT_CHECK_EVERY = 25
#: consecutive failed replications after which the run stops trying the rest of a chunk
MAX_CONSECUTIVE_FAILURES = 10
#: above this many parent collections, what lacks a replica is found with one recursive listing
_MAX_PARENT_LISTINGS = 16
#: fewer objects to replicate are not worth a listing of the input collection for whole collections
COLLECTION_PLANNING_MINIMUM = 20


@dataclass(frozen=True)
class Chunk:
    """One agent's share: objects one by one, and whole collections (recursively) at once."""

    index: int
    paths: tuple[str, ...] = ()
    #: (collection, how many needed objects it holds)
    collections: tuple[tuple[str, int], ...] = ()

    @property
    def objects(self) -> int:
        return len(self.paths) + sum(n for _, n in self.collections)

    def to_document(self, resource: str, task_collection: str) -> dict[str, Any]:
        return {"resource": resource, "task": task_collection, "chunk": self.index,
                "paths": list(self.paths), "collections": [[c, n] for c, n in self.collections]}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "Chunk":
        return cls(int(doc.get("chunk", 0)), tuple(str(p) for p in doc.get("paths", [])),
                   tuple((str(c), int(n)) for c, n in doc.get("collections", [])))


def whole_collections(needed: Iterable[str], listing: Iterable[str], top: str, limit: int | None = None) -> list[tuple[str, int]]:
    """Collections under ``top`` (itself included) whose every listed object, recursively, is
    needed: one ``msiCollRepl`` each replicates nothing needlessly. The topmost such collections
    of at most ``limit`` objects (a larger one is replaced by its sub-collections, its own objects
    going one by one); (collection, objects) sorted by path. ``listing``: every object under
    ``top``, recursively, whatever the task's pattern (what msiCollRepl would replicate)."""
    wanted = set(needed)
    total: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    children: dict[str, set[str]] = {}
    prefix = top.rstrip("/") + "/"
    for path in listing:
        if not path.startswith(prefix):
            continue
        collection = posixpath.dirname(path)
        while True:
            total[collection] += 1
            if path in wanted:
                hits[collection] += 1
            if collection == top or not collection.startswith(prefix):
                break
            parent = posixpath.dirname(collection)
            children.setdefault(parent, set()).add(collection)
            collection = parent
    chosen: list[tuple[str, int]] = []
    pending = [top] if total[top] else []
    while pending:
        collection = pending.pop()
        if total[collection] and hits[collection] == total[collection] and (limit is None or total[collection] <= limit):
            chosen.append((collection, total[collection]))
        else:
            pending.extend(children.get(collection, ()))
    return sorted(chosen)


def split_chunks(paths: Sequence[str], collections: Sequence[tuple[str, int]], agents: int) -> list[Chunk]:
    """At most ``agents`` chunks of about equal objects, contiguous in path order; a whole
    collection is never split. ``paths`` excludes the objects of ``collections``."""
    items: list[tuple[str, int, bool]] = [(p, 1, False) for p in paths] + [(c, n, True) for c, n in collections]
    items.sort(key=lambda item: item[0] + ("/" if item[2] else ""))
    total = sum(n for _, n, _ in items)
    agents = max(1, min(agents, len(items)))
    chunks: list[Chunk] = []
    current_paths: list[str] = []
    current_collections: list[tuple[str, int]] = []
    filled = 0
    for name, count, is_collection in items:
        if is_collection:
            current_collections.append((name, count))
        else:
            current_paths.append(name)
        filled += count
        # close the chunk once it holds its share of what is left (the last takes the rest)
        if len(chunks) < agents - 1 and filled * agents >= total * (len(chunks) + 1):
            chunks.append(Chunk(len(chunks), tuple(current_paths), tuple(current_collections)))
            current_paths, current_collections = [], []
    if current_paths or current_collections:
        chunks.append(Chunk(len(chunks), tuple(current_paths), tuple(current_collections)))
    return chunks


# --- the agents --------------------------------------------------------------------------------------
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass(eq=False)
class AgentHandle:
    """The run's view of one agent: what it was given and what it reported."""

    chunk: Chunk
    manifest: str | None = None
    state: str = PENDING
    done: int = 0
    error: str = ""
    #: monotonic time of the last change the run saw (start, progress)
    changed: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)


class AgentPool:
    """Agents other than the run: launched with a chunk each, watched, taken over."""

    def launch(self, chunk: Chunk) -> AgentHandle:
        raise NotImplementedError

    def refresh(self, handles: Sequence[AgentHandle]) -> None:
        """Bring the handles up to date with what the agents reported."""

    def take_over(self, handle: AgentHandle) -> None:
        """The run replicates this chunk itself from now on: the agent stops (or never starts)."""
        handle.stop.set()

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        """The run is done with the agents (also when it failed): none goes on needlessly."""


class ThreadAgents(AgentPool):
    """Agents as threads of this process, for a grid that may be called from several threads."""

    #: how long closing waits for an agent to finish the object it is replicating
    CLOSE_TIMEOUT_SECONDS = 120.0

    def __init__(self, grid: Grid, resource: str) -> None:
        self.grid = grid
        self.resource = resource
        self.handles: list[AgentHandle] = []
        self._threads: list[threading.Thread] = []
        self._changed = threading.Event()

    def launch(self, chunk: Chunk) -> AgentHandle:
        handle = AgentHandle(chunk)
        self.handles.append(handle)
        thread = threading.Thread(target=self._work, args=(handle,), name=f"c2d-replicate-{chunk.index}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return handle

    def _work(self, handle: AgentHandle) -> None:
        handle.state = RUNNING
        try:
            for collection, count in handle.chunk.collections:
                if handle.stop.is_set():
                    return
                self.grid.replicate_collection(collection, self.resource)
                handle.done += count
                handle.changed = time.monotonic()
            for path in handle.chunk.paths:
                if handle.stop.is_set():
                    return
                self.grid.replicate(path, self.resource)
                handle.done += 1
                handle.changed = time.monotonic()
            handle.state = DONE
        except Exception as exc:  # noqa: BLE001 - reported to the run, which takes the chunk over
            handle.error = str(exc) or type(exc).__name__
            handle.state = FAILED
            log.warning("replication agent %d failed: %s", handle.chunk.index, handle.error)
        finally:
            self._changed.set()

    def wait(self, seconds: float) -> None:
        self._changed.wait(seconds)
        self._changed.clear()

    def close(self) -> None:
        """Stop every agent and wait for it: a run that ended (a cancel, a failure) leaves no
        thread replicating behind it, each finishes at most the object it was on."""
        for handle in self.handles:
            handle.stop.set()
        for thread in self._threads:
            thread.join(self.CLOSE_TIMEOUT_SECONDS)
            if thread.is_alive():
                log.warning("replication agent %s still replicating after %.0f s; leaving it", thread.name,
                            self.CLOSE_TIMEOUT_SECONDS)


class ManifestAgents(AgentPool):
    """Agents that are processes of their own (rules queued with the delay server): each is told
    its chunk by a manifest data object and reports on it with AVUs (:func:`run_agent`)."""

    def __init__(self, grid: Grid, resource: str, task_collection: str, launch: Callable[[str], None]) -> None:
        self.grid = grid
        self.resource = resource
        self.task_collection = task_collection
        self.workspace = posixpath.join(task_collection, names.TASK_STAGING_COLLECTION)
        self._launch = launch
        #: manifests of one run are told apart from those of earlier runs (a resumed task)
        self._token = secrets.token_hex(3)
        self._created = False

    def launch(self, chunk: Chunk) -> AgentHandle:
        if not self._created:
            self.grid.create_collection(self.workspace)
            self._created = True
        manifest = posixpath.join(self.workspace, f"replicate-{self._token}-{chunk.index:02d}.json")
        with tempfile.TemporaryDirectory(prefix="c2d-manifest-") as tmp:
            local = Path(tmp) / "manifest.json"
            local.write_text(json.dumps(chunk.to_document(self.resource, self.task_collection)))
            self.grid.put_file(local, manifest, self.resource, overwrite=True)
        self._launch(manifest)
        return AgentHandle(chunk, manifest=manifest)

    def refresh(self, handles: Sequence[AgentHandle]) -> None:
        wanted = (names.A_AGENT_STARTED, names.A_AGENT_PROGRESS, names.A_AGENT_RESULT)
        reported = {o.path: {a.attribute: a.value for a in o.avus}
                    for o in self.grid.list_data_objects(self.workspace, avu_attributes=wanted)}
        for handle in handles:
            marks = reported.get(handle.manifest or "", {})
            state, done, error = handle.state, handle.done, handle.error
            result = marks.get(names.A_AGENT_RESULT, "")
            if result.startswith("failed"):
                state, error = FAILED, result.partition(":")[2].strip() or "the agent failed"
            elif result:
                state = DONE
            elif names.A_AGENT_STARTED in marks:
                state = RUNNING
            progress = marks.get(names.A_AGENT_PROGRESS, "").partition("/")[0]
            if progress.isdigit():
                done = int(progress)
            if (state, done) != (handle.state, handle.done):
                handle.changed = time.monotonic()
            handle.state, handle.done, handle.error = state, done, error

    def take_over(self, handle: AgentHandle) -> None:
        super().take_over(handle)
        assert handle.manifest is not None
        self.grid.add_new_avus(EntityType.DATA_OBJECT, {handle.manifest: [AVU(names.A_TAKEN_OVER, names.iso_utc())]})


def agent_pool(grid: Grid, resource: str, task_collection: str,
               launch: Callable[[str], None] | None) -> AgentPool | None:
    """Agents for this grid: rules started by ``launch`` (the rulebase queues them with the delay
    server), else threads where the grid allows it, else none (the run replicates alone)."""
    if launch is not None:
        return ManifestAgents(grid, resource, task_collection, launch)
    if grid.concurrent_calls:
        return ThreadAgents(grid, resource)
    return None


def run_agent(grid: Grid, manifest: str) -> str:
    """One replication agent, in its own agent process: the body of ``c2d_replicate_chunk``.

    It does nothing when the run took its chunk over, when another agent started on it, or when
    the task is no longer running; it stops as soon as one of those becomes true (checked every
    :data:`AGENT_CHECK_EVERY` objects, with its progress). Returns what it did, in words.
    """
    doc = json.loads(grid.read_data_object(manifest))
    chunk = Chunk.from_document(doc)
    resource, task_collection = str(doc["resource"]), str(doc["task"])
    store = TaskStateStore(grid)

    def marks() -> dict[str, str]:
        return {a.attribute: a.value for a in grid.get_avus(EntityType.DATA_OBJECT, manifest)}

    def stop_reason() -> str | None:
        if names.A_TAKEN_OVER in marks():
            return "the run took this chunk over"
        state = store.read(task_collection).state
        if state != TaskState.RUNNING:
            return f"task is {state.value if state else 'in no known state'}"
        return None

    found = marks()
    if names.A_TAKEN_OVER in found or names.A_AGENT_STARTED in found:
        return "nothing to do: the chunk was taken over or started already"
    reason = stop_reason()
    if reason:
        return f"nothing to do: {reason}"
    grid.add_new_avus(EntityType.DATA_OBJECT, {manifest: [AVU(names.A_AGENT_STARTED, names.iso_utc())]})
    done = 0
    try:
        if names.A_TAKEN_OVER in marks():
            return "nothing to do: the run took this chunk over"
        for collection, count in chunk.collections:
            grid.replicate_collection(collection, resource)
            done += count
            _report_progress(grid, manifest, done, chunk.objects)
        for i, path in enumerate(chunk.paths):
            if i and i % AGENT_CHECK_EVERY == 0:
                reason = stop_reason()
                if reason:
                    _report_result(grid, manifest, f"stopped after {done}: {reason}")
                    return f"stopped after {done} object(s): {reason}"
                _report_progress(grid, manifest, done, chunk.objects)
            grid.replicate(path, resource)
            done += 1
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
        _report_result(grid, manifest, f"failed: {message}")
        raise
    _report_progress(grid, manifest, done, chunk.objects)
    _report_result(grid, manifest, f"done {done}")
    return f"replicated {done} object(s) to {resource}"


def _report_progress(grid: Grid, manifest: str, done: int, total: int) -> None:
    try:
        grid.set_avus(EntityType.DATA_OBJECT, manifest, [AVU(names.A_AGENT_PROGRESS, f"{done}/{total}")])
    except ComputeToDataError as exc:  # progress is advisory; the run takes over a silent agent
        log.warning("could not report replication progress on %s: %s", manifest, exc)


def _report_result(grid: Grid, manifest: str, result: str) -> None:
    try:
        grid.set_avus(EntityType.DATA_OBJECT, manifest, [AVU(names.A_AGENT_RESULT, result)])
    except ComputeToDataError as exc:
        log.error("could not report the result of a replication agent on %s: %s", manifest, exc)


# --- the run's side ------------------------------------------------------------------------------------
@dataclass
class ReplicationReport:
    replicated: int = 0
    replicated_bytes: int = 0
    agents: int = 1
    collections: int = 0
    taken_over: int = 0
    agent_failures: int = 0
    retried: int = 0


class Replicator:
    """Replicates objects to ``resource`` from the run, with agents where there are many.

    ``keep_alive`` is called from this (the run's) thread only, between objects and while the
    run waits for its agents: it beats the task's heartbeat and raises when the task was
    cancelled or lost, which stops the replication (agents stop at their next check).
    """

    def __init__(
        self,
        grid: Grid,
        resource: str,
        settings: Settings,
        *,
        pool: AgentPool | None,
        keep_alive: Callable[[], None],
        top: str,
    ) -> None:
        self.grid = grid
        self.resource = resource
        self.settings = settings
        self.pool = pool
        self.keep_alive = keep_alive
        self.top = top.rstrip("/")
        options = settings.replication
        self.poll_seconds = options.poll_seconds
        self.stall_seconds = options.stall_seconds
        # A collection call gives no sign of life while it runs: the run makes one only when it
        # ends well within the heartbeat lease.
        self.inline_collection_limit = max(1, int(settings.heartbeat_lease_seconds / 4 * COLLECTION_OBJECTS_PER_SECOND))
        self.report = ReplicationReport()
        self._members: dict[str, list[str]] = {}

    def replicate(self, objects: Sequence[DataObject], listing: Iterable[str] | None = None) -> ReplicationReport:
        """Make a good replica of every object on the resource, or raise StagingError naming those
        that could not be. ``listing``: every object path under ``top`` (recursively), when the
        grid replicates whole collections in one call; None: objects one by one."""
        by_path = {o.path: o for o in objects}
        paths = sorted(by_path)
        report = self.report
        report.replicated = len(paths)
        report.replicated_bytes = sum(o.size for o in by_path.values())
        if not paths:
            return report
        agents = self.settings.replication.agents_for(self.resource) if self.pool is not None else 1
        if len(paths) < self.settings.replication.parallel_minimum:
            agents = 1
        # Whole collections small enough to share out among the agents (the run alone: to make
        # in one call within its heartbeat lease).
        limit = -(-len(paths) // agents) if agents > 1 else self.inline_collection_limit
        collections = whole_collections(paths, listing, self.top, limit) if listing is not None else []
        chosen = {c for c, _ in collections}
        self._members = {c: [] for c in chosen}
        loose = []
        for path in paths:
            collection = posixpath.dirname(path)
            while collection not in chosen and collection.startswith(self.top + "/"):
                collection = posixpath.dirname(collection)
            if collection in chosen:
                self._members[collection].append(path)
            else:
                loose.append(path)
        chunks = split_chunks(loose, collections, agents)
        handles: list[AgentHandle] = []
        pool = self.pool
        try:
            own = list(chunks)  # without a pool, agents is 1: one chunk, the run's
            if pool is not None:
                own = chunks[:1]
                for chunk in chunks[1:]:
                    try:
                        handles.append(pool.launch(chunk))
                    except ComputeToDataError as exc:  # no agent for it: the run does it
                        log.warning("could not start a replication agent (%s); the run replicates its chunk", exc)
                        own.append(chunk)
            report.agents = 1 + len(handles)
            for chunk in own:
                self._replicate_here(chunk)
            if pool is not None:
                self._supervise(pool, handles)
        finally:
            if pool is not None:
                pool.close()
        self._leftovers(paths)
        log.info(
            "replicated %d object(s), %d bytes, to %s: %d agent(s), %d collection call(s), %d chunk(s) taken over, "
            "%d replicated again at the end", report.replicated, report.replicated_bytes, self.resource,
            report.agents, report.collections, report.taken_over, report.retried,
        )
        return report

    def _replicate_here(self, chunk: Chunk) -> None:
        """Replicate a chunk from this thread, beating the heartbeat; failures are left to the
        final check (a second try), unless they keep coming."""
        paths = list(chunk.paths)
        for collection, count in chunk.collections:
            if count <= self.inline_collection_limit:
                try:
                    self.grid.replicate_collection(collection, self.resource)
                    self.report.collections += 1
                    self.keep_alive()
                    continue
                except ComputeToDataError as exc:  # e.g. an object in it the caller cannot read
                    log.warning("replicating collection %s at once failed (%s); replicating its objects one by one",
                                collection, exc)
            paths.extend(self._members.get(collection, ()))
        failures = 0
        for path in sorted(paths):
            try:
                self.grid.replicate(path, self.resource)
                failures = 0
            except ComputeToDataError as exc:
                failures += 1
                log.warning("replicating %s to %s failed (it is tried again at the end): %s", path, self.resource, exc)
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise StagingError(f"replicating to {self.resource} keeps failing: {exc}") from exc
            self.keep_alive()

    def _take_over(self, pool: AgentPool, handle: AgentHandle, why: str) -> None:
        log.info("replication chunk %d (%d objects): %s; the run replicates what is left of it",
                 handle.chunk.index, handle.chunk.objects, why)
        try:
            pool.take_over(handle)
        except ComputeToDataError as exc:  # a late agent then replicates along: harmless, only slower
            log.warning("could not mark replication chunk %d as taken over: %s", handle.chunk.index, exc)
        self.report.taken_over += 1
        missing = set(self._missing(self._chunk_paths(handle.chunk)))
        if not missing:
            return
        whole = tuple((c, n) for c, n in handle.chunk.collections if set(self._members.get(c, ())) <= missing)
        covered = {p for c, _ in whole for p in self._members.get(c, ())}
        self._replicate_here(Chunk(handle.chunk.index, tuple(sorted(missing - covered)), whole))

    def _supervise(self, pool: AgentPool, handles: list[AgentHandle]) -> None:
        """Wait for the agents, beating the heartbeat; take over what would not get done."""
        pending = list(handles)
        while pending:
            pool.refresh(pending)
            now = time.monotonic()
            for handle in list(pending):
                allowance = self.stall_seconds + 2 * sum(n for _, n in handle.chunk.collections) / COLLECTION_OBJECTS_PER_SECOND
                if handle.state == DONE:
                    pending.remove(handle)
                elif handle.state == FAILED:
                    self.report.agent_failures += 1
                    pending.remove(handle)
                    self._take_over(pool, handle, f"its agent failed ({handle.error})")
                elif handle.state == PENDING:
                    pending.remove(handle)
                    self._take_over(pool, handle, "its agent had not started when the run was free")
                elif now - handle.changed > allowance:
                    pending.remove(handle)
                    self._take_over(pool, handle, f"its agent reported nothing for {allowance:.0f} s")
            self.keep_alive()
            if pending:
                pool.wait(self.poll_seconds)

    def _chunk_paths(self, chunk: Chunk) -> list[str]:
        return list(chunk.paths) + [p for c, _ in chunk.collections for p in self._members.get(c, ())]

    def _missing(self, paths: Sequence[str]) -> list[str]:
        """Those of ``paths`` without a good replica on the resource, in a few listings."""
        if not paths:
            return []
        prefix = self.top + "/"
        under = [p for p in paths if p.startswith(prefix)]
        have: set[str] = set()
        parents = sorted({posixpath.dirname(p) for p in under})
        if len(parents) <= _MAX_PARENT_LISTINGS:
            listings = [(collection, False) for collection in parents]
        else:
            listings = [(posixpath.commonpath(parents), True)]
        for collection, recursive in listings:
            have.update(o.path for o in self.grid.list_data_objects(collection, recursive=recursive)
                        if o.good_replica_on(self.resource) is not None)
        for path in paths:
            if not path.startswith(prefix) and self.grid.get_data_object(path).good_replica_on(self.resource) is not None:
                have.add(path)
        return [p for p in paths if p not in have]

    def _leftovers(self, paths: Sequence[str]) -> None:
        missing = self._missing(paths)
        if not missing:
            return
        self.report.retried = len(missing)
        log.info("%d object(s) still lack a replica on %s; replicating them from the run", len(missing), self.resource)
        errors: list[str] = []
        for path in missing:
            try:
                self.grid.replicate(path, self.resource)
            except ComputeToDataError as exc:
                errors.append(f"{path}: {exc}")
            self.keep_alive()
        if errors:
            shown = "; ".join(errors[:3]) + (f" and {len(errors) - 3} more" if len(errors) > 3 else "")
            raise StagingError(f"could not replicate {len(errors)} input(s) to {self.resource}: {shown}")
