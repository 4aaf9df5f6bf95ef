"""The Slurm runner without a cluster: what sbatch gets, the job script, how job states read.

Everything here runs against a fake of the Slurm commands; ``tests/runners/test_slurm_integration.py``
submits real jobs to the one-node cluster of ``scripts/slurm-env``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import NotAllowedError, RunnerError, SettingsError
from compute_to_data.domain.settings import (
    AllowedImage,
    ContainerLimits,
    Settings,
    SlurmResource,
    SlurmSettings,
)
from compute_to_data.runners import auto_candidates, choose_runner
from compute_to_data.runners.base import RunRequest
from compute_to_data.runners.slurm_runner import (
    JOB_DIR,
    STARTED_FILE,
    STATUS_FILE,
    STOP_FILE,
    JobState,
    SlurmCommands,
    SlurmRunner,
    SlurmUnavailable,
    describe_pending,
    parse_memory_mb,
)
from tests.support.notebook_support import SLEEP_NOTEBOOK

IMAGE = "compute-to-data/classifier:0.1.0"
RESOURCE = "cluster_resc"


# --- building blocks ---------------------------------------------------------------------------
def slurm_settings(tmp_path: Path, **slurm: Any) -> Settings:
    values: dict[str, Any] = {"resources": {RESOURCE: SlurmResource(str(tmp_path / "staging"))},
                              "poll_interval_seconds": 0.05}
    values.update(slurm)
    return Settings(
        allowed_images=(AllowedImage(IMAGE),), default_image=IMAGE, container_user="999:995",
        limits=ContainerLimits(memory="3g", cpus=1.5, pids=128, shm_size="64m"),
        allowed_runners=("slurm",), slurm=SlurmSettings(**values), source="/etc/irods/compute_to_data.json",
    )


def make_request(tmp_path: Path, *, task_id: str = "20261122T020304Z-3f9a1c", gpus: int = 0, timeout: int = 61,
                 **parameters: Any) -> RunRequest:
    workdir = tmp_path / "staging" / task_id
    for sub in ("inputs", "task", "outputs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    params = {"task_id": task_id, "notebook": "sleep", "input_dir": "/inputs", "output_dir": "/outputs", **parameters}
    (workdir / "task" / names.PARAMS_FILE).write_text(json.dumps(params))
    return RunRequest(task_id=task_id, notebook_name="sleep", notebook_path=SLEEP_NOTEBOOK, workdir=workdir,
                      parameters=params, timeout_seconds=timeout, image=IMAGE, gpus=gpus, resource_name=RESOURCE)


class FakeCommands:
    """Stands for sbatch/squeue/scancel: scripted states; ``on_state`` plays the job's script."""

    def __init__(self, states: list[JobState | None | Exception], *, submit: tuple[str | None, str] = ("42", ""),
                 on_state: Callable[[int, Path], None] | None = None) -> None:
        self.states = list(states)
        self.submit_result = submit
        self.on_state = on_state
        self.options: list[str] = []
        self.script = ""
        self.job_dir: Path | None = None
        self.cancelled: list[str] = []
        self.state_calls = 0
        self.named: dict[str, str] = {}
        self.directories: dict[str, str] = {}
        self.after_cancel: list[JobState | None | Exception] | None = None

    def _path(self, tool: str) -> str:
        return tool

    def ping(self) -> None:
        pass

    def submit(self, options, script: Path):
        self.options, self.script, self.job_dir = list(options), script.read_text(), script.parent
        return self.submit_result

    def state(self, job_id: str) -> JobState | None:
        self.state_calls += 1
        if self.on_state is not None and self.job_dir is not None:
            self.on_state(self.state_calls, self.job_dir)
        value = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(value, Exception):
            raise value
        return value

    def cancel(self, job_ids) -> None:
        self.cancelled.extend(job_ids)
        if self.after_cancel is not None:
            self.states = list(self.after_cancel)

    def jobs_named(self, name: str) -> dict[str, str]:
        return dict(self.named)

    def job_directory(self, job_id: str) -> str | None:
        return self.directories.get(job_id)


def job_files(started: bool = True, status: dict[str, str] | None = None) -> Callable[[Path], None]:
    def write(job_dir: Path) -> None:
        if started:
            (job_dir / STARTED_FILE).write_text("started=1700000000.5\nnode=gpu07\njob=42\n")
        if status is not None:
            (job_dir / STATUS_FILE).write_text("".join(f"{k}={v}\n" for k, v in status.items()))
    return write


