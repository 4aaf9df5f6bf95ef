"""Files the notebook leaves in its output directory for the engine and the reports to read.

``.progress`` and ``result.json`` (the run's outcome), and ``thumbnails.json`` (small pictures of
the least certain images, which the summary of a sharded task shows).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from compute_to_data.domain import conventions as names


# --- shared helpers ------------------------------------------------------------------------------
def read_progress(output_dir: Path) -> tuple[int, int] | None:
    """``(done, total)`` from the notebook's ``.progress`` file, or None if absent or unreadable."""
    try:
        done, _, total = (output_dir / names.PROGRESS_FILE).read_text().strip().partition("/")
        return int(done), int(total)
    except (OSError, ValueError):
        return None


def read_result(output_dir: Path) -> dict[str, Any] | None:
    """``result.json`` as a dict, or None when missing or not a JSON object."""
    try:
        doc = json.loads((output_dir / names.RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- thumbnails of the least certain images ------------------------------------------------------
#: written by the classification notebook next to ``predictions.json``: small inline thumbnails of
#: the run's least certain images, ``{"images": [{"file": ..., "path": ..., "thumbnail": "data:..."}]}``.
#: The summary of a sharded task reads every shard's (its images stay on the shards' hosts).
THUMBNAILS_FILE = "thumbnails.json"
#: where the summary of a sharded task stages each shard's ``thumbnails.json`` (as ``NNNN.json``),
#: under its input directory
STAGED_THUMBNAILS_DIR = "thumbnails"
#: a shard's ``thumbnails.json`` is read up to this size
MAX_THUMBNAILS_BYTES = 8 * 1024 * 1024
#: at most this many thumbnails per file, each at most this long (a 96-pixel PNG is a few KB)
MAX_THUMBNAILS = 100
MAX_THUMBNAIL_CHARS = 64 * 1024
_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]+={0,2}")


def is_thumbnail_uri(value: object) -> bool:
    """A base64 PNG data URI of bounded length: safe inside an HTML attribute as it is."""
    return isinstance(value, str) and len(value) <= MAX_THUMBNAIL_CHARS and _DATA_URI.fullmatch(value) is not None


def write_thumbnails(output_dir: Path, thumbnails: list[dict[str, str]]) -> None:
    """Write ``thumbnails.json`` (entries: ``file``, ``path``, ``thumbnail``), atomically."""
    doc = {"images": [t for t in thumbnails if is_thumbnail_uri(t.get("thumbnail"))][:MAX_THUMBNAILS]}
    tmp = output_dir / (THUMBNAILS_FILE + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    os.replace(tmp, output_dir / THUMBNAILS_FILE)


def read_thumbnails(path: Path) -> dict[str, str]:
    """{file: data URI} from a ``thumbnails.json``; anything else in it is ignored, and a missing
    or unreadable file gives none (the report then names those images without a picture)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        images = doc.get("images", []) if isinstance(doc, dict) else []
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    for entry in images[:MAX_THUMBNAILS] if isinstance(images, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("file"), str) and is_thumbnail_uri(entry.get("thumbnail")):
            found[entry["file"]] = entry["thumbnail"]
    return found
