"""The client command set end to end: ``c2d submit/status/list/wait/cancel/report``.

Against a LocalGrid (``--local``) with the real engine (a scripted runner stands in for the
notebook, and the queued run starts in a thread instead of a detached worker process), and
against a zone through python-irodsclient with the PRC fake (rules c2d_submit/c2d_cancel
answered by the fake). Every command goes through ``c2d``'s real entry point, so error
messages, exit codes and the absence of tracebacks are what a researcher sees.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
from datetime import UTC
from pathlib import Path

import pytest

from compute_to_data.client import connect as connect_module
from compute_to_data.client.local_worker import run_queued_task
from compute_to_data.client.submitters import LocalSubmitter
from compute_to_data.client.tasks import TaskClient, parse_since
from compute_to_data.contract.inputs import MANIFEST_PARAMETER, STATUS_PARAMETER, StagedInputs
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ConfigError
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid import client as client_module
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.tasks import TaskService
from tests.fakes.prc_fake import FakeRule
from tests.support.client_support import PASSWORDS, make_fake_zone, run_cli
from tests.support.engine_support import HOME, IMAGES, RESULTS, ScriptedRunner, assert_tagged_once_by, make_grid, make_settings


class SlowRunner(ScriptedRunner):
    """Reports progress image by image with a pause, so `wait` can watch it move."""

    def run(self, request):  # noqa: ANN001, ANN201
        params = request.parameters  # the manifest's inputs: streamed ones may not have arrived yet
        files = StagedInputs.from_parameters(params["input_dir"], params.get(MANIFEST_PARAMETER),
                                             params.get(STATUS_PARAMETER)).files
        for i in range(1, len(files) + 1):
            if request.progress:
                request.progress(i, len(files))
            time.sleep(0.15)
        return super().run(request)


class Local:
    """A LocalGrid zone with alice's images, and a submitter that runs queued tasks in threads."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.admin, self.alice = make_grid(tmp_path)
        self.admin.add_user("bob")
        self.root = str(tmp_path / "grid")
        self.runner: ScriptedRunner | None = ScriptedRunner()
        self.threads: list[threading.Thread] = []
        monkeypatch.setattr(connect_module, "make_submitter", self.make_submitter)
        monkeypatch.setenv("COLUMNS", "250")

    def context(self, grid):  # noqa: ANN001, ANN201
        return TaskContext(grid=grid, settings=make_settings(self.tmp), runner=self.runner, progress_interval=0.0)

    def launch(self, grid, collection):  # noqa: ANN001
        if self.runner is None:  # leave the task queued (no worker picks it up)
            return
        thread = threading.Thread(target=run_queued_task, args=(grid, collection, self.context(grid)))
        thread.start()
        self.threads.append(thread)

    def make_submitter(self, grid, options):  # noqa: ANN001, ANN201
        return LocalSubmitter(grid, launcher=self.launch, context_factory=self.context)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)

    def config_file(self, **changes: object) -> Path:
        doc = {
            "task_type": "image_classification",
            "inputs": {"collection": IMAGES, "pattern": "*.png"},
            "output": {"collection": RESULTS},
            "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
            "container": {"runner": "auto"},
        }
        doc.update(changes)
        path = self.tmp / "task.json"
        path.write_text(json.dumps(doc))
        return path

    def args(self, *args: str, user: str = "alice") -> list[str]:
        return [*args, "--local", self.root, "--user", user]


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Local:
    zone = Local(tmp_path, monkeypatch)
    yield zone
    zone.join()


