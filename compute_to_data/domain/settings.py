"""Server-side settings: what the administrator allows, which task configs can only choose from.

The service account that starts containers is in the ``docker`` group, which is root-equivalent
on the compute host; so images, limits, uid/gid and staging locations come from this file
(``/etc/irods/compute_to_data.json`` or ``$C2D_SETTINGS``), never from a researcher's config.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.errors import NotAllowedError, SettingsError


@dataclass(frozen=True)
class AllowedImage:
    name: str
    digest: str | None = None  # "sha256:..." pins the exact image

    def matches(self, reference: str) -> bool:
        return reference == self.name


@dataclass(frozen=True)
class ContainerLimits:
    memory: str = "8g"
    cpus: float = 2.0
    pids: int = 512
    shm_size: str = "1g"


#: sbatch options the Slurm runner sets itself (from the task, the limits and the settings'
#: own keys): ``slurm.extra_options`` may not set them again.
SLURM_CONTROLLED_OPTIONS = (
    "--array", "--chdir", "--cpus-per-gpu", "--cpus-per-task", "--error", "--export", "--gpus", "--gpus-per-node",
    "--gpus-per-task", "--gres", "--input", "--job-name", "--mem", "--mem-per-cpu", "--mem-per-gpu", "--nodes",
    "--ntasks", "--output", "--parsable", "--partition", "--account", "--qos", "--time", "--wrap", "--wait",
    "--requeue", "--no-requeue", "--uid", "--gid",
)


@dataclass(frozen=True)
class SlurmResource:
    """A compute resource whose tasks run as Slurm jobs: where its staging directory is on the
    filesystem the resource's vault shares with the cluster's nodes, and optional overrides of
    the cluster-wide partition, account and QoS."""

    staging_directory: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None


@dataclass(frozen=True)
class SlurmSettings:
    """How tasks are submitted to a Slurm cluster; every sbatch option comes from here or from
    the resource and the limits, never from a task config."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: further sbatch options the administrator allows, e.g. ["--constraint=a100"].
    extra_options: tuple[str, ...] = ()
    #: "container": the allowlisted image, locked down, through container_engine on the node;
    #: "direct": the notebook in a pre-installed environment on the node (not a sandbox).
    mode: str = "container"
    container_engine: str = "docker"
    #: direct mode: the interpreter of the environment on the nodes (default: this Python).
    python: str | None = None
    #: where sbatch, squeue, scancel and sacct are, when they are not on the PATH.
    commands_directory: str | None = None
    poll_interval_seconds: float = 2.0
    resources: dict[str, SlurmResource] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.resources)

    def resource(self, name: str) -> SlurmResource | None:
        return self.resources.get(name)

    @classmethod
    def from_document(cls, doc: Any, source: str) -> "SlurmSettings":
        if not isinstance(doc, dict):
            raise SettingsError(f"{source}: slurm must be an object")
        known = {"partition", "account", "qos", "extra_options", "mode", "container_engine", "python",
                 "commands_directory", "poll_interval_seconds", "resources", "$comment"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SettingsError(f"{source}: unknown slurm setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        mode = doc.get("mode", "container")
        if mode not in ("container", "direct"):
            raise SettingsError(f"{source}: slurm.mode must be 'container' or 'direct', not {mode!r}")
        engine = doc.get("container_engine", "docker")
        if engine not in ("docker", "podman"):
            raise SettingsError(f"{source}: slurm.container_engine must be 'docker' or 'podman', not {engine!r}")
        extra = doc.get("extra_options", [])
        if not isinstance(extra, list) or not all(isinstance(o, str) for o in extra):
            raise SettingsError(f"{source}: slurm.extra_options must be a list of strings like '--constraint=a100'")
        for option in extra:
            flag = option.split("=", 1)[0]
            if not flag.startswith("--") or any(c.isspace() for c in option):
                raise SettingsError(f"{source}: slurm.extra_options: {option!r} is not one long option (--name=value)")
            if flag in SLURM_CONTROLLED_OPTIONS:
                raise SettingsError(
                    f"{source}: slurm.extra_options may not set {flag}: the runner sets it (partition, account and "
                    "qos have their own slurm settings; CPUs and memory come from limits, GPUs from the resource)"
                )
        resources = {}
        raw_resources = doc.get("resources", {})
        if not isinstance(raw_resources, dict):
            raise SettingsError(f"{source}: slurm.resources must map resource names to objects")
        for name, entry in raw_resources.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("staging_directory"), str):
                raise SettingsError(f"{source}: slurm.resources.{name} needs a staging_directory (a path on the shared filesystem)")
            extra_keys = sorted(set(entry) - {"staging_directory", "partition", "account", "qos", "$comment"})
            if extra_keys:
                raise SettingsError(f"{source}: slurm.resources.{name}: unknown setting(s) {', '.join(extra_keys)}")
            if not Path(entry["staging_directory"]).is_absolute():
                raise SettingsError(f"{source}: slurm.resources.{name}.staging_directory must be an absolute path")
            resources[str(name)] = SlurmResource(
                entry["staging_directory"], entry.get("partition"), entry.get("account"), entry.get("qos"))
        for key in ("partition", "account", "qos", "python", "commands_directory"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise SettingsError(f"{source}: slurm.{key} must be a string")
        return cls(
            partition=doc.get("partition"), account=doc.get("account"), qos=doc.get("qos"),
            extra_options=tuple(extra), mode=mode, container_engine=engine, python=doc.get("python"),
            commands_directory=doc.get("commands_directory"),
            poll_interval_seconds=float(doc.get("poll_interval_seconds", 2.0)), resources=resources,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "partition": self.partition, "account": self.account, "qos": self.qos,
            "extra_options": list(self.extra_options), "mode": self.mode, "container_engine": self.container_engine,
            "python": self.python, "commands_directory": self.commands_directory,
            "poll_interval_seconds": self.poll_interval_seconds,
            "resources": {
                name: {k: v for k, v in (("staging_directory", r.staging_directory), ("partition", r.partition),
                                         ("account", r.account), ("qos", r.qos)) if v is not None}
                for name, r in self.resources.items()
            },
        }


@dataclass(frozen=True)
class SharedVault:
    """A resource's vault the administrator declares readable on other hosts (a shared parallel
    filesystem, an NFS export): inputs with a good replica there are hard-linked (or copied) from
    where they lie on those hosts instead of being replicated to the compute resource."""

    resource: str
    #: host names (as in the compute resources' RESC_LOC, or names of the host itself) that see
    #: the vault; ``"*"``: every host.
    hosts: tuple[str, ...]
    #: where the vault is mounted on those hosts; None: at its own RESC_VAULT_PATH.
    path: str | None = None

    def visible_on(self, host: str, is_this_host: Callable[[str], bool] | None = None) -> bool:
        """Whether the vault is declared visible on ``host`` (or, with ``is_this_host``, on a
        declared name that designates this host)."""
        wanted = host.strip().lower()
        for declared in self.hosts:
            if declared == "*" or declared.strip().lower() == wanted:
                return True
            if is_this_host is not None and is_this_host(declared):
                return True
        return False

    def local_path(self, vault_path: str, physical_path: str) -> str | None:
        """``physical_path`` (under the resource's ``vault_path``) as seen on the declared hosts."""
        if self.path is None:
            return physical_path
        vault = vault_path.rstrip("/")
        if physical_path != vault and not physical_path.startswith(vault + "/"):
            return None
        return self.path.rstrip("/") + physical_path[len(vault):]

    @classmethod
    def from_document(cls, name: str, doc: Any, source: str) -> "SharedVault":
        where = f"{source}: shared_vaults.{name}"
        if not isinstance(doc, dict):
            raise SettingsError(f"{where} must be an object like {{\"hosts\": [\"gpu-node-1\"], \"path\": \"/mnt/vault\"}}")
        unknown = sorted(set(doc) - {"hosts", "path", "$comment"})
        if unknown:
            raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: hosts, path")
        hosts = doc.get("hosts")
        if (not isinstance(hosts, list) or not hosts
                or not all(isinstance(h, str) and h.strip() and not any(c.isspace() for c in h) for h in hosts)):
            raise SettingsError(f"{where}.hosts must be a non-empty list of host names (or [\"*\"] for every host)")
        path = doc.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") == ""):
            raise SettingsError(f"{where}.path must be an absolute directory path (where the vault is mounted)")
        if not name or "/" in name or any(c.isspace() for c in name):
            raise SettingsError(f"{source}: shared_vaults: {name!r} is not a resource name")
        return cls(name, tuple(hosts), path)

    def to_document(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), **({"path": self.path} if self.path is not None else {})}


@dataclass(frozen=True)
class IngestSettings:
    """Ingest enrichment (opt-in): photos put into these collections (or below them) get their
    header as AVUs at upload (``acPostProcForPut``, shared with the upload trigger).

    Reading the header costs one open and one or two reads of the object's first
    ``head_bytes`` from the catalog per upload; everything else returns at once.
    """

    #: logical paths of the collections whose uploads are enriched (empty: enrichment is off)
    collections: tuple[str, ...] = ()
    #: bytes read from the start of a photo (EXIF sits in the first 64 KiB of a JPEG)
    head_bytes: int = 256 * 1024

    @property
    def enabled(self) -> bool:
        return bool(self.collections)

    def covers(self, path: str) -> bool:
        """Whether an uploaded object lies in (or below) a listed collection."""
        return any(path.startswith(c.rstrip("/") + "/") for c in self.collections)

    @classmethod
    def from_document(cls, doc: Any, source: str) -> "IngestSettings":
        if not isinstance(doc, dict):
            raise SettingsError(f"{source}: ingest must be an object like {{\"collections\": [\"/zone/home/alice/traps\"]}}")
        unknown = sorted(set(doc) - {"collections", "head_bytes", "$comment"})
        if unknown:
            raise SettingsError(f"{source}: unknown ingest setting(s) {', '.join(unknown)}; known: collections, head_bytes")
        collections = doc.get("collections", [])
        if not isinstance(collections, list) or not all(
                isinstance(c, str) and c.startswith("/") and "//" not in c and len(c) > 1 for c in collections):
            raise SettingsError(f"{source}: ingest.collections must be a list of absolute logical paths, not {collections!r}")
        head = doc.get("head_bytes", cls.head_bytes)
        if isinstance(head, bool) or not isinstance(head, int) or not 1024 <= head <= 16 * 1024 * 1024:
            raise SettingsError(f"{source}: ingest.head_bytes must be an integer from 1024 to 16777216, not {head!r}")
        return cls(tuple(c.rstrip("/") for c in collections), head)

    def to_document(self) -> dict[str, Any]:
        return {"collections": list(self.collections), "head_bytes": self.head_bytes}


@dataclass(frozen=True)
class ReplicationSettings:
    """How inputs that must be replicated to a compute resource are replicated.

    Replication is bound by catalog transactions, not bytes (13 objects/s from one rule on the
    measured zone, 25/s with four rules at once): several agents replicate at once, each a rule
    of its own queued with the delay server (a rule never calls the rule engine from two
    threads), the run being one of them. An agent starts when the delay server next polls
    (every 30 s by default), by when the run alone has replicated some 400 objects, so fewer
    objects than ``parallel_minimum`` are replicated by the run alone.
    """

    #: agents replicating to one resource at once, the run included (1: the run alone)
    agents: int = 4
    #: per-resource numbers of agents, overriding ``agents``
    resources: dict[str, int] = field(default_factory=dict)
    parallel_minimum: int = 2000
    #: an agent that reports no progress for this long is taken over by the run
    stall_seconds: float = 120.0
    #: how often the run looks at its agents' reports while it waits for them
    poll_seconds: float = 2.0

    def agents_for(self, resource: str) -> int:
        return self.resources.get(resource, self.agents)

    @classmethod
    def from_document(cls, doc: Any, source: str) -> "ReplicationSettings":
        if not isinstance(doc, dict):
            raise SettingsError(f"{source}: replication must be an object")
        known = {"agents", "resources", "parallel_minimum", "stall_seconds", "poll_seconds", "$comment"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SettingsError(f"{source}: unknown replication setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'$comment'}))}")

        def count(value: Any, where: str, maximum: int = 64) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
                raise SettingsError(f"{source}: {where} must be an integer from 1 to {maximum}, not {value!r}")
            return value

        agents = count(doc.get("agents", 4), "replication.agents")
        per_resource = doc.get("resources", {})
        if not isinstance(per_resource, dict):
            raise SettingsError(f"{source}: replication.resources must map resource names to numbers of agents")
        resources = {str(k): count(v, f"replication.resources.{k}") for k, v in per_resource.items()}
        minimum = doc.get("parallel_minimum", 2000)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 2:
            raise SettingsError(f"{source}: replication.parallel_minimum must be an integer >= 2, not {minimum!r}")
        seconds = {}
        for key, default in (("stall_seconds", 120.0), ("poll_seconds", 2.0)):
            value = doc.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SettingsError(f"{source}: replication.{key} must be a number above 0, not {value!r}")
            seconds[key] = float(value)
        return cls(agents, resources, minimum, seconds["stall_seconds"], seconds["poll_seconds"])

    def to_document(self) -> dict[str, Any]:
        return {"agents": self.agents, "resources": dict(self.resources), "parallel_minimum": self.parallel_minimum,
                "stall_seconds": self.stall_seconds, "poll_seconds": self.poll_seconds}


@dataclass(frozen=True)
class WebSettings:
    """The report browser (``c2d serve``).

    It answers only requests addressed to it by a name it knows (against DNS rebinding): the
    address it listens on, ``localhost``/``127.0.0.1``/``[::1]`` when that is a loopback or
    wildcard address, and the names listed here (e.g. the name a TLS proxy in front serves).
    """

    #: further host names browsers may use to reach the report browser (no scheme, no port).
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, doc: Any, source: str) -> "WebSettings":
        if not isinstance(doc, dict):
            raise SettingsError(f"{source}: web must be an object")
        unknown = sorted(set(doc) - {"allowed_hosts", "$comment"})
        if unknown:
            raise SettingsError(f"{source}: unknown web setting(s) {', '.join(unknown)}; known: allowed_hosts")
        hosts = doc.get("allowed_hosts", [])
        if not isinstance(hosts, list):
            raise SettingsError(f"{source}: web.allowed_hosts must be a list of host names")
        names_ok: list[str] = []
        for host in hosts:
            if not isinstance(host, str) or not _HOST_NAME_RE.fullmatch(host):
                raise SettingsError(
                    f"{source}: web.allowed_hosts: {host!r} is not a host name (write it as browsers do, "
                    "without scheme or port: reports.example.org, 192.0.2.7 or [2001:db8::7])"
                )
            names_ok.append(host.lower())
        return cls(tuple(names_ok))

    def to_document(self) -> dict[str, Any]:
        return {"allowed_hosts": list(self.allowed_hosts)}


#: a DNS name, an IPv4 address or a bracketed IPv6 address.
_HOST_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class Settings:
    allowed_images: tuple[AllowedImage, ...] = ()
    default_image: str | None = None
    #: image for resources declaring COMPUTE_RESOURCE_GPUS > 0 when the task names none (a CUDA build).
    gpu_image: str | None = None
    #: "uid:gid" for containers; None = the uid:gid of the process starting them (the service account).
    container_user: str | None = None
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    #: staging directory (inputs as hard links, outputs) per compute host, and the fallback.
    staging_directories: dict[str, str] = field(default_factory=dict)
    staging_directory: str = "/var/lib/irods/c2d_staging"
    default_timeout_seconds: int = 3600
    max_timeout_seconds: int = 86400
    #: runners tasks may use; "inprocess" runs notebooks unconfined and is for development only.
    allowed_runners: tuple[str, ...] = ("docker",)
    #: host names treated as "this host" besides what the resolver says (see grid/hosts.py).
    local_host_names: tuple[str, ...] = ()
    #: directory with the notebooks tasks may name; None = the notebooks shipped with the package.
    notebook_directory: str | None = None
    upload_trigger_enabled: bool = False
    #: ingest enrichment on upload (EXIF and image size as AVUs); off unless collections are listed
    ingest: IngestSettings = field(default_factory=IngestSettings)
    max_concurrent_tasks_default: int = 1
    lock_directory: str | None = None
    #: a running task rewrites c2d::heartbeat at least this often (with its progress) ...
    heartbeat_interval_seconds: float = 10.0
    #: ... and one whose heartbeat is older than this is dead (stopped and failed on its host).
    heartbeat_lease_seconds: float = 60.0
    #: the notebook writes its predictions in parts of this many images, or every part_seconds,
    #: and the engine tags each part while the notebook works on the next.
    part_size: int = names.DEFAULT_PART_SIZE
    part_seconds: float = names.DEFAULT_PART_SECONDS
    #: a task config's compute.shard_size is capped by this (default shard: 5,000 images).
    max_shard_size: int = 10000
    #: LocalGrid's dispatcher runs at most this many shard runs at once, as the delay server
    #: runs at most number_of_concurrent_delay_rule_executors (default 4) rules on a zone.
    local_concurrent_runs: int = 4
    #: the shortest interval a scheduled task config may ask for (``schedule.every``), so that
    #: continuous runs cannot hammer the zone: 1 h unless the administrator says otherwise.
    schedule_min_interval_seconds: int = 3600
    #: the Slurm cluster that runs the tasks of some resources (runner ``slurm``).
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    #: parallel replication to compute resources
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    #: vaults readable on other hosts than their resource's (resource name -> declaration)
    shared_vaults: dict[str, SharedVault] = field(default_factory=dict)
    #: the report browser (c2d serve)
    web: WebSettings = field(default_factory=WebSettings)
    source: str = "built-in defaults"

    # --- decisions ---------------------------------------------------------------------------
    def check_image(self, reference: str | None) -> AllowedImage:
        """The allowlist entry for ``reference`` (default image if None), or NotAllowedError."""
        reference = reference or self.default_image
        if not reference:
            raise NotAllowedError(
                "the task config names no container image and the server settings "
                f"({self.source}) define no default_image"
            )
        for allowed in self.allowed_images:
            if allowed.matches(reference):
                return allowed
        permitted = ", ".join(a.name for a in self.allowed_images) or "none"
        raise NotAllowedError(
            f"container image {reference!r} is not allowed by the server settings ({self.source}); "
            f"allowed images: {permitted}. Ask your iRODS administrator to add it to allowed_images."
        )

    def check_image_choice(self, reference: str | None) -> None:
        """Refuse early (before a resource is chosen) what no resource could run: a named image off
        the allowlist, or no image named while the settings have neither default nor GPU image."""
        if reference or not self.gpu_image:
            self.check_image(reference)

    def image_for(self, reference: str | None, gpus: int = 0) -> AllowedImage:
        """The allowlist entry a task runs in: the image it names; else ``gpu_image`` on a
        resource with GPUs (when set); else ``default_image``."""
        if not reference and gpus > 0 and self.gpu_image:
            reference = self.gpu_image
        return self.check_image(reference)

    def check_runner(self, runner: str) -> None:
        if runner not in self.allowed_runners:
            raise NotAllowedError(
                f"runner {runner!r} is not allowed by the server settings ({self.source}); "
                f"allowed: {', '.join(self.allowed_runners)}"
            )

    def effective_timeout(self, requested: int | None) -> int:
        """The task's own limit, else the settings' default; never above the settings' maximum."""
        return min(requested or self.default_timeout_seconds, self.max_timeout_seconds)

    def effective_shard_size(self, requested: int | None) -> int:
        """The task's shard size (default 5,000 images), never above the settings' max_shard_size."""
        return max(1, min(requested or names.DEFAULT_SHARD_SIZE, self.max_shard_size))

    def staging_directory_for(self, host: str, resource: str | None = None) -> Path:
        """A Slurm resource's staging directory (on the shared filesystem), else the host's."""
        slurm_resource = self.slurm.resource(resource) if resource else None
        if slurm_resource is not None:
            return Path(slurm_resource.staging_directory)
        return Path(self.staging_directories.get(host, self.staging_directory))

    def lock_directory_for(self, host: str, resource: str | None = None) -> Path:
        """Where the per-resource slot locks and the per-task run locks live on ``host``."""
        if self.lock_directory:
            return Path(self.lock_directory)
        return self.staging_directory_for(host, resource) / ".locks"

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_document(cls, doc: dict[str, Any], source: str) -> "Settings":
        known = {
            "allowed_images", "default_image", "gpu_image", "container_user", "limits", "staging_directories",
            "staging_directory", "default_timeout_seconds", "max_timeout_seconds", "allowed_runners",
            "local_host_names", "notebook_directory", "upload_trigger_enabled",
            "max_concurrent_tasks_default", "lock_directory", "slurm", "heartbeat_interval_seconds",
            "heartbeat_lease_seconds", "part_size", "part_seconds", "max_shard_size", "local_concurrent_runs",
            "schedule_min_interval_seconds", "replication", "shared_vaults", "web", "ingest", "$comment",
        }
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SettingsError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            images = []
            for entry in doc.get("allowed_images", []):
                if isinstance(entry, str):
                    images.append(AllowedImage(entry))
                else:
                    images.append(AllowedImage(str(entry["name"]), entry.get("digest")))
            limits = ContainerLimits(**doc.get("limits", {}))
            user = doc.get("container_user")
            if user is not None and (not isinstance(user, str) or not all(p.isdigit() for p in user.split(":")) or user.count(":") != 1):
                raise SettingsError(f"{source}: container_user must be 'uid:gid' with numbers, not {user!r}")
            settings = cls(
                allowed_images=tuple(images),
                default_image=doc.get("default_image"),
                gpu_image=doc.get("gpu_image"),
                container_user=user,
                limits=limits,
                staging_directories=dict(doc.get("staging_directories", {})),
                staging_directory=str(doc.get("staging_directory", cls.staging_directory)),
                default_timeout_seconds=int(doc.get("default_timeout_seconds", 3600)),
                max_timeout_seconds=int(doc.get("max_timeout_seconds", 86400)),
                allowed_runners=tuple(doc.get("allowed_runners", ("docker",))),
                local_host_names=tuple(doc.get("local_host_names", ())),
                notebook_directory=doc.get("notebook_directory"),
                upload_trigger_enabled=bool(doc.get("upload_trigger_enabled", False)),
                ingest=IngestSettings.from_document(doc.get("ingest", {}), source),
                max_concurrent_tasks_default=int(doc.get("max_concurrent_tasks_default", 1)),
                lock_directory=doc.get("lock_directory"),
                heartbeat_interval_seconds=float(doc.get("heartbeat_interval_seconds", 10.0)),
                heartbeat_lease_seconds=float(doc.get("heartbeat_lease_seconds", 60.0)),
                part_size=int(doc.get("part_size", names.DEFAULT_PART_SIZE)),
                part_seconds=float(doc.get("part_seconds", names.DEFAULT_PART_SECONDS)),
                max_shard_size=int(doc.get("max_shard_size", 10000)),
                local_concurrent_runs=int(doc.get("local_concurrent_runs", 4)),
                schedule_min_interval_seconds=int(doc.get("schedule_min_interval_seconds", 3600)),
                slurm=SlurmSettings.from_document(doc.get("slurm", {}), source),
                replication=ReplicationSettings.from_document(doc.get("replication", {}), source),
                shared_vaults=_shared_vaults(doc.get("shared_vaults", {}), source),
                web=WebSettings.from_document(doc.get("web", {}), source),
                source=source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SettingsError(f"{source}: malformed setting: {exc}") from exc
        if not 0 < settings.heartbeat_interval_seconds < settings.heartbeat_lease_seconds:
            raise SettingsError(
                f"{source}: heartbeat_interval_seconds ({settings.heartbeat_interval_seconds:g}) must be above 0 and "
                f"below heartbeat_lease_seconds ({settings.heartbeat_lease_seconds:g}), or live tasks would look dead"
            )
        if settings.part_size < 1 or settings.part_seconds <= 0:
            raise SettingsError(f"{source}: part_size must be >= 1 and part_seconds > 0")
        if settings.max_shard_size < 1 or settings.local_concurrent_runs < 1:
            raise SettingsError(f"{source}: max_shard_size and local_concurrent_runs must be >= 1")
        if settings.schedule_min_interval_seconds < 1:
            raise SettingsError(f"{source}: schedule_min_interval_seconds must be at least 1")
        if settings.default_image and not any(a.matches(settings.default_image) for a in settings.allowed_images):
            raise SettingsError(f"{source}: default_image {settings.default_image!r} is not in allowed_images")
        if settings.gpu_image and not any(a.matches(settings.gpu_image) for a in settings.allowed_images):
            raise SettingsError(f"{source}: gpu_image {settings.gpu_image!r} is not in allowed_images")
        return settings

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "Settings":
        """Read ``path``, else ``$C2D_SETTINGS``, else the default path; defaults if absent."""
        explicit = path is not None or names.SETTINGS_ENV in os.environ
        chosen = Path(path or os.environ.get(names.SETTINGS_ENV) or names.DEFAULT_SETTINGS_PATH)
        if not chosen.exists():
            if explicit:
                raise SettingsError(f"server settings file {chosen} does not exist")
            return cls()
        try:
            doc = json.loads(chosen.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingsError(f"cannot read server settings {chosen}: {exc}") from exc
        if not isinstance(doc, dict):
            raise SettingsError(f"server settings {chosen} must hold a JSON object")
        return cls.from_document(doc, str(chosen))

    def to_document(self) -> dict[str, Any]:
        return {
            "allowed_images": [
                {"name": a.name, **({"digest": a.digest} if a.digest else {})} for a in self.allowed_images
            ],
            "default_image": self.default_image,
            "gpu_image": self.gpu_image,
            "container_user": self.container_user,
            "limits": {
                "memory": self.limits.memory, "cpus": self.limits.cpus,
                "pids": self.limits.pids, "shm_size": self.limits.shm_size,
            },
            "staging_directories": self.staging_directories,
            "staging_directory": self.staging_directory,
            "default_timeout_seconds": self.default_timeout_seconds,
            "max_timeout_seconds": self.max_timeout_seconds,
            "allowed_runners": list(self.allowed_runners),
            "local_host_names": list(self.local_host_names),
            "notebook_directory": self.notebook_directory,
            "upload_trigger_enabled": self.upload_trigger_enabled,
            "ingest": self.ingest.to_document(),
            "max_concurrent_tasks_default": self.max_concurrent_tasks_default,
            "lock_directory": self.lock_directory,
            "heartbeat_interval_seconds": self.heartbeat_interval_seconds,
            "heartbeat_lease_seconds": self.heartbeat_lease_seconds,
            "part_size": self.part_size,
            "part_seconds": self.part_seconds,
            "max_shard_size": self.max_shard_size,
            "local_concurrent_runs": self.local_concurrent_runs,
            "schedule_min_interval_seconds": self.schedule_min_interval_seconds,
            "slurm": self.slurm.to_document(),
            "replication": self.replication.to_document(),
            "shared_vaults": {name: vault.to_document() for name, vault in self.shared_vaults.items()},
            "web": self.web.to_document(),
        }


def _shared_vaults(doc: Any, source: str) -> dict[str, SharedVault]:
    if not isinstance(doc, dict):
        raise SettingsError(f"{source}: shared_vaults must map resource names to {{\"hosts\": [...], \"path\": ...}}")
    return {str(name): SharedVault.from_document(str(name), entry, source) for name, entry in doc.items() if name != "$comment"}


def notebook_path(settings: Settings, name: str) -> Path:
    """Resolve a notebook name (never a path) to the file the deployment ships."""
    if "/" in name or name.startswith("."):
        raise NotAllowedError(f"notebook must be a name, not a path: {name!r}")
    if settings.notebook_directory:
        directory = Path(settings.notebook_directory)
    else:
        directory = Path(__file__).resolve().parents[1] / "notebooks"
    candidate = directory / (name if name.endswith(".ipynb") else name + ".ipynb")
    if not candidate.is_file():
        available = sorted(p.stem for p in directory.glob("*.ipynb")) if directory.is_dir() else []
        raise NotAllowedError(
            f"notebook {name!r} is not available on this deployment; available: {', '.join(available) or 'none'}"
        )
    return candidate
