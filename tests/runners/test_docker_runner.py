"""The docker runner: what the container may see and do, and how runs end.

Unit tests check the container's configuration against a fake docker client (no daemon);
the ``docker``-marked tests run real containers from the test image (the classifier image plus
``tests/data/notebooks``) and look from inside, with ``isolation_probe.ipynb``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import NotAllowedError, RunnerError
from compute_to_data.domain.settings import AllowedImage, ContainerLimits, Settings
from compute_to_data.runners.base import RunRequest
from compute_to_data.runners.docker_runner import (
    LABEL_RUN_ID,
    LABEL_TASK_ID,
    DockerRunner,
    visible_gpus,
)
from tests.support.docker_env import DockerEnv

IMAGE = "compute-to-data/classifier-test:0.1.0"
IMAGE_ID = "sha256:" + "ab" * 32




# --- building blocks ---------------------------------------------------------------------------
def make_workdir(tmp_path: Path, task_id: str, notebook: str, files: dict[str, str] | None = None,
                 **parameters: Any) -> TaskWorkdir:
    """A staged task as the engine lays it out: a vault with replicas, hard links to some of them."""
    vault = tmp_path / "vault"
    files = files if files is not None else {"a.png": "a", "sub/b.png": "b"}
    for rel, content in {**files, "not_an_input.png": "secret", "other_user/c.png": "c"}.items():
        path = vault / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    workdir = TaskWorkdir(tmp_path / "staging", task_id)
    workdir.create()
    for rel in files:
        workdir.stage_input(str(vault / rel), rel)
    params = {
        "task_id": task_id, "notebook": notebook, "input_dir": names.CONTAINER_INPUT_DIR,
        "output_dir": names.CONTAINER_OUTPUT_DIR, "model_path": "/task/model/m.pt",
        "labels_path": "/task/model/labels.txt", "logical_root": "/tempZone/home/alice/images",
        "batch_size": 1, "score_threshold": 0.0, "top_k": 1, "image_size": None, "num_workers": 0,
        "device": "auto", **parameters,
    }
    (workdir.task_dir / names.PARAMS_FILE).write_text(json.dumps(params))
    (workdir.task_dir / names.PARAMS_FILE).chmod(0o644)
    return workdir


def make_request(workdir: TaskWorkdir, task_id: str, notebook: str, *, image: str | None = IMAGE,
                 timeout: int = 300, gpus: int = 0, progress=None) -> RunRequest:
    params = json.loads((workdir.task_dir / names.PARAMS_FILE).read_text())
    return RunRequest(task_id=task_id, notebook_name=notebook, notebook_path=Path(f"/unused/{notebook}.ipynb"),
                      workdir=workdir.root, parameters=params, timeout_seconds=timeout, image=image, gpus=gpus,
                      resource_name="gpu_resc", progress=progress)


def settings_for(image: str = IMAGE, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allowed_images": (AllowedImage(image),), "default_image": image,
        "container_user": "999:995", "limits": ContainerLimits(memory="3g", cpus=1.5, pids=128, shm_size="64m"),
        "source": "/etc/irods/compute_to_data.json",
    }
    values.update(overrides)
    return Settings(**values)


class FakeImage:
    def __init__(self, image_id: str = IMAGE_ID, repo_digests: list[str] | None = None) -> None:
        self.id = image_id
        self.attrs = {"RepoDigests": repo_digests or []}


class FakeContainer:
    def __init__(self, client: "FakeClient", kwargs: dict[str, Any]) -> None:
        self.client, self.kwargs = client, kwargs
        self.id = self.short_id = f"c{len(client.created)}"
        self.attrs: dict[str, Any] = {"State": {"ExitCode": client.exit_code, "OOMKilled": False, "Status": "running"}}
        self.labels = kwargs.get("labels") or {}
        self.removed = self.killed = False

    def start(self) -> None:
        self.client.events.append("start")

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        if self.client.wait_behaviour == "hang" and not self.killed:
            time.sleep(min(timeout or 0, 0.05))
            raise requests.exceptions.ConnectionError("UnixHTTPConnectionPool: Read timed out.")
        if self.client.wait_behaviour == "interrupt":
            raise KeyboardInterrupt
        return {"StatusCode": self.client.exit_code}

    def reload(self) -> None:
        pass

    def logs(self, **_: Any) -> bytes:
        return b"fake log\n"

    def kill(self) -> None:
        self.killed = True
        self.attrs["State"]["Status"] = "exited"
        self.client.events.append("kill")

    def remove(self, force: bool = False) -> None:
        self.removed = True
        self.client.events.append("remove")


class FakeClient:
    """Just enough of docker.DockerClient: images.get, containers.create/list."""

    def __init__(self, images: dict[str, FakeImage] | None = None, exit_code: int = 1,
                 wait_behaviour: str = "exit") -> None:
        self._images = images if images is not None else {IMAGE: FakeImage()}
        self.created: list[FakeContainer] = []
        self.events: list[str] = []
        self.exit_code = exit_code
        self.wait_behaviour = wait_behaviour
        self.images = self
        self.containers = _FakeContainers(self)

    def get(self, name: str) -> FakeImage:  # images.get
        if name not in self._images:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return self._images[name]

    def create(self, image: str, **kwargs: Any) -> FakeContainer:  # containers.create
        container = FakeContainer(self, {"image": image, **kwargs})
        self.created.append(container)
        self.events.append("create")
        return container

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:  # containers.list
        found = [c for c in self.created if not c.removed and (all or not c.killed)]
        if filters and "label" in filters:
            key, _, value = filters["label"].partition("=")
            found = [c for c in found if (c.kwargs.get("labels") or {}).get(key) == value]
        return found

    def get_container(self, container_id: str) -> FakeContainer:  # containers.get
        for container in self.created:
            if container.id == container_id and not container.removed:
                return container
        raise docker.errors.NotFound(f"No such container: {container_id}")


class _FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def create(self, image: str, **kwargs: Any) -> FakeContainer:
        return self.client.create(image, **kwargs)

    def list(self, **kwargs: Any) -> list[FakeContainer]:
        return self.client.list(**kwargs)

    def get(self, container_id: str) -> FakeContainer:
        return self.client.get_container(container_id)


# --- unit tests: the container's configuration -------------------------------------------------
def test_container_is_locked_down(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    runner = DockerRunner(settings_for(), client=FakeClient())
    request = make_request(workdir, "t1", "classify_images")
    kwargs = runner.container_kwargs(request, runner.check_image(IMAGE), runner.container_user())

    assert kwargs["network_mode"] == "none"
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["privileged"] is False
    assert kwargs["read_only"] is True
    assert set(kwargs["tmpfs"]) == {"/tmp"}
    assert kwargs["user"] == "999:995"
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == "3g"
    assert kwargs["nano_cpus"] == int(min(1.5, os.cpu_count() or 1) * 1e9)
    assert kwargs["pids_limit"] == 128 and kwargs["shm_size"] == "64m"
    assert kwargs["volumes"] == {
        str(workdir.input_dir.resolve()): {"bind": "/inputs", "mode": "ro"},
        str(workdir.task_dir.resolve()): {"bind": "/task", "mode": "ro"},
        str(workdir.output_dir.resolve()): {"bind": "/outputs", "mode": "rw"},
    }
    assert kwargs["labels"][LABEL_TASK_ID] == "t1"
    assert kwargs["command"] == ["--params", "/task/params.json", "--notebook",
                                 "/opt/c2d/notebooks/classify_images.ipynb", "--output-dir", "/outputs"]
    assert "device_requests" not in kwargs  # no GPU unless the resource declares one


def test_gpus_only_through_device_requests_when_the_resource_declares_them(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    runner = DockerRunner(settings_for(), client=FakeClient())
    request = make_request(workdir, "t1", "classify_images", gpus=2)
    kwargs = runner.container_kwargs(request, runner.check_image(IMAGE), runner.container_user())
    [device_request] = kwargs["device_requests"]
    assert isinstance(device_request, docker.types.DeviceRequest)
    assert device_request["Count"] == 2 and device_request["Capabilities"] == [["gpu"]]


@pytest.mark.parametrize(("shown", "expected"), [(0, None), (1, 1), (2, 2), (8, 2)])
def test_the_gpu_request_never_asks_for_more_than_the_host_shows(tmp_path, shown, expected):
    """A CUDA image runs on the CPU where the host has no GPU; Docker would refuse the request."""
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    client = FakeClient(exit_code=0)
    runner = DockerRunner(settings_for(), client=client, gpu_probe=lambda: shown)
    runner.run(make_request(workdir, "t1", "classify_images", gpus=2))
    created = client.created[0].kwargs
    if expected is None:
        assert "device_requests" not in created
    else:
        [device_request] = created["device_requests"]
        assert device_request["Count"] == expected and device_request["Capabilities"] == [["gpu"]]
    # the arguments themselves (what the Slurm runner hands to a node) still say what the resource declares
    kwargs = runner.container_kwargs(make_request(workdir, "t1", "classify_images", gpus=2),
                                     runner.check_image(IMAGE), runner.container_user())
    assert kwargs["device_requests"][0]["Count"] == 2


def test_no_gpu_probe_without_a_gpu_request(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    client = FakeClient(exit_code=0)

    def probe() -> int:
        raise AssertionError("a run that asks for no GPU never looks for one")

    DockerRunner(settings_for(), client=client, gpu_probe=probe).run(make_request(workdir, "t1", "classify_images"))
    assert "device_requests" not in client.created[0].kwargs


def test_visible_gpus_counts_the_nvidia_driver_entries(tmp_path):
    assert visible_gpus(tmp_path / "absent") == 0  # no driver loaded
    (tmp_path / "0000:17:00.0").mkdir()
    (tmp_path / "0000:65:00.0").mkdir()
    (tmp_path / "README").write_text("")
    assert visible_gpus(tmp_path) == 2


def test_cpu_limit_never_exceeds_the_host(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    runner = DockerRunner(settings_for(limits=ContainerLimits(cpus=512.0)), client=FakeClient())
    kwargs = runner.container_kwargs(make_request(workdir, "t1", "classify_images"), runner.check_image(IMAGE),
                                     runner.container_user())
    assert kwargs["nano_cpus"] == (os.cpu_count() or 1) * 10**9


@pytest.mark.parametrize("user", ["0:0", "0:995", "999:0"])
def test_never_root_from_settings(user):
    runner = DockerRunner(settings_for(container_user=user), client=FakeClient())
    with pytest.raises(NotAllowedError, match="refusing to run a task container as root"):
        runner.container_user()


def test_never_root_when_the_service_account_is_root(monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "getgid", lambda: 0)
    runner = DockerRunner(settings_for(container_user=None), client=FakeClient())
    with pytest.raises(NotAllowedError, match="set container_user"):
        runner.container_user()


def test_container_user_defaults_to_the_service_account(monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: 999)
    monkeypatch.setattr(os, "getgid", lambda: 995)
    assert DockerRunner(settings_for(container_user=None), client=FakeClient()).container_user() == (999, 995)


def test_notebook_must_be_a_name(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    runner = DockerRunner(settings_for(), client=FakeClient())
    with pytest.raises(NotAllowedError, match="must be a name"):
        runner.container_kwargs(make_request(workdir, "t1", "../../etc/evil"), runner.check_image(IMAGE), (999, 995))


def test_image_not_on_the_allowlist_is_refused_before_any_container(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    client = FakeClient(images={IMAGE: FakeImage(), "evil/miner:latest": FakeImage()})
    runner = DockerRunner(settings_for(), client=client)
    with pytest.raises(NotAllowedError, match="'evil/miner:latest' is not allowed.*allowed images: " + IMAGE):
        runner.run(make_request(workdir, "t1", "classify_images", image="evil/miner:latest"))
    assert client.created == []
    assert list(workdir.output_dir.iterdir()) == []


def test_pinned_digest_must_match(tmp_path):
    settings = settings_for(allowed_images=(AllowedImage(IMAGE, "sha256:" + "cd" * 32),))
    runner = DockerRunner(settings, client=FakeClient())
    with pytest.raises(NotAllowedError, match="pin sha256:cdcd"):
        runner.check_image(IMAGE)
    assert DockerRunner(settings_for(allowed_images=(AllowedImage(IMAGE, IMAGE_ID),)),
                        client=FakeClient()).check_image(IMAGE).id == IMAGE_ID


def test_allowed_image_missing_on_the_host_is_never_pulled():
    runner = DockerRunner(settings_for(), client=FakeClient(images={}))
    with pytest.raises(RunnerError, match="not present on this host.*c2d image build"):
        runner.check_image(IMAGE)


def test_container_removed_when_the_caller_is_interrupted(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    client = FakeClient(wait_behaviour="interrupt")
    runner = DockerRunner(settings_for(), client=client)
    with pytest.raises(KeyboardInterrupt):
        runner.run(make_request(workdir, "t1", "classify_images"))
    assert client.events == ["create", "start", "kill", "remove"]
    assert runner.cancel("t1") is False  # nothing left running


def test_timeout_kills_and_removes_with_a_fake_daemon(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    client = FakeClient(wait_behaviour="hang", exit_code=137)
    runner = DockerRunner(settings_for(), client=client, poll_interval=0.05)
    result = runner.run(make_request(workdir, "t1", "classify_images", timeout=1))
    assert result.status == "failed" and result.error == "timed out after 1 s"
    main = client.created[0]
    assert main.killed and main.removed
    assert all(c.removed for c in client.created)  # the report-rendering container too
    assert client.created[1].kwargs["command"][:4] == ["--output-dir", "/outputs", "--interrupted", "timed out after 1 s"]
    assert client.created[1].kwargs["network_mode"] == "none"
    assert result.log_name == "container.log" and result.image_digest == IMAGE_ID


# --- real containers -----------------------------------------------------------------------------
def run_probe(docker_env: DockerEnv, tmp_path: Path, **parameters: Any) -> tuple[TaskWorkdir, Any, dict]:
    workdir = make_workdir(tmp_path, "probe", "isolation_probe", **parameters)
    runner = DockerRunner(docker_env.settings())
    result = runner.run(make_request(workdir, "probe", "isolation_probe", image=docker_env.test_image))
    assert result.status == "succeeded", (result.error, result.log[-3000:])
    probe = json.loads((workdir.output_dir / "probe.json").read_text())
    return workdir, result, probe


@pytest.mark.docker
def test_container_sees_only_its_inputs_read_only(docker_env, tmp_path):
    vault = tmp_path / "vault"
    workdir, result, probe = run_probe(docker_env, tmp_path, probe_paths=[str(vault), str(tmp_path), "/vault"])
    # only this task's inputs, at their relative paths; nothing else of the vault
    assert probe["inputs"] == ["a.png", "sub/b.png"]
    assert probe["paths_exist"] == {str(vault): False, str(tmp_path): False, "/vault": False}
    assert {"/inputs", "/outputs", "/task", "/tmp"} <= set(probe["mounts"])
    assert not [m for m in probe["mounts"] if str(tmp_path) in m]
    # hard links, not copies: the staged input is the replica's inode
    assert os.stat(workdir.input_dir / "sub" / "b.png").st_ino == os.stat(vault / "sub" / "b.png").st_ino
    # read-only inputs: a write attempt from the notebook fails, and nothing changed
    assert probe["read_first_input"] == "ok"
    assert probe["write_new_input"] in ("EROFS", "EACCES")
    assert probe["append_existing_input"] in ("EROFS", "EACCES")
    assert probe["delete_input"] in ("EROFS", "EACCES")
    assert not (workdir.input_dir / "written_by_notebook.txt").exists()
    assert (vault / "a.png").read_text() == "a" and (vault / "sub" / "b.png").read_text() == "b"
    assert probe["write_task_dir"] == "EROFS"
    # read-only root filesystem, writable /tmp (tmpfs) and /outputs
    assert probe["write_root_fs"] == "EROFS" and probe["write_etc"] == "EROFS"
    assert probe["write_tmp"] == "ok" and probe["write_outputs"] == "ok"
    assert result.image == docker_env.test_image and result.image_digest.startswith("sha256:")


@pytest.mark.docker
def test_container_has_no_network_no_root_no_capabilities(docker_env, tmp_path):
    _, _, probe = run_probe(docker_env, tmp_path)
    assert probe["interfaces"] == ["lo"]
    assert probe["route_to_outside"] == "ENETUNREACH"
    expected_uid, expected_gid = (int(x) for x in (docker_env.settings().container_user
                                                  or f"{os.getuid()}:{os.getgid()}").split(":"))
    assert (probe["uid"], probe["gid"]) == (expected_uid, expected_gid)
    assert probe["uid"] != 0 and 0 not in probe["groups"]
    assert probe["status"]["CapEff"] == probe["status"]["CapPrm"] == probe["status"]["CapBnd"] == "0000000000000000"
    assert probe["status"]["NoNewPrivs"] == "1"
    assert probe["setuid_root"] == "EPERM"


@pytest.mark.docker
def test_outputs_come_back_to_the_service_account_and_no_container_is_left(docker_env, tmp_path):
    workdir, result, _ = run_probe(docker_env, tmp_path)
    for path in [workdir.output_dir, *workdir.output_dir.rglob("*")]:
        assert path.stat().st_uid == os.getuid()
    assert {"report.html", "notebook.ipynb", "result.json", "probe.json"} <= {p.name for p in workdir.output_dir.iterdir()}
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=probe"}) == []
    assert result.log_name == "container.log" and "papermill" in result.log
    for key in ("docker_create_seconds", "docker_start_seconds", "docker_teardown_seconds", "container_seconds"):
        assert key in result.timings


@pytest.mark.docker
def test_allowlist_refusal_with_a_real_daemon(docker_env, tmp_path):
    workdir = make_workdir(tmp_path, "refused", "isolation_probe")
    runner = DockerRunner(docker_env.settings(image=docker_env.image))  # only the production image allowed
    with pytest.raises(NotAllowedError, match="is not allowed by the server settings"):
        runner.run(make_request(workdir, "refused", "isolation_probe", image=docker_env.test_image))
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=refused"}) == []
    assert list(workdir.output_dir.iterdir()) == []


@pytest.mark.docker
def test_timeout_kills_the_container_and_still_renders_the_report(docker_env, tmp_path):
    workdir = make_workdir(tmp_path, "slow", "sleep", steps=120, step_seconds=1.0)
    seen: list[tuple[int, int]] = []
    runner = DockerRunner(docker_env.settings())
    started = time.monotonic()
    result = runner.run(make_request(workdir, "slow", "sleep", image=docker_env.test_image, timeout=8,
                                     progress=lambda done, total: seen.append((done, total))))
    assert time.monotonic() - started < 60
    assert result.status == "failed" and result.error == "timed out after 8 s"
    assert seen and seen[-1][1] == 120 and seen[-1][0] < 120
    assert (workdir.output_dir / names.REPORT_FILE).is_file()
    doc = json.loads((workdir.output_dir / names.RESULT_FILE).read_text())
    assert doc["status"] == "failed" and "timed out after 8 s" in doc["error"]
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=slow"}) == []


@pytest.mark.docker
def test_failing_notebook_yields_report_and_failed_state(docker_env, tmp_path):
    workdir = make_workdir(tmp_path, "fails", "sleep", steps=1, step_seconds=0.0, fail=True)
    result = DockerRunner(docker_env.settings()).run(
        make_request(workdir, "fails", "sleep", image=docker_env.test_image))
    assert result.status == "failed"
    assert "asked to fail" in (result.error or "")
    report = (workdir.output_dir / names.REPORT_FILE).read_text()
    assert "asked to fail" in report
    assert json.loads((workdir.output_dir / names.RESULT_FILE).read_text())["status"] == "failed"


@pytest.mark.docker
def test_out_of_memory_is_reported_as_such(docker_env, tmp_path):
    workdir = make_workdir(tmp_path, "oom", "allocate", megabytes=1500)
    settings = docker_env.settings(limits=ContainerLimits(memory="400m", cpus=1.0, pids=128, shm_size="64m"))
    result = DockerRunner(settings).run(make_request(workdir, "oom", "allocate", image=docker_env.test_image))
    assert result.status == "failed"
    assert result.error.startswith("out of memory") and "400m" in result.error
    assert (workdir.output_dir / names.REPORT_FILE).is_file()


@pytest.mark.docker
def test_cancel_kills_the_running_container(docker_env, tmp_path):
    workdir = make_workdir(tmp_path, "cancelme", "sleep", steps=120, step_seconds=1.0)
    runner = DockerRunner(docker_env.settings())
    results = []
    thread = threading.Thread(target=lambda: results.append(
        runner.run(make_request(workdir, "cancelme", "sleep", image=docker_env.test_image, timeout=300))))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (workdir.output_dir / names.PROGRESS_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert DockerRunner(docker_env.settings()).cancel("cancelme")  # another runner: found by label
    finally:
        thread.join(120)
    [result] = results
    assert result.status == "failed"
    assert result.error.startswith("the container was killed (exit code 137)")
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=cancelme"}) == []


def test_the_same_task_cannot_run_twice_at_once(tmp_path):
    workdir = make_workdir(tmp_path, "t1", "classify_images")
    client = FakeClient()
    runner = DockerRunner(settings_for(), client=client)
    from compute_to_data.runners.base import ActiveRun

    other = ActiveRun(make_request(workdir, "t1", "classify_images"), handle="other")
    runner._runs["t1"] = other  # a run of t1 in progress
    with pytest.raises(RunnerError, match="already running"):
        runner.run(make_request(workdir, "t1", "classify_images"))
    assert runner._runs["t1"] is other and runner.running() == ["t1"]  # the running one is not forgotten
    assert client.events == []  # refused before any container exists


# --- from another process: what is left of a run whose supervisor died -------------------------------
def test_stop_by_handle_never_reaches_another_run_of_the_task(tmp_path):
    """A cancel stops the run it cancelled (label c2d.run_id), not the containers of a resume
    that followed it; only a reaper's sweep (with the task id) takes every run of the task."""
    client = FakeClient()
    cancelled = client.create(IMAGE, labels={LABEL_TASK_ID: "t1", LABEL_RUN_ID: "t1@a"})
    its_report = client.create(IMAGE, labels={LABEL_TASK_ID: "t1", LABEL_RUN_ID: "t1@a", "c2d.role": "finalize"})
    resumed = client.create(IMAGE, labels={LABEL_TASK_ID: "t1", LABEL_RUN_ID: "t1@b"})
    runner = DockerRunner(settings_for(), client=client)
    assert runner.stop(cancelled.id) is True
    assert cancelled.removed and its_report.removed and not resumed.removed and not resumed.killed
    assert runner.stop(cancelled.id, "t1") is True and resumed.removed


