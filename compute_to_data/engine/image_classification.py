"""Image classification: a TorchScript model over images, predictions tagged on each image.

The notebook's predictions (in parts while it runs, ``predictions.json`` at the end) are read on
the compute host and turned into AVUs on the inputs. They are treated as untrusted output: only
images this task staged are ever tagged, whatever file names the notebook wrote, and an image is
tagged once per run, from the first entry that named it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from compute_to_data.contract.inputs import MANIFEST_PARAMETER, STATUS_PARAMETER
from compute_to_data.contract.labels import MAX_LABELS_BYTES, decode_labels
from compute_to_data.contract.parts import Entry, PartReader
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    AVU,
    DataObject,
    EntityType,
)
from compute_to_data.domain.errors import ComputeToDataError, ConfigError
from compute_to_data.engine import predictions as task_parts
from compute_to_data.engine.steps import Checked, Staged, Tagging, TaskRun
from compute_to_data.engine.task import ComputeToDataTask
from compute_to_data.engine.thumbnails import store_thumbnails
from compute_to_data.runners.base import RunResult

log = logging.getLogger(__name__)

#: the run beats the heartbeat at least this often while several taggers work (seconds)
TAG_BEAT_SECONDS = 2.0
#: a part whose images lie in more collections than this is checked with one read of the input collection's AVUs
MAX_PARENT_LISTINGS = 16


class ImageClassificationTask(ComputeToDataTask):
    task_type = "image_classification"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the run has tagged so far, kept while it runs (the task object runs once): the
        # entries it accepted (file -> entry), stored in the task collection and tagged, and the
        # reader of the notebook's parts (it knows which parts are new).
        self.processed: dict[str, Entry] = {}
        self._reader: PartReader | None = None

    def validate(self) -> Checked:
        """Also the labels file: a class named twice is refused before anything is written."""
        checked = super().validate()
        if checked.labels.size > MAX_LABELS_BYTES:
            raise ConfigError(f"labels file {self.config.labels} is {checked.labels.size:,} bytes; a labels file "
                              "holds one class name per line (at most 4 MB)")
        decode_labels(self.grid.read_data_object(self.config.labels, max_bytes=MAX_LABELS_BYTES), self.config.labels)
        return checked

    def build_parameters(self, run: TaskRun, staged: Staged) -> dict[str, Any]:
        workdir = staged.workdir
        if run.selection.runner.uses_container_paths:
            input_dir, output_dir = names.CONTAINER_INPUT_DIR, names.CONTAINER_OUTPUT_DIR
            model_dir, labels_dir = names.CONTAINER_TASK_DIR + "/model", names.CONTAINER_TASK_DIR + "/labels"
            task_dir = names.CONTAINER_TASK_DIR
        else:
            input_dir, output_dir = str(workdir.input_dir), str(workdir.output_dir)
            model_dir, labels_dir = str(workdir.model_dir), str(workdir.labels_dir)
            task_dir = str(workdir.task_dir)
        config = self.config
        return {
            names.REPORT_CONTEXT_PARAMETER: self.report_context(run, staged),
            "task_id": self.task_id,
            "notebook": config.notebook,
            "input_dir": input_dir,
            "output_dir": output_dir,
            "model_path": posixpath.join(model_dir, staged.model.name),
            "labels_path": posixpath.join(labels_dir, staged.labels.name),
            "logical_root": config.input_collection,
            "batch_size": config.batch_size,
            "score_threshold": config.score_threshold,
            "top_k": config.top_k,
            "image_size": config.image_size,
            "num_workers": config.num_workers,
            "precision": config.precision,
            "thumbnail_size": config.thumbnail_size,
            "device": "auto",
            # parts off (measuring what they cost): one part, at the end
            "part_size": self.settings.part_size if self.context.parts else 10**9,
            "part_seconds": self.settings.part_seconds if self.context.parts else 10.0**9,
            "previous_predictions": posixpath.join(task_dir, names.PREVIOUS_PREDICTIONS_FILE) if run.inputs.previous else "",
            # the container contract's inputs list and staging status (contract/inputs.py)
            MANIFEST_PARAMETER: posixpath.join(task_dir, names.INPUTS_MANIFEST_FILE),
            STATUS_PARAMETER: posixpath.join(task_dir, names.STAGING_STATUS_FILE),
        }

    def ingest_outputs(self, run: TaskRun, staged: Staged) -> None:
        """The task's files, then the thumbnails the run made (``parameters.thumbnail_size``)."""
        super().ingest_outputs(run, staged)
        if self.config.thumbnail_size:
            report = store_thumbnails(self.grid, staged.workdir.output_dir, self.config.input_collection,
                                      run.selection.resource.name, self.task_id)
            note = report.note()
            if note:
                self.outcome.notes.append(note)

    def report_context(self, run: TaskRun, staged: Staged) -> dict[str, Any]:
        """What the report shows above the notebook's results (``params.json`` key
        ``c2d_report``, taken out by the entrypoint): the task's provenance, the step timings
        so far, and how to show this task's host staging paths (as the container sees them)."""
        selection, workdir, image = run.selection, staged.workdir, run.selection.image
        pinned = self.store.read(self.collection)  # what every run of the task checked before it classified
        values: dict[str, Any] = {
            "task_id": self.task_id,
            "task_type": self.task_type,
            "submitted_by": self.submitted_by,
            "input_collection": self.config.input_collection,
            "inputs": run.inputs.total or len(run.inputs.inputs),
            "compute_resource": selection.resource.name,
            "runner": selection.runner.name,
            "model": self.config.model,
            "model_checksum": pinned.get(names.A_MODEL_CHECKSUM) or None,
            "labels": self.config.labels,
            "labels_checksum": pinned.get(names.A_LABELS_CHECKSUM) or None,
            "notebook": self.config.notebook,
            "notebook_checksum": pinned.get(names.A_NOTEBOOK_CHECKSUM) or None,
            "image": image.name if image is not None else None,
            # The digest is known here only when the settings pin it; the runner records the
            # one it ran in c2d::image_digest.
            "image_digest": image.digest if image is not None else None,
            "parameters": self.config.notebook_parameters(),
            "timings": {k: round(v, 3) for k, v in self.outcome.timings.items()},
        }
        paths: dict[str, str] = {}
        if not selection.runner.uses_container_paths:
            paths = {
                str(workdir.input_dir): names.CONTAINER_INPUT_DIR,
                str(workdir.output_dir): names.CONTAINER_OUTPUT_DIR,
                str(workdir.task_dir): names.CONTAINER_TASK_DIR,
            }
        return {"provenance": {k: v for k, v in values.items() if v is not None}, "paths": paths}

    # ------------------------------------------------------------------ parts, while the notebook runs
    def tag_finished_parts(self, run: TaskRun, staged: Staged) -> None:
        self._tag_parts(run.tagging(staged.by_name, check=True), staged.workdir.output_dir)

    def salvage_parts(self, tagging: Tagging, output_dir: Path) -> int:
        return self._tag_parts(tagging, output_dir)

    def _tag_parts(self, tagging: Tagging, output_dir: Path) -> int:
        if self._reader is None:
            self._reader = PartReader(output_dir)
        count = 0
        for part in self._reader.new_parts():
            started = time.perf_counter()
            if tagging.check is not None:
                tagging.check()  # a cancelled or reaped run tags nothing more
            known = len(self.processed)
            tagged = self._store_and_tag(tagging, part.index, part.images)
            if len(self.processed) == known:
                continue  # nothing new in it (stored and tagged already, by the run that died)
            count += 1
            self.outcome.parts_tagged += 1
            log.info("task %s: part %d stored and tagged (%d images, %d tagged) in %.2f s", self.task_id,
                     part.index, len(part.images), tagged, time.perf_counter() - started)
            for listener in self.context.part_listeners:
                listener(part.index, len(part.images))
        return count

    # ------------------------------------------------------------------ the tag step
    def tag_results(self, run: TaskRun, staged: Staged, result: RunResult) -> None:
        if self.context.parts:
            self.tag_finished_parts(run, staged)  # the last parts, written as the notebook ended
        predictions_file = staged.workdir.output_dir / names.PREDICTIONS_JSON
        try:
            document = json.loads(predictions_file.read_text())
            images = document["images"]
            if not isinstance(images, list):
                raise TypeError("images is not a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ComputeToDataError(
                f"the notebook reported success but {names.PREDICTIONS_JSON} is missing or malformed: {exc}"
            ) from exc
        tagging = run.tagging(staged.by_name, check=True)
        run.running.check()
        self._store_and_tag(tagging, None, [e for e in images if isinstance(e, dict)])
        self._tag_owed(tagging)
        everything = {**run.inputs.previous, **self.processed}
        self.outcome.images_done = len(everything)
        self.outcome.failed_images = sum(1 for e in everything.values() if _best(e) is None)
        self.outcome.class_counts = dict(sorted(Counter(
            best[0] for best in map(_best, everything.values()) if best is not None
        ).items()))

    def _store_and_tag(self, tagging: Tagging, index: int | None, images: Sequence[Entry]) -> int:
        """Accept the entries for images this run staged and has not seen yet; store them in the
        task collection, then tag them. Returns how many images were tagged."""
        staged = tagging.staged
        accepted: list[Entry] = []
        for entry in images:
            name = str(entry.get("file", ""))
            if name in self.processed or name in tagging.previous:
                continue  # tagged from a part already; done by an earlier run (the notebook merged it)
            if name not in staged:
                log.warning("ignoring a prediction for %r: not an input of this task", entry.get("file"))
                continue
            accepted.append({**entry, "file": name, "path": staged[name].path})
        if not accepted:
            return 0
        task_parts.store_part(self.grid, self.collection, tagging.resource.name, self.task_id, tagging.run_index, index,
                              accepted)
        for entry in accepted:
            self.processed[entry["file"]] = entry
        return self._tag(tagging, [(staged[e["file"]], e) for e in accepted])

    def _tag_owed(self, tagging: Tagging) -> None:
        """Earlier runs' stored entries whose images lack this task's tags (the run died between
        storing a part and tagging it): tag them now, so every image ends tagged once."""
        if not tagging.previous:
            return
        units = names.task_units(self.task_id)
        by_name = {self.relative_path(o): o for o in tagging.candidates}
        owed = [
            (by_name[name], entry) for name, entry in tagging.previous.items()
            if name in by_name and not task_parts.has_complete_prediction(
                by_name[name], self.config.class_attribute, self.config.score_attribute, units)
        ]
        if owed:
            log.info("task %s: tagging %d image(s) an earlier run stored but did not tag", self.task_id, len(owed))
            self.outcome.tagged += self._tag(tagging, owed)

    def _tag(self, tagging: Tagging, pairs: Sequence[tuple[DataObject, Entry]]) -> int:
        """Tag images with their best prediction: add-only where an image carries none, an atomic
        replace where it carries an earlier or incomplete one (or a mark); whole images per batch.
        An image left without a prediction (unreadable, under the threshold) gets the
        ``c2d::unclassified`` mark, so a series does not take it again. Returns how many
        predictions were written."""
        # Re-read the images' predictions now: they may have changed while the notebook ran.
        current = self._current_of(tagging, [obj for obj, _ in pairs])
        fresh: dict[str, list[AVU]] = {}  # no earlier prediction nor mark: the cheap add-only path
        # earlier or incomplete predictions, marks: remove what was read, then add (no query per image)
        replacing: dict[str, tuple[list[AVU], list[AVU]]] = {}
        tagged = 0
        for obj, entry in pairs:
            known = current.get(obj.path, obj)
            state, _ = task_parts.prediction_pair(known, self.config.class_attribute, self.config.score_attribute)
            best = _best(entry)
            reason = self._unclassified_reason(entry, best)
            if reason is not None:
                if state == task_parts.Pair.NONE:  # an image keeps an earlier prediction; only a bare one is marked
                    new = [task_parts.unclassified_mark(reason, known, self.task_id)]
                    self._collect(known, state, new, fresh, replacing)
                continue
            if best is None:
                continue
            tagged += self._collect(known, state, self._prediction_avus(*best), fresh, replacing)
        self._write_tags(fresh, replacing, tagging.beat or _no_beat)
        self.outcome.tagged += tagged
        return tagged

    def _write_tags(self, fresh: dict[str, list[AVU]], replacing: dict[str, tuple[list[AVU], list[AVU]]],
                    beat: Callable[[], None]) -> None:
        """Write the tags in batches of whole images, by several taggers at once where the grid
        may be called from several threads (inside the iRODS server the run tags alone: its
        ``callback`` is never called from two threads). Tagging is bound by the catalog, not by
        this process: two catalog workers served about twice one tagger's rate on the measured
        zone. The heartbeat is beaten from this (the run's) thread only."""
        taggers = max(1, self.context.taggers) if self.grid.concurrent_calls else 1
        work = len(fresh) + len(replacing)
        if not work:
            return
        # batches no larger than tag_batch_size, and enough of them to keep every tagger busy
        size = max(1, min(self.context.tag_batch_size, -(-work // taggers)))
        jobs: list[Callable[[], None]] = []
        adds, changes = list(fresh), list(replacing)
        for start in range(0, len(adds), size):
            chunk = {p: fresh[p] for p in adds[start : start + size]}
            jobs.append(functools.partial(self.grid.add_new_avus, EntityType.DATA_OBJECT, chunk))
        for start in range(0, len(changes), size):
            chunk2 = {p: replacing[p] for p in changes[start : start + size]}
            jobs.append(functools.partial(self.grid.replace_avus, EntityType.DATA_OBJECT, chunk2))
        if taggers == 1 or len(jobs) == 1:
            for job in jobs:
                job()
                beat()
            return
        with ThreadPoolExecutor(max_workers=min(taggers, len(jobs)), thread_name_prefix="c2d-tag") as pool:
            pending = {pool.submit(job) for job in jobs}
            try:
                while pending:
                    done, pending = wait(pending, timeout=TAG_BEAT_SECONDS, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # a failed batch fails the step (every image complete or untouched)
                    beat()
            finally:
                for future in pending:
                    future.cancel()

    def _current_of(self, tagging: Tagging, objects: Sequence[DataObject]) -> dict[str, DataObject]:
        """These objects with the predictions and marks the catalog says they carry now: only
        those AVUs are read (``Grid.object_avus_in``: on a zone a query whose rows are the AVUs
        alone), of the collections the objects lie in (a part of a large task lies in a few;
        a shard's inputs are never read as a whole), else of the input collection as a whole.
        Listing the objects instead cost a page per 256 objects and their access rows: about
        0.4 s of a 2,000-image task's tagging on the measured costs."""
        parents = sorted({obj.collection for obj in objects})
        found: dict[str, list[AVU]] = {}
        if len(parents) > MAX_PARENT_LISTINGS and tagging.listing.whole_collection:
            found = self.grid.object_avus_in(self.config.input_collection, self.listed_attributes,
                                             recursive=self.config.recursive)
        else:
            for parent in parents:
                found.update(self.grid.object_avus_in(parent, self.listed_attributes))
        return {obj.path: replace(obj, avus=tuple(found.get(obj.path, ()))) for obj in objects}

    def _unclassified_reason(self, entry: Entry, best: tuple[str, float] | None) -> str | None:
        """Why an image gets no prediction, if it gets none for a reason worth remembering."""
        if best is None:
            return names.UNCLASSIFIED_UNREADABLE if entry.get("error") else None
        return names.UNCLASSIFIED_BELOW_THRESHOLD if best[1] < self.config.score_threshold else None

    def _collect(self, known: DataObject, state: task_parts.Pair, new: list[AVU], fresh: dict[str, list[AVU]],
                 replacing: dict[str, tuple[list[AVU], list[AVU]]]) -> bool:
        """Add-only where the image carries neither a prediction (``state``, as the caller read
        it) nor a mark, else a replacement of what it carries (removed by the values read, then
        the new pair added: seen in between, the image has an incomplete pair, which counts as no
        prediction); False when it already carries exactly ``new``."""
        if state == task_parts.Pair.NONE and not task_parts.unclassified_marks(known):
            fresh[known.path] = new
            return True
        old, added = self._replacement_for(known, new)
        if old or added:
            replacing[known.path] = (old, added)
        return bool(old or added)

    def _prediction_avus(self, label: str, score: float) -> list[AVU]:
        """The units point to this task, so every prediction says which task made it."""
        units = names.task_units(self.task_id)
        return [AVU(self.config.class_attribute, label, units), AVU(self.config.score_attribute, f"{score:.4f}", units)]

    def _replacement_for(self, obj: DataObject, new: list[AVU]) -> tuple[list[AVU], list[AVU]]:
        """(to remove, to add) to replace the earlier predictions and marks of this object by ``new``."""
        attributes = (self.config.class_attribute, self.config.score_attribute, names.A_UNCLASSIFIED)
        old = [a for a in obj.avus if a.attribute in attributes]
        return [a for a in old if a not in new], [a for a in new if a not in old]


def _no_beat() -> None:
    """A dead run's salvage: no signs of life to give."""


def _best(entry: Entry) -> tuple[str, float] | None:
    """(class, score) of an entry's best classification; None for an unreadable image (or an
    entry the notebook wrote wrong: it is reported, never tagged)."""
    if entry.get("error"):
        return None
    try:
        best = entry["classifications"][0]
        label, score = str(best["class"]), float(best["score"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if not label or not math.isfinite(score):
        return None
    return label, score