def runner_for(tmp_path: Path, commands: FakeCommands, **slurm: Any) -> SlurmRunner:
    runner = SlurmRunner(slurm_settings(tmp_path, **slurm), commands=commands)  # type: ignore[arg-type]
    runner.file_check_interval = 0.01
    runner.status_grace = 0.2
    return runner


# --- what sbatch gets --------------------------------------------------------------------------
def test_sbatch_options_come_only_from_settings_resource_and_limits(tmp_path):
    settings = slurm_settings(tmp_path, partition="gpu", account="irods", qos="normal",
                              extra_options=("--constraint=a100", "--exclusive"),
                              resources={RESOURCE: SlurmResource(str(tmp_path / "staging"), partition="gpu-long")})
    runner = SlurmRunner(settings, commands=FakeCommands([None]))  # type: ignore[arg-type]
    # a researcher's parameters that look like sbatch options stay notebook parameters
    request = make_request(tmp_path, gpus=2, timeout=61, sbatch="--partition=everything", qos="--qos=high")
    job_dir = request.workdir / JOB_DIR
    options = runner.submit_options(request, job_dir, runner.resource_settings(request))
    assert options == [
        "--parsable", f"--job-name=c2d-{request.task_id}", f"--output={job_dir}/job.log", f"--chdir={job_dir}",
        "--export=NONE", "--no-requeue", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--mem=3072M",
        "--time=2", "--gres=gpu:2", "--partition=gpu-long", "--account=irods", "--qos=normal",
        "--constraint=a100", "--exclusive",
    ]


def test_no_gres_without_gpus_and_no_partition_unless_configured(tmp_path):
    runner = SlurmRunner(slurm_settings(tmp_path), commands=FakeCommands([None]))  # type: ignore[arg-type]
    request = make_request(tmp_path, timeout=30)
    options = runner.submit_options(request, request.workdir / JOB_DIR, runner.resource_settings(request))
    assert "--time=1" in options
    assert not [o for o in options if o.startswith(("--gres", "--partition", "--account", "--qos"))]


@pytest.mark.parametrize("option", ["--time=99:00:00", "--gres=gpu:8", "--partition=all", "--mem=1T", "--wrap=id",
                                    "--export=ALL", "--qos=high"])
def test_extra_options_may_not_set_what_the_runner_sets(option):
    with pytest.raises(SettingsError, match=f"may not set {option.split('=')[0]}"):
        Settings.from_document({"slurm": {"extra_options": [option]}}, "settings.json")