def test_submit_wait_status_list_report(local, capsys, monkeypatch, tmp_path):
    local.runner = SlowRunner()
    code, out, err = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    assert code == 0, err
    task_id = out.strip()
    assert len(task_id) == 23 and task_id[8] == "T", out
    assert "c2d wait " + task_id in err
    uploaded = local.alice.list_data_objects(f"{HOME}/.c2d/submissions")
    assert len(uploaded) == 1 and uploaded[0].name.endswith("-task.json")

    code, out, err = run_cli(capsys, monkeypatch, *local.args("wait", task_id, "--poll", "0.05"))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "succeeded" in lines[-1] and "images 6/6" in lines[-1]
    assert any("running" in line and "images" in line and "6/6" not in line for line in lines), out  # progress seen
    assert "c2d report" in err

    code, out, _ = run_cli(capsys, monkeypatch, *local.args("status", task_id))
    assert code == 0 and "succeeded" in out and posixpath.join(RESULTS, task_id) in out and "gpu_resc" in out
    # Where the time went: every step, in the order it ran, with its seconds.
    timings = out[out.index("timings"):].splitlines()
    steps = [line.split()[-3] for line in timings if line.rstrip().endswith(" s")]
    assert steps[:2] == ["submit.validate", "submit.select_compute_resource"] and "stage_inputs" in steps
    assert steps.index("stage_inputs") < steps.index("execute") < steps.index("finalize")
    code, out, _ = run_cli(capsys, monkeypatch, *local.args("status"))  # newest task of the caller
    assert code == 0 and task_id in out
    code, out, _ = run_cli(capsys, monkeypatch, *local.args("status", task_id, "--json"))
    assert json.loads(out)[names.A_STATE] == "succeeded"

    code, out, _ = run_cli(capsys, monkeypatch, *local.args("list"))
    assert code == 0 and task_id in out and "succeeded" in out and "6/6" in out
    code, out, err = run_cli(capsys, monkeypatch, *local.args("list", "--state", "failed"))
    assert code == 0 and task_id not in out and "no tasks match" in err
    code, out, _ = run_cli(capsys, monkeypatch, *local.args("list", "--since", "1h"))
    assert task_id in out
    code, out, err = run_cli(capsys, monkeypatch, *local.args("list", "--since", "2999-01-01"))
    assert task_id not in out
    code, _, err = run_cli(capsys, monkeypatch, *local.args("list", "--since", "yesterday"))
    assert code == 1 and "error: --since 'yesterday'" in err and "Traceback" not in err

    target = tmp_path / "downloads"
    target.mkdir()
    code, out, _ = run_cli(capsys, monkeypatch, *local.args("report", task_id, "-o", str(target)))
    assert code == 0
    report = target / f"{task_id}-report.html"
    assert out.strip() == str(report) and report.read_text() == "<html>report</html>"


def test_list_never_cuts_the_task_id(local, capsys, monkeypatch):
    from rich.console import Console

    from compute_to_data.cli import client_cmds

    ids = []
    for _ in range(2):
        _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
        ids.append(out.strip())
    local.join()
    piped = Console(width=80, highlight=False)  # not a terminal: what `c2d list | grep` sees
    narrow = Console(width=60, force_terminal=True, color_system=None, highlight=False)
    wide = Console(width=130, force_terminal=True, color_system=None, highlight=False)
    for console in (piped, narrow, wide):
        monkeypatch.setattr(client_cmds, "console", console)
        code, out, _ = run_cli(capsys, monkeypatch, *local.args("list"))
        assert code == 0
        for task_id in ids:
            row = next(line for line in out.splitlines() if task_id in line)
            assert "…" not in row, out
            if console is not wide:  # too narrow to fold: one whole line per task
                assert posixpath.join(RESULTS, task_id) in row, out
        if console is wide:  # the window is wide enough: the table fits it, long paths fold
            assert max(len(line) for line in out.splitlines()) <= 130


def test_list_on_a_terminal_where_the_id_fits_but_another_cell_would_be_cut(monkeypatch, capsys):
    """At some widths rich keeps the id whole and shortens the state instead (``succ…``): that
    window is printed as wide as its content too, never with a cut cell."""
    from rich.console import Console
    from rich.table import Table

    from compute_to_data.cli import client_cmds

    task_id = "20261201T134534Z-16f637"

    def table() -> Table:
        t = Table(show_edge=False)
        for column in ("task", "state", "images", "submitted by", "created", "elapsed", "collection"):
            t.add_column(column, no_wrap=column != "collection", overflow="fold" if column == "collection" else "ellipsis")
        t.add_row(task_id, "succeeded", "6/6", "alice", "2026-12-01T13:45:34Z", "1.2 s", f"{RESULTS}/{task_id}")
        return t

    window = Console(width=92, force_terminal=True, color_system=None, highlight=False)
    fitted = "\n".join("".join(s.text for s in line) for line in window.render_lines(table(), window.options, pad=False))
    assert task_id in fitted and "\u2026" in fitted  # the window this test is about
    monkeypatch.setattr(client_cmds, "console", window)
    client_cmds.print_whole(table(), [task_id])
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if task_id in line and "succeeded" in line]
    assert "\u2026" not in out and f"{RESULTS}/{task_id}" in row


