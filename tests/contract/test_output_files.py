"""Outputs of a run that failed while writing them (a full staging disk): no temporary file is
ever registered in the task collection, and the error says which directory is full."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.runners.base import RunResult
from compute_to_data.service.tasks import TaskService
from tests.support.engine_support import ScriptedRunner, make_config, make_grid, make_settings


def _full_disk(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Writes into ``directory`` behave as on a full disk: the file is created, then ENOSPC."""
    real = Path.write_text

    def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self.parent == directory:
            self.touch()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_write_on_a_full_disk_leaves_no_temporary_file_and_names_the_directory(tmp_path, monkeypatch):
    from compute_to_data.notebook.execute import write_json_atomic

    _full_disk(monkeypatch, tmp_path)
    with pytest.raises(OSError) as caught:
        write_json_atomic(tmp_path / names.RESULT_FILE, {"status": "failed"})
    assert caught.value.errno == errno.ENOSPC
    assert str(tmp_path) in str(caught.value) and names.RESULT_FILE in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_summary_on_a_full_disk_leaves_no_temporary_file_and_names_the_directory(tmp_path, monkeypatch):
    from compute_to_data.notebook import summarize

    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "0001.json").write_text(json.dumps({"images": [
        {"file": "a.png", "classifications": [{"class": "0", "score": 0.9}]}]}))
    out = tmp_path / "out"
    out.mkdir()
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):  # the first write into out/ fills the disk
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and Path(path).parent == out:
            handle.write = lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
        return handle

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(OSError, match=f"no space left on device in {out}"):
        summarize.summarize(shards, out, None, "t1")
    monkeypatch.undo()
    assert list(out.iterdir()) == []


def test_temporary_files_are_not_outputs(tmp_path):
    workdir = TaskWorkdir(tmp_path, "t1")
    workdir.create()
    for name in (names.REPORT_FILE, names.REPORT_FILE + ".tmp", names.RESULT_FILE + ".tmp", "job.tmp.1234"):
        (workdir.output_dir / name).write_text("")
    assert [p.name for p in workdir.output_files()] == [names.REPORT_FILE]


class FullDiskRunner(ScriptedRunner):
    """Fails as the notebook did on a full staging disk: empty ``*.tmp`` files, no ``result.json``."""

    def run(self, request):
        out = Path(request.parameters["output_dir"])
        for name in (names.REPORT_FILE, names.RESULT_FILE):
            (out / (name + ".tmp")).write_text("")
        return RunResult(status="failed", started="s", finished="f", duration_seconds=0.01, images_total=6,
                         images_done=0, error=f"OSError: [Errno 28] no space left on device in {out}",
                         log="", runner=self.name)


def test_a_failed_run_registers_no_temporary_file_and_a_resume_leaves_none(tmp_path):
    _, alice = make_grid(tmp_path)
    settings = make_settings(tmp_path, lock_directory=str(tmp_path / "locks"))
    context = TaskContext(grid=alice, settings=settings, runner=FullDiskRunner())
    task = create_task(make_config(), context)
    outcome = task.run()
    assert outcome.state == TaskState.FAILED and "no space left on device in" in outcome.error
    assert [o.name for o in alice.list_data_objects(task.collection, recursive=True) if ".tmp" in o.name] == []

    lifecycle = TaskService(alice, settings)
    lifecycle.resume(task.task_id, "alice")
    final = lifecycle.start(task.collection, TaskContext(grid=alice, settings=settings, runner=ScriptedRunner()))
    assert final.succeeded, final.error
    stored = {o.name for o in alice.list_data_objects(task.collection, recursive=True)}
    assert names.REPORT_FILE in stored and not [n for n in stored if ".tmp" in n]


def test_staging_on_a_full_disk_names_the_staging_directory(tmp_path, monkeypatch):
    from compute_to_data.domain.errors import StagingError

    source = tmp_path / "vault.png"
    source.write_bytes(b"0")
    workdir = TaskWorkdir(tmp_path / "staging", "t1")
    workdir.create()

    def no_link(*_):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def no_space(_src, dst):
        Path(dst).write_bytes(b"")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.link", no_link)
    monkeypatch.setattr("shutil.copyfile", no_space)
    with pytest.raises(StagingError, match="No space left on device in the task's staging directory") as info:
        workdir.stage_input(str(source), "img.png")
    assert str(tmp_path) not in str(info.value)  # host paths are for the server log
    assert list(workdir.input_dir.iterdir()) == []