@pytest.mark.parametrize("document, message", [
    ({"extra_options": ["-p gpu"]}, "is not one long option"),
    ({"extra_options": "--exclusive"}, "must be a list"),
    ({"mode": "bare"}, "slurm.mode must be"),
    ({"container_engine": "singularity"}, "container_engine must be"),
    ({"resources": {"r": {}}}, "needs a staging_directory"),
    ({"resources": {"r": {"staging_directory": "relative/dir"}}}, "absolute path"),
    ({"resources": {"r": {"staging_directory": "/s", "gres": "gpu:8"}}}, "unknown setting"),
    ({"partitoin": "gpu"}, "unknown slurm setting"),
])
def test_malformed_slurm_settings_are_refused(document, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_document({"slurm": document}, "settings.json")


def test_slurm_settings_load_round_trip_and_name_the_staging_directory():
    document = {
        "allowed_runners": ["slurm"],
        "slurm": {"partition": "gpu", "account": "irods", "extra_options": ["--constraint=a100"], "mode": "direct",
                  "python": "/opt/c2d/venv/bin/python",
                  "resources": {"cluster_resc": {"staging_directory": "/gpfs/vault/.c2d_staging", "qos": "long"}}},
    }
    settings = Settings.from_document(document, "settings.json")
    assert settings.slurm.resource("cluster_resc") == SlurmResource("/gpfs/vault/.c2d_staging", qos="long")
    assert settings.staging_directory_for("gateway", "cluster_resc") == Path("/gpfs/vault/.c2d_staging")
    assert settings.staging_directory_for("gateway", "other_resc") == Path(settings.staging_directory)
    again = Settings.from_document(settings.to_document(), "again")
    assert again.slurm == settings.slurm


def test_memory_sizes():
    assert [parse_memory_mb(s) for s in ("8g", "512m", "1.5G", "2gb", str(2**30), "1t")] == [
        8192, 512, 1536, 2048, 1024, 2**20]
    with pytest.raises(NotAllowedError, match="not a size"):
        parse_memory_mb("lots")


def test_auto_means_slurm_where_the_settings_configure_it(tmp_path):
    settings = slurm_settings(tmp_path)
    assert auto_candidates(settings) == ["slurm"]
    assert choose_runner("auto", settings).name == "slurm"
    both = Settings(allowed_runners=("docker", "inprocess", "slurm"))  # slurm allowed, no cluster configured
    assert auto_candidates(both) == ["docker", "inprocess"]


def test_auto_picks_slurm_only_for_the_resources_listed_under_slurm_resources(tmp_path):
    import dataclasses

    settings = dataclasses.replace(slurm_settings(tmp_path), allowed_runners=("slurm", "docker", "inprocess"))
    assert auto_candidates(settings, RESOURCE) == ["slurm", "docker", "inprocess"]
    assert auto_candidates(settings, "gpu_resc") == ["docker", "inprocess"]  # a Docker resource of the same server
    assert auto_candidates(settings) == ["slurm", "docker", "inprocess"]  # resource not chosen yet
    only_slurm = slurm_settings(tmp_path)
    assert choose_runner("auto", only_slurm, RESOURCE).name == "slurm"
    with pytest.raises(NotAllowedError, match="for resource 'gpu_resc'.*only the resources listed under slurm.resources"):
        choose_runner("auto", only_slurm, "gpu_resc")


def test_a_resource_without_slurm_settings_is_refused(tmp_path):
    runner = SlurmRunner(slurm_settings(tmp_path), commands=FakeCommands([None]))  # type: ignore[arg-type]
    request = make_request(tmp_path)
    request.resource_name = "gpu_resc"
    with pytest.raises(RunnerError, match="not a Slurm resource.*slurm.resources"):
        runner.run(request)
    elsewhere = make_request(tmp_path / "elsewhere")
    with pytest.raises(RunnerError, match="not under .*shared staging directory"):
        runner.run(elsewhere)


def test_a_task_id_that_is_not_a_plain_name_is_never_submitted(tmp_path):
    commands = FakeCommands([None])
    runner = runner_for(tmp_path, commands)
    with pytest.raises(NotAllowedError, match="not a plain name"):
        runner.run(make_request(tmp_path, task_id="x;rm -rf ~"))
    assert commands.options == []


# --- the job script ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["container", "direct"])
def test_the_job_script_is_valid_bash(tmp_path, mode):
    runner = SlurmRunner(slurm_settings(tmp_path, mode=mode), commands=FakeCommands([None]))  # type: ignore[arg-type]
    request = make_request(tmp_path, timeout=3600, gpus=1)
    script = runner.job_script(request, request.workdir / JOB_DIR)
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "TIME_LIMIT_SECONDS=3600" in script


def test_the_container_job_runs_the_docker_runners_confinement(tmp_path):
    runner = SlurmRunner(slurm_settings(tmp_path), commands=FakeCommands([None]))  # type: ignore[arg-type]
    request = make_request(tmp_path, gpus=2)
    script = runner.job_script(request, request.workdir / JOB_DIR)
    run_args = next(line for line in script.splitlines() if line.startswith("RUN_ARGS=("))
    for flag in ("--user=999:995", "--network=none", "--cap-drop=ALL", "--security-opt=no-new-privileges",
                 "--read-only", "--memory=3g", "--memory-swap=3g", "--cpus=1.5", "--pids-limit=128",
                 f"--volume={request.input_dir.resolve()}:/inputs:ro", f"--volume={request.task_dir.resolve()}:/task:ro",
                 f"--volume={request.output_dir.resolve()}:/outputs:rw", f"--label=c2d.task_id={request.task_id}"):
        assert flag in run_args
    assert "privileged" not in script and "--gpus" in script and "SLURM_JOB_GPUS" in script
    assert '--pull=never' in script and "IMAGE=compute-to-data/classifier:0.1.0" in script


def test_rootless_podman_keeps_the_service_accounts_uid(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 999)
    runner = SlurmRunner(slurm_settings(tmp_path, container_engine="podman"),
                         commands=FakeCommands([None]))  # type: ignore[arg-type]
    request = make_request(tmp_path, gpus=1)
    script = runner.job_script(request, request.workdir / JOB_DIR)
    assert "ENGINE=podman" in script and "--userns=keep-id" in script and "nvidia.com/gpu=" in script


def test_an_image_off_the_allowlist_is_refused_before_submission(tmp_path):
    commands = FakeCommands([None])
    runner = runner_for(tmp_path, commands)
    request = make_request(tmp_path)
    request.image = "evil/miner:latest"
    with pytest.raises(NotAllowedError, match="not allowed"):
        runner.run(request)
    assert commands.options == []


# --- how a job's state reads ----------------------------------------------------------------------
def test_pending_reasons_in_words():
    assert describe_pending("Resources", "7", gpus=1) == "waiting for a GPU (Slurm job 7: Resources)"
    assert describe_pending("Resources", "7", gpus=0).startswith("waiting for free CPUs and memory")
    assert describe_pending("Priority", "7", 0).startswith("waiting behind jobs of higher priority")
    assert describe_pending("QOSMaxJobsPerUserLimit", "7", 0).startswith("waiting: a job limit")
    assert describe_pending("SomethingNew", "7", 0) == "waiting in the Slurm queue (Slurm job 7: SomethingNew)"


@pytest.mark.parametrize("reason", [
    "Nodes_required_for_job_are_DOWN,_DRAINED_or_reserved_for_jobs_in_higher_priority_partitions",
    "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions",
])
def test_pending_reasons_match_with_underscores_and_with_spaces_as_squeue_prints_them(reason):
    assert describe_pending(reason, "7", 0) == f"waiting for free CPUs and memory on the cluster (Slurm job 7: {reason})"
    assert describe_pending("ReqNodeNotAvail, UnavailableNodes:gpu07", "7", 0).startswith(
        "waiting: the nodes it needs are down")


def test_a_stop_on_request_tells_the_job_why_and_a_silent_stop_does_not(tmp_path):
    job_dir = tmp_path / "staging" / "t1" / JOB_DIR
    job_dir.mkdir(parents=True)
    commands = FakeCommands([JobState("RUNNING", "None", "node1"), None])
    commands.named = {"42": str(job_dir)}
    runner = SlurmRunner(slurm_settings(tmp_path), commands=commands)  # type: ignore[arg-type]
    assert runner.stop("42", "t1", wait=1.0, reason="cancelled on request") is True
    assert (job_dir / STOP_FILE).read_text() == "cancelled on request" and commands.cancelled == ["42"]
    (job_dir / STOP_FILE).unlink()
    commands.states = [JobState("RUNNING", "None", "node1"), None]
    assert runner.stop("42", "t1", wait=1.0) is True  # a dead run's job: stopped without a word
    assert not (job_dir / STOP_FILE).exists()
    commands.named, commands.directories = {}, {"42": str(job_dir)}  # a cancel names the job only
    commands.states = [JobState("RUNNING", "None", "node1"), None]
    assert runner.stop("42", None, wait=1.0, reason="cancelled on request") is True
    assert (job_dir / STOP_FILE).read_text() == "cancelled on request"


def test_a_pending_job_is_queued_with_its_reason_then_running(tmp_path):
    seen: list[tuple[str, str | None]] = []
    started: list[tuple[str, str]] = []

    def script(call: int, job_dir: Path) -> None:
        if call == 3:
            job_files(status={"ended": "1700000003", "exit_code": "0", "oom": "0", "stopped": "0",
                              "node": "gpu07"})(job_dir)
            (job_dir.parent / "outputs" / names.RESULT_FILE).write_text(json.dumps(
                {"status": "succeeded", "images_total": 3, "images_done": 3}))

    commands = FakeCommands([JobState("PENDING", "Resources"), JobState("RUNNING", "None", "gpu07"),
                             JobState("COMPLETED", "None", "gpu07")], on_state=script)
    request = make_request(tmp_path, gpus=1)
    request.on_status = lambda phase, reason: seen.append((phase, reason))
    request.on_started = lambda host, handle: started.append((host, handle))
    result = runner_for(tmp_path, commands).run(request)
    assert result.succeeded, result.error
    assert seen == [("queued", "waiting for a GPU (Slurm job 42: Resources)"), ("running", None)]
    assert started and started[0][1] == "42"
    assert (result.handle, result.node, result.runner) == ("42", "gpu07", "slurm")
    assert result.log_name == names.CONTAINER_LOG


@pytest.mark.parametrize("state, expected", [
    ("TIMEOUT", "timed out after 61 s: Slurm job 42 reached its time limit (2 min)"),
    ("OUT_OF_MEMORY", "out of memory: Slurm job 42 exceeded its memory limit (3g)"),
    ("NODE_FAIL", "node failure: node gpu07 stopped answering while Slurm job 42 ran"),
    ("PREEMPTED", "preempted: Slurm job 42 was stopped to make room for a job of higher priority"),
    ("CANCELLED", "cancelled: Slurm job 42 was cancelled outside this task"),
])
def test_how_slurm_ended_a_job_is_the_tasks_error(tmp_path, state, expected):
    def script(call: int, job_dir: Path) -> None:
        if call == 1:
            job_files()(job_dir)
            if state not in ("NODE_FAIL", "OUT_OF_MEMORY"):  # the script's trap ran: it says it was stopped
                job_files(status={"ended": "1700000009", "exit_code": "143", "oom": "0", "stopped": "1",
                                  "node": "gpu07"})(job_dir)

    commands = FakeCommands([JobState("RUNNING", "None", "gpu07"), JobState(state, "x", "gpu07")], on_state=script)
    result = runner_for(tmp_path, commands).run(make_request(tmp_path))
    assert result.status == "failed"
    assert result.error.startswith(expected), result.error
    assert result.node == "gpu07" and commands.cancelled == []


def test_an_oom_killed_container_is_out_of_memory(tmp_path):
    def script(call: int, job_dir: Path) -> None:
        job_files(status={"ended": "1700000009", "exit_code": "137", "oom": "1", "stopped": "0", "node": "gpu07",
                          "image_id": "sha256:" + "ab" * 32})(job_dir)

    commands = FakeCommands([JobState("RUNNING", "None", "gpu07")], on_state=script)
    result = runner_for(tmp_path, commands).run(make_request(tmp_path))
    assert result.error.startswith("out of memory: the run exceeded the container's memory limit (3g)")
    assert result.image_digest == "sha256:" + "ab" * 32  # what ran on the node


def test_a_job_that_crashed_without_result_says_what_it_printed_last(tmp_path):
    def script(call: int, job_dir: Path) -> None:
        (job_dir / "job.log").write_text("[c2d slurm job] container image X is allowed but not present on node gpu07\n")
        job_files(status={"ended": "1", "exit_code": "125", "oom": "0", "stopped": "0", "node": "gpu07"})(job_dir)

    result = runner_for(tmp_path, FakeCommands([JobState("RUNNING")], on_state=script)).run(make_request(tmp_path))
    assert result.error == (f"the Slurm job exited with code 125 without writing {names.RESULT_FILE}; last output: "
                            "[c2d slurm job] container image X is allowed but not present on node gpu07")


def test_more_gpus_than_any_node_has_is_a_clear_error(tmp_path):
    commands = FakeCommands([None], submit=(None, "Batch job submission failed: Requested node configuration is "
                                                  "not available"))
    with pytest.raises(RunnerError, match=r"no node in the default partition has what it asks for \(4 GPU\(s\) from "
                                          r"COMPUTE_RESOURCE_GPUS of resource cluster_resc"):
        runner_for(tmp_path, commands).run(make_request(tmp_path, gpus=4))


def test_a_refused_account_names_the_settings(tmp_path):
    commands = FakeCommands([None], submit=(None, "Batch job submission failed: Invalid account or "
                                                  "account/partition combination specified"))
    with pytest.raises(RunnerError, match="slurm.account .* Slurm account allowed to submit"):
        runner_for(tmp_path, commands, account="nobody").run(make_request(tmp_path))


def test_losing_the_controller_for_too_long_ends_the_run(tmp_path):
    commands = FakeCommands([JobState("RUNNING"), SlurmUnavailable("the Slurm controller does not answer")],
                            on_state=lambda call, d: job_files()(d))
    runner = runner_for(tmp_path, commands)
    runner.lost_contact_seconds = 0.3
    result = runner.run(make_request(tmp_path))
    assert result.status == "failed" and result.error.startswith("lost contact with the Slurm controller")


def test_our_own_timeout_backstop_scancels_with_a_reason_the_job_can_read(tmp_path):
    commands = FakeCommands([JobState("RUNNING")], on_state=lambda call, d: job_files()(d))
    commands.after_cancel = [JobState("COMPLETING"), JobState("CANCELLED")]
    runner = runner_for(tmp_path, commands)
    runner.timeout_grace = -60.5  # the backstop fires half a second after the job runs
    result = runner.run(make_request(tmp_path, timeout=61))
    assert commands.cancelled == ["42"]
    assert result.error == "timed out after 61 s"
    assert (commands.job_dir / STOP_FILE).read_text() == "timed out after 61 s"


# --- the Slurm commands ------------------------------------------------------------------------------
def fake_tool(answers: dict[str, tuple[int, str, str]]):
    calls: list[list[str]] = []

    def run(args, timeout):
        calls.append(list(args))
        code, out, err = answers[Path(args[0]).name]
        return subprocess.CompletedProcess(args, code, out, err)
    return run, calls


def test_commands_read_squeue_then_sacct():
    run, calls = fake_tool({"squeue": (0, "RUNNING|None|gpu07\n", ""), "sacct": (1, "", "")})
    commands = SlurmCommands("/opt/slurm/bin", runner=run)
    assert commands.state("42") == JobState("RUNNING", "None", "gpu07")
    assert calls[0][:1] == ["/opt/slurm/bin/squeue"] and "--jobs=42" in calls[0]
    run, _ = fake_tool({"squeue": (1, "", "slurm_load_jobs error: Invalid job id specified"),
                        "sacct": (0, "TIMEOUT|gpu07\n", "")})
    assert SlurmCommands("/x", runner=run).state("42") == JobState("TIMEOUT", "", "gpu07")
    run, _ = fake_tool({"squeue": (1, "", "Invalid job id specified"),
                        "sacct": (1, "", "Slurm accounting storage is disabled")})
    assert SlurmCommands("/x", runner=run).state("42") is None
    run, _ = fake_tool({"squeue": (1, "", "squeue: error: Unable to contact slurm controller (connect failure)")})
    with pytest.raises(SlurmUnavailable, match="does not answer"):
        SlurmCommands("/x", runner=run).state("42")


def test_commands_parse_sbatch_answers():
    run, _ = fake_tool({"sbatch": (0, "1234;cluster\n", "")})
    assert SlurmCommands("/x", runner=run).submit(["--parsable"], Path("/j.sh")) == ("1234", "")
    run, _ = fake_tool({"sbatch": (1, "", "sbatch: error: Batch job submission failed: Invalid qos specification\n")})
    assert SlurmCommands("/x", runner=run).submit([], Path("/j.sh")) == (
        None, "Batch job submission failed: Invalid qos specification")


def test_missing_commands_say_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RunnerError, match="slurm-client.*commands_directory"):
        SlurmCommands().ping()


