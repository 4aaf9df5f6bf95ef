"""The notebook's input pipeline (compute_to_data/notebook/pipeline.py), without a GPU.

Every CUDA choice (pinned memory, non-blocking copies, channels_last, autocast dtype, lagged
read-back) is a function of inputs these tests give; CPU results are compared bit for bit with
the per-image numpy code the pipeline replaced. Parts are checked for completeness at every
moment, including after the writing process is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader

from compute_to_data.domain import conventions as names
from compute_to_data.notebook import pipeline
from compute_to_data.notebook.pipeline import DevicePlan, PrecisionChoice

FP32 = PrecisionChoice("fp32", "fp32")
CPU_PLAN = pipeline.plan_for(torch.device("cpu"), FP32)


# --- workers ------------------------------------------------------------------------------------
def cgroup_v2(tmp_path: Path, path: str, limits: dict[str, str]) -> dict[str, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{path}\n")
    root = tmp_path / "cgroup"
    root.mkdir()
    for directory, value in limits.items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory / "cpu.max").write_text(value + "\n")
    return {"proc_self_cgroup": proc, "cgroup_root": root}


def test_cgroup_v2_quota_is_the_tightest_along_the_path(tmp_path):
    paths = cgroup_v2(tmp_path, "/system.slice/docker-abc.scope",
                      {".": "max 100000", "system.slice": "400000 100000", "system.slice/docker-abc.scope": "150000 100000"})
    assert pipeline.cgroup_cpu_limit(**paths) == 1.5
    (paths["cgroup_root"] / "system.slice" / "cpu.max").write_text("100000 100000\n")
    assert pipeline.cgroup_cpu_limit(**paths) == 1.0


def test_cgroup_v2_without_quota_and_inside_a_container(tmp_path):
    assert pipeline.cgroup_cpu_limit(**cgroup_v2(tmp_path / "a", "/", {".": "max 100000"})) is None
    # In a container /proc/self/cgroup may name the host's path; only the own cgroup is mounted.
    paths = cgroup_v2(tmp_path / "b", "/docker/0123abcd", {".": "200000 100000"})
    assert pipeline.cgroup_cpu_limit(**paths) == 2.0
    assert pipeline.cgroup_cpu_limit(proc_self_cgroup=tmp_path / "missing", cgroup_root=tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    proc = tmp_path / "cgroup_file"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    directory = tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc"
    directory.mkdir(parents=True)
    (directory / "cpu.cfs_quota_us").write_text("250000\n")
    (directory / "cpu.cfs_period_us").write_text("100000\n")
    assert pipeline.cgroup_cpu_limit(proc_self_cgroup=proc, cgroup_root=tmp_path / "cg") == 2.5
    (directory / "cpu.cfs_quota_us").write_text("-1\n")
    assert pipeline.cgroup_cpu_limit(proc_self_cgroup=proc, cgroup_root=tmp_path / "cg") is None


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert pipeline.usable_cpus(**cgroup_v2(tmp_path / "u", "/", {".": "max 100000"})) == 8
    assert pipeline.usable_cpus(**cgroup_v2(tmp_path / "q", "/", {".": "250000 100000"})) == 2
    assert pipeline.usable_cpus(**cgroup_v2(tmp_path / "h", "/", {".": "50000 100000"})) == 1


def test_num_workers_auto_and_explicit():
    assert pipeline.resolve_num_workers("auto", images=1000, batch_size=64, cpus=4) == 4
    assert pipeline.resolve_num_workers("auto", images=100, batch_size=64, cpus=4) == 2  # only two batches
    assert pipeline.resolve_num_workers("auto", images=0, batch_size=64, cpus=4) == 0
    assert pipeline.resolve_num_workers(3, images=1000, batch_size=8) == 3
    assert pipeline.resolve_num_workers(0, images=1000, batch_size=8) == 0
    assert pipeline.resolve_num_workers("auto", images=10_000, batch_size=1) == pipeline.usable_cpus()
    for bad in (-1, "many", True, 2.5, None):
        with pytest.raises(ValueError, match='num_workers must be "auto" or a number >= 0'):
            pipeline.resolve_num_workers(bad, images=10, batch_size=1)


def test_prefetch_keeps_about_eight_batches_in_flight():
    assert [pipeline.prefetch_factor(w) for w in (0, 1, 2, 3, 4, 16)] == [None, 8, 4, 3, 2, 2]


# --- precision and device -----------------------------------------------------------------------
@pytest.mark.parametrize(("requested", "device", "bf16", "fp16", "used"), [
    ("fp32", "cuda", True, True, "fp32"),
    ("bf16", "cuda", True, True, "bf16"),
    ("bf16", "cuda", False, True, "fp32"),  # a GPU before Ampere
    ("fp16", "cuda", False, True, "fp16"),
    ("bf16", "cpu", True, False, "bf16"),  # AVX512-BF16 / AMX
    ("bf16", "cpu", False, False, "fp32"),
    ("fp16", "cpu", True, False, "fp32"),
])
def test_precision_falls_back_to_fp32_where_not_native(requested, device, bf16, fp16, used):
    choice = pipeline.choose_precision(requested, device, bf16=bf16, fp16=fp16, device_name="Tesla T4")
    assert (choice.requested, choice.used) == (requested, used)
    if used == requested:
        assert choice.reason is None
    else:
        assert choice.reason == f"Tesla T4 has no native {requested} support; ran in fp32"
    assert choice.dtype == {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[used]


def test_precision_must_be_named_exactly():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, not 'fp64'"):
        pipeline.choose_precision("fp64", "cpu", bf16=True, fp16=True)
    with pytest.raises(ValueError, match="not 'BF16'"):
        pipeline.check_precision("BF16")


def test_cuda_plan_pins_copies_asynchronously_and_uses_channels_last():
    plan = pipeline.plan_for(torch.device("cuda", 0), PrecisionChoice("bf16", "bf16"))
    assert (plan.pin_memory, plan.non_blocking, plan.channels_last, plan.lag) == (True, True, True, 1)
    options = pipeline.loader_options(4, plan)
    assert options["pin_memory"] is True and options["prefetch_factor"] == 2
    assert options["multiprocessing_context"] == "fork" and options["shuffle"] is False
    assert plan.describe()["precision"] == "bf16" and plan.describe()["device"] == "cuda:0"


def test_cpu_plan_is_plain_and_synchronous():
    assert (CPU_PLAN.pin_memory, CPU_PLAN.non_blocking, CPU_PLAN.channels_last, CPU_PLAN.lag) == (False, False, False, 0)
    options = pipeline.loader_options(0, CPU_PLAN)
    assert "prefetch_factor" not in options and "multiprocessing_context" not in options
    DataLoader(pipeline.ImageFiles([], "L", 8), batch_size=2, **pipeline.loader_options(2, CPU_PLAN))


def test_make_plan_on_a_gpu_host_as_torch_would_report_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    plan = pipeline.make_plan("auto", "bf16")
    assert plan.device == torch.device("cuda") and plan.precision.used == "bf16" and plan.pin_memory
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    old_gpu = pipeline.make_plan("cuda", "bf16")
    assert old_gpu.precision.used == "fp32" and "NVIDIA H200 has no native bf16" in old_gpu.precision.reason


def test_cuda_without_a_gpu_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda' was asked for but torch .* sees no GPU"):
        pipeline.resolve_device("cuda")
    assert pipeline.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        pipeline.resolve_device("gpu please")


def test_cpu_half_precision_support_is_what_onednn_reports():
    bf16, fp16 = pipeline.half_precision_support(torch.device("cpu"))
    assert bf16 == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert fp16 == torch.ops.mkldnn._is_mkldnn_fp16_supported()


# --- decoding and normalization -----------------------------------------------------------------
def old_preprocess(path: Path, mode: str, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The per-image code of classify_images.ipynb before this pipeline, verbatim."""
    channels = len(Image.new(mode, (1, 1)).getbands())
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert(mode)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.float32) / 255.0
    array = array.reshape(size, size, channels).transpose(2, 0, 1)
    return (array - mean) / std


