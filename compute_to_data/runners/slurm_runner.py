"""Run the notebook as a Slurm batch job, on a cluster node next to the data.

The resource's vault and its staging directory sit on a filesystem the cluster's nodes share
(same path everywhere); the task stages its inputs there as hard links, as on any compute
host, and this runner submits one batch job (``sbatch --parsable``) that runs, on the node:

* ``container`` mode (default): the same allowlisted, locked-down container as the docker
  runner — the confinement is :meth:`DockerRunner.container_kwargs` translated to the command
  line (:func:`~compute_to_data.runners.docker_runner.cli_arguments`), through ``docker`` or
  ``podman`` on the node, with the GPUs Slurm allocated;
* ``direct`` mode, where the administrator chooses it: the notebook entrypoint in a
  pre-installed Python environment on the node (not a sandbox: the service account's rights).

Every sbatch option comes from the server settings (partition, account, QoS, extra options),
the resource (``COMPUTE_RESOURCE_GPUS`` -> ``--gres=gpu:N``) and the limits (CPUs, memory);
``--time`` is the task's timeout in whole minutes. A task config cannot add any.

The job script writes ``slurm/job.started`` and ``slurm/job.status`` next to the task's
directories; progress is the notebook's ``.progress``; the job's state comes from ``squeue``
(``sacct`` once squeue has forgotten it). A pending job keeps the task ``queued`` with the
scheduler's reason (``on_status``); cancel is ``scancel``; Slurm's time limit, an OOM kill, a
node failure and preemption each end the run ``failed`` with that reason. When Slurm stops the
job, its script renders the partial report before it exits (within Slurm's ``KillWait``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from compute_to_data.contract.workdir import RUNTIME_DIR_ENV
from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import NotAllowedError, RunnerError
from compute_to_data.domain.settings import Settings, SlurmResource
from compute_to_data.runners.base import (
    CANCELLED_ON_REQUEST,
    ActiveRun,
    Phase,
    RunRequest,
    RunStatus,
    SupervisedRunner,
    truncate_log,
)
from compute_to_data.runners.docker_runner import (
    LABEL_ROLE,
    DockerRunner,
    cli_arguments,
)
from compute_to_data.runners.inprocess import (
    ENTRYPOINT_MODULE,
    find_python,
    to_host_parameters,
)

log = logging.getLogger(__name__)

#: the runner's own files, in the task workdir next to inputs/, task/ and outputs/ (never ingested).
JOB_DIR = "slurm"
JOB_SCRIPT = "job.sh"
JOB_LOG = "job.log"
STARTED_FILE = "job.started"
STATUS_FILE = "job.status"
STOP_FILE = "stop_reason"
JOB_NAME_PREFIX = "c2d-"
MAX_LOG_BYTES = 2_000_000

QUEUED_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"})
ALIVE_STATES = QUEUED_STATES | RUNNING_STATES
_UNREACHABLE = ("unable to contact slurm controller", "socket timed out", "connection refused",
                "zero bytes were transmitted", "communication connection failure")
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_JOB_ID = re.compile(r"^[0-9]+$")

CommandRunner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def _run_command(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)


class SlurmUnavailable(RunnerError):
    """The Slurm controller does not answer (it may come back)."""


@dataclass(frozen=True)
class JobState:
    state: str  # e.g. PENDING, RUNNING, COMPLETED, TIMEOUT, NODE_FAIL
    reason: str = ""
    nodes: str = ""


class SlurmCommands:
    """``sbatch``, ``squeue``, ``sacct`` and ``scancel`` as subprocesses, each with a timeout."""

    def __init__(self, directory: str | None = None, *, timeout: float = 60.0,
                 runner: CommandRunner | None = None) -> None:
        self.directory = directory
        self.timeout = timeout
        self._runner = runner or _run_command

    def _path(self, tool: str) -> str:
        if self.directory:
            return str(Path(self.directory) / tool)
        found = shutil.which(tool)
        if found is None:
            raise RunnerError(
                f"{tool} is not on the PATH of the account running the tasks; install the Slurm client "
                "commands (Debian: slurm-client) on this host, or set slurm.commands_directory in the server settings"
            )
        return found

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [self._path(tool), *args]
        try:
            return self._runner(command, self.timeout)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"{tool} did not answer within {self.timeout:.0f} s") from None
        except OSError as exc:
            raise RunnerError(f"cannot run {command[0]}: {exc}") from exc

    @staticmethod
    def _message(done: subprocess.CompletedProcess[str]) -> str:
        text = " ".join(line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip())
        return re.sub(r"\b(sbatch|squeue|scancel|sacct): error: ", "", text)[:500]

    def _check_reachable(self, tool: str, done: subprocess.CompletedProcess[str]) -> None:
        message = self._message(done)
        if done.returncode != 0 and any(marker in message.lower() for marker in _UNREACHABLE):
            raise SlurmUnavailable(f"the Slurm controller does not answer ({tool}: {message})")

    def ping(self) -> None:
        done = self.run("squeue", "--noheader", "--jobs=1", "--format=%i")
        self._check_reachable("squeue", done)

    def submit(self, options: Sequence[str], script: Path) -> tuple[str | None, str]:
        """(job id, '') or (None, what sbatch said)."""
        done = self.run("sbatch", *options, str(script))
        self._check_reachable("sbatch", done)
        if done.returncode != 0:
            return None, self._message(done) or f"sbatch exited with code {done.returncode}"
        job_id = done.stdout.strip().splitlines()[-1].split(";", 1)[0].strip() if done.stdout.strip() else ""
        if not _JOB_ID.match(job_id):
            return None, f"sbatch answered {done.stdout.strip()[:200]!r} instead of a job id"
        return job_id, ""

    def state(self, job_id: str) -> JobState | None:
        """The job's state from squeue, else from sacct; None when neither knows it any more."""
        done = self.run("squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T|%r|%N")
        self._check_reachable("squeue", done)
        if done.returncode == 0:
            for line in done.stdout.splitlines():
                if line.strip():
                    state, _, rest = line.strip().partition("|")
                    reason, _, nodes = rest.partition("|")
                    return JobState(state.strip(), reason.strip(), nodes.strip())
        return self._accounted_state(job_id)

    def _accounted_state(self, job_id: str) -> JobState | None:
        try:
            done = self.run("sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
                            "--format=State,NodeList")
        except RunnerError:  # no sacct on this host: squeue was all there is
            return None
        if done.returncode != 0:
            return None  # e.g. "Slurm accounting storage is disabled"
        for line in done.stdout.splitlines():
            if line.strip():
                state, _, nodes = line.strip().partition("|")
                return JobState(state.split()[0] if state.split() else "", "", nodes.strip())
        return None

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        done = self.run("scancel", *job_ids)
        self._check_reachable("scancel", done)
        if done.returncode != 0 and "invalid job id" not in self._message(done).lower():
            raise RunnerError(f"scancel {' '.join(job_ids)} failed: {self._message(done)}")

    def job_directory(self, job_id: str) -> str | None:
        """The working directory of a pending or running job (its ``slurm/`` directory), or None."""
        done = self.run("squeue", "--noheader", f"--jobs={job_id}", "--format=%Z")
        if done.returncode != 0:
            return None
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        return lines[0] if lines else None

    def jobs_named(self, name: str) -> dict[str, str]:
        """{job id: working directory} of the pending or running jobs called ``name`` of this account."""
        done = self.run("squeue", "--noheader", "--me", f"--name={name}", "--format=%i|%Z")
        self._check_reachable("squeue", done)
        if done.returncode != 0:
            raise RunnerError(f"squeue --name={name} failed: {self._message(done)}")
        jobs = {}
        for line in done.stdout.splitlines():
            job, _, directory = line.strip().partition("|")
            if _JOB_ID.match(job):
                jobs[job] = directory
        return jobs