# --- from another process ----------------------------------------------------------------------------
def test_is_alive_and_stop_by_job_id(tmp_path):
    commands = FakeCommands([JobState("RUNNING")])
    runner = runner_for(tmp_path, commands)
    assert runner.is_alive("42") is True
    commands.states = [JobState("RUNNING"), JobState("COMPLETING"), JobState("CANCELLED")]
    assert runner.stop("42", wait=10) is True
    assert commands.cancelled == ["42"]
    commands.states = [JobState("CANCELLED")]
    assert runner.is_alive("42") is False and runner.stop("42") is False
    with pytest.raises(RunnerError, match="not a Slurm job id"):
        runner.is_alive("42; scancel -u everyone")


def test_cancel_from_another_process_finds_the_job_by_name_and_says_why(tmp_path):
    commands = FakeCommands([JobState("RUNNING")])
    job_dir = tmp_path / "t" / JOB_DIR
    job_dir.mkdir(parents=True)
    commands.named = {"42": str(job_dir)}
    assert runner_for(tmp_path, commands).cancel("20261122T020304Z-3f9a1c") is True
    assert commands.cancelled == ["42"]
    assert (job_dir / STOP_FILE).read_text() == "cancelled on request"


def test_a_missing_cluster_fails_under_ci_and_skips_elsewhere(monkeypatch):
    from tests.support.setup_scripts import unavailable

    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="Slurm is required in CI .*: slurmctld does not answer"):
        unavailable("Slurm", "slurmctld does not answer")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="Slurm not available"):
        unavailable("Slurm", "slurmctld does not answer")
