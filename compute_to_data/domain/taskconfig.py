"""Task configs: validated against the JSON Schema first, then turned into a typed object.

Validation reports *every* problem at once, each with its JSON path, so a researcher fixes the
file in one go. Nothing in the catalog is touched before this passes.
"""

from __future__ import annotations

import copy
import json
import math
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from importlib import resources
from typing import Any, cast

import jsonschema

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVUCondition
from compute_to_data.domain.errors import ConfigError


@lru_cache(maxsize=1)
def task_config_schema() -> dict[str, Any]:
    text = resources.files("compute_to_data").joinpath("schemas/task_config.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=64)
def _anchored(pattern: str) -> re.Pattern[str]:
    """``pattern`` with JSON Schema's (ECMA-262) meaning of a final ``$``: the end of the string.
    Python's ``$`` also matches before a final newline, so ``"1d\\n"`` would pass ``^...[smhdw]$``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _anchored(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


#: the draft the schema declares, with patterns anchored as JSON Schema means them
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


def _json_path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: jsonschema.ValidationError) -> str:
    where = _json_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        shown = ", ".join(f"{where}.{name}" for name in extra)
        return f"{shown}: unknown field; allowed here: {', '.join(allowed)}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{where}.{missing}: required field is missing"
    if error.validator == "pattern":
        hint = error.schema.get("description", f"must match {error.schema['pattern']}")
        return f"{where}: {error.instance!r} is not valid: {hint}"
    if error.validator in ("anyOf", "oneOf") and "description" in error.schema:
        return f"{where}: {error.instance!r} is not valid: {error.schema['description']}"
    if error.validator == "enum":
        choices = ", ".join(repr(c) for c in error.schema["enum"])
        return f"{where}: {error.instance!r} is not one of {choices}"
    return f"{where}: {error.message}"


#: iRODS refuses logical paths longer than MAX_NAME_LEN (1088 bytes) ...
MAX_LOGICAL_PATH_BYTES = 1088
#: ... and vault file systems names longer than 255 bytes (a path component is a file name there).
MAX_COMPONENT_BYTES = 255
#: what a task adds below output.collection: "/<task id>/parts/run00-part-000001.json" and room.
TASK_PATH_RESERVE = 64


def _logical_path_problems(doc: dict[str, Any]) -> list[str]:
    """What JSON Schema cannot say well: no '.'/'..' components, no doubled slashes, lengths
    iRODS accepts, and an output collection that cannot swallow the inputs."""
    problems = []
    candidates = {
        "$.inputs.collection": doc.get("inputs", {}).get("collection"),
        "$.output.collection": doc.get("output", {}).get("collection"),
        "$.parameters.model": doc.get("parameters", {}).get("model"),
        "$.parameters.labels": doc.get("parameters", {}).get("labels"),
    }
    for where, value in candidates.items():
        if not isinstance(value, str):
            continue
        parts = value.split("/")[1:]
        if any(p in ("", ".", "..") for p in parts):
            problems.append(f"{where}: {value!r} is not a normalized logical path (no '//', '.' or '..')")
            continue
        limit = MAX_LOGICAL_PATH_BYTES - (TASK_PATH_RESERVE if where == "$.output.collection" else 0)
        if len(value.encode("utf-8")) > limit:
            problems.append(
                f"{where}: the path is {len(value.encode('utf-8'))} bytes long; iRODS allows at most "
                f"{MAX_LOGICAL_PATH_BYTES} bytes for a whole logical path"
                + (f" and a task adds up to {TASK_PATH_RESERVE} below the output collection" if limit < MAX_LOGICAL_PATH_BYTES else "")
            )
        elif any(len(p.encode("utf-8")) > MAX_COMPONENT_BYTES for p in parts):
            problems.append(f"{where}: a collection or object name is longer than {MAX_COMPONENT_BYTES} bytes")
    inputs, output = candidates["$.inputs.collection"], candidates["$.output.collection"]
    if isinstance(inputs, str) and isinstance(output, str) and not problems:
        if inputs == output:
            problems.append(
                f"$.output.collection: {output!r} is the input collection; task collections would sit among the "
                "images and every image would be excluded as a task output: choose another collection, e.g. "
                f"{posixpath.dirname(inputs)}/c2d_results"
            )
        elif inputs.startswith(output.rstrip("/") + "/"):
            problems.append(
                f"$.output.collection: the input collection {inputs!r} lies inside the output collection {output!r}, "
                "where everything counts as task outputs, so no image would be an input: choose an output "
                "collection outside it"
            )
    return problems


#: the units of a duration (``schedule.every``, ``c2d list --since``): seconds, minutes, hours, days, weeks
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
#: the longest interval a schedule may have (what a delay hint can say comfortably)
MAX_SCHEDULE_SECONDS = 366 * 86400


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``6h``, ``1d``, ``1w`` (``45s``) as a timedelta; None when it is not a duration.
    One syntax for every duration a user writes (schedules, ``--since`` ages)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return timedelta(seconds=int(match.group(1)) * DURATION_UNITS[match.group(2)])
    except OverflowError:
        return timedelta.max


def _schedule_problems(doc: dict[str, Any]) -> list[str]:
    """What a schedule cannot be, beyond its syntax (the schema's): longer than a year, or on a
    task that classifies again what is classified already (every run would redo every image)."""
    schedule = doc.get("schedule")
    if not isinstance(schedule, dict) or not isinstance(schedule.get("every"), str):
        return []
    problems = []
    every = parse_duration(schedule["every"])
    if every is not None and every.total_seconds() > MAX_SCHEDULE_SECONDS:
        problems.append(f"$.schedule.every: {schedule['every']!r} is longer than a year; the longest interval is 366d")
    if doc.get("inputs", {}).get("skip_tagged") is False:
        problems.append(
            "$.inputs.skip_tagged: a scheduled task classifies only the images that carry no complete prediction "
            "yet (each run takes what was added since); remove skip_tagged, or the schedule to classify everything again once"
        )
    return problems


def _notebook_problems(doc: dict[str, Any]) -> list[str]:
    """The summary notebook ships with the deployment but is the engine's own (it renders a sharded
    task's report from its shards' predictions): a task naming it would classify nothing and fail
    only when it runs, so it is refused now."""
    notebook = doc.get("notebook")
    if isinstance(notebook, str) and notebook.removesuffix(".ipynb") == names.SUMMARY_NOTEBOOK:
        problem = (f"$.notebook: {notebook!r} summarizes the shards of a large task and is run by the engine itself; "
                   f"a {doc.get('task_type', 'task')} task runs a classification notebook such as 'classify_images' "
                   "(the default: leave notebook out)")
        return [problem]
    return []


def _non_finite_numbers(doc: Any, where: str = "$") -> list[str]:
    """NaN and infinities: Python's json accepts them, JSON and every comparison do not."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return [f"{where}: {doc!r} is not a number JSON allows"]
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _non_finite_numbers(v, f"{where}.{k}")]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _non_finite_numbers(v, f"{where}[{i}]")]
    return []


