"""The documentation site builds with ``mkdocs build --strict``, so no link or anchor rots.

``mkdocs.yml`` turns broken links, broken anchors and pages left out of the navigation into
warnings, and ``--strict`` makes every warning fail the build. mkdocs is in the ``test`` extra:
without it these tests skip, except in CI (``CI`` set), where they fail. The README is not part
of the site (it is the repository's front page), so its links are checked here directly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _require_mkdocs() -> None:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        why = "mkdocs is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {why}", pytrace=False)
        pytest.skip(why)


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(root / "mkdocs.yml"),
         "--site-dir", str(site)],
        check=False, cwd=root, capture_output=True, text=True, timeout=300,
    )


def test_site_builds_strict(tmp_path: Path) -> None:
    _require_mkdocs()
    done = _build(REPO, tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    for page in ("index.html", "architecture/index.html", "admin/install/index.html",
                 "user/run-a-task/index.html", "reference/task-config/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


@pytest.mark.parametrize("broken", ["[gone](no-such-page.md)", "[gone](admin/install.md#no-such-heading)"])
def test_a_broken_link_fails_the_build(tmp_path: Path, broken: str) -> None:
    """The check above can fail: the same configuration refuses a dead page or anchor."""
    _require_mkdocs()
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    index = root / "docs" / "index.md"
    index.write_text(index.read_text() + f"\nSee {broken}.\n")
    done = _build(root, tmp_path / "site")
    assert done.returncode != 0, done.stdout + done.stderr
    target = broken.split("(")[1].rstrip(")").split("#")
    assert target[-1] in done.stdout + done.stderr


def test_a_page_left_out_of_the_navigation_fails_the_build(tmp_path: Path) -> None:
    """A new page must be added to ``nav`` in mkdocs.yml, or readers of the site never find it."""
    _require_mkdocs()
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    (root / "docs" / "orphan.md").write_text("# Orphan\n")
    done = _build(root, tmp_path / "site")
    assert done.returncode != 0 and "orphan.md" in done.stdout + done.stderr, done.stdout + done.stderr


def test_readme_links_resolve() -> None:
    """Every relative link and picture of the README names a file of the repository."""
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, "the README links to the documentation"
    missing = [t for t in local if not (REPO / t.split("#")[0]).exists()]
    assert not missing, missing
    assert "bash scripts/demo" in readme and "bash scripts/test" in readme
