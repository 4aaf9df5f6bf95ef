"""The home of the names users see: resource AVUs, the task collection's layout, its ``c2d::``
AVUs and states, the prediction AVUs and the notebook contract.

They are queried with ``imeta``/``iquest`` and set by administrators, so they are defined here
and only here, and every part of the project imports them from this module (docs/reference/
names.md lists them; docs/admin/install.md, "Tag the resources", and docs/user/run-a-task.md
show them in use).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import Enum

# --- resource AVUs (set by the administrator with `imeta add -R`) -------------------------------
ROLE_ATTRIBUTE = "COMPUTE_RESOURCE_ROLE"
GPUS_ATTRIBUTE = "COMPUTE_RESOURCE_GPUS"
MAX_TASKS_ATTRIBUTE = "COMPUTE_RESOURCE_MAX_TASKS"

ROLE_GPU_COMPUTE = "GPU_COMPUTE"
ROLE_CPU_COMPUTE = "CPU_COMPUTE"
ROLE_LONG_TERM_STORAGE = "LONG_TERM_STORAGE"
ROLES = (ROLE_GPU_COMPUTE, ROLE_CPU_COMPUTE, ROLE_LONG_TERM_STORAGE)

# --- the task collection -------------------------------------------------------------------------
REPORT_FILE = "report.html"
NOTEBOOK_FILE = "notebook.ipynb"
PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSON = "predictions.json"
CONTAINER_LOG = "container.log"
RUNNER_LOG = "runner.log"
TASK_CONFIG_FILE = "task_config.json"

# --- bookkeeping AVUs on the task collection -----------------------------------------------------
PREFIX = "c2d::"
A_TASK_ID = PREFIX + "task_id"
A_TASK_TYPE = PREFIX + "task_type"
A_STATE = PREFIX + "state"
A_SUBMITTED_BY = PREFIX + "submitted_by"
A_CREATED = PREFIX + "created"
A_STARTED = PREFIX + "started"
A_FINISHED = PREFIX + "finished"
A_PROGRESS = PREFIX + "progress"
A_ERROR = PREFIX + "error"
A_COMPUTE_RESOURCE = PREFIX + "compute_resource"
A_INPUT_COLLECTION = PREFIX + "input_collection"
A_INPUTS = PREFIX + "inputs"
A_REPLICATED_BYTES = PREFIX + "replicated_bytes"
A_MODEL = PREFIX + "model"
A_MODEL_CHECKSUM = PREFIX + "model_checksum"
A_NOTEBOOK_CHECKSUM = PREFIX + "notebook_checksum"
#: the labels file's checksum, pinned with the model's and the notebook's when the task is created
A_LABELS_CHECKSUM = PREFIX + "labels_checksum"
A_IMAGE = PREFIX + "image"
A_IMAGE_DIGEST = PREFIX + "image_digest"
A_PARAMETERS = PREFIX + "parameters"
A_REPORT = PREFIX + "report"
A_RUNNER = PREFIX + "runner"
# liveness and cost (the lifecycle, tasks/lifecycle.py)
A_HEARTBEAT = PREFIX + "heartbeat"
#: why a started run waits (a batch scheduler's reason, e.g. "waiting for a GPU (Slurm job 42:
#: Resources)"); present only while it waits. Readers then show the task as ``queued``.
A_QUEUE_REASON = PREFIX + "queue_reason"
A_IMAGES_FAILED = PREFIX + "images_failed"
A_RESUMED = PREFIX + "resumed"

#: what readers show for a running task whose heartbeat is older than the lease (never written).
STALE = "stale"
#: the sub-collection of a task collection holding the tagged parts and the task's input selection;
#: the report browser lists only the task collection's own files, so it stays out of sight.
TASK_PARTS_COLLECTION = "parts"
TASK_SELECTION_FILE = "inputs.json"
#: JSON object, step name -> seconds (``stage_inputs``, ``execute``, ``run.kernel_start`` ...),
#: written with every state and refreshed as steps finish.
A_TIMINGS = PREFIX + "timings"
#: where a run was supervised, its handle (container id, pid:token, Slurm job id), and the node it ran on
A_RUN_HOST = PREFIX + "run_host"
A_RUN_HANDLE = PREFIX + "run_handle"
A_RUN_NODE = PREFIX + "run_node"
#: how a run staged its inputs (JSON object): the task config's ``compute.replicate`` choice and
#: what happened, e.g. ``{"replicate": "when_needed", "in_place": 9998, "replicated": 2, ...}``
#: (docs/user/staging.md)
A_STAGING = PREFIX + "staging"

# --- staging: where the inputs come from ----------------------------------------------------------
#: ``compute.replicate`` of a task config: ``when_needed`` (default) hard-links a good replica that
#: lies on the compute host (or in a vault the settings declare visible there) where it lies, and
#: reads the rest through iRODS into the staging directory (streams them: nothing registered);
#: ``always`` replicates whatever has no replica on the compute resource; ``stream`` reads every
#: input through iRODS, even one with a replica in place (no hard link into any vault).
REPLICATE_WHEN_NEEDED = "when_needed"
REPLICATE_ALWAYS = "always"
REPLICATE_STREAM = "stream"
REPLICATE_POLICIES = (REPLICATE_WHEN_NEEDED, REPLICATE_ALWAYS, REPLICATE_STREAM)
#: the sub-collection of a task collection holding the manifests of its parallel replication
#: agents (one JSON data object per agent); out of the report browser's sight, like ``parts``.
TASK_STAGING_COLLECTION = "staging"
#: AVUs on a manifest, each written by one party: the agent (started, progress, result) and
#: the run (taken over: the run replicates that chunk itself and the agent stops).
A_AGENT_STARTED = PREFIX + "agent_started"
A_AGENT_PROGRESS = PREFIX + "agent_progress"
A_AGENT_RESULT = PREFIX + "agent_result"
A_TAKEN_OVER = PREFIX + "taken_over"
# continuous runs (a scheduled task config, tasks/schedule.py): every task of a series carries
# the id of the series' first task (its head), and the head carries the series' own state.
A_SERIES = PREFIX + "series"
#: on the head: how often the series runs, as the task config says (``1d``)
A_SCHEDULE = PREFIX + "schedule"
#: on the head: ``active`` while it runs, ``cancelled`` (c2d_cancel of the head) or ``ended``
A_SERIES_STATE = PREFIX + "series_state"
#: on the head: when the next scheduled run is due (ISO 8601 UTC); absent once the series stopped
A_SERIES_NEXT_RUN = PREFIX + "series_next_run"
#: on the head: when the last scheduled run looked for images not classified yet
A_SERIES_CHECKED = PREFIX + "series_checked"
#: on the head: why the series stopped ("cancelled by alice", or the config that became invalid)
A_SERIES_REASON = PREFIX + "series_reason"
# chained tasks (``after`` in the task config): on a task collection, the id of the task or
# series it runs after (a detector before a classifier); ``c2d status`` and the browser show it
A_AFTER = PREFIX + "after"


# shards (a task larger than one shard: tasks/sharding.py, tasks/shards.py)
#: ``NNNN/total`` on each shard's collection ``<task>/shards/NNNN/``
A_SHARD = PREFIX + "shard"
#: on a sharded task's own collection: how many shards it has (its state aggregates theirs)
A_SHARDS = PREFIX + "shards"
#: on a sharded task: the compute resource its summary runs on (c2d::run_host says the host), so a
#: summary that dies is found and recorded like a dead run
A_SUMMARY_RESOURCE = PREFIX + "summary_resource"
#: its value until a run takes the summary on (the run that swaps it for its resource makes it)
SUMMARY_PENDING = "pending"
SHARDS_COLLECTION = "shards"
#: a task collection's claim token: a writer of its state (or of a series' turn) removes the value
#: it read to claim the change, and writes a new one with the change (lifecycle/claims.py)
A_CLAIM = PREFIX + "claim"
#: "<time> <id>" of each writer about to claim (a collection left without a token by a writer
#: that died is given one again once every announcement is older than the lease)
A_CLAIMING = PREFIX + "claiming"
#: one relative path (to the input collection) per line: a shard's inputs, written once at planning
SHARD_INPUTS_FILE = "inputs.txt"
DEFAULT_SHARD_SIZE = 5000
#: the notebook that renders a sharded task's report from all its shards' predictions
SUMMARY_NOTEBOOK = "summarize_task"


def shard_name(number: int) -> str:
    """``0001``: four digits, from 1, so shard collections sort in their order."""
    return f"{number:04d}"


def shard_collection(task_collection: str, number: int) -> str:
    return f"{task_collection}/{SHARDS_COLLECTION}/{shard_name(number)}"


class TaskState(str, Enum):
    """``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``; ``failed`` |
    ``cancelled`` -> ``queued`` by resume only (``tasks/lifecycle.py`` holds the table)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class SeriesState(str, Enum):
    """``active`` -> ``cancelled`` (by its owner) | ``ended`` (its config became invalid); both final."""

    ACTIVE = "active"
    CANCELLED = "cancelled"
    ENDED = "ended"


