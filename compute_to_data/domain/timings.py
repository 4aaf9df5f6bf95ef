"""TODO docstring"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

# --- step timings (c2d::timings) -----------------------------------------------------------------
#: sub-timings ``<prefix>.<name>`` are shown under the step they belong to.
SUB_TIMING_PARENTS = {"run": "execute", "stage": "stage_inputs"}


def run_timing_name(key: str) -> str:
    """A runner's sub-timing (``kernel_start_seconds`` in ``result.json``) as ``c2d::timings`` names it:
    ``run.kernel_start``, shown under the ``execute`` step."""
    return "run." + key.removesuffix("_seconds")


def timings_text(timings: Mapping[str, float]) -> str:
    """The ``c2d::timings`` value: a JSON object in the order the steps ran, milliseconds kept."""
    return json.dumps({k: round(float(v), 3) for k, v in timings.items()}, separators=(",", ":"))


def parse_timings(text: str) -> dict[str, float]:
    """Read a ``c2d::timings`` value, keeping only numeric entries (it may have been edited by hand)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class TimingRow:
    name: str
    seconds: float
    #: 0 for a step, 1 for a sub-timing of the step above it (``run.kernel_start`` under ``execute``).
    depth: int = 0


def timing_rows(timings: Mapping[str, float]) -> list[TimingRow]:
    """Steps in the order they ran, each followed by its sub-timings (``run.*`` after ``execute``)."""
    children: dict[str, list[TimingRow]] = {}
    top: list[TimingRow] = []
    for name, seconds in timings.items():
        prefix = name.partition(".")[0] if "." in name else ""
        parent = SUB_TIMING_PARENTS.get(prefix)
        if parent is not None and parent in timings:
            children.setdefault(parent, []).append(TimingRow(name, seconds, 1))
        else:
            top.append(TimingRow(name, seconds))
    rows: list[TimingRow] = []
    for row in top:
        rows.append(row)
        rows.extend(children.get(row.name, []))
    return rows


def format_seconds(seconds: float) -> str:
    """``0.012 s``, ``3.40 s``, ``156.2 s``, ``2:36:05 (9365 s)``: precise where it is short."""
    if seconds < 1:
        return f"{seconds:.3f} s"
    if seconds < 100:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d} ({whole} s)"


def timings_summary(timings: Mapping[str, float]) -> str:
    """One line for ``c2d_status``: ``stage_inputs 156.2 s, execute 12.30 s (run.papermill ...)``."""
    groups: list[tuple[str, list[str]]] = []
    for row in timing_rows(timings):
        text = f"{row.name} {format_seconds(row.seconds)}"
        if row.depth and groups:
            groups[-1][1].append(text)
        else:
            groups.append((text, []))
    return ", ".join(f"{step} ({'; '.join(subs)})" if subs else step for step, subs in groups)
