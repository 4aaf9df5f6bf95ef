"""The repository explains itself: nothing in it sends readers to notes outside it.

What the code relies on about iRODS is written in docs/irods-behaviour.md; the names users see
live in compute_to_data/conventions.py. Paths of the machines the project was developed on,
or notes kept next to the repository, mean nothing to a reader of the repository.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Written in pieces so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "/work" + "/", "irods" + "-facts", "conventions" + ".md")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in listed.decode().split("\0") if name]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".pt", ".jpg", ".ico"}]


def test_no_file_points_outside_the_repository() -> None:
    offending = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for line_number, line in enumerate(text.splitlines(), 1):
            if any(marker in line for marker in FORBIDDEN):
                offending.append(f"{path.relative_to(REPO)}:{line_number}: {line.strip()[:120]}")
    assert not offending, "\n".join(offending)


def test_the_behaviour_document_exists_and_says_how_each_point_was_established() -> None:
    text = (REPO / "docs" / "irods-behaviour.md").read_text(encoding="utf-8")
    assert "## Observed" in text and "## Documented only" in text
    bullets = [line for line in text.split("## Observed", 1)[1].split("\n## ", 1)[0].splitlines() if line.startswith("- ")]
    assert len(bullets) > 30