# --- results on the inputs -----------------------------------------------------------------------
DEFAULT_CLASS_ATTRIBUTE = "predictedclass"
DEFAULT_SCORE_ATTRIBUTE = "predictedscore"
TASK_UNITS_PREFIX = "c2d:"
#: an image a task looked at but did not tag: value ``unreadable:<size>`` (the notebook could not
#: read it) or ``below_threshold:<size>`` (its best score was under ``parameters.score_threshold``),
#: ``<size>`` the object's size in bytes then; units ``c2d:<task id>``. A scheduled series does not
#: offer such an image again while its size is unchanged (a replaced file is tried again); a
#: prediction removes the mark in the same atomic batch. One-off tasks classify it again.
A_UNCLASSIFIED = PREFIX + "unclassified"
UNCLASSIFIED_UNREADABLE = "unreadable"
UNCLASSIFIED_BELOW_THRESHOLD = "below_threshold"

#: a person's verdict on a prediction (web app); each carries the units ``c2d:<task id>`` of the
#: prediction that was confirmed or corrected, so a later task's prediction is never mistaken for it.
VALIDATED = "validated"
VALIDATED_CLASS = "validatedclass"
VALIDATED_BY = "validatedby"
VALIDATED_AT = "validatedat"

#: where a camera trap's EXIF data is recorded on an image (bursts, date filters and exports read
#: them where present; the ingest enrichment below writes them). The date as EXIF writes it
#: (``2026:11:22 02:03:04``) or ISO 8601; the position in decimal degrees.
EXIF_DATETIME = "exif::datetime"
EXIF_LATITUDE = "exif::gps_latitude"
EXIF_LONGITUDE = "exif::gps_longitude"
EXIF_ATTRIBUTES = (EXIF_DATETIME, EXIF_LATITUDE, EXIF_LONGITUDE)