@dataclass
class _Job:
    """The Slurm runner's part of an :class:`ActiveRun`."""

    job_id: str
    directory: Path
    minutes: int
    submitted_at: float
    mode: str
    last_contact: float = 0.0
    final: JobState | None = None
    started_noted: bool = False

    def file(self, name: str) -> Path:
        return self.directory / name


def parse_memory_mb(spec: str | int) -> int:
    """Docker-style sizes (``8g``, ``512m``, bytes) as whole MiB for ``sbatch --mem``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", str(spec).lower())
    if not match:
        raise NotAllowedError(f"limits.memory {spec!r} is not a size like 8g or 512m")
    factor = {"": 1 / 2**20, "b": 1 / 2**20, "k": 1 / 2**10, "m": 1, "g": 2**10, "t": 2**20}[match.group(2)]
    return max(1, math.ceil(float(match.group(1)) * factor))


def read_key_values(path: Path) -> dict[str, str] | None:
    """A ``key=value`` file the job script wrote (atomically), or None while it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def describe_pending(reason: str, job_id: str, gpus: int) -> str:
    """Slurm's pending reason in words a researcher understands, with the original kept."""
    raw = " ".join((reason or "None").split())
    # squeue prints some reasons with underscores (Slurm 22.05's "Nodes_required_for_job_are_DOWN,...")
    # and others, or the same in other versions, with spaces: compare them one way
    key = raw.replace(" ", "_")
    if key in ("Resources", "Nodes_required_for_job_are_DOWN,_DRAINED_or_reserved_for_jobs_in_higher_priority_partitions"):
        words = "waiting for a GPU" if gpus > 0 else "waiting for free CPUs and memory on the cluster"
    elif key == "Priority":
        words = "waiting behind jobs of higher priority"
    elif key.startswith("ReqNodeNotAvail"):
        words = "waiting: the nodes it needs are down, drained or reserved"
    elif key in ("PartitionDown", "PartitionInactive"):
        words = "waiting: the partition is down"
    elif key.startswith(("QOS", "Assoc")) and "Limit" in key:
        words = "waiting: a job limit of the Slurm account or QoS is reached"
    elif key == "BeginTime":
        words = "waiting for its start time"
    elif key.startswith("JobHeld"):
        words = "held in the Slurm queue"
    elif key == "Dependency":
        words = "waiting for another job"
    elif key == "None":
        words = "waiting to be scheduled"
    else:
        words = "waiting in the Slurm queue"
    return f"{words} (Slurm job {job_id}: {raw})"


