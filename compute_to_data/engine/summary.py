"""The report of a task that ran as shards: ``summarize_task.ipynb`` over all shards' predictions.

When the last shard of a task ends and every shard succeeded, the run that ended it (on its
compute host, with its runner: the same locked-down container) stages every shard's
``predictions.json`` read-only (and the thumbnails of its least certain images), runs the summary notebook and registers what it wrote in the
task's own collection: ``report.html`` (class counts, score distribution, least certain images
across the task, a table of the shards linking to each shard's report), ``predictions.json``
and ``predictions.csv`` of the whole task. Only then is the task recorded ``succeeded``.

A run takes the summary on by removing the task's ``c2d::summary_resource=pending`` (one AVU: of
two runs ending the last shards at once, the second removal fails, also on a real server, where
an atomic batch removing what is gone would succeed), then recording its resource; a run that
finds no value at all reads between another's two writes and leaves it. One summary is made. While it runs, the
task carries ``c2d::run_host`` and a heartbeat, and the summary holds a run lock on that host,
so a summary that dies is found and recorded like any dead run (the task ``failed``; resuming
it makes the summary again, nothing else).
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from dataclasses import dataclass
from typing import Any

from compute_to_data.contract.results import MAX_THUMBNAILS_BYTES, STAGED_THUMBNAILS_DIR, THUMBNAILS_FILE
from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    ComputeToDataError,
    NothingToRemoveError,
    TaskCancelled,
    TaskStateError,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.settings import AllowedImage, notebook_path
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.domain.timings import timings_text
from compute_to_data.engine import onhost
from compute_to_data.lifecycle.machine import TaskStateMachine
from compute_to_data.lifecycle.shard_records import shard_records
from compute_to_data.lifecycle.store import Heartbeat
from compute_to_data.runners import choose_runner
from compute_to_data.runners.base import Runner, RunRequest

log = logging.getLogger(__name__)

#: a shard's predictions may be large: read at most this much of one
MAX_SHARD_PREDICTIONS_BYTES = 1024 * 1024 * 1024


@dataclass
class TaskSummary:
    lifecycle: TaskStateMachine
    collection: str
    config: TaskConfig
    resource: Resource
    runner: Runner
    image: AllowedImage | None
    keep_workdir: bool = False

    @classmethod
    def for_task(cls, lifecycle: TaskStateMachine, record: TaskRecord, runner: Runner | None,
                 compute_resource: str | None = None, keep_workdir: bool = False) -> "TaskSummary":
        """The summary of a task whose shards all succeeded earlier (a resumed task): on the
        given resource, else on the last shard's."""
        grid, settings = lifecycle.grid, lifecycle.settings
        name = compute_resource or next(
            (s.get(names.A_COMPUTE_RESOURCE) for s in reversed(lifecycle.shards(record))), "")
        resource = grid.get_resource(name)
        config = lifecycle.read_config(record)
        runner = runner or choose_runner(config.runner, settings, resource=resource.name)
        resolve = getattr(runner, "resolve", None)
        if callable(resolve):
            runner = resolve()
        image = None
        if runner.uses_container_paths:
            image = settings.image_for(config.image, resource.avu_int(names.GPUS_ATTRIBUTE, 0))
        return cls(lifecycle, record.collection, config, resource, runner, image, keep_workdir)

    @property
    def settings(self) -> Any:
        return self.lifecycle.settings

    def run(self) -> TaskRecord:
        lifecycle, store = self.lifecycle, self.lifecycle.store
        record = store.read(self.collection)
        lock = lifecycle.run_lock(self.resource, record.run_key)  # as every run on its host (engine/onhost.py)
        if not lock.acquire():
            log.info("task %s: its summary is being made by another run on this host", record.task_id)
            return record
        workdir: TaskWorkdir | None = None
        started = time.perf_counter()
        try:
            record = store.read(self.collection)
            if record.state == TaskState.QUEUED:
                try:
                    lifecycle.transition(self.collection, TaskState.RUNNING, {names.A_STARTED: names.iso_utc()})
                except TaskStateError:
                    record = store.read(self.collection)
            if (record.state is not None and record.state.is_final) or not self._claim(record):
                return store.read(self.collection)
            store.write(self.collection, {names.A_RUN_HOST: self.resource.host, names.A_HEARTBEAT: names.iso_utc()})
            heartbeat = Heartbeat(store, self.collection, interval=self.settings.heartbeat_interval_seconds,
                                  check=self._check_running)
            shards = shard_records(lifecycle.grid, self.collection)
            workdir = onhost.new_workdir(self.settings, self.resource, record.run_key)
            table = self._stage(shards, workdir, heartbeat)
            result = onhost.run_notebook(self.runner, self._request(record, workdir, heartbeat), workdir)
            onhost.put_outputs(lifecycle.grid, workdir, self.collection, self.resource)
            if not result.succeeded:
                raise ComputeToDataError(result.error or "the summary notebook failed")
            self._check_running()
            timings = {**record.timings, "summary": round(time.perf_counter() - started, 3)}
            total = sum(row["images"] for row in table)
            failed = sum(s.int_value(names.A_IMAGES_FAILED) for s in shards)
            return lifecycle.transition(self.collection, TaskState.SUCCEEDED, {
                names.A_FINISHED: names.iso_utc(),
                names.A_PROGRESS: f"{total}/{total}",
                names.A_IMAGES_FAILED: failed,
                names.A_REPORT: posixpath.join(self.collection, names.REPORT_FILE),
                names.A_RUNNER: result.runner or self.runner.name,
                names.A_RUN_HANDLE: result.handle,
                names.A_ERROR: None,
                names.A_TIMINGS: timings_text(timings),
            })
        except TaskCancelled as exc:
            log.info("task %s: %s; no summary", record.task_id, exc)
            return store.read(self.collection)
        except Exception as exc:  # noqa: BLE001 - the task must end with the reason, whatever it is
            message = f"the task's summary report could not be made: {exc}; resume the task to make it again"
            log.error("task %s: %s", record.task_id, message)
            try:
                return lifecycle.transition(self.collection, TaskState.FAILED,
                                            {names.A_FINISHED: names.iso_utc(), names.A_ERROR: message})
            except TaskStateError:
                return store.read(self.collection)
        finally:
            onhost.remove_workdir(workdir, keep=self.keep_workdir)
            lock.release()

    def _claim(self, record: TaskRecord) -> bool:
        """Take the summary on: remove ``c2d::summary_resource=pending`` (one AVU: of two runs
        ending the last shards at once, exactly one removal succeeds, also on a real server),
        then record this resource. A task without the value is between another run's removal
        and its record (or that run died there: the status of the task then says its summary
        never started, once its shards ended a lease ago, and a resume sets ``pending`` again):
        it is not this run's to take."""
        current = record.get(names.A_SUMMARY_RESOURCE)
        if current != names.SUMMARY_PENDING:
            log.info("task %s: its summary is taken on by a run on %s", record.task_id, current or "another host")
            return False
        grid = self.lifecycle.grid
        try:
            grid.remove_avu(EntityType.COLLECTION, self.collection, AVU(names.A_SUMMARY_RESOURCE, names.SUMMARY_PENDING))
        except NothingToRemoveError:
            log.info("task %s: another run took its summary on first", record.task_id)
            return False
        grid.apply_metadata([MetadataOperation("add", EntityType.COLLECTION, self.collection,
                                               AVU(names.A_SUMMARY_RESOURCE, self.resource.name))])
        return True

    def _check_running(self) -> None:
        record = self.lifecycle.store.read(self.collection)
        if record.state == TaskState.CANCELLED:
            raise TaskCancelled(f"task {record.task_id} was cancelled")

    def _stage(self, shards: list[TaskRecord], workdir: TaskWorkdir, heartbeat: Heartbeat) -> list[dict[str, Any]]:
        """Every shard's predictions as ``inputs/NNNN.json`` (read-only), and the shards table."""
        grid = self.lifecycle.grid
        hosts: dict[str, str] = {}
        table = []
        for shard in shards:
            number = shard.get(names.A_SHARD).partition("/")[0]
            target = workdir.input_dir / f"{number}.json"
            target.write_bytes(grid.read_data_object(posixpath.join(shard.collection, names.PREDICTIONS_JSON),
                                                     max_bytes=MAX_SHARD_PREDICTIONS_BYTES))
            target.chmod(0o444)
            self._stage_thumbnails(shard, number, workdir)
            resource = shard.get(names.A_COMPUTE_RESOURCE)
            if resource and resource not in hosts:
                try:
                    hosts[resource] = grid.get_resource(resource).host
                except ComputeToDataError:
                    hosts[resource] = ""
            timings = self._shard_timings(shard)
            begin, end = names.parse_iso_utc(shard.get(names.A_STARTED)), names.parse_iso_utc(shard.get(names.A_FINISHED))
            table.append({
                "shard": number,
                "resource": resource,
                "host": hosts.get(resource, ""),
                "device": str(timings.get("device", "")),
                "images": shard.int_value(names.A_INPUTS),
                "images_per_second": timings.get("images_per_second"),
                "seconds": (end - begin).total_seconds() if begin and end else None,
                "state": shard.state.value if shard.state else "",
                "report": f"{names.SHARDS_COLLECTION}/{number}/{names.REPORT_FILE}" if shard.get(names.A_REPORT) else "",
            })
            heartbeat.beat()
        shards_file = workdir.task_dir / "shards.json"
        shards_file.write_text(json.dumps({"task_id": self.lifecycle.store.read(self.collection).task_id, "shards": table}))
        shards_file.chmod(0o644)
        return table

    def _stage_thumbnails(self, shard: TaskRecord, number: str, workdir: TaskWorkdir) -> None:
        """The shard's thumbnails of its least certain images, as ``inputs/thumbnails/NNNN.json``
        (read-only): the summary shows the task's least certain images with their pictures,
        which only the shards' hosts had. A shard without one (made before thumbnails existed,
        or whose notebook wrote none) costs only the pictures."""
        try:
            data = self.lifecycle.grid.read_data_object(posixpath.join(shard.collection, THUMBNAILS_FILE),
                                                        max_bytes=MAX_THUMBNAILS_BYTES)
        except ComputeToDataError as exc:
            log.info("shard %s: no thumbnails (%s)", shard.collection, exc)
            return
        folder = workdir.input_dir / STAGED_THUMBNAILS_DIR
        folder.mkdir(exist_ok=True)
        target = folder / f"{number}.json"
        target.write_bytes(data)
        target.chmod(0o444)

    def _shard_timings(self, shard: TaskRecord) -> dict[str, Any]:
        """The shard's ``timings.json`` (device, images/s), if its notebook wrote one."""
        try:
            doc = json.loads(self.lifecycle.grid.read_data_object(posixpath.join(shard.collection, "timings.json"),
                                                                   max_bytes=1024 * 1024))
            return doc if isinstance(doc, dict) else {}
        except (ComputeToDataError, ValueError):
            return {}

    def _request(self, record: TaskRecord, workdir: TaskWorkdir, heartbeat: Heartbeat) -> RunRequest:
        if self.runner.uses_container_paths:
            input_dir, output_dir, task_dir = names.CONTAINER_INPUT_DIR, names.CONTAINER_OUTPUT_DIR, names.CONTAINER_TASK_DIR
        else:
            input_dir, output_dir, task_dir = str(workdir.input_dir), str(workdir.output_dir), str(workdir.task_dir)
        parameters = {
            names.REPORT_CONTEXT_PARAMETER: {"provenance": {
                "task_id": record.task_id, "input_collection": self.config.input_collection,
                "inputs": record.int_value(names.A_INPUTS), "shards": record.int_value(names.A_SHARDS),
                "model": self.config.model, "labels": self.config.labels, "notebook": names.SUMMARY_NOTEBOOK,
                "parameters": self.config.notebook_parameters(),
                # what every shard checked before it classified: one model, one labels file, one notebook
                "model_checksum": record.get(names.A_MODEL_CHECKSUM) or None,
                "labels_checksum": record.get(names.A_LABELS_CHECKSUM) or None,
                "shards_notebook": self.config.notebook,
                "shards_notebook_checksum": record.get(names.A_NOTEBOOK_CHECKSUM) or None,
            }, "paths": {} if self.runner.uses_container_paths else {
                str(workdir.input_dir): names.CONTAINER_INPUT_DIR, str(workdir.output_dir): names.CONTAINER_OUTPUT_DIR,
                str(workdir.task_dir): names.CONTAINER_TASK_DIR}},
            "task_id": record.task_id,
            "notebook": names.SUMMARY_NOTEBOOK,
            "input_dir": input_dir,
            "output_dir": output_dir,
            "shards_file": posixpath.join(task_dir, "shards.json"),
            "score_threshold": self.config.score_threshold,
        }
        params_file = workdir.task_dir / names.PARAMS_FILE
        params_file.write_text(json.dumps(parameters, indent=2, sort_keys=True))
        params_file.chmod(0o644)
        store = self.lifecycle.store
        return RunRequest(
            task_id=record.run_key,
            notebook_name=names.SUMMARY_NOTEBOOK,
            notebook_path=notebook_path(self.settings, names.SUMMARY_NOTEBOOK),
            workdir=workdir.root,
            parameters=parameters,
            timeout_seconds=self.settings.effective_timeout(self.config.timeout_seconds),
            image=self.image.name if self.image is not None else None,
            gpus=0,
            resource_name=self.resource.name,
            on_started=lambda host, handle: store.write(self.collection, {names.A_RUN_HANDLE: handle}),
            on_poll=heartbeat.beat,
        )
