"""The input pipeline and inference loop of ``classify_images.ipynb``.

Camera-trap photos are 1920x1080 JPEGs or larger and the models are ResNet-class networks: the
bottleneck is decoding and resizing on the CPU and the host-to-GPU copy, not the network. So:

* DataLoader workers decode and resize (``num_workers: "auto"`` = the CPUs this process may
  use: its affinity mask, capped by the cgroup CPU quota a container runs under);
* a JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
  itself (PIL's draft mode), keeping at least twice the target size so that the final
  antialiased resize sees the same picture (Pillow's own ``reducing_gap`` rule);
* batches travel as ``uint8`` NHWC (a quarter of the bytes of float32), pinned and copied with
  ``non_blocking`` on CUDA; conversion to float and normalization happen on the device, where
  ``permute`` gives the ``channels_last`` layout tensor cores want at no cost;
* optional autocast (``bf16``/``fp16``) where the device supports it, else fp32 with the reason
  recorded; results are read back one batch late on CUDA so the GPU never waits for Python.

Every decision is a small function of its inputs so the tests exercise the CUDA choices on a
machine without a GPU; the benchmark's bare loop uses the same decoding. Imported by the
notebook kernel (torch, Pillow, numpy), never by code the iRODS server imports.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from compute_to_data.contract.inputs import (  # noqa: F401 - the notebook's pipeline.*
    NOT_STAGED,
    StagedInputs,
    StagingFailedError,
)
from compute_to_data.contract.parts import (  # noqa: F401 - the notebook's pipeline.*
    PartWriter,
    check_part_settings,
    prediction_entry,
)
from compute_to_data.domain import conventions as names

PRECISIONS = ("fp32", "bf16", "fp16")
#: autocast dtype per precision name; fp32 runs without autocast.
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: decode JPEGs at reduced scale only down to this multiple of the target size.
DRAFT_REDUCING_GAP = 2.0
#: batches decoded ahead of the model, over all workers together (at least 2 per worker).
PREFETCH_BATCHES = 8
#: colour modes a model may ask for in its c2d_meta.json (8 bits per channel).
MODES = ("L", "RGB")


# --- how many workers ---------------------------------------------------------------------------
def cgroup_cpu_limit(proc_self_cgroup: Path = Path("/proc/self/cgroup"),
                     cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the CFS quota allows this process (tightest along its cgroup path), None if none.

    ``docker run --cpus 2`` writes ``200000 100000`` to the container's ``cpu.max`` (cgroup
    v2) or ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (v1) while the affinity mask still shows
    every CPU of the host, so the quota must be read to know what the container may use.
    """
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            for directory in _cgroup_chain(cgroup_root, path):
                limits.extend(_v2_limit(directory / "cpu.max"))
        elif "cpu" in controllers.split(","):
            for base in (cgroup_root / controllers, cgroup_root / "cpu"):
                if base.is_dir():
                    for directory in _cgroup_chain(base, path):
                        limits.extend(_v1_limit(directory))
                    break
    return min(limits) if limits else None


def _cgroup_chain(root: Path, path: str) -> list[Path]:
    """The process's cgroup directory and its parents up to ``root`` (those that exist here).

    Inside a container the path in /proc/self/cgroup may name the host's hierarchy while only
    the container's own cgroup is mounted at ``root``, so ``root`` itself is always included.
    """
    chain: list[Path] = []
    relative = Path(path.strip().lstrip("/"))
    if ".." not in relative.parts:
        directory = root / relative
        while directory != root:
            if directory.is_dir():
                chain.append(directory)
            directory = directory.parent
    chain.append(root)
    return chain


def _v2_limit(cpu_max: Path) -> list[float]:
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
        if quota != "max":
            return [int(quota) / int(period or 100000)]
    except (OSError, ValueError, ZeroDivisionError):
        pass
    return []


def _v1_limit(directory: Path) -> list[float]:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return [quota / period]
    except (OSError, ValueError):
        pass
    return []


def usable_cpus(**cgroup_paths: Path) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (floor, >= 1)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        available = os.cpu_count() or 1
    quota = cgroup_cpu_limit(**cgroup_paths)
    if quota is not None:
        available = min(available, int(quota))
    return max(1, available)


def resolve_num_workers(requested: Any, *, images: int, batch_size: int, cpus: int | None = None) -> int:
    """DataLoader workers for ``requested`` (``"auto"`` or a count >= 0), never more than batches."""
    if requested == "auto":
        wanted = usable_cpus() if cpus is None else cpus
    elif isinstance(requested, bool) or not isinstance(requested, (int, str)):
        raise ValueError(f"num_workers must be \"auto\" or a number >= 0, not {requested!r}")
    else:
        try:
            wanted = int(requested)
        except ValueError:
            raise ValueError(f"num_workers must be \"auto\" or a number >= 0, not {requested!r}") from None
        if wanted < 0:
            raise ValueError(f"num_workers must be \"auto\" or a number >= 0, not {requested!r}")
    batches = math.ceil(images / batch_size) if batch_size > 0 else 0
    return max(0, min(wanted, batches))


