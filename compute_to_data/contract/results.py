"""TODO docstring"""

from __future__ import annotations

import json
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