# --- ingest enrichment (settings' ingest.collections; engine/ingest.py) writes the names above:
#: when it was taken (ISO 8601, the camera's local time, with its UTC offset when the camera
#: recorded one), where (decimal degrees, WGS 84; altitude in metres above sea level, negative
#: below), with what camera
A_EXIF_DATETIME = EXIF_DATETIME
A_EXIF_LATITUDE = EXIF_LATITUDE
A_EXIF_LONGITUDE = EXIF_LONGITUDE
A_EXIF_ALTITUDE = "exif::gps_altitude"
A_EXIF_MAKE = "exif::make"
A_EXIF_MODEL = "exif::model"
#: pixel size of the image as its header says (JPEG frame, PNG IHDR, TIFF tags)
A_IMAGE_WIDTH = "image::width"
A_IMAGE_HEIGHT = "image::height"
#: every AVU the ingest enrichment writes from a header (replaced together when read again)
HEADER_ATTRIBUTES = (A_EXIF_DATETIME, A_EXIF_LATITUDE, A_EXIF_LONGITUDE, A_EXIF_ALTITUDE, A_EXIF_MAKE, A_EXIF_MODEL,
                     A_IMAGE_WIDTH, A_IMAGE_HEIGHT)
#: units of the position AVUs
UNITS_DEGREES = "deg"
UNITS_METRES = "m"
UNITS_PIXELS = "px"
#: on an enriched image: when its header was read (ISO 8601 UTC); the backfill skips such images
A_ENRICHED = PREFIX + "enriched"
#: on an image: the logical path of its thumbnail (``<collection>/thumbnails/<name>``) ...
A_THUMBNAIL = PREFIX + "thumbnail"
#: ... and on the thumbnail: the image it shows (never an input of a task, never enriched)
A_THUMBNAIL_OF = PREFIX + "thumbnail_of"
THUMBNAILS_COLLECTION = "thumbnails"
#: where the classification run writes thumbnails in its output directory (hidden: they are
#: stored beside their images, not in the task collection), at the image's relative path
THUMBNAILS_OUTPUT_DIR = ".thumbnails"