def prefetch_factor(workers: int) -> int | None:
    """Batches each worker decodes ahead: :data:`PREFETCH_BATCHES` over all of them, >= 2 each."""
    if workers <= 0:
        return None  # DataLoader refuses a prefetch_factor without workers
    return max(2, math.ceil(PREFETCH_BATCHES / workers))


# --- precision and device -----------------------------------------------------------------------
def check_precision(value: Any) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {value!r}")
    return str(value)


@dataclass(frozen=True)
class PrecisionChoice:
    """What was asked for, what runs, and why they differ (None when they do not)."""

    requested: str
    used: str
    reason: str | None = None

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32 (no autocast at all: results as without it)."""
        return _DTYPES.get(self.used)


def choose_precision(requested: str, device_type: str, *, bf16: bool, fp16: bool, device_name: str = "") -> PrecisionChoice:
    """``requested`` if the device computes it natively, else fp32 with the reason.

    Emulated half precision (bf16 on a CPU without AVX512-BF16/AMX, bf16 on a GPU before
    Ampere) is slower *and* less exact than fp32, so falling back loses nothing the researcher
    wanted; the choice is shown in the report and recorded in ``result.json``.
    """
    requested = check_precision(requested)
    if requested == "fp32":
        return PrecisionChoice(requested, "fp32")
    supported = bf16 if requested == "bf16" else fp16
    if supported:
        return PrecisionChoice(requested, requested)
    where = device_name or device_type
    return PrecisionChoice(requested, "fp32", f"{where} has no native {requested} support; ran in fp32")


def half_precision_support(device: torch.device) -> tuple[bool, bool]:
    """(bf16, fp16) computed natively on ``device`` (never emulation)."""
    if device.type == "cuda":
        try:
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch without the argument
            bf16 = torch.cuda.get_device_capability(device)[0] >= 8
        return bool(bf16), True
    if device.type == "cpu":
        return _cpu_flag("_is_mkldnn_bf16_supported"), _cpu_flag("_is_mkldnn_fp16_supported")
    return False, False


def _cpu_flag(name: str) -> bool:
    try:
        return bool(getattr(torch.ops.mkldnn, name)())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(requested: str) -> torch.device:
    """``auto`` is a GPU when torch sees one; ``cuda`` without one is refused with the reason."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(f"device must be auto, cpu or cuda[:N], not {requested!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"device {requested!r} was asked for but torch {torch.__version__} ({build}) sees no GPU")
    return device


@dataclass(frozen=True)
class DevicePlan:
    """How batches reach the model on one device."""

    device: torch.device
    precision: PrecisionChoice
    #: page-locked host batches (DataLoader pin_memory): the only memory a copy can overlap from.
    pin_memory: bool
    #: host-to-device copies that return at once (meaningful from pinned memory only).
    non_blocking: bool
    #: NHWC activations and weights: what cuDNN's tensor-core convolutions run on.
    channels_last: bool
    #: batches whose results are read back later, so the device always has the next one queued.
    lag: int

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision.used,
                "precision_requested": self.precision.requested, "precision_note": self.precision.reason,
                "pin_memory": self.pin_memory, "non_blocking": self.non_blocking,
                "channels_last": self.channels_last}


def plan_for(device: torch.device, precision: PrecisionChoice) -> DevicePlan:
    """CUDA: pinned, non-blocking, channels_last, one batch of lag. Elsewhere: as plain as before
    (NCHW, synchronous), which keeps CPU fp32 results what they always were."""
    if device.type == "cuda":
        return DevicePlan(device, precision, pin_memory=True, non_blocking=True, channels_last=True, lag=1)
    return DevicePlan(device, precision, pin_memory=False, non_blocking=False, channels_last=False, lag=0)


def make_plan(device: str, precision: str) -> DevicePlan:
    """:func:`plan_for` the device ``device`` names, with the precision it supports."""
    torch_device = resolve_device(device)
    bf16, fp16 = half_precision_support(torch_device)
    name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "this CPU"
    return plan_for(torch_device, choose_precision(precision, torch_device.type, bf16=bf16, fp16=fp16, device_name=name))


# --- models: TorchScript or a torch.export archive ---------------------------------------------------
META_FILE = "c2d_meta.json"


