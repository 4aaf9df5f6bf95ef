"""The staging directory of a task (``TaskWorkdir``): where staged inputs go, and how often the
filesystem is asked for their folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_to_data.contract.workdir import TaskWorkdir


def test_a_workdir_made_again_stages_into_the_folders_it_made_before(tmp_path: Path) -> None:
    """Staging makes each folder once (not once per file); a workdir created again (a retried
    run starts clean) or removed and made again makes them anew rather than trusting that."""
    source = tmp_path / "vault" / "replica.png"
    source.parent.mkdir()
    source.write_bytes(b"png")
    workdir = TaskWorkdir(tmp_path / "staging", "t1")
    workdir.create()
    first = workdir.stage_input(str(source), "site1/a.png")
    second = workdir.stage_input(str(source), "site1/b.png")
    assert first.read_bytes() == second.read_bytes() == b"png"
    workdir.create()  # the tree is removed and made again: site1 is gone
    assert workdir.stage_input(str(source), "site1/a.png").read_bytes() == b"png"
    workdir.remove()
    workdir.create()
    assert workdir.stage_input(str(source), "site1/c.png").read_bytes() == b"png"


def test_staging_asks_the_filesystem_for_a_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "replica.png"
    source.write_bytes(b"png")
    workdir = TaskWorkdir(tmp_path / "staging", "t1")
    workdir.create()
    made: list[Path] = []
    real = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        made.append(self)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", mkdir)
    for i in range(5):
        workdir.stage_input(str(source), f"site1/{i}.png")
    workdir.stage_input(str(source), "site2/0.png")
    assert made == [workdir.input_dir / "site1", workdir.input_dir / "site2"]
