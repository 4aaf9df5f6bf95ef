"""Run the notebook in a locked-down Docker container on the compute resource's host.

The service account that starts containers is in the ``docker`` group, which is
root-equivalent; so everything that decides how powerful a container is comes from the
administrator's server settings (:mod:`compute_to_data.domain.settings`) or the resource's AVUs, never
from a researcher's task config:

* the image must be on the settings' allowlist (and match its pinned digest, if any), and must
  already be on this host (it is never pulled);
* no network (``network_mode="none"``), all capabilities dropped, ``no-new-privileges``,
  read-only root filesystem with a tmpfs ``/tmp``, memory / CPU / pids limits;
* it runs as the service account's uid:gid (or ``container_user`` from the settings) and never
  as root;
* it sees only this task's workdir: ``inputs/`` (hard links to the replicas) read-only at
  ``/inputs``, ``task/`` read-only at ``/task``, ``outputs/`` writable at ``/outputs``;
* GPUs only when the compute resource declares them (``COMPUTE_RESOURCE_GPUS``), and only as
  many as the host's NVIDIA driver shows: where it shows none, the container starts without a
  GPU request (Docker would refuse one) and a CUDA build of torch runs on the CPU;
* a wall-clock timeout kills it; it is always removed, also on Ctrl-C or an exception.

The docker SDK is imported only when a runner is created; the code works with docker SDK 5.0.3
(Debian 12's ``python3-docker``, which the iRODS server's Python uses) as well as 7.x.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import NotAllowedError, RunnerError
from compute_to_data.domain.settings import AllowedImage, Settings
from compute_to_data.runners.base import (
    ActiveRun,
    Phase,
    RunRequest,
    RunStatus,
    SupervisedRunner,
    truncate_log,
)

log = logging.getLogger(__name__)

#: where the image bakes the notebooks (containers/classifier/Dockerfile).
CONTAINER_NOTEBOOK_DIR = "/opt/c2d/notebooks"
LABEL_TASK_ID = "c2d.task_id"
#: one run of the task (runners.processes.run_id): what a cancel stops, never a later run's containers
LABEL_RUN_ID = "c2d.run_id"
LABEL_RESOURCE = "c2d.resource"
LABEL_ROLE = "c2d.role"
MAX_LOG_BYTES = 2_000_000
_NOTEBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: one directory per GPU (by PCI address) while the NVIDIA kernel driver is loaded.
NVIDIA_GPUS_DIR = Path("/proc/driver/nvidia/gpus")


def visible_gpus(directory: Path = NVIDIA_GPUS_DIR) -> int:
    """How many GPUs the NVIDIA driver shows on this host; 0 without the driver (or without GPUs).

    The runner runs on the compute resource's host, next to its Docker daemon, so what this
    host's driver shows is what a device request can get.
    """
    try:
        return sum(1 for entry in directory.iterdir() if entry.is_dir())
    except OSError:
        return 0


@dataclass(frozen=True)
class ImageInfo:
    """The image a run will use, resolved on this host."""

    reference: str  # the allowlisted name, e.g. compute-to-data/classifier:0.1.0
    id: str  # "sha256:..." content digest of the image: what goes into c2d::image_digest
    allowed: AllowedImage


@dataclass
class _Container:
    """The docker runner's part of an :class:`ActiveRun`."""

    container: Any
    image: ImageInfo
    user: tuple[int, int]
    kwargs: dict[str, Any]
    started_at: float = 0.0
    exited_at: float | None = None


def parse_user(spec: str) -> tuple[int, int]:
    uid, _, gid = spec.partition(":")
    return int(uid), int(gid or uid)