def is_export_archive(path: str | os.PathLike[str]) -> bool:
    """A ``torch.export.save`` archive (``.pt2``): a zip holding ``<name>/archive_format``
    (TorchScript files are zips too, without it). The model file's name says nothing: the
    runner stages whatever the task names as ``model.pt``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/archive_format") or n == "archive_format" for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_model(path: str | os.PathLike[str], device: torch.device) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """(model on ``device``, its ``c2d_meta.json`` preprocessing, ``torchscript`` or ``export``).

    TorchScript is deprecated (torch 2.13 warns); a ``torch.export`` archive carries the same
    ``c2d_meta.json`` as an extra file (``torch.export.save(..., extra_files={...})``) and must
    have been exported with a dynamic batch dimension."""
    extra = {META_FILE: ""}
    if is_export_archive(path):
        program = torch.export.load(str(path), extra_files=extra)
        model = program.module().to(device)
        kind = "export"
    else:
        model = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        kind = "torchscript"
    return model, json.loads(extra[META_FILE] or "{}"), kind


def prepare_model(model: torch.nn.Module, plan: DevicePlan) -> torch.nn.Module:
    if not isinstance(model, torch.fx.GraphModule):
        # an exported program refuses eval() (torch 2.13): its graph was captured in the mode
        # it was exported in, which must be eval mode (the demo exports it so)
        model.eval()
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    return model


# --- decoding -----------------------------------------------------------------------------------
def draft_request(size: tuple[int, int], target: int, gap: float = DRAFT_REDUCING_GAP) -> tuple[int, int] | None:
    """The size to ask libjpeg for, or None where a reduced-scale decode cannot help.

    libjpeg decodes at 1/2, 1/4 or 1/8 scale, choosing the smallest that stays at least as
    large as the request in both directions; asking for ``gap`` times the target keeps enough
    pixels for the antialiased resize that follows.
    """
    needed = math.ceil(target * gap)
    if min(size) < 2 * needed:
        return None
    return needed, needed


def load_image(path: str | os.PathLike[str], mode: str, size: int, thumbnail: Thumbnail | None = None) -> np.ndarray:
    """One file as a ``size`` x ``size`` x channels uint8 array (EXIF orientation applied);
    with ``thumbnail``, its thumbnail is written on the way (from the same decoded pixels)."""
    with Image.open(path) as opened:
        img: Image.Image = opened
        if opened.format == "JPEG":
            request = draft_request(img.size, max(size, thumbnail.size if thumbnail else 0))
            if request is not None:
                opened.draft(mode, request)
        img = ImageOps.exif_transpose(img).convert(mode)
        if thumbnail is not None:
            thumbnail.write(img)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.array(img, dtype=np.uint8).reshape(size, size, -1)  # a writable copy torch can share


@dataclass(frozen=True)
class Thumbnail:
    """Where one image's thumbnail goes and how large (longest side, aspect kept)."""

    target: Path
    size: int

    def write(self, img: Image.Image) -> None:
        """Best effort: a thumbnail that cannot be written is just missing (the image is still
        classified); written under a temporary name and renamed, so it is whole or absent."""
        try:
            small = img.copy()
            small.thumbnail((self.size, self.size), Image.Resampling.BILINEAR)
            kind = "JPEG" if self.target.suffix.lower() in (".jpg", ".jpeg") else "PNG"
            if kind == "JPEG" and small.mode not in ("RGB", "L"):
                small = small.convert("RGB")
            self.target.parent.mkdir(parents=True, exist_ok=True)
            partial = self.target.with_name("." + self.target.name + ".tmp")
            small.save(partial, kind, quality=85)
            os.replace(partial, self.target)
        except OSError:
            pass


#: where the classification run writes thumbnails (``parameters.thumbnail_size``), under its
#: output directory: ``.thumbnails/<path relative to the inputs>``; the engine stores each one
#: as ``<image's collection>/thumbnails/<name>`` and links it to its image
THUMBNAILS_DIR = names.THUMBNAILS_OUTPUT_DIR


def thumbnail_plan(files: Sequence[Path], input_root: Path, output_dir: Path, size: int | None) -> list[Thumbnail | None]:
    """Per input file its :class:`Thumbnail` (None for all when ``size`` is not set)."""
    if not size:
        return [None] * len(files)
    return [Thumbnail(output_dir / THUMBNAILS_DIR / Path(f).relative_to(input_root), int(size)) for f in files]