def test_submit_a_config_already_in_the_grid(local, capsys, monkeypatch):
    logical = f"{HOME}/configs/task.json"
    local.alice.create_collection(f"{HOME}/configs")
    local.alice.put_file(local.config_file(), logical, "lts_resc")
    code, out, err = run_cli(capsys, monkeypatch, *local.args("submit", logical))
    assert code == 0, err
    local.join()
    record = TaskStateStore(local.alice).find(out.strip())
    assert record.state == TaskState.SUCCEEDED
    code, _, err = run_cli(capsys, monkeypatch, *local.args("submit", f"{HOME}/configs/none.json"))
    assert code == 1 and "does not exist" in err


def test_invalid_config_is_refused_before_anything_is_uploaded(local, capsys, monkeypatch):
    path = local.config_file(parameters={"model": "relative/model.pt"})
    code, out, err = run_cli(capsys, monkeypatch, *local.args("submit", str(path)))
    assert code == 1 and out == ""
    assert "error:" in err and "$.parameters" in err and "Traceback" not in err
    assert not local.alice.collection_exists(f"{HOME}/.c2d/submissions")


def test_wait_exit_codes(local, capsys, monkeypatch):
    # failed -> 1, with the recorded error
    local.runner = ScriptedRunner(fail="the notebook ran out of memory")
    _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    failed = out.strip()
    code, out, err = run_cli(capsys, monkeypatch, *local.args("wait", failed, "--poll", "0.05"))
    assert code == 1 and "failed" in out and "ran out of memory" in err

    # still queued after --timeout -> 3 (nothing runs it)
    local.runner = None
    _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    queued = out.strip()
    code, out, err = run_cli(capsys, monkeypatch, *local.args("wait", queued, "--poll", "0.2", "--timeout", "0.5"))
    assert code == 3 and "queued" in out and "stopped waiting" in err

    # cancelled -> 2
    code, out, _ = run_cli(capsys, monkeypatch, *local.args("cancel", queued))
    assert code == 0 and "cancelled" in out
    cancelled = TaskStateStore(local.alice).find(queued)
    assert cancelled.get(names.A_FINISHED) and cancelled.get(names.A_ERROR) == "cancelled by alice"
    code, out, _ = run_cli(capsys, monkeypatch, *local.args("wait", queued))
    assert code == 2 and "cancelled" in out

    # succeeded -> 0
    local.runner = ScriptedRunner()
    _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    code, _, _ = run_cli(capsys, monkeypatch, *local.args("wait", out.strip(), "--poll", "0.05"))
    assert code == 0

    # a finished task cannot be cancelled; an unknown one is named
    code, _, err = run_cli(capsys, monkeypatch, *local.args("cancel", failed))
    assert code == 1 and "already failed" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, monkeypatch, *local.args("status", "20990101T000000Z-000000"))
    assert code == 1 and "no task with id" in err


def test_a_cancelled_queued_task_never_runs(local, capsys, monkeypatch):
    local.runner = None
    _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    task_id = out.strip()
    run_cli(capsys, monkeypatch, *local.args("cancel", task_id))
    runner = ScriptedRunner()
    local.runner = runner
    collection = posixpath.join(RESULTS, task_id)
    from compute_to_data.domain.errors import TaskCancelled

    with pytest.raises(TaskCancelled):
        run_queued_task(local.alice, collection, local.context(local.alice))
    assert runner.requests == []