def test_stop_by_handle_removes_the_container_and_every_container_of_its_task(tmp_path):
    client = FakeClient()
    task = client.create(IMAGE, labels={LABEL_TASK_ID: "t1"})
    finalize = client.create(IMAGE, labels={LABEL_TASK_ID: "t1", "c2d.role": "finalize"})
    other = client.create(IMAGE, labels={LABEL_TASK_ID: "t2"})
    runner = DockerRunner(settings_for(), client=client)  # not the runner that started them
    assert runner.is_alive(task.id) is True
    assert runner.stop(task.id) is True
    assert task.removed and finalize.removed and not other.removed and not other.killed
    assert runner.is_alive(task.id) is False and runner.stop(task.id) is False
    assert runner.stop("gone", task_id="t2") is True and other.removed  # found by label alone


@pytest.mark.docker
def test_a_container_left_by_a_killed_supervisor_is_stopped_by_its_handle(docker_env, tmp_path):
    import signal

    from tests.support.runner_child import start_supervisor, wait_for_handle

    workdir = make_workdir(tmp_path, "orphan", "sleep", steps=120, step_seconds=1.0)
    request = make_request(workdir, "orphan", "sleep", image=docker_env.test_image, timeout=300)
    spec = tmp_path / "spec.json"
    child = start_supervisor(spec, "docker", docker_env.settings(), request)
    try:
        handle = wait_for_handle(spec, child)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    runner = DockerRunner(docker_env.settings())
    assert runner.is_alive(handle) is True  # the supervisor is gone, the container is not
    assert runner.stop(handle) is True
    assert runner.is_alive(handle) is False
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}=orphan"}) == []