class ImageFiles(Dataset):
    """Files to uint8 HWC tensors; an unreadable file yields its error instead of raising.

    With ``staged`` (the container contract's :class:`StagedInputs`) a file still being staged is
    waited for where it is loaded, in the DataLoader worker: the run classifies the first files
    while the rest arrive. A file staging ended without is an error entry; staging that failed
    raises :class:`StagingFailedError` (the run fails with the engine's reason)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], mode: str, size: int,
                 thumbnails: Sequence[Thumbnail | None] | None = None, staged: StagedInputs | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"c2d_meta.json: mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.paths, self.mode, self.size = list(paths), mode, size
        self.thumbnails = list(thumbnails) if thumbnails is not None else [None] * len(self.paths)
        self.staged = staged

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        if self.staged is not None and not self.staged.wait(self.paths[index]):  # raises StagingFailedError
            return index, None, NOT_STAGED
        try:
            image = load_image(self.paths[index], self.mode, self.size, self.thumbnails[index])
            return index, torch.from_numpy(image), None
        except Exception as exc:  # any unreadable file becomes an error entry, never a failed task
            return index, None, str(exc) or type(exc).__name__


def collate(items: list[tuple[int, torch.Tensor | None, str | None]]
            ) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """(indices of good images, their NHWC uint8 batch or None, [(index, error), ...])."""
    good = [(index, tensor) for index, tensor, error in items if error is None and tensor is not None]
    failed = [(index, error) for index, _, error in items if error is not None]
    batch = torch.stack([tensor for _, tensor in good]) if good else None
    return [index for index, _ in good], batch, failed


def loader_options(workers: int, plan: DevicePlan) -> dict[str, Any]:
    """DataLoader keyword arguments for ``workers`` worker processes on ``plan``'s device."""
    options: dict[str, Any] = {"num_workers": workers, "collate_fn": collate, "pin_memory": plan.pin_memory,
                               "shuffle": False}
    if workers > 0:
        # fork: workers start in milliseconds (no re-import of torch); they never touch CUDA.
        options["multiprocessing_context"] = "fork"
        options["prefetch_factor"] = prefetch_factor(workers)
    return options


class Normalizer:
    """uint8 NHWC batch -> normalized float32 NCHW on the device: ``(x / 255 - mean) / std``.

    The same float32 operations in the same order as the per-image numpy code this replaces,
    so CPU results are unchanged; on CUDA it runs after the (4x smaller) uint8 copy.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], plan: DevicePlan) -> None:
        self.plan = plan
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=plan.device).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=plan.device).view(1, -1, 1, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.plan.device, non_blocking=self.plan.non_blocking).permute(0, 3, 1, 2)
        if self.plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # NHWC already: no copy
        else:
            # Plain NCHW strides, also for one channel (where contiguous() would keep the permuted
            # strides and the convolution might pick another kernel than it always did).
            x = x.clone(memory_format=torch.contiguous_format)
        return (x.float() / 255.0 - self.mean) / self.std


# --- inference ----------------------------------------------------------------------------------
@dataclass
class BatchOutcome:
    """One batch, finished: the top-k of each good image and the errors of the others."""

    indices: list[int]
    classifications: list[list[tuple[int, float]]]  # per image: (class index, score), best first
    failed: list[tuple[int, str]]


def classify(
    batches: Iterable[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]],
    model: Callable[[torch.Tensor], torch.Tensor],
    normalize: Normalizer,
    plan: DevicePlan,
    *,
    top_k: int,
    classes: int,
    outputs_are_probabilities: bool = False,
) -> Iterator[BatchOutcome]:
    """Run ``model`` over ``batches`` and yield finished batches in order.

    With ``plan.lag`` > 0 a batch's scores are copied back asynchronously and read only after
    the next batch has been queued on the device.
    """
    pending: deque[tuple[list[int], list[tuple[int, str]], torch.Tensor | None, torch.Tensor | None, Any]] = deque()
    dtype = plan.precision.dtype
    for indices, batch, failed in batches:
        scores = top = event = None
        if batch is not None:
            x = normalize(batch)
            with torch.autocast(device_type=plan.device.type, dtype=dtype, enabled=dtype is not None):
                output = model(x)
            if output.ndim != 2 or output.shape[1] != classes:
                raise ValueError(f"the model returned shape {tuple(output.shape)} but the labels file "
                                 f"lists {classes} classes: they do not belong together")
            probabilities = output.float() if outputs_are_probabilities else torch.softmax(output.float(), dim=1)
            scores, top = probabilities.topk(top_k, dim=1)
            if plan.non_blocking:
                scores = scores.to("cpu", non_blocking=True)
                top = top.to("cpu", non_blocking=True)
                if plan.device.type == "cuda":
                    event = torch.cuda.Event()
                    event.record()
        pending.append((indices, failed, scores, top, event))
        while len(pending) > plan.lag:
            yield _finish(*pending.popleft())
    while pending:
        yield _finish(*pending.popleft())


def _finish(indices: list[int], failed: list[tuple[int, str]], scores: torch.Tensor | None,
            top: torch.Tensor | None, event: Any) -> BatchOutcome:
    if event is not None:
        event.synchronize()
    rows: list[list[tuple[int, float]]] = []
    if scores is not None and top is not None:
        rows = [list(zip(c, s)) for c, s in zip(top.cpu().tolist(), scores.cpu().tolist())]
    return BatchOutcome(indices, rows, failed)


