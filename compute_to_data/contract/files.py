"""Writing output files so that a failed write never leaves a half-written file behind.

The notebook writes its outputs as ``<name>.tmp`` then renames them, so the engine never reads a
half-written ``result.json``. When the write fails (a full staging disk is the usual cause), the
temporary file must go too, and the error must say *where* the disk is full: Python's
``OSError: [Errno 28] No space left on device`` names no file, and an administrator cannot tell
the staging directory from the container's ``/tmp``. The engine, for its part, never registers a
temporary file as an output (:func:`is_temporary`).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

#: ``name.tmp`` (the notebook's), ``.name.tmp`` (parts) and ``name.tmp.<pid>`` (shell writers)
_TEMPORARY = re.compile(r"\.tmp(\.\d+)?$")


def is_temporary(name: str) -> bool:
    """True for a file that is being written (or that a failed write left): never a result."""
    return bool(_TEMPORARY.search(name))


def temporary_path(path: Path) -> Path:
    """Where :func:`write_text_atomic` writes ``path`` before renaming it."""
    return path.with_name(path.name + ".tmp")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file; on failure remove it and say where."""
    tmp = temporary_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        discard(tmp)
        raise located(exc, path) from exc


def discard(path: Path) -> None:
    """Remove a temporary file a failed write left (best effort: the disk may be in trouble)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def located(exc: OSError, path: Path) -> OSError:
    """The same error, saying which directory (and file) it was about.

    A full disk gets its own wording, since the fix (free space in that directory, or give the
    staging directory more) is the administrator's.
    """
    directory = path.parent
    if exc.errno == errno.ENOSPC:
        message = f"no space left on device in {directory} (writing {path.name}); free space there and resume the task"
    else:
        message = f"cannot write {path.name} in {directory}: {exc.strerror or exc}"
    return OSError(exc.errno, message)