def photo(path: Path, size: tuple[int, int], seed: int = 0, fmt: str = "JPEG") -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(9, 16, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize(size, Image.BICUBIC)
    image.save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def test_draft_is_asked_only_where_libjpeg_can_reduce():
    assert pipeline.draft_request((1920, 1080), 224) == (448, 448)
    assert pipeline.draft_request((640, 480), 224) is None
    assert pipeline.draft_request((4000, 3000), 32) == (64, 64)
    assert pipeline.draft_request((895, 2000), 224) is None


def test_large_jpegs_are_decoded_in_draft_mode_and_look_the_same(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((mode, size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    path = photo(tmp_path / "big.jpg", (1920, 1080))
    fast = pipeline.load_image(path, "RGB", 224)
    assert calls == [("RGB", (448, 448), (960, 540))]  # decoded at half scale
    assert fast.shape == (224, 224, 3) and fast.dtype == np.uint8
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", original)
    with Image.open(path) as img:
        full = np.asarray(img.convert("RGB").resize((224, 224), Image.BILINEAR))
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 1.0
    calls.clear()
    pipeline.load_image(photo(tmp_path / "small.jpg", (400, 300)), "RGB", 224)
    pipeline.load_image(photo(tmp_path / "big.png", (1920, 1080), fmt="PNG"), "RGB", 224)
    assert calls == []


def test_batches_normalize_exactly_like_the_old_per_image_code(tmp_path):
    paths = [photo(tmp_path / f"p{i}.png", (40 + i, 30), seed=i, fmt="PNG") for i in range(5)]
    for mode, mean, std in (("RGB", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), ("L", [0.3], [0.2])):
        dataset = pipeline.ImageFiles(paths, mode, 32)
        indices, batch, failed = pipeline.collate([dataset[i] for i in range(len(paths))])
        assert indices == list(range(5)) and failed == [] and batch.dtype == torch.uint8
        x = pipeline.Normalizer(mean, std, CPU_PLAN)(batch)
        assert x.is_contiguous() and x.stride() == torch.empty(5, len(mean), 32, 32).stride()
        m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        expected = np.stack([old_preprocess(p, mode, 32, m, s) for p in paths])
        assert np.array_equal(x.numpy(), expected)
        nhwc = DevicePlan(torch.device("cpu"), FP32, pin_memory=False, non_blocking=False, channels_last=True, lag=1)
        y = pipeline.Normalizer(mean, std, nhwc)(batch)
        assert torch.equal(y, x) and (mode == "L" or not y.is_contiguous())
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_unreadable_files_become_errors_and_modes_are_checked(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    good = photo(tmp_path / "ok.png", (20, 20), fmt="PNG")
    dataset = pipeline.ImageFiles([good, tmp_path / "broken.jpg", tmp_path / "missing.png"], "RGB", 16)
    indices, batch, failed = pipeline.collate([dataset[i] for i in range(3)])
    assert indices == [0] and batch.shape == (1, 16, 16, 3)
    assert [i for i, _ in failed] == [1, 2] and "cannot identify image file" in failed[0][1]
    assert pipeline.collate([dataset[1]])[1] is None
    with pytest.raises(ValueError, match="mode must be one of L, RGB, not 'CMYK'"):
        pipeline.ImageFiles([], "CMYK", 16)


# --- inference ----------------------------------------------------------------------------------
def tiny_model(classes: int = 4) -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, classes))
    return torch.jit.script(net.eval())


def batches(count: int, size: int = 12) -> list[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for b in range(count):
        pixels = torch.randint(0, 256, (3, size, size, 3), generator=generator, dtype=torch.uint8)
        out.append(([3 * b, 3 * b + 1, 3 * b + 2], pixels, [(100 + b, "bad")]))
    out.append(([], None, [(200, "all bad")]))
    return out


def test_lagged_read_back_gives_the_same_results_in_order():
    model, normalize = tiny_model(), pipeline.Normalizer([0.5] * 3, [0.25] * 3, CPU_PLAN)
    lagged_plan = DevicePlan(torch.device("cpu"), FP32, pin_memory=False, non_blocking=False, channels_last=False, lag=1)
    with torch.inference_mode():
        plain = list(pipeline.classify(batches(4), model, normalize, CPU_PLAN, top_k=2, classes=4))
        lagged = list(pipeline.classify(batches(4), model, normalize, lagged_plan, top_k=2, classes=4))
    assert plain == lagged and len(plain) == 5
    assert [o.indices for o in plain][:2] == [[0, 1, 2], [3, 4, 5]] and plain[-1].failed == [(200, "all bad")]
    for outcome in plain[:-1]:
        for row in outcome.classifications:
            assert len(row) == 2 and row[0][1] >= row[1][1] and {c for c, _ in row} <= {0, 1, 2, 3}


def test_bf16_autocast_runs_the_model_in_bf16_and_scores_in_fp32():
    seen = []

    def model(x):
        out = tiny_model()(x)
        seen.append(out.dtype)
        return out

    plan = pipeline.plan_for(torch.device("cpu"), PrecisionChoice("bf16", "bf16"))
    normalize = pipeline.Normalizer([0.5] * 3, [0.25] * 3, plan)
    with torch.inference_mode():
        outcome = next(pipeline.classify(batches(1), model, normalize, plan, top_k=4, classes=4))
    assert seen == [torch.bfloat16]
    assert all(isinstance(s, float) for row in outcome.classifications for _, s in row)
    assert abs(sum(s for _, s in outcome.classifications[0]) - 1.0) < 1e-5  # softmax taken in fp32


def test_a_model_that_does_not_match_the_labels_is_refused():
    normalize = pipeline.Normalizer([0.5] * 3, [0.25] * 3, CPU_PLAN)
    with pytest.raises(ValueError, match=r"returned shape \(3, 4\) but the labels file lists 5 classes"):
        list(pipeline.classify(batches(1), tiny_model(4), normalize, CPU_PLAN, top_k=1, classes=5))


def test_prediction_entries_are_what_predictions_json_lists():
    entry = pipeline.prediction_entry("a.jpg", "/z/a.jpg", [("fox", 0.61234567), ("deer", 0.3)], 0.7)
    assert entry == {"file": "a.jpg", "path": "/z/a.jpg", "below_threshold": True,
                     "classifications": [{"class": "fox", "score": 0.612346}, {"class": "deer", "score": 0.3}]}
    assert pipeline.prediction_entry("b.jpg", "/z/b.jpg", "truncated", 0.0) == {
        "file": "b.jpg", "path": "/z/b.jpg", "error": "truncated"}


# --- parts --------------------------------------------------------------------------------------
def entry(n: int) -> dict:
    return pipeline.prediction_entry(f"img_{n:04d}.jpg", f"/z/img_{n:04d}.jpg", [("fox", 0.9)], 0.0)


def read_parts(out: Path) -> list[dict]:
    files = sorted((out / names.PARTS_DIR).glob(names.PART_PREFIX + "*" + names.PART_SUFFIX))
    return [json.loads(p.read_text()) for p in files]


def test_parts_are_cut_every_part_size_images_and_at_the_end(tmp_path):
    writer = pipeline.PartWriter(tmp_path, task_id="t", total=10, part_size=3, part_seconds=3600)
    assert writer.add(entry(n) for n in range(4)) == [tmp_path / ".parts" / "part-000000.json"]
    assert len(writer.add(entry(n) for n in range(4, 8))) == 1
    assert len(writer.add([entry(8), entry(9)])) == 1  # 9 of 10 written: one waits for close
    assert len(writer.close()) == 1 and writer.close() == []
    parts = read_parts(tmp_path)
    assert [(p["part"], p["first"], p["count"], p["last"]) for p in parts] == [
        (0, 0, 3, False), (1, 3, 3, False), (2, 6, 3, False), (3, 9, 1, True)]
    assert [e for p in parts for e in p["images"]] == [entry(n) for n in range(10)]
    assert all(p["task_id"] == "t" for p in parts)
    assert sorted(os.listdir(tmp_path / ".parts")) == [f"part-00000{i}.json" for i in range(4)]


def test_a_part_is_written_after_part_seconds_even_if_not_full(tmp_path):
    now = [0.0]
    writer = pipeline.PartWriter(tmp_path, task_id="t", total=100, part_size=50, part_seconds=60, clock=lambda: now[0])
    assert writer.add([entry(0), entry(1)]) == []
    now[0] = 59.0
    assert writer.add([entry(2)]) == []
    now[0] = 61.0
    assert len(writer.add([entry(3)])) == 1
    now[0] = 100.0  # 39 s after that part: not yet
    assert writer.add([entry(4)]) == []
    assert [p["count"] for p in read_parts(tmp_path)] == [4]


def test_parts_of_an_earlier_attempt_are_removed(tmp_path):
    (tmp_path / ".parts").mkdir()
    (tmp_path / ".parts" / "part-000007.json").write_text("{}")
    (tmp_path / ".parts" / ".part-000008.json.tmp").write_text("{")
    pipeline.PartWriter(tmp_path, task_id="t", total=1)
    assert list((tmp_path / ".parts").iterdir()) == []


@pytest.mark.parametrize(("size", "seconds"), [(0, 60), (1.5, 60), (True, 60), ("10", 60), (10, 0), (10, float("nan")),
                                               (10, float("inf")), (10, "60")])
def test_bad_part_settings_are_refused(size, seconds):
    with pytest.raises(ValueError, match="part_size|part_seconds"):
        pipeline.check_part_settings(size, seconds)


def test_a_reader_never_sees_a_half_written_part(tmp_path):
    """Poll the directory while parts of ~1 MB are written: every visible part parses."""
    writer = pipeline.PartWriter(tmp_path, task_id="t", total=4000, part_size=200, part_seconds=3600)
    big = [dict(entry(n), note="x" * 5000) for n in range(4000)]
    seen: dict[str, int] = {}
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            for path in (tmp_path / ".parts").glob("part-*.json"):
                try:
                    seen[path.name] = json.loads(path.read_text())["count"]
                except ValueError as exc:
                    problems.append(f"{path.name}: {exc}")
                except FileNotFoundError:
                    pass

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for start in range(0, 4000, 64):
            writer.add(big[start:start + 64])
        writer.close()
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert seen and set(seen.values()) == {200}
    assert sum(p["count"] for p in read_parts(tmp_path)) == 4000


KILLED_WRITER = """
import sys, time
from pathlib import Path
from compute_to_data.notebook import pipeline
out = Path(sys.argv[1])
writer = pipeline.PartWriter(out, task_id="t", total=10**6, part_size=100, part_seconds=3600)
(out / "started").write_text("")
n = 0
while True:
    writer.add([{"file": f"{n + i}.jpg", "path": f"/z/{n + i}.jpg", "note": "x" * 20000} for i in range(50)])
    n += 50
"""


def test_parts_survive_a_sigkill_of_the_writer_whole(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list((tmp_path / ".parts").glob("part-*.json"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    parts = read_parts(tmp_path)  # raises if any visible part is incomplete
    assert len(parts) >= 5
    assert [p["part"] for p in parts] == list(range(len(parts)))
    files = [e["file"] for p in parts for e in p["images"]]
    assert files == [f"{n}.jpg" for n in range(len(files))] and len(files) == 100 * len(parts)


def test_batches_survive_the_dataloader_s_pinning_step(monkeypatch):
    """On CUDA the DataLoader pins each collated batch (tuples may come back as lists); the loop
    must take what it hands over. Pinning itself needs a GPU, so it is an identity here."""
    from torch.utils.data._utils.pin_memory import pin_memory

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *args, **kwargs: self)
    pinned = [pin_memory(b) for b in batches(2)]
    assert pinned[0][1] is not None
    model, normalize = tiny_model(), pipeline.Normalizer([0.5] * 3, [0.25] * 3, CPU_PLAN)
    with torch.inference_mode():
        through_pinning = list(pipeline.classify(pinned, model, normalize, CPU_PLAN, top_k=2, classes=4))
        direct = list(pipeline.classify(batches(2), model, normalize, CPU_PLAN, top_k=2, classes=4))
    assert [(o.indices, o.classifications) for o in through_pinning] == [(o.indices, o.classifications) for o in direct]
    assert [dict(o.failed) for o in through_pinning] == [dict(o.failed) for o in direct]


def test_the_notebook_and_the_engine_read_labels_alike():
    from compute_to_data.contract.labels import decode_labels, parse_labels
    from compute_to_data.domain.errors import ConfigError

    assert parse_labels("cat\n\n dog \r\nbird\n", "l.txt") == ["cat", "dog", "bird"]
    with pytest.raises(ConfigError, match=r"^labels file l.txt: class 'cat' is listed twice \(lines 1 and 3\)"):
        parse_labels("cat\ndog\ncat\n", "l.txt")
    with pytest.raises(ConfigError, match="holds no class names"):
        parse_labels("\n  \n", "l.txt")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        decode_labels(b"\xff\xfe", "l.txt")