class SlurmRunner(SupervisedRunner):
    """Submits the run as one Slurm batch job and supervises it through the lifecycle."""

    name = "slurm"
    uses_container_paths = True
    subject = "the Slurm job"
    #: Slurm enforces --time itself (checked about every 30 s, then KillWait for the report):
    #: the lifecycle's own deadline is only a backstop.
    timeout_grace = 180.0
    stop_timeout = 120.0
    #: how long the controller may be unreachable before the run is given up.
    lost_contact_seconds = 300.0
    #: how long a job's status file may lag behind Slurm's end of the job (shared filesystems).
    status_grace = 5.0

    def __init__(self, settings: Settings | None = None, *, commands: SlurmCommands | None = None,
                 poll_interval: float | None = None, file_check_interval: float = 0.2) -> None:
        super().__init__()
        self.settings = settings if settings is not None else Settings.load()
        self.slurm = self.settings.slurm
        self.commands = commands or SlurmCommands(self.slurm.commands_directory)
        self.poll_interval = poll_interval if poll_interval is not None else self.slurm.poll_interval_seconds
        self.file_check_interval = file_check_interval
        self.container_mode = self.slurm.mode == "container"
        self.uses_container_paths = self.container_mode
        self.log_name = names.CONTAINER_LOG if self.container_mode else names.RUNNER_LOG
        self._docker = DockerRunner(self.settings)  # its container definition; never talks to a daemon here

    def describe(self) -> str:
        where = ", ".join(f"partition {p}" for p in [self.slurm.partition] if p) or "default partition"
        how = f"{self.slurm.container_engine} container" if self.container_mode else "pre-installed environment"
        return f"slurm ({where}, {how} on the node)"

    # --- before anything is replicated ----------------------------------------------------------
    def preflight(self, image: str | None) -> None:
        if self.container_mode:
            self.settings.check_image(image)
        for tool in ("sbatch", "squeue", "scancel"):
            self.commands._path(tool)
        self.commands.ping()

    # --- what sbatch gets --------------------------------------------------------------------------
    def resource_settings(self, request: RunRequest) -> SlurmResource:
        entry = self.slurm.resource(request.resource_name)
        if entry is None:
            raise RunnerError(
                f"resource {request.resource_name!r} is not a Slurm resource in the server settings "
                f"({self.settings.source}): add it under slurm.resources with the staging directory that "
                "its vault shares with the cluster's nodes"
            )
        staging = Path(entry.staging_directory).resolve()
        if not request.workdir.resolve().is_relative_to(staging):
            raise RunnerError(
                f"the task workdir {request.workdir} is not under {staging}, the shared staging directory of "
                f"resource {request.resource_name} in the server settings; the cluster's nodes could not see it"
            )
        return entry

    def time_limit_minutes(self, request: RunRequest) -> int:
        return max(1, math.ceil(request.timeout_seconds / 60))

    def submit_options(self, request: RunRequest, job_dir: Path, entry: SlurmResource) -> list[str]:
        """Every sbatch option, from the settings, the resource and the limits only."""
        if not _TASK_ID.match(request.task_id):
            raise NotAllowedError(f"refusing to submit task id {request.task_id!r}: not a plain name")
        limits = self.settings.limits
        options = [
            "--parsable", f"--job-name={JOB_NAME_PREFIX}{request.task_id}", f"--output={job_dir / JOB_LOG}",
            f"--chdir={job_dir}", "--export=NONE", "--no-requeue", "--nodes=1", "--ntasks=1",
            f"--cpus-per-task={max(1, math.ceil(float(limits.cpus)))}", f"--mem={parse_memory_mb(limits.memory)}M",
            f"--time={self.time_limit_minutes(request)}",
        ]
        if request.gpus > 0:
            options.append(f"--gres=gpu:{int(request.gpus)}")
        for flag, value in (("--partition", entry.partition or self.slurm.partition),
                            ("--account", entry.account or self.slurm.account),
                            ("--qos", entry.qos or self.slurm.qos)):
            if value:
                options.append(f"{flag}={value}")
        options.extend(self.slurm.extra_options)
        return options

    def messages(self, request: RunRequest, job: str = "$SLURM_JOB_ID") -> dict[str, str]:
        """What a run that Slurm ended says, the same in the job's report and in the task's error."""
        minutes = self.time_limit_minutes(request)
        memory = self.settings.limits.memory
        return {
            "TIMEOUT": f"timed out after {request.timeout_seconds} s: Slurm job {job} reached its time limit "
                       f"({minutes} min)",
            "OUT_OF_MEMORY": f"out of memory: Slurm job {job} exceeded its memory limit ({memory}) and was killed; "
                             "use fewer workers or a smaller batch_size, or ask the administrator for a larger "
                             "memory limit",
            "CONTAINER_OOM": f"out of memory: the run exceeded the container's memory limit ({memory}) and was "
                             "killed; use fewer workers or a smaller batch_size, or ask the administrator for a "
                             "larger memory limit",
            "STOPPED": f"stopped by Slurm before the run ended (Slurm job {job} was cancelled or preempted, or its "
                       "node is shutting down)",
        }

    def job_script(self, request: RunRequest, job_dir: Path) -> str:
        """The batch script: a short bash program, every value in it shell-quoted."""
        q = shlex.quote
        minutes = self.time_limit_minutes(request)
        msg = self.messages(request)
        cpus = max(1, int(float(self.settings.limits.cpus)))
        head = [
            "#!/bin/bash",
            f"# compute_to_data: the Slurm job of task {request.task_id} (written by the slurm runner; it runs on",
            "# the node, and renders the partial report itself when Slurm stops it).",
            "set -u",
            "umask 0022",
            f"JOB_DIR={q(str(job_dir))}",
            f"OUT={q(str(request.output_dir.resolve()))}",
            f"INPUTS={q(str(request.input_dir.resolve()))}",
            f"TIME_LIMIT_SECONDS={minutes * 60}",
            f"TIMEOUT_MESSAGE={q(msg['TIMEOUT'])}",
            f"STOPPED_MESSAGE={q(msg['STOPPED'])}",
            "TIMEOUT_MESSAGE=${TIMEOUT_MESSAGE//\\$SLURM_JOB_ID/${SLURM_JOB_ID:-?}}",
            "STOPPED_MESSAGE=${STOPPED_MESSAGE//\\$SLURM_JOB_ID/${SLURM_JOB_ID:-?}}",
            "NODE=${SLURMD_NODENAME:-$(hostname -s)}",
            "STARTED=$(date +%s.%N)",
            "STARTED_ISO=$(date -u +%Y-%m-%dT%H:%M:%SZ)",
            "ENDED=",
            "stopped=0",
            "child=",
            'say() { echo "[c2d slurm job] $*"; }',
            "write_file() {  # name, content: atomically, the supervisor reads it from another host",
            '    printf "%s" "$2" > "$JOB_DIR/$1.tmp.$$" && mv -f "$JOB_DIR/$1.tmp.$$" "$JOB_DIR/$1"',
            "}",
            "finish() {  # exit code, oom (0/1), image id",
            '    [ -n "$ENDED" ] || ENDED=$(date +%s.%N)',
            f'    write_file {STATUS_FILE} "$(printf \'ended=%s\\nexit_code=%s\\noom=%s\\nstopped=%s\\nnode=%s\\nimage_id=%s\\n\' '
            '"$ENDED" "$1" "$2" "$stopped" "$NODE" "${3:-}")"',
            '    exit "$1"',
            "}",
            "stop_message() {",
            f'    if [ -s "$JOB_DIR/{STOP_FILE}" ]; then cat "$JOB_DIR/{STOP_FILE}"; return; fi',
            '    if [ $(( $(date +%s) - ${STARTED%.*} )) -ge $((TIME_LIMIT_SECONDS - 5)) ]; then',
            '        echo "$TIMEOUT_MESSAGE"; else echo "$STOPPED_MESSAGE"; fi',
            "}",
            'on_term() { stopped=1; stop_payload; }',
            "wait_payload() {  # the payload's exit code, also when a signal interrupts wait",
            '    wait "$child"; code=$?',
            '    while kill -0 "$child" 2>/dev/null; do',
            '        [ "$stopped" = 1 ] && stop_payload',
            '        sleep 0.5',
            "    done",
            '    [ "$stopped" = 1 ] && { wait "$child"; code=$?; }',
            "    ENDED=$(date +%s.%N)",
            "}",
            f'write_file {STARTED_FILE} "$(printf \'started=%s\\nnode=%s\\njob=%s\\n\' "$STARTED" "$NODE" "${{SLURM_JOB_ID:-}}")"',
        ]
        body = self._container_body(request) if self.container_mode else self._direct_body(request, job_dir, cpus)
        return "\n".join(head + body) + "\n"

    def _container_body(self, request: RunRequest) -> list[str]:
        q = shlex.quote
        allowed = self.settings.check_image(request.image)
        user = self._docker.container_user()
        cpus = max(1, math.ceil(float(self.settings.limits.cpus)))
        kwargs = self._docker.container_kwargs(replace(request, gpus=0), None, user, host_cpus=cpus)
        kwargs["labels"] = {k: v for k, v in kwargs["labels"].items() if k != LABEL_ROLE}
        run_args = cli_arguments(kwargs)
        if self.slurm.container_engine == "podman" and os.geteuid() != 0:
            run_args.insert(0, "--userns=keep-id")  # rootless podman: keep the service account's uid
        finalize = ["--output-dir", names.CONTAINER_OUTPUT_DIR, "--interrupted", "__MESSAGE__",
                    "--input-dir", names.CONTAINER_INPUT_DIR, "--started", "__STARTED__"]
        quoted_finalize = " ".join(q(a) for a in finalize).replace("__MESSAGE__", '"$message"').replace(
            "__STARTED__", '"$STARTED_ISO"')
        return [
            f"ENGINE={q(self.slurm.container_engine)}",
            f"IMAGE={q(allowed.name)}",
            f"PINNED={q(allowed.digest or '')}",
            f"NAME={q(JOB_NAME_PREFIX + request.task_id)}-${{SLURM_JOB_ID:-0}}",
            f"GPUS={int(request.gpus)}",
            f"OOM_MESSAGE={q(self.messages(request)['CONTAINER_OOM'])}",
            "RUN_ARGS=(" + " ".join(q(a) for a in run_args) + ")",
            "COMMAND=(" + " ".join(q(a) for a in kwargs["command"]) + ")",
            'stop_payload() { "$ENGINE" kill "$NAME" >/dev/null 2>&1 || true; }',
            "trap on_term TERM INT",
            "image_info=$(\"$ENGINE\" image inspect --format '{{.Id}} {{range .RepoDigests}}{{.}} {{end}}' \"$IMAGE\" 2>/dev/null) || {",
            '    say "container image $IMAGE is allowed but not present on node $NODE; the administrator builds it '
            'there (c2d image build) or loads it; images are never pulled by tasks"',
            "    finish 125 0",
            "}",
            "image_id=${image_info%% *}",
            'case $image_id in sha256:*) ;; *) image_id="sha256:$image_id" ;; esac',
            'if [ -n "$PINNED" ] && [[ " $image_info " != *"$PINNED"* ]]; then',
            '    say "container image $IMAGE on node $NODE is $image_id, but the server settings pin $PINNED; the '
            'administrator must rebuild or re-pin it"',
            '    finish 126 0 "$image_id"',
            "fi",
            "gpu_args=()",
            'if [ "$GPUS" -gt 0 ]; then',
            "    devices=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}",
            '    if [ "$ENGINE" = podman ]; then',
            '        if [ -n "$devices" ]; then for d in ${devices//,/ }; do gpu_args+=(--device "nvidia.com/gpu=$d"); done',
            "        else gpu_args=(--device nvidia.com/gpu=all); fi",
            '    elif [ -n "$devices" ]; then gpu_args=(--gpus "\\"device=$devices\\"")',
            '    else gpu_args=(--gpus "$GPUS"); fi',
            "fi",
            'say "task container $NAME from $IMAGE ($image_id) on node $NODE"',
            '"$ENGINE" run --name "$NAME" --pull=never "${RUN_ARGS[@]}" --label=c2d.role=task "${gpu_args[@]}" '
            '"$image_id" "${COMMAND[@]}" &',
            "child=$!",
            "wait_payload",
            "oom=0",
            '[ "$("$ENGINE" inspect --format \'{{.State.OOMKilled}}\' "$NAME" 2>/dev/null)" = true ] && oom=1',
            '"$ENGINE" rm -f "$NAME" >/dev/null 2>&1',
            f'if [ ! -s "$OUT/{names.RESULT_FILE}" ]; then',
            '    limit=300',
            '    if [ "$stopped" = 1 ]; then message=$(stop_message); limit=20',
            '    elif [ "$oom" = 1 ]; then message=$OOM_MESSAGE',
            f'    else message="the container exited with code $code without writing {names.RESULT_FILE}"; fi',
            '    say "$message; rendering the partial report"',
            '    timeout -k 5 "$limit" "$ENGINE" run --rm --name "$NAME-finalize" --pull=never "${RUN_ARGS[@]}" '
            f'--label=c2d.role=finalize "$image_id" {quoted_finalize}',
            '    "$ENGINE" rm -f "$NAME-finalize" >/dev/null 2>&1',
            "fi",
            'finish "$code" "$oom" "$image_id"',
        ]

    def _direct_body(self, request: RunRequest, job_dir: Path, cpus: int) -> list[str]:
        q = shlex.quote
        python = self.slurm.python or find_python()
        notebook = job_dir / Path(request.notebook_path).name
        params = job_dir / names.PARAMS_FILE
        env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus),
               "C2D_TASK_ID": request.task_id, "C2D_RUN_ID": request.run_id or request.task_id}
        package_parent = str(Path(__file__).resolve().parents[2])
        if "site-packages" not in package_parent and "dist-packages" not in package_parent:
            env["PYTHONPATH"] = package_parent  # a source checkout on the shared filesystem
        entrypoint = [python, "-m", ENTRYPOINT_MODULE]
        return [
            *(f"export {key}={q(value)}" for key, value in env.items()),
            'export HOME=$(mktemp -d "${TMPDIR:-/tmp}/c2d-home.XXXXXX")',
            # the kernel's connection file (its HMAC key) there too: removed with it, not left in /tmp
            f'export {RUNTIME_DIR_ENV}="$HOME"',
            'stop_payload() { [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; true; }',
            "trap on_term TERM INT",
            f'say "notebook {request.notebook_name} with {q(python)} on node $NODE"',
            " ".join(q(a) for a in entrypoint) + f" --params {q(str(params))} --notebook {q(str(notebook))} "
            '--output-dir "$OUT" &',
            "child=$!",
            "wait_payload",
            f'if [ ! -s "$OUT/{names.RESULT_FILE}" ]; then',
            '    limit=300',
            '    if [ "$stopped" = 1 ]; then message=$(stop_message); limit=20',
            f'    else message="the notebook runner exited with code $code without writing {names.RESULT_FILE}"; fi',
            '    say "$message; rendering the partial report"',
            '    timeout -k 5 "$limit" ' + " ".join(q(a) for a in entrypoint)
            + ' --output-dir "$OUT" --interrupted "$message" --input-dir "$INPUTS" --started "$STARTED_ISO"',
            "fi",
            'rm -rf "$HOME"',
            'finish "$code" 0',
        ]

    # --- the lifecycle's steps ---------------------------------------------------------------------
    def start(self, run: ActiveRun) -> None:
        request = run.request
        entry = self.resource_settings(request)
        for directory in (request.input_dir, request.task_dir):
            if not directory.is_dir():
                raise RunnerError(f"the task workdir has no {directory.name}/ directory ({directory})")
        if self.container_mode:
            if not (request.task_dir / names.PARAMS_FILE).is_file():
                raise RunnerError(f"{request.task_dir / names.PARAMS_FILE} is missing: the task wrote no parameters")
            allowed = self.settings.check_image(request.image)
            run.image, run.image_digest = allowed.name, allowed.digest
            self._docker._prepare_directories(request, self._docker.container_user())
        else:
            request.output_dir.mkdir(parents=True, exist_ok=True)
        job_dir = (request.workdir / JOB_DIR).resolve()
        if job_dir.exists():
            shutil.rmtree(job_dir)
        job_dir.mkdir(mode=0o700)
        if not self.container_mode:
            shutil.copyfile(request.notebook_path, job_dir / Path(request.notebook_path).name)
            host_params = to_host_parameters(request.parameters, request)
            (job_dir / names.PARAMS_FILE).write_text(json.dumps(host_params, indent=2) + "\n")
        script = job_dir / JOB_SCRIPT
        script.write_text(self.job_script(request, job_dir))
        script.chmod(0o700)
        options = self.submit_options(request, job_dir, entry)
        t0 = time.perf_counter()
        job_id, refusal = self.commands.submit(options, script)
        run.timings["slurm_submit_seconds"] = round(time.perf_counter() - t0, 3)
        if job_id is None:
            raise RunnerError(self._refusal(request, entry, refusal))
        run.detail = _Job(job_id, job_dir, self.time_limit_minutes(request), time.time(), self.slurm.mode,
                          last_contact=time.monotonic())
        run.handle = job_id
        log.info("task %s: submitted as Slurm job %s (%s)", request.task_id, job_id, " ".join(options))

    def _refusal(self, request: RunRequest, entry: SlurmResource, said: str) -> str:
        partition = entry.partition or self.slurm.partition
        where = f"partition {partition}" if partition else "the default partition"
        limits = self.settings.limits
        if "requested node configuration is not available" in said.lower():
            return (
                f"Slurm refused the job: no node in {where} has what it asks for ({request.gpus} GPU(s) from "
                f"{names.GPUS_ATTRIBUTE} of resource {request.resource_name}, {math.ceil(float(limits.cpus))} "
                f"CPU(s) and {limits.memory} memory from the server settings' limits); lower them, or ask the "
                f"administrator which nodes the cluster has (sbatch: {said})"
            )
        if any(word in said.lower() for word in ("partition", "account", "qos", "association")):
            return (
                f"Slurm refused the job: {said}; check slurm.partition, slurm.account and slurm.qos in the server "
                f"settings ({self.settings.source}), and that the service account has a Slurm account allowed to "
                "submit there"
            )
        return f"Slurm refused the job of task {request.task_id}: {said}"

    def poll(self, run: ActiveRun, wait: float) -> RunStatus:
        job: _Job = run.detail
        deadline = time.monotonic() + max(0.0, wait)
        status = read_key_values(job.file(STATUS_FILE))
        while status is None and time.monotonic() < deadline:
            time.sleep(min(self.file_check_interval, max(0.0, deadline - time.monotonic())))
            status = read_key_values(job.file(STATUS_FILE))
        self._note_start(run, job)
        if status is not None and status.get("stopped") != "1":
            return self._ended(run, job, status, None)
        try:
            state = self.commands.state(job.job_id)
        except SlurmUnavailable as exc:
            if time.monotonic() - job.last_contact < self.lost_contact_seconds:
                log.warning("task %s: %s; still waiting for job %s", run.request.task_id, exc, job.job_id)
                return run.status or RunStatus(Phase.QUEUED, reason=f"waiting for the Slurm controller ({exc})")
            return RunStatus(Phase.EXITED, reason=(
                f"lost contact with the Slurm controller for {self.lost_contact_seconds:.0f} s while job "
                f"{job.job_id} ran ({exc}); it may still run: cancel it with scancel {job.job_id}"))
        job.last_contact = time.monotonic()
        status = status or read_key_values(job.file(STATUS_FILE))  # it may have ended meanwhile
        if state is None:
            if status is not None:
                return self._ended(run, job, status, None)
            return RunStatus(Phase.EXITED, reason=(
                f"Slurm no longer knows job {job.job_id} and its script left no status (it never ran, or its "
                "node lost it); see the Slurm logs"))
        if state.state in QUEUED_STATES:
            return RunStatus(Phase.QUEUED, reason=describe_pending(state.reason, job.job_id, run.request.gpus))
        if state.state in RUNNING_STATES:
            return RunStatus(Phase.RUNNING, node=state.nodes or None)
        job.final = state
        if status is None and job.file(STARTED_FILE).exists():
            status = self._await_status(job)  # the script ran: its status may lag on a shared filesystem
        return self._ended(run, job, status, state)

    def _await_status(self, job: _Job) -> dict[str, str] | None:
        deadline = time.monotonic() + self.status_grace
        while True:
            status = read_key_values(job.file(STATUS_FILE))
            if status is not None or time.monotonic() >= deadline:
                return status
            time.sleep(self.file_check_interval)

    def _note_start(self, run: ActiveRun, job: _Job) -> None:
        """When the job's script started, by its own clock (squeue may say RUNNING a little earlier)."""
        if job.started_noted:
            return
        started = read_key_values(job.file(STARTED_FILE))
        if started is None:
            return
        job.started_noted = True
        try:
            run.started_epoch = float(started.get("started", ""))
        except ValueError:
            run.started_epoch = time.time()
        run.timings["slurm_queue_seconds"] = round(max(0.0, run.started_epoch - job.submitted_at), 3)
        run.node = started.get("node") or run.node

    def _ended(self, run: ActiveRun, job: _Job, status: dict[str, str] | None, state: JobState | None) -> RunStatus:
        """The run is over: its exit code from the script, why it ended from Slurm's state."""
        exit_code: int | None = None
        node = state.nodes if state is not None and state.nodes else None
        if status is not None:
            try:
                exit_code = int(status.get("exit_code", ""))
            except ValueError:
                exit_code = None
            node = status.get("node") or node
            try:
                run.ended_epoch = float(status.get("ended", ""))
            except ValueError:
                pass
            if status.get("image_id"):
                run.image_digest = status["image_id"]
        messages = self.messages(run.request, job.job_id)
        reason: str | None = None
        name = state.state if state is not None else ""
        if status is not None and status.get("oom") == "1":
            reason = messages["CONTAINER_OOM"]
        elif name in ("TIMEOUT", "DEADLINE"):
            reason = messages["TIMEOUT"]
        elif name == "OUT_OF_MEMORY":
            reason = messages["OUT_OF_MEMORY"]
        elif name in ("NODE_FAIL", "BOOT_FAIL"):
            reason = (f"node failure: node {node or '?'} stopped answering while Slurm job {job.job_id} ran "
                      f"(Slurm: {name}); submit the task again")
        elif name == "PREEMPTED":
            reason = (f"preempted: Slurm job {job.job_id} was stopped to make room for a job of higher priority; "
                      "submit the task again")
        elif name == "CANCELLED":
            said = (job.file(STOP_FILE).read_text(errors="replace").strip()[:500]
                    if job.file(STOP_FILE).is_file() else "")
            reason = said or (f"cancelled: Slurm job {job.job_id} was cancelled outside this task (scancel by a "
                              "user or an administrator)")
        elif name and name not in ("COMPLETED", "FAILED"):
            reason = f"Slurm job {job.job_id} ended {name}"
        elif status is None and exit_code is None and name:
            reason = f"Slurm job {job.job_id} ended {name} before its script could say how the notebook ended"
        if node:
            run.node = node
        return RunStatus(Phase.EXITED, reason=reason, exit_code=exit_code, node=node)

    def kill(self, run: ActiveRun) -> None:
        job: _Job = run.detail
        _write_stop_reason(job.directory, run.stop_reason or "stopped")  # the job's report says it
        self.commands.cancel([job.job_id])

    def collect_logs(self, run: ActiveRun) -> str:
        job: _Job = run.detail
        try:
            text = truncate_log(job.file(JOB_LOG).read_bytes(), MAX_LOG_BYTES)
        except OSError:
            text = ""
        final = f" {job.final.state}" if job.final is not None else ""
        # first, not last: the last line of the log is what a crash message quotes
        return f"[slurm runner] Slurm job {job.job_id}{final} on node {run.node or '(none)'}\n" + text

    def finalize(self, run: ActiveRun, message: str) -> str:
        """The job's script renders the partial report on the node when Slurm stops it; when it
        could not (never started, node lost, killed outright), there is none: the notebook's
        environment is on the nodes, not here."""
        if (run.request.output_dir / names.RESULT_FILE).is_file():
            return ""  # the job's script rendered it
        return f"[slurm runner] {message}; no partial report (the job's script could not render one)\n"

    def cleanup(self, run: ActiveRun) -> None:
        job: _Job | None = run.detail
        if job is None:
            return
        if not run.exited:  # interrupted, or given up on: never leave the job behind
            try:
                self.commands.cancel([job.job_id])
            except RunnerError as exc:
                log.error("task %s: could not cancel Slurm job %s: %s", run.request.task_id, job.job_id, exc)
        if self.container_mode:
            self._docker._restore_ownership(run.request)

    # --- cancel, and from another process ---------------------------------------------------------
    def cancel(self, task_id: str) -> bool:
        """scancel the job(s) of ``task_id`` (found by job name, also from another process)."""
        if super().cancel(task_id):
            return True
        jobs = self.commands.jobs_named(JOB_NAME_PREFIX + task_id)
        for directory in jobs.values():  # what the job's report and its supervisor will say
            _write_stop_reason(Path(directory), CANCELLED_ON_REQUEST)
        self.commands.cancel(list(jobs))
        if jobs:
            log.info("task %s: cancelled Slurm job(s) %s", task_id, ", ".join(jobs))
        return bool(jobs)

    def is_alive(self, handle: str) -> bool:
        """Whether the Slurm job with this id is still pending or running."""
        state = self.commands.state(_job_id(handle))
        return state is not None and state.state in ALIVE_STATES

    def stop(self, handle: str, task_id: str | None = None, wait: float = 120.0, *,
             reason: str | None = None) -> bool:
        """scancel the job (and, with ``task_id``, every job of that task) and wait until Slurm
        says it has ended; its script then stops the container on the node and, with ``reason``
        (a cancel), says why in its log and partial report instead of "cancelled or preempted"."""
        jobs = [_job_id(handle)]
        named: dict[str, str] = {}
        if task_id is not None:
            named = self.commands.jobs_named(JOB_NAME_PREFIX + task_id)
            jobs += [j for j in named if j not in jobs]
        alive = [j for j in jobs if self.is_alive(j)]
        if not alive:
            return False
        if reason is not None:
            for job in alive:
                directory = named.get(job) or self.commands.job_directory(job)
                if directory:
                    _write_stop_reason(Path(directory), reason)
        self.commands.cancel(alive)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(self.is_alive(j) for j in alive):
            time.sleep(0.5)
        log.info("stopped Slurm job(s) %s", ", ".join(alive))
        return True


def _write_stop_reason(job_dir: Path, reason: str) -> None:
    """Tell the job's script (and whoever reads the job's end) why it is being stopped."""
    if not job_dir.name == JOB_DIR or not job_dir.is_dir():
        return
    try:
        tmp = job_dir / f"{STOP_FILE}.tmp.{os.getpid()}"
        tmp.write_text(reason)
        tmp.replace(job_dir / STOP_FILE)
    except OSError as exc:
        log.warning("cannot write %s in %s: %s", STOP_FILE, job_dir, exc)


def _job_id(handle: str) -> str:
    job = handle.strip()
    if not _JOB_ID.match(job):
        raise RunnerError(f"not a Slurm job id: {handle!r}")
    return job


__all__ = ["JobState", "SlurmCommands", "SlurmRunner", "SlurmUnavailable", "describe_pending", "parse_memory_mb"]