def test_other_users_cannot_see_or_cancel_a_task(local, capsys, monkeypatch):
    _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    task_id = out.strip()
    local.join()
    code, _, err = run_cli(capsys, monkeypatch, *local.args("status", task_id, user="bob"))
    assert code == 1 and "no task with id" in err
    code, out, err = run_cli(capsys, monkeypatch, *local.args("list", "--all", user="bob"))
    assert task_id not in out
    code, _, err = run_cli(capsys, monkeypatch, *local.args("cancel", task_id, user="bob"))
    assert code == 1
    code, _, err = run_cli(capsys, monkeypatch, *local.args("report", task_id, user="bob"))
    assert code == 1


def test_parse_since():
    from datetime import datetime

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert parse_since("3d", now).day == 19
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T10:00Z", now).hour == 10
    with pytest.raises(ConfigError):
        parse_since("soon", now)


# --- against a zone (python-irodsclient, PRC fake) ------------------------------------------------------
@pytest.fixture
def zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    catalog, made = make_fake_zone(n_images=6)
    env = tmp_path / "irods_environment.json"
    env.write_text(json.dumps({
        "irods_host": "irods.example.org", "irods_port": 1247, "irods_user_name": "alice", "irods_zone_name": "tempZone",
    }))
    from irods.password_obfuscation import encode

    (tmp_path / ".irodsA").write_text(encode(PASSWORDS["alice"]))
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(env))
    monkeypatch.setenv("IRODS_AUTHENTICATION_FILE", str(tmp_path / ".irodsA"))
    monkeypatch.delenv("C2D_LOCAL_GRID", raising=False)
    monkeypatch.delenv("C2D_USER", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(client_module, "SESSION_FACTORY", catalog.session_factory)
    monkeypatch.setattr(client_module, "RULE_CLASS", FakeRule)
    return catalog, made, tmp_path


def test_zone_commands_go_through_the_rules(zone, capsys, monkeypatch):
    catalog, made, tmp_path = zone
    new_id = "20261122T050000Z-abcdef"
    results = posixpath.dirname(made.collection)

    def c2d_submit(session, params):
        config = params["*config"]
        assert config.startswith("/tempZone/home/alice/.c2d/submissions/")
        coll = catalog.mkcoll(f"{results}/{new_id}", session.username)
        coll.avus = [("c2d::task_id", new_id, ""), ("c2d::state", "queued", ""), ("c2d::submitted_by", session.username, ""),
                     ("c2d::created", "2026-11-22T05:00:00Z", "")]
        return f"task {new_id} queued: {results}/{new_id}\n"

    def c2d_cancel(session, params):
        coll = catalog.collections[params["*task"]]
        coll.avus = [a for a in coll.avus if a[0] != "c2d::state"] + [("c2d::state", "cancelled", "")]
        return "cancelled\n"

    catalog.rules.update(c2d_submit=c2d_submit, c2d_cancel=c2d_cancel)
    config = tmp_path / "task.json"
    config.write_text(json.dumps({
        "task_type": "image_classification", "inputs": {"collection": made.input_collection},
        "output": {"collection": results},
        "parameters": {"model": "/tempZone/home/alice/models/model.pt", "labels": "/tempZone/home/alice/models/labels.txt"},
    }))
    code, out, err = run_cli(capsys, monkeypatch, "submit", str(config))
    assert code == 0, err
    assert out.strip() == new_id
    assert catalog.rule_calls[-1]["instance_name"] == "irods_rule_engine_plugin-irods_rule_language-instance"

    code, out, _ = run_cli(capsys, monkeypatch, "status", new_id)
    assert code == 0 and "queued" in out
    code, out, _ = run_cli(capsys, monkeypatch, "list")
    assert new_id in out and made.task_id in out
    code, out, _ = run_cli(capsys, monkeypatch, "cancel", new_id)
    assert code == 0 and "cancelled" in out
    assert catalog.rule_calls[-1]["params"] == {"*task": f"{results}/{new_id}"}
    code, _, _ = run_cli(capsys, monkeypatch, "wait", new_id)
    assert code == 2
    code, out, _ = run_cli(capsys, monkeypatch, "wait", made.task_id)
    assert code == 0 and "succeeded" in out
    code, out, _ = run_cli(capsys, monkeypatch, "report", made.task_id, "-o", str(tmp_path))
    assert code == 0 and (tmp_path / f"{made.task_id}-report.html").read_text().startswith("<!doctype html>")


def test_zone_resume_and_a_silent_task(zone, capsys, monkeypatch):
    """A running task with no sign of life: shown stale; wait asks the server to check it
    (c2d_status), then gives up with exit code 4; resume goes through c2d_resume."""
    catalog, made, tmp_path = zone
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"heartbeat_lease_seconds": 0.5, "heartbeat_interval_seconds": 0.2}))
    monkeypatch.setenv(names.SETTINGS_ENV, str(settings))
    coll = catalog.collections[made.collection]
    coll.avus = [a for a in coll.avus if a[0] not in ("c2d::state", "c2d::finished")] + [
        ("c2d::state", "running", ""), ("c2d::heartbeat", "2026-11-22T02:03:30Z", "")]
    catalog.rules.update(c2d_status=lambda session, params: "state: stale\n")
    code, out, _ = run_cli(capsys, monkeypatch, "status", made.task_id)
    assert code == 0 and "stale" in out and "2026-11-22T02:03:30Z" in out
    code, out, err = run_cli(capsys, monkeypatch, "wait", made.task_id, "--poll", "0.1")
    assert code == 4 and "no sign of life" in err
    assert [c["params"] for c in catalog.rule_calls if "c2d_status" in c["body"]] == [{"*task": made.collection}]

    def c2d_resume(session, params):
        avus = catalog.collections[params["*task"]].avus
        catalog.collections[params["*task"]].avus = [a for a in avus if a[0] != "c2d::state"] + [("c2d::state", "queued", "")]
        return "state: queued\n"

    catalog.rules.update(c2d_resume=c2d_resume)
    code, _, err = run_cli(capsys, monkeypatch, "resume", made.task_id)
    assert code == 1 and "is stale; only a failed or cancelled task can be resumed" in err
    coll.avus = [a for a in coll.avus if a[0] != "c2d::state"] + [("c2d::state", "failed", "")]
    code, out, _ = run_cli(capsys, monkeypatch, "resume", made.task_id)
    assert code == 0 and "queued" in out
    assert catalog.rule_calls[-1]["params"] == {"*task": made.collection}


