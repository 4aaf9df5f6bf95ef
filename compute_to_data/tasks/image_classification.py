"""Image classification: a TorchScript model over images, predictions tagged on each image.

The container's ``predictions.json`` is read on the compute host and turned into AVUs on the
inputs. It is treated as untrusted output: only images this task staged are ever tagged,
whatever file names the notebook wrote.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from .. import conventions as names
from ..errors import ComputeToDataError
from ..grid.base import AVU, DataObject, EntityType, MetadataOperation
from .base import ComputeToDataTask

log = logging.getLogger(__name__)


class ImageClassificationTask(ComputeToDataTask):
    task_type = "image_classification"

    def build_parameters(self) -> dict[str, Any]:
        assert self.workdir is not None and self.runner is not None
        assert self.model_object is not None and self.labels_object is not None
        if self.runner.uses_container_paths:
            input_dir, output_dir = names.CONTAINER_INPUT_DIR, names.CONTAINER_OUTPUT_DIR
            model_dir = names.CONTAINER_TASK_DIR + "/model"
        else:
            input_dir, output_dir = str(self.workdir.input_dir), str(self.workdir.output_dir)
            model_dir = str(self.workdir.model_dir)
        config = self.config
        return {
            names.REPORT_CONTEXT_PARAMETER: self.report_context(),
            "task_id": self.task_id,
            "notebook": config.notebook,
            "input_dir": input_dir,
            "output_dir": output_dir,
            "model_path": posixpath.join(model_dir, self.model_object.name),
            "labels_path": posixpath.join(model_dir, self.labels_object.name),
            "logical_root": config.input_collection,
            "batch_size": config.batch_size,
            "score_threshold": config.score_threshold,
            "top_k": config.top_k,
            "image_size": config.image_size,
            "num_workers": config.num_workers,
            "precision": config.precision,
            "device": "auto",
        }

    def report_context(self) -> dict[str, Any]:
        """What the report shows above the notebook's results (``params.json`` key
        ``c2d_report``, taken out by the entrypoint): the task's provenance, the step timings
        so far, and how to show this task's host staging paths (as the container sees them)."""
        assert self.workdir is not None and self.runner is not None
        provenance = self._provenance()
        values: dict[str, Any] = {
            "task_id": self.task_id,
            "task_type": self.task_type,
            "submitted_by": self.submitted_by,
            "input_collection": self.config.input_collection,
            "inputs": len(self.inputs),
            "compute_resource": self.resource.name if self.resource else None,
            "runner": self.runner.name,
            "model": self.config.model,
            "model_checksum": provenance.get(names.A_MODEL_CHECKSUM),
            "labels": self.config.labels,
            "notebook": self.config.notebook,
            "notebook_checksum": provenance.get(names.A_NOTEBOOK_CHECKSUM),
            "image": self.image.name if self.image is not None else None,
            # The digest is known here only when the settings pin it; the runner records the
            # one it ran in c2d::image_digest.
            "image_digest": self.image.digest if self.image is not None else None,
            "parameters": self.config.notebook_parameters(),
            "timings": {k: round(v, 3) for k, v in self.outcome.timings.items()},
        }
        paths: dict[str, str] = {}
        if not self.runner.uses_container_paths:
            paths = {
                str(self.workdir.input_dir): names.CONTAINER_INPUT_DIR,
                str(self.workdir.output_dir): names.CONTAINER_OUTPUT_DIR,
                str(self.workdir.task_dir): names.CONTAINER_TASK_DIR,
            }
        return {"provenance": {k: v for k, v in values.items() if v is not None}, "paths": paths}

    def tag_results(self) -> None:
        assert self.workdir is not None
        predictions_file = self.workdir.output_dir / names.PREDICTIONS_JSON
        try:
            document = json.loads(predictions_file.read_text())
            images = document["images"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ComputeToDataError(
                f"the notebook reported success but {names.PREDICTIONS_JSON} is missing or malformed: {exc}"
            ) from exc
        staged = {self.relative_path(o): o for o in self.inputs}
        # Re-read earlier predictions now: they may have changed while the notebook ran.
        current = {
            o.path: o
            for o in self.grid.list_data_objects(
                self.config.input_collection,
                recursive=self.config.recursive,
                avu_attributes=(self.config.class_attribute, self.config.score_attribute),
            )
        }
        fresh: dict[str, list[AVU]] = {}  # no earlier prediction: the cheap add-only path
        replacing: list[list[MetadataOperation]] = []  # earlier predictions: remove + add, atomically
        counts: Counter[str] = Counter()
        failed = 0
        for entry in images:
            obj = staged.get(str(entry.get("file", "")))
            if obj is None:
                log.warning("ignoring a prediction for %r: not an input of this task", entry.get("file"))
                continue
            if entry.get("error") or not entry.get("classifications"):
                failed += 1
                continue
            best = entry["classifications"][0]
            label, score = str(best["class"]), float(best["score"])
            counts[label] += 1
            if score < self.config.score_threshold:
                continue
            known = current.get(obj.path, obj)
            new = self._prediction_avus(label, score)
            if any(a.attribute in (self.config.class_attribute, self.config.score_attribute) for a in known.avus):
                replacing.append(self._operations_for(known, new))
            else:
                fresh[obj.path] = new
        batch = max(1, self.context.tag_batch_size)
        paths = list(fresh)
        for start in range(0, len(paths), batch):
            self.grid.add_new_avus(EntityType.DATA_OBJECT, {p: fresh[p] for p in paths[start : start + batch]})
        for group in _batches(replacing, batch):
            self.grid.apply_metadata([op for ops in group for op in ops])
        self.outcome.tagged = len(fresh) + len(replacing)
        self.outcome.failed_images = failed
        self.outcome.class_counts = dict(sorted(counts.items()))

    def _prediction_avus(self, label: str, score: float) -> list[AVU]:
        """The units point to this task, so every prediction says which task made it."""
        units = names.task_units(self.task_id)
        return [AVU(self.config.class_attribute, label, units), AVU(self.config.score_attribute, f"{score:.4f}", units)]

    def _operations_for(self, obj: DataObject, new: list[AVU]) -> list[MetadataOperation]:
        """Replace earlier predictions of this object: removes first, then the new pair."""
        attributes = (self.config.class_attribute, self.config.score_attribute)
        old = [a for a in obj.avus if a.attribute in attributes]
        operations = [
            MetadataOperation("remove", EntityType.DATA_OBJECT, obj.path, a) for a in old if a not in new
        ]
        operations += [MetadataOperation("add", EntityType.DATA_OBJECT, obj.path, a) for a in new if a not in old]
        return operations


def _batches(groups: Sequence[list[MetadataOperation]], size: int) -> Iterator[Sequence[list[MetadataOperation]]]:
    """Whole objects per batch: a failure between batches never splits one object's tags."""
    for start in range(0, len(groups), max(1, size)):
        yield groups[start : start + size]