class DockerRunner(SupervisedRunner):
    """Executes the image's entrypoint with the task's mounts and the administrator's limits."""

    name = "docker"
    uses_container_paths = True
    log_name = names.CONTAINER_LOG
    subject = "the container"
    exit_code_label = "container exit code"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        client: Any = None,
        poll_interval: float = 0.5,
        finalize_timeout: float = 300.0,
        api_timeout: int = 120,
        gpu_probe: Callable[[], int] = visible_gpus,
    ) -> None:
        super().__init__()
        self.settings = settings if settings is not None else Settings.load()
        self._client = client
        self.gpu_probe = gpu_probe
        self.poll_interval = poll_interval
        self.finalize_timeout = finalize_timeout
        self.api_timeout = api_timeout

    # --- the docker client ------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import docker
            except ImportError as exc:
                raise RunnerError(
                    "the docker runner needs the docker Python package (pip install docker, or "
                    "Debian's python3-docker) in the Python that runs the tasks"
                ) from exc
            try:
                client = docker.from_env(timeout=self.api_timeout)
                client.ping()
            except Exception as exc:
                raise RunnerError(
                    f"no Docker daemon answers on this host ({exc}); start Docker, and make sure the "
                    "account running the tasks (the iRODS service account) is in the docker group"
                ) from exc
            self._client = client
        return self._client

    def describe(self) -> str:
        return f"docker (image {self.settings.default_image or 'from the task config'}, no network)"

    # --- decisions, all from the server settings --------------------------------------------
    def check_image(self, reference: str | None) -> ImageInfo:
        """Allowlisted, present on this host, and the pinned digest if the settings pin one.

        The task engine calls :meth:`Settings.check_image` before replicating anything; this
        repeats the check where the container is created (defence in depth) and adds what only
        the daemon can tell.
        """
        allowed = self.settings.check_image(reference)
        try:
            import docker.errors

            not_found: tuple[type[BaseException], ...] = (docker.errors.ImageNotFound,)
        except ImportError:  # a fake client in unit tests
            not_found = ()
        try:
            image = self.client.images.get(allowed.name)
        except not_found:
            raise RunnerError(
                f"container image {allowed.name} is allowed but not present on this host; the administrator "
                "builds it with `c2d image build` (images are never pulled by tasks)"
            ) from None
        image_id = str(image.id)
        if allowed.digest:
            repo_digests = [d.split("@", 1)[-1] for d in (image.attrs.get("RepoDigests") or [])]
            if allowed.digest != image_id and allowed.digest not in repo_digests:
                raise NotAllowedError(
                    f"container image {allowed.name} on this host is {image_id}, but the server settings "
                    f"({self.settings.source}) pin {allowed.digest}; the administrator must rebuild or re-pin it"
                )
        return ImageInfo(allowed.name, image_id, allowed)

    def preflight(self, image: str | None) -> None:
        self.check_image(image)

    def container_user(self) -> tuple[int, int]:
        """The uid:gid containers run as: settings' ``container_user``, else ours; never root."""
        spec = self.settings.container_user or f"{os.getuid()}:{os.getgid()}"
        uid, gid = parse_user(spec)
        if uid == 0 or gid == 0:
            where = (
                f"container_user {spec!r} in the server settings ({self.settings.source})"
                if self.settings.container_user
                else f"this process's uid:gid {spec} (no container_user in {self.settings.source})"
            )
            raise NotAllowedError(
                f"refusing to run a task container as root ({where}); set container_user to the iRODS "
                "service account's uid:gid"
            )
        return uid, gid

    def container_kwargs(self, request: RunRequest, image: ImageInfo | None, user: tuple[int, int], *,
                         host_cpus: int | None = None) -> dict[str, Any]:
        """Everything ``containers.create`` gets; a pure function of settings and request.

        ``host_cpus``: the CPUs of the machine the container will run on (default: this one's).
        The Slurm runner builds the same container on a node, from these same arguments.
        """
        if not _NOTEBOOK_NAME.match(request.notebook_name):
            raise NotAllowedError(f"notebook must be a name, not a path: {request.notebook_name!r}")
        notebook = request.notebook_name if request.notebook_name.endswith(".ipynb") else request.notebook_name + ".ipynb"
        limits = self.settings.limits
        cpus = float(limits.cpus)
        host_cpus = host_cpus or os.cpu_count() or 1
        if cpus > host_cpus:
            log.info("limits.cpus %.2f exceeds the host's %d CPUs; using %d", cpus, host_cpus, host_cpus)
            cpus = float(host_cpus)
        kwargs: dict[str, Any] = {
            "command": [
                "--params", f"{names.CONTAINER_TASK_DIR}/{names.PARAMS_FILE}",
                "--notebook", f"{CONTAINER_NOTEBOOK_DIR}/{notebook}",
                "--output-dir", names.CONTAINER_OUTPUT_DIR,
            ],
            "user": f"{user[0]}:{user[1]}",
            "network_mode": "none",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,size=2g"},
            "ipc_mode": "private",
            "mem_limit": limits.memory,
            "memswap_limit": limits.memory,  # no swap: over the limit means OOM, not thrashing
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": int(limits.pids),
            "shm_size": limits.shm_size,
            "volumes": {
                str(request.input_dir.resolve()): {"bind": names.CONTAINER_INPUT_DIR, "mode": "ro"},
                str(request.task_dir.resolve()): {"bind": names.CONTAINER_TASK_DIR, "mode": "ro"},
                str(request.output_dir.resolve()): {"bind": names.CONTAINER_OUTPUT_DIR, "mode": "rw"},
            },
            "working_dir": "/tmp",
            "hostname": "c2d-task",
            "environment": {
                "HOME": "/tmp",
                "C2D_TASK_ID": request.task_id,
                "C2D_RUN_ID": request.run_id or request.task_id,
                # torch and BLAS size their thread pools from the host's cores, not the CPU quota.
                "OMP_NUM_THREADS": str(max(1, int(cpus))),
                "MKL_NUM_THREADS": str(max(1, int(cpus))),
            },
            "labels": {
                LABEL_TASK_ID: request.task_id,
                LABEL_RUN_ID: request.run_id or request.task_id,
                LABEL_RESOURCE: request.resource_name,
                LABEL_ROLE: "task",
            },
        }
        if request.gpus > 0:
            from docker.types import DeviceRequest

            kwargs["device_requests"] = [DeviceRequest(count=int(request.gpus), capabilities=[["gpu"]])]
        return kwargs

    def fit_device_requests(self, request: RunRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The GPU request cut to what this host has: Docker refuses to start a container asking
        for a GPU the host lacks ("could not select device driver"), whereas the CUDA image runs
        on the CPU without one. A resource that declares more GPUs than its host shows is a
        setting to fix, so it is logged, but the task still runs."""
        if "device_requests" not in kwargs:
            return kwargs
        present = self.gpu_probe()
        if present >= request.gpus:
            return kwargs
        fitted = dict(kwargs)
        if present <= 0:
            del fitted["device_requests"]
            log.warning("task %s: resource %s declares %d GPU(s) (%s) but this host shows none; "
                        "running without a GPU (a CUDA build of torch uses the CPU)", request.task_id,
                        request.resource_name, request.gpus, names.GPUS_ATTRIBUTE)
            return fitted
        from docker.types import DeviceRequest

        fitted["device_requests"] = [DeviceRequest(count=present, capabilities=[["gpu"]])]
        log.warning("task %s: resource %s declares %d GPU(s) (%s) but this host shows %d; requesting %d",
                    request.task_id, request.resource_name, request.gpus, names.GPUS_ATTRIBUTE, present, present)
        return fitted

    # --- the lifecycle's steps ------------------------------------------------------------------
    def start(self, run: ActiveRun) -> None:
        request = run.request
        image = self.check_image(request.image)
        user = self.container_user()
        kwargs = self.fit_device_requests(request, self.container_kwargs(request, image, user))
        self._prepare_directories(request, user)
        run.image, run.image_digest = image.reference, image.id
        t0 = time.perf_counter()
        try:
            container = self.client.containers.create(image.id, **kwargs)
        except Exception as exc:
            raise RunnerError(f"cannot create the task container from {image.reference}: {exc}") from exc
        t1 = time.perf_counter()
        run.detail = _Container(container, image, user, kwargs)
        try:
            container.start()
        except Exception as exc:
            raise RunnerError(f"cannot start the task container from {image.reference}: {exc}") from exc
        run.detail.started_at = t2 = time.perf_counter()
        run.started_epoch = time.time()
        run.handle = str(container.id)
        run.timings["docker_create_seconds"] = round(t1 - t0, 3)
        run.timings["docker_start_seconds"] = round(t2 - t1, 3)
        log.info("task %s: container %s started from %s as %d:%d", request.task_id, container.short_id,
                 image.reference, *user)

    def poll(self, run: ActiveRun, wait: float) -> RunStatus:
        detail: _Container = run.detail
        container = detail.container
        try:
            container.wait(timeout=max(0.05, wait))
        except Exception as exc:  # requests' ReadTimeout/ConnectionError: still running
            if not _is_timeout(exc):
                raise RunnerError(f"lost track of the task container: {exc}") from exc
            return RunStatus(Phase.RUNNING)
        detail.exited_at = time.perf_counter()
        run.timings["container_seconds"] = round(detail.exited_at - detail.started_at, 3)
        container.reload()
        state = dict(container.attrs.get("State") or {})
        exit_code = int(state.get("ExitCode", -1))
        oom = None
        if bool(state.get("OOMKilled")):
            oom = (
                f"out of memory: the run exceeded the container's memory limit ({self.settings.limits.memory}) "
                f"and was killed (container exit code {exit_code}); use fewer workers or a smaller batch_size, "
                "or ask the administrator for a larger memory limit"
            )
        return RunStatus(Phase.EXITED, reason=oom, exit_code=exit_code)

    def kill(self, run: ActiveRun) -> None:
        _kill(run.detail.container)

    def collect_logs(self, run: ActiveRun) -> str:
        return truncate_log(run.detail.container.logs(stdout=True, stderr=True), MAX_LOG_BYTES)

    def cleanup(self, run: ActiveRun) -> None:
        """Always remove the container; hand the outputs back to the service account."""
        detail: _Container | None = run.detail
        if detail is not None:
            teardown_from = detail.exited_at if detail.exited_at is not None else time.perf_counter()
            _remove(detail.container)
            # inspect + logs + remove: what Docker adds after the notebook has finished
            run.timings["docker_teardown_seconds"] = round(time.perf_counter() - teardown_from, 3)
        self._restore_ownership(run.request)

    def exit_message(self, exit_code: int, logs: str) -> str:
        if exit_code == 137:
            return "the container was killed (exit code 137): cancelled, or stopped on the compute host"
        return super().exit_message(exit_code, logs)

    def finalize(self, run: ActiveRun, message: str) -> str:
        """In a second container (same confinement): render the partial notebook, write result.json."""
        detail: _Container | None = run.detail
        if detail is None:
            return ""
        request, kwargs = run.request, detail.kwargs
        finalize_kwargs = dict(kwargs)
        finalize_kwargs["command"] = [
            "--output-dir", names.CONTAINER_OUTPUT_DIR, "--interrupted", message,
            "--input-dir", names.CONTAINER_INPUT_DIR, "--started", run.started,
        ]
        finalize_kwargs["labels"] = {**kwargs["labels"], LABEL_ROLE: "finalize"}
        finalize_kwargs.pop("device_requests", None)
        container = None
        try:
            self._prepare_output_dir(request, detail.user)
            container = self.client.containers.create(detail.image.id, **finalize_kwargs)
            container.start()
            try:
                container.wait(timeout=self.finalize_timeout)
            except Exception as exc:
                log.warning("task %s: rendering the interrupted report did not finish: %s", request.task_id, exc)
                _kill(container)
            text = truncate_log(container.logs(stdout=True, stderr=True), MAX_LOG_BYTES)
            return f"\n[docker runner] {message}; rendering the partial report\n{text}"
        except Exception as exc:
            log.warning("task %s: could not render the interrupted report: %s", request.task_id, exc)
            return f"\n[docker runner] {message}; could not render the partial report: {exc}\n"
        finally:
            if container is not None:
                _remove(container)
            self._restore_ownership(request)

    # --- files on the host ------------------------------------------------------------------
    def _prepare_directories(self, request: RunRequest, user: tuple[int, int]) -> None:
        for directory in (request.input_dir, request.task_dir):
            if not directory.is_dir():
                raise RunnerError(f"the task workdir has no {directory.name}/ directory ({directory})")
        if not (request.task_dir / names.PARAMS_FILE).is_file():
            raise RunnerError(f"{request.task_dir / names.PARAMS_FILE} is missing: the task wrote no parameters")
        problem = _first_unreadable([request.input_dir, request.task_dir], *user)
        if problem is not None:
            raise RunnerError(
                f"{problem} is not readable by the container user {user[0]}:{user[1]}; the container runs as "
                "container_user from the server settings (default: the service account), which must be able to "
                "read the replicas in the vault"
            )
        request.output_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_output_dir(request, user)

    @staticmethod
    def _prepare_output_dir(request: RunRequest, user: tuple[int, int]) -> None:
        """Make /outputs writable for the container's uid without opening it to anyone else."""
        output = request.output_dir
        uid, gid = user
        if os.geteuid() == 0:
            for path in [output, *output.rglob("*")]:
                os.lchown(path, uid, gid)
            return
        info = output.stat()
        writable = (
            (info.st_uid == uid and info.st_mode & stat.S_IWUSR)
            or (info.st_gid == gid and info.st_mode & stat.S_IWGRP)
            or info.st_mode & stat.S_IWOTH
        )
        if not writable:
            raise RunnerError(
                f"the output directory {output} (owner {info.st_uid}:{info.st_gid}, mode {stat.filemode(info.st_mode)}) "
                f"is not writable by the container user {uid}:{gid}; leave container_user unset to run containers "
                "as the service account itself"
            )

    @staticmethod
    def _restore_ownership(request: RunRequest) -> None:
        """When we are root, hand the outputs back to us: the vault never keeps the container's uid."""
        if os.geteuid() != 0 or not request.output_dir.is_dir():
            return
        uid, gid = os.getuid(), os.getgid()
        for path in [request.output_dir, *request.output_dir.rglob("*")]:
            try:
                os.lchown(path, uid, gid)
            except OSError as exc:
                log.warning("cannot hand %s back to %d:%d: %s", path, uid, gid, exc)

    # --- cancel, and from another process ---------------------------------------------------
    def cancel(self, task_id: str) -> bool:
        """Kill the container(s) of ``task_id`` on this host (found by label); True if any ran."""
        supervised = super().cancel(task_id)
        containers = self._task_containers(task_id, all=False)
        for container in containers:
            _kill(container)
        if containers:
            log.info("task %s: cancelled (%d container(s) killed)", task_id, len(containers))
        return supervised or bool(containers)

    def is_alive(self, handle: str) -> bool:
        """Whether the container with this id still runs on this host."""
        container = self._get_container(handle)
        if container is None:
            return False
        try:
            container.reload()
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise RunnerError(f"cannot inspect container {handle[:12]}: {exc}") from exc
        return str((container.attrs.get("State") or {}).get("Status", "")) in ("running", "restarting", "paused")

    def stop(self, handle: str, task_id: str | None = None, *, reason: str | None = None) -> bool:
        """Kill and remove the container with this id and every other container of its run
        (label ``c2d.run_id``: the report-rendering one too), running or exited; with
        ``task_id``, every container of the task (any run of it: only for a reaper, which holds
        the task's run lock)."""
        found: dict[str, Any] = {}
        container = self._get_container(handle)
        if container is not None:
            found[str(container.id)] = container
            labels = getattr(container, "labels", None) or {}
            # its run's containers; a container made before runs were labelled: its task's
            label, value = (LABEL_RUN_ID, labels[LABEL_RUN_ID]) if labels.get(LABEL_RUN_ID) else (LABEL_TASK_ID, labels.get(LABEL_TASK_ID))
            if value:
                for other in self._labelled(label, value, all=True):
                    found.setdefault(str(other.id), other)
        if task_id:
            for other in self._labelled(LABEL_TASK_ID, task_id, all=True):
                found.setdefault(str(other.id), other)
        for leftover in found.values():
            _kill(leftover)
            _remove(leftover)
        if found:
            log.info("removed %d leftover container(s) of %s", len(found), task_id or handle[:12])
        return bool(found)

    def _get_container(self, container_id: str) -> Any:
        try:
            return self.client.containers.get(container_id)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise RunnerError(f"cannot look up container {container_id[:12]}: {exc}") from exc

    def _task_containers(self, task_id: str, *, all: bool) -> list[Any]:
        return self._labelled(LABEL_TASK_ID, task_id, all=all)

    def _labelled(self, label: str, value: str, *, all: bool) -> list[Any]:
        try:
            return list(self.client.containers.list(all=all, filters={"label": f"{label}={value}"}))
        except Exception as exc:
            raise RunnerError(f"cannot list the containers labelled {label}={value}: {exc}") from exc


# --- helpers ---------------------------------------------------------------------------------
def cli_arguments(kwargs: dict[str, Any]) -> list[str]:
    """The ``docker run`` / ``podman run`` options that create the same container as ``kwargs``
    (from :meth:`DockerRunner.container_kwargs`), without the image and its command.

    One definition of the confinement: a runner that starts the container elsewhere (the Slurm
    runner, on a compute node) translates these arguments instead of restating them. GPUs
    (``device_requests``) are left to that runner: it knows which devices the node gave it.
    """
    known = {"command", "user", "network_mode", "cap_drop", "security_opt", "privileged", "read_only", "tmpfs",
             "ipc_mode", "mem_limit", "memswap_limit", "nano_cpus", "pids_limit", "shm_size", "volumes",
             "working_dir", "hostname", "environment", "labels", "device_requests"}
    unknown = sorted(set(kwargs) - known)
    if unknown:  # a new confinement option must be translated, never silently dropped
        raise RunnerError(f"no command-line form for container option(s) {', '.join(unknown)}")
    args = [f"--user={kwargs['user']}", f"--network={kwargs['network_mode']}"]
    args += [f"--cap-drop={cap}" for cap in kwargs["cap_drop"]]
    args += [f"--security-opt={opt}" for opt in kwargs["security_opt"]]
    if kwargs.get("privileged"):
        raise RunnerError("refusing to translate a privileged container")
    if kwargs.get("read_only"):
        args.append("--read-only")
    args += [f"--tmpfs={path}:{options}" for path, options in kwargs["tmpfs"].items()]
    args += [
        f"--ipc={kwargs['ipc_mode']}", f"--memory={kwargs['mem_limit']}", f"--memory-swap={kwargs['memswap_limit']}",
        f"--cpus={kwargs['nano_cpus'] / 1e9:g}", f"--pids-limit={kwargs['pids_limit']}", f"--shm-size={kwargs['shm_size']}",
    ]
    args += [f"--volume={host}:{spec['bind']}:{spec['mode']}" for host, spec in kwargs["volumes"].items()]
    args += [f"--workdir={kwargs['working_dir']}", f"--hostname={kwargs['hostname']}"]
    args += [f"--env={key}={value}" for key, value in kwargs["environment"].items()]
    args += [f"--label={key}={value}" for key, value in kwargs["labels"].items()]
    return args


def _is_timeout(exc: Exception) -> bool:
    """A read timeout of ``container.wait`` (requests raises ReadTimeout or ConnectionError)."""
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with the docker SDK
        return "timed out" in str(exc).lower()
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    return isinstance(exc, requests.exceptions.ConnectionError) and "timed out" in str(exc).lower()


def _kill(container: Any) -> None:
    try:
        container.kill()
    except Exception as exc:  # already gone, or exited between poll and kill
        log.debug("kill %s: %s", getattr(container, "short_id", "?"), exc)


def _remove(container: Any) -> None:
    """Always remove the container; ``force`` kills it first if it still runs."""
    for attempt in range(3):
        try:
            container.remove(force=True)
            return
        except Exception as exc:
            if "No such container" in str(exc) or "is already in progress" in str(exc):
                return
            if attempt == 2:
                log.error("could not remove container %s: %s", getattr(container, "short_id", "?"), exc)
            time.sleep(0.5)


def _is_not_found(exc: Exception) -> bool:
    try:
        import docker.errors
    except ImportError:  # pragma: no cover - a fake client without the SDK
        return "no such container" in str(exc).lower()
    return isinstance(exc, docker.errors.NotFound) or "no such container" in str(exc).lower()


def _readable(info: os.stat_result, uid: int, gid: int, directory: bool) -> bool:
    need = (stat.S_IRUSR | stat.S_IXUSR, stat.S_IRGRP | stat.S_IXGRP, stat.S_IROTH | stat.S_IXOTH) if directory \
        else (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
    mode = info.st_mode
    if info.st_uid == uid:
        return mode & need[0] == need[0]
    if info.st_gid == gid:
        return mode & need[1] == need[1]
    return mode & need[2] == need[2]


def _first_unreadable(roots: list[Path], uid: int, gid: int) -> str | None:
    """The first file or directory under ``roots`` the container's uid:gid could not read."""
    for root in roots:
        for current, _dirs, files in os.walk(root):
            here = Path(current)
            if not _readable(here.stat(), uid, gid, True):
                return str(here)
            for name in files:
                path = here / name
                try:
                    info = path.stat()
                except OSError:
                    return str(path)
                if not _readable(info, uid, gid, False):
                    return str(path)
    return None