def test_resume_a_failed_task_locally(local, capsys, monkeypatch):
    local.runner = ScriptedRunner(part_size=2, fail_after=3)
    _, out, _ = run_cli(capsys, monkeypatch, *local.args("submit", str(local.config_file())))
    task_id = out.strip()
    code, _, err = run_cli(capsys, monkeypatch, *local.args("wait", task_id, "--poll", "0.05"))
    assert code == 1 and f"c2d resume {task_id}" in err
    local.runner = ScriptedRunner(part_size=2)
    code, out, err = run_cli(capsys, monkeypatch, *local.args("resume", task_id, "--wait"))
    assert code == 0 and "queued" in out, err
    assert len(local.runner.classified) == 4  # the first run's part (2 images) was kept
    assert_tagged_once_by(local.alice, task_id, expect=6)
    code, _, err = run_cli(capsys, monkeypatch, *local.args("resume", task_id))
    assert code == 1 and "is succeeded; only a failed or cancelled task can be resumed" in err


def test_zone_wrong_password_is_one_clear_line(zone, capsys, monkeypatch):
    catalog, _, tmp_path = zone
    from irods.password_obfuscation import encode

    (tmp_path / ".irodsA").write_text(encode("stale-password"))
    code, out, err = run_cli(capsys, monkeypatch, "list")
    assert code == 1 and out == ""
    assert err.startswith("error: iRODS at irods.example.org:1247 refused the login of alice#tempZone: wrong user name or password")
    assert "run iinit again" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_zone_rule_refusal_is_shown_verbatim(zone, capsys, monkeypatch):
    catalog, made, tmp_path = zone
    from irods import exception as prc

    def refuse(session, params):
        raise prc.SYS_NO_API_PRIV("container image 'evil:latest' is not allowed by the server settings")

    catalog.rules["c2d_submit"] = refuse
    code, out, err = run_cli(capsys, monkeypatch, "submit", "--logical", "/tempZone/home/alice/models/labels.txt")
    assert code == 1 and out == ""
    assert err.strip() == "error: container image 'evil:latest' is not allowed by the server settings"