#: a task config nests four levels; anything far deeper is hostile, and the recursive steps that
#: follow (the JSON parser, schema validation, copies) would end in a RecursionError
MAX_NESTING = 32


def _too_deep(doc: Any, limit: int = MAX_NESTING) -> bool:
    """True when objects/arrays nest more than ``limit`` levels (iteratively: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def _nesting_error(source: str) -> ConfigError:
    return ConfigError(f"{source} is invalid: objects and arrays nest more than {MAX_NESTING} levels deep; "
                       "a task config needs only a few (see config/examples)")


def validate_document(doc: Any, *, source: str = "task config") -> None:
    """Raise ConfigError listing every problem, or return quietly."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} must be a JSON object, not {type(doc).__name__}")
    if _too_deep(doc):
        raise _nesting_error(source)
    validator = _Validator(task_config_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = _non_finite_numbers(doc) or [_describe(e) for e in errors]
    if not problems:
        problems = _logical_path_problems(doc) + _schedule_problems(doc) + _notebook_problems(doc)
    if problems:
        raise ConfigError(f"{source} is invalid ({len(problems)} problem(s)):", problems)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


def parse_json(text: str | bytes, *, source: str = "task config") -> dict[str, Any]:
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except RecursionError:  # the parser recurses once per level: thousands of '[' end here
        raise _nesting_error(source) from None
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    validate_document(doc, source=source)
    return cast(dict[str, Any], doc)


@dataclass(frozen=True)
class TaskConfig:
    """A validated task config with defaults filled in."""

    task_type: str
    input_collection: str
    output_collection: str
    model: str
    labels: str
    pattern: str = "*"
    recursive: bool = False
    skip_tagged: bool = True
    #: ``inputs.where``: AVU conditions every input must meet (empty: no condition)
    where: tuple[AVUCondition, ...] = ()
    compute_role: str = names.ROLE_GPU_COMPUTE
    compute_resource: str | None = None
    #: compute.resources: spread the shards over these (None: not asked)
    compute_resources: tuple[str, ...] | None = None
    spread: bool = False
    #: compute.shard_size as written (None: the default; Settings.effective_shard_size caps it)
    shard_size: int | None = None
    #: ``compute.replicate``: ``when_needed`` (in place where the data is, else read through iRODS), ``always`` or ``stream``
    replicate: str = names.REPLICATE_WHEN_NEEDED
    archive_role: str | None = None
    archive_resource: str | None = None
    image: str | None = None
    runner: str = "auto"
    notebook: str = "classify_images"
    batch_size: int = 64
    score_threshold: float = 0.0
    top_k: int = 3
    image_size: int | None = None
    num_workers: int | str = "auto"
    precision: str = "fp32"
    #: ``parameters.thumbnail_size``: longest side of the thumbnails the run makes (None: none)
    thumbnail_size: int | None = None
    class_attribute: str = names.DEFAULT_CLASS_ATTRIBUTE
    score_attribute: str = names.DEFAULT_SCORE_ATTRIBUTE
    #: None: the settings' default_timeout_seconds applies (Settings.effective_timeout).
    timeout_seconds: int | None = None
    #: continuous runs: how often (``1d``), or None for a task that runs once (tasks/schedule.py)
    schedule_every: str | None = None
    #: a chained task: the id of the task (or series) whose success it waits for (None: none)
    after: str | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any], *, source: str = "task config") -> "TaskConfig":
        validate_document(doc, source=source)
        inputs, params = doc["inputs"], doc["parameters"]
        compute = doc.get("compute", {})
        archive = doc.get("archive")
        container = doc.get("container", {})
        tagging = doc.get("tagging", {})
        config = cls(
            task_type=doc["task_type"],
            input_collection=inputs["collection"],
            output_collection=doc["output"]["collection"],
            model=params["model"],
            labels=params["labels"],
            pattern=inputs.get("pattern", "*"),
            recursive=inputs.get("recursive", False),
            skip_tagged=inputs.get("skip_tagged", True),
            where=tuple(AVUCondition.from_document(c) for c in inputs.get("where", ())),
            compute_role=compute.get("role", names.ROLE_GPU_COMPUTE),
            compute_resource=compute.get("resource"),
            compute_resources=tuple(compute["resources"]) if "resources" in compute else None,
            spread=bool(compute.get("spread", False)),
            shard_size=compute.get("shard_size"),
            replicate=compute.get("replicate", names.REPLICATE_WHEN_NEEDED),
            archive_role=(archive or {}).get("role", names.ROLE_LONG_TERM_STORAGE) if archive is not None else None,
            archive_resource=(archive or {}).get("resource"),
            image=container.get("image"),
            runner=container.get("runner", "auto"),
            notebook=doc.get("notebook", "classify_images"),
            batch_size=params.get("batch_size", 64),
            score_threshold=float(params.get("score_threshold", 0.0)),
            top_k=params.get("top_k", 3),
            image_size=params.get("image_size"),
            num_workers=params.get("num_workers", "auto"),
            precision=params.get("precision", "fp32"),
            thumbnail_size=params.get("thumbnail_size"),
            class_attribute=tagging.get("class_attribute", names.DEFAULT_CLASS_ATTRIBUTE),
            score_attribute=tagging.get("score_attribute", names.DEFAULT_SCORE_ATTRIBUTE),
            timeout_seconds=doc.get("timeout_seconds"),
            schedule_every=(doc.get("schedule") or {}).get("every"),
            after=doc.get("after"),
            document=copy.deepcopy(doc),
        )
        if config.compute_resource is not None and config.compute_resources is not None:
            raise ConfigError(
                f"{source} is invalid (1 problem(s)):",
                ["$.compute: give either resource (run on it) or resources (spread over them), not both"],
            )
        if config.class_attribute == config.score_attribute:
            raise ConfigError(
                f"{source} is invalid (1 problem(s)):",
                ["$.tagging: class_attribute and score_attribute must differ"],
            )
        return config

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "task config") -> "TaskConfig":
        return cls.from_document(parse_json(text, source=source), source=source)

    @property
    def schedule_seconds(self) -> int | None:
        """The schedule's interval in seconds; None for a task that runs once."""
        if self.schedule_every is None:
            return None
        every = parse_duration(self.schedule_every)
        return int(every.total_seconds()) if every is not None else None

    def notebook_parameters(self) -> dict[str, Any]:
        """The researcher-chosen parameters recorded as provenance (``c2d::parameters``)."""
        params: dict[str, Any] = {
            "model": self.model,
            "labels": self.labels,
            "batch_size": self.batch_size,
            "score_threshold": self.score_threshold,
            "top_k": self.top_k,
            "num_workers": self.num_workers,
            "precision": self.precision,
        }
        if self.image_size is not None:
            params["image_size"] = self.image_size
        if self.thumbnail_size is not None:
            params["thumbnail_size"] = self.thumbnail_size
        return params

    def to_json(self) -> str:
        return json.dumps(self.document, indent=2, sort_keys=True) + "\n"