def thumbnail_path(image_path: str) -> str:
    """``/z/traps/site1/a.jpg`` -> ``/z/traps/site1/thumbnails/a.jpg``."""
    folder, name = image_path.rsplit("/", 1)
    return f"{folder}/{THUMBNAILS_COLLECTION}/{name}"


# --- runner and container contract ---------------------------------------------------------------
CONTAINER_INPUT_DIR = "/inputs"
CONTAINER_OUTPUT_DIR = "/outputs"
CONTAINER_TASK_DIR = "/task"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = ".progress"
#: a resumed run's notebook gets the earlier runs' predictions here (read-only, in /task) and
#: covers them in its predictions.json/.csv and report.
PREVIOUS_PREDICTIONS_FILE = "previous_predictions.json"
#: in /task, written before the run starts: every input the run will have, in order (paths
#: relative to /inputs); the notebook starts on the first while the rest are still being staged
INPUTS_MANIFEST_FILE = "inputs.json"
#: in /task, written when staging ends: ``done``, or ``failed`` with the reason (absent: still staging)
STAGING_STATUS_FILE = "staging.json"
#: every process of a run carries this environment variable (value: the task id), inherited by
#: all its descendants, so what is left of a dead run can be found and stopped.
TASK_ID_ENV = "C2D_TASK_ID"
#: key of ``params.json`` holding what the report shows about the task (provenance, timings so
#: far, how to show host paths); the entrypoint takes it out before the notebook sees the rest.
REPORT_CONTEXT_PARAMETER = "c2d_report"
#: Predictions in parts, written while the notebook runs so that a crash keeps what was done:
#: ``<outputs>/.parts/part-000000.json``, ``part-000001.json``... Each is written under a
#: temporary name in the same directory and renamed (os.replace), so a reader sees a part
#: whole or not at all. Hidden, so never ingested as a task output. A part holds
#: ``{"task_id", "part", "first", "count", "last", "images": [entries as in predictions.json]}``;
#: the engine stores and tags each one while the notebook works on the next.
PARTS_DIR = ".parts"
PART_PREFIX = "part-"
PART_SUFFIX = ".json"
#: a part every this many images, or every this many seconds, whichever comes first.
DEFAULT_PART_SIZE = 1000
DEFAULT_PART_SECONDS = 60.0

# --- server-side settings ------------------------------------------------------------------------
DEFAULT_SETTINGS_PATH = "/etc/irods/compute_to_data.json"
SETTINGS_ENV = "C2D_SETTINGS"


def part_file_name(index: int) -> str:
    """``part-000042.json``: zero-padded so that names sort in the order the parts were written."""
    return f"{PART_PREFIX}{index:06d}{PART_SUFFIX}"


def task_units(task_id: str) -> str:
    """Units of a prediction AVU: they point back to the task that made it."""
    return TASK_UNITS_PREFIX + task_id


def task_id_of_units(units: str) -> str | None:
    """The task a prediction or validation AVU points to (``c2d:<task id>``), or None."""
    if units.startswith(TASK_UNITS_PREFIX) and len(units) > len(TASK_UNITS_PREFIX):
        return units[len(TASK_UNITS_PREFIX):]
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with a trailing ``Z``, second precision: what the state AVUs hold."""
    moment = (moment or utc_now()).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(value: str) -> datetime | None:
    """A timestamp as the state AVUs hold it (``2026-11-22T02:03:04Z``), or None if unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_task_id(moment: datetime | None = None) -> str:
    """Readable and sortable by time: ``20261122T020304Z-3f9a1c``."""
    moment = (moment or utc_now()).astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