def test_task_client_wait_polls_until_final(tmp_path):
    admin, alice = make_grid(tmp_path)
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner())
    from compute_to_data.domain.taskconfig import TaskConfig
    from compute_to_data.engine import create_task

    config = TaskConfig.from_document({
        "task_type": "image_classification", "inputs": {"collection": IMAGES, "pattern": "*.png"},
        "output": {"collection": RESULTS},
        "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
    })
    outcome = create_task(config, context).submit()
    client = TaskClient(alice)
    seen: list[str] = []
    ticks = iter(range(100))

    lifecycle = TaskService(alice, context.settings)

    def fake_sleep(seconds: float) -> None:
        if len(seen) == 3:
            lifecycle.machine.begin_run(outcome.collection, {names.A_PROGRESS: "2/6"})
        if len(seen) == 5:
            lifecycle.machine.transition(outcome.collection, TaskState.SUCCEEDED)

    result = client.wait(outcome.task_id, poll_seconds=1, on_update=lambda r: seen.append(r.get(names.A_STATE)),
                         sleep=fake_sleep, clock=lambda: float(next(ticks)))
    assert result.exit_code == 0 and seen[:3] == ["queued"] * 3 and "running" in seen and seen[-1] == "succeeded"
    timed = client.wait(outcome.task_id, timeout=0)
    assert timed.exit_code == 0  # already final: a timeout does not matter


def test_uploaded_configs_never_fire_the_upload_trigger(tmp_path):
    admin, alice = make_grid(tmp_path)
    config = tmp_path / "classify birds.c2d.json"
    config.write_text(json.dumps({
        "task_type": "image_classification", "inputs": {"collection": IMAGES}, "output": {"collection": RESULTS},
        "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
    }))
    logical = TaskClient(alice).upload_config(config)
    assert logical.startswith(f"{HOME}/.c2d/submissions/") and logical.endswith("-classify_birds.json")
    assert not logical.endswith(".c2d.json")
    assert alice.read_data_object(logical) == config.read_bytes()


def test_serve_builds_the_app_for_local_and_zone(local, zone, capsys, monkeypatch):
    import warnings

    import uvicorn

    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

    started: list[tuple] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.append((app, host, port)))
    code, _, err = run_cli(capsys, monkeypatch, *local.args("serve", "--listen-port", "8799"))
    assert code == 0 and "http://127.0.0.1:8799/" in err
    app, host, port = started[-1]
    assert (host, port) == ("127.0.0.1", 8799)
    page = TestClient(app, base_url="http://127.0.0.1").get("/tasks")
    assert page.status_code == 200 and ">alice<" in page.text
    # Only the address served answers (DNS rebinding), and names the settings list.
    assert TestClient(app, base_url="http://evil.example:8799").get("/tasks").status_code == 400
    settings = local.tmp / "web-settings.json"
    settings.write_text('{"web": {"allowed_hosts": ["reports.example.org"]}, "heartbeat_lease_seconds": 30}')
    code, _, err = run_cli(capsys, monkeypatch, *local.args("serve", "--listen-port", "8799", "--settings", str(settings)))
    app = started[-1][0]
    assert code == 0 and app.state.config.lease_seconds == 30
    assert TestClient(app, base_url="https://reports.example.org").get("/tasks").status_code == 200

    code, _, err = run_cli(capsys, monkeypatch, "serve", "--bind", "0.0.0.0")
    assert code == 0 and "clear text" in err  # warned: passwords need TLS off the loopback
    app, host, _ = started[-1]
    signin = TestClient(app, base_url="http://127.0.0.1").get("/tasks")
    assert "Sign in" in signin.text and "tempZone at irods.example.org:1247" in signin.text

    code, _, err = run_cli(capsys, monkeypatch, "serve", "--local", str(local.tmp / "nowhere"))
    assert code == 1 and "no LocalGrid at" in err and len(started) == 3
