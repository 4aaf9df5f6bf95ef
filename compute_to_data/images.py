"""Building the classifier container image without network: wheelhouse, context, docker build.

The image must build on a compute host that reaches no container registry and, during the
build, no package index either. So everything is prepared on the host first:

* the *wheelhouse*: ``pip download`` of the image's Python dependencies (the package's runtime
  dependencies plus its ``[notebook]`` extra, torch pinned to the CPU build), every package but
  torch's own stack held to the versions in ``containers/classifier/constraints.txt``; reused as
  long as that list is unchanged and its wheels still match the pins;
* the *build context*, assembled in a scratch directory (hard links, no copies): the
  Dockerfile, ``requirements.txt``, the wheelhouse, the compute_to_data wheel built from this
  checkout, and the notebooks to bake in. Only these files reach the daemon, which is what a
  ``.dockerignore`` would otherwise have to guarantee;
* ``docker build`` with ``network_mode=none`` and ``pip install --no-index``.

The image carries a content-hash label over everything that goes into it (Dockerfile, package
sources, notebooks, wheelhouse, base image id), so ``--if-stale`` rebuilds only when one of them
changed.

``--cuda`` builds the twin ``compute-to-data/classifier-cuda`` from the same Dockerfile (build
argument ``TORCH_VARIANT=cuda``) and its own wheelhouse, which must hold a CUDA build of torch
and the ``nvidia-*`` wheels it loads; nothing else differs, the driver comes from the host.
Both wheelhouses take the same constraints file, so the two images' notebook environments are
the same packages at the same versions but for torch and the CUDA libraries it pulls in (a
wheelhouse build refuses a package the file does not pin: ``python -m compute_to_data.images
lock`` writes it anew after a dependency change).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_to_data import __version__
from compute_to_data.domain.errors import ComputeToDataError

log = logging.getLogger(__name__)

IMAGE_REPOSITORY = "compute-to-data/classifier"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
LOCAL_BASE_IMAGE = "c2d/bookworm-python:local"
#: the same Debian system plus binutils: the virtualenv is made there and its libraries stripped.
LOCAL_BUILD_IMAGE = "c2d/bookworm-python-build:local"
#: torch exactly: a bare "torch" would make pip fetch a multi-GB CUDA build from the index.
DEFAULT_TORCH_REQUIREMENT = "torch==2.13.0"
TORCH_REQUIREMENT_ENV = "C2D_TORCH_REQUIREMENT"
ALLOW_NON_CPU_TORCH_ENV = "C2D_ALLOW_NON_CPU_TORCH"

LABEL_CONTENT_HASH = "org.c2d.content-hash"
LABEL_VERSION = "org.c2d.version"
LABEL_BASE_IMAGE = "org.c2d.base-image"
LABEL_BASE_IMAGE_ID = "org.c2d.base-image-id"
LABEL_BUILD_IMAGE = "org.c2d.build-image"
LABEL_WHEELHOUSE_KEY = "org.c2d.wheelhouse-key"
LABEL_TORCH_VARIANT = "org.c2d.torch-variant"

CUDA_IMAGE_REPOSITORY = "compute-to-data/classifier-cuda"
#: PyPI's Linux wheel of torch is the CUDA build (2.14.1: CUDA 13.0; the one the package index
#: reachable here offers with all its nvidia-* wheels); the CPU one is ``+cpu`` from a find-links
#: directory. Any torch within the ``[notebook]`` extra's range runs the notebooks.
DEFAULT_CUDA_TORCH_REQUIREMENT = "torch==2.14.1"
CUDA_TORCH_REQUIREMENT_ENV = "C2D_CUDA_TORCH_REQUIREMENT"

WHEELHOUSE_STAMP = ".c2d-wheelhouse.json"
#: the versions both images' wheelhouses are held to (relative to the source root).
CONSTRAINTS_FILE = Path("containers") / "classifier" / "constraints.txt"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


class ImageBuildError(ComputeToDataError):
    """The classifier image (or its wheelhouse) could not be built."""


@dataclass(frozen=True)
class ImageVariant:
    """The CPU image or its CUDA twin: one Dockerfile, a different torch and wheelhouse."""

    name: str  # the Dockerfile's TORCH_VARIANT
    repository: str
    wheelhouse_name: str  # directory in the cache
    torch_env: str
    torch_default: str

    @property
    def cuda(self) -> bool:
        return self.name == "cuda"


CPU_VARIANT = ImageVariant("cpu", IMAGE_REPOSITORY, "wheelhouse", TORCH_REQUIREMENT_ENV, DEFAULT_TORCH_REQUIREMENT)
CUDA_VARIANT = ImageVariant("cuda", CUDA_IMAGE_REPOSITORY, "wheelhouse-cuda", CUDA_TORCH_REQUIREMENT_ENV,
                            DEFAULT_CUDA_TORCH_REQUIREMENT)


def image_variant(cuda: bool = False) -> ImageVariant:
    return CUDA_VARIANT if cuda else CPU_VARIANT


def default_tag(version: str = __version__, *, cuda: bool = False) -> str:
    return f"{image_variant(cuda).repository}:{version}"


def default_wheelhouse(*, cuda: bool = False) -> Path:
    """The wheelhouse ``c2d image build`` uses (and scripts/docker-env for the CPU image)."""
    return default_cache_dir() / image_variant(cuda).wheelhouse_name


def default_cache_dir() -> Path:
    """Where scripts/docker-env keeps the wheelhouse: the same place, so both reuse it."""
    if os.environ.get("C2D_CACHE_DIR"):
        return Path(os.environ["C2D_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/c2d")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "c2d"


def choose_base_image(client: Any) -> str:
    """The upstream slim image if this host has it, else the local debootstrap one if built."""
    for candidate in (DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE):
        if _image_exists(client, candidate):
            return candidate
    return DEFAULT_BASE_IMAGE  # build_image then says how to get one


def choose_build_image(client: Any, base_image: str) -> str:
    """Where the virtualenv is built: the binutils twin of the local base if there is one."""
    if base_image == LOCAL_BASE_IMAGE and _image_exists(client, LOCAL_BUILD_IMAGE):
        return LOCAL_BUILD_IMAGE
    return base_image


def _image_exists(client: Any, reference: str) -> bool:
    import docker.errors

    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


def source_root() -> Path:
    """The checkout this package was imported from; building the image needs the sources."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "containers" / "classifier" / "Dockerfile").is_file() or not (root / "pyproject.toml").is_file():
        raise ImageBuildError(
            f"no source checkout around {root} (containers/classifier/Dockerfile, pyproject.toml): "
            "c2d image build runs from a clone of the compute_to_data repository"
        )
    return root


# --- requirements and wheelhouse -----------------------------------------------------------------
def image_requirements(root: Path | None = None, variant: ImageVariant = CPU_VARIANT) -> list[str]:
    """Runtime dependencies + the ``notebook`` extra, with torch pinned (the variant's build)."""
    root = root or source_root()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("notebook", []))
    torch = os.environ.get(variant.torch_env, variant.torch_default)
    result: list[str] = []
    for requirement in wanted:
        name = requirement.split(";")[0].strip()
        for separator in "<>=!~[ ":
            name = name.split(separator)[0]
        if name.lower() == "torch":
            requirement = torch
        if requirement not in result:
            result.append(requirement)
    if not any(r.split("=")[0].strip().lower() == "torch" for r in result):
        result.append(torch)
    return result


@dataclass(frozen=True)
class TargetPython:
    """The interpreter inside the base image: wheels must install there, not on the host."""

    version: str  # e.g. "3.11.2"
    glibc: str  # e.g. "2.36"
    machine: str = "x86_64"

    @property
    def abi(self) -> str:
        major, minor = self.version.split(".")[:2]
        return f"cp{major}{minor}"

    def pip_arguments(self) -> list[str]:
        """``pip download`` options selecting wheels for this interpreter and C library."""
        major, minor = (int(p) for p in self.glibc.split(".")[:2])
        platforms = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)] if major == 2 else []
        platforms += [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}", f"manylinux1_{self.machine}"]
        args = ["--only-binary=:all:", "--python-version", self.version, "--implementation", "cp", "--abi", self.abi]
        for name in platforms:
            args += ["--platform", name]
        return args


def probe_base_python(client: Any, base_image: str) -> TargetPython:
    """Ask the base image for its Python and glibc versions (a throw-away container, no network)."""
    script = "import platform; print(platform.python_version(), platform.libc_ver()[1], platform.machine())"
    try:
        output = client.containers.run(base_image, ["python3", "-c", script], remove=True,
                                       network_mode="none", user="65534:65534")
    except Exception as exc:
        raise ImageBuildError(f"cannot run python3 in the base image {base_image}: {exc}") from exc
    try:
        version, glibc, machine = output.decode().split()
    except ValueError:
        raise ImageBuildError(f"unexpected answer from python3 in {base_image}: {output!r}") from None
    if not version.startswith("3.11."):
        log.warning("base image %s has Python %s; the project is tested with 3.11", base_image, version)
    return TargetPython(version, glibc, machine)


def normalized_name(name: str) -> str:
    """PEP 503: ``Jinja2``, ``jinja_2`` and ``jinja-2`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_torch_stack(name: str) -> bool:
    """torch and what only its CUDA build pulls in: the one part where the two images differ."""
    name = normalized_name(name)
    return name in ("torch", "triton") or name.startswith(("nvidia-", "cuda-"))


def wheel_name_version(filename: str) -> tuple[str, str]:
    """``(normalized name, version)`` of a wheel file name (``name-version-...-platform.whl``)."""
    parts = Path(filename).name.split("-")
    if len(parts) < 5 or not filename.endswith(".whl"):
        raise ImageBuildError(f"{filename} is not a wheel file name (name-version-python-abi-platform.whl)")
    return normalized_name(parts[0]), parts[1]


def read_constraints(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of a constraints file of ``name==version`` lines."""
    pins: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ImageBuildError(f"cannot read the image's constraints {path}: {exc}") from exc
    for number, raw in enumerate(lines, 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ImageBuildError(f"{path}:{number}: {raw.strip()!r} is not name==version; "
                                  "write the file anew with python -m compute_to_data.images lock")
        pins[normalized_name(name.strip())] = version.strip()
    return pins


def constraints_path(root: Path | None = None) -> Path:
    return (root or source_root()) / CONSTRAINTS_FILE


def unpinned_wheels(directory: Path, pins: dict[str, str]) -> list[str]:
    """Wheels outside torch's stack whose package the constraints do not pin at that version."""
    wrong = []
    for wheel in sorted(directory.glob("*.whl")):
        name, version = wheel_name_version(wheel.name)
        if not is_torch_stack(name) and pins.get(name) != version:
            wrong.append(f"{name} {version}" + (f" (pinned {pins[name]})" if name in pins else " (not pinned)"))
    return wrong


def write_constraints(path: Path, wheels: list[str]) -> int:
    """Pin every package of ``wheels`` (file names) but torch's stack; returns how many."""
    pins = sorted({wheel_name_version(w) for w in wheels if not is_torch_stack(wheel_name_version(w)[0])})
    header = ("# The versions both classifier images (CPU and CUDA) install, torch and its CUDA libraries\n"
              "# aside: pip download takes them as constraints (-c), so the two notebook environments\n"
              "# are identical but for torch. Written by python -m compute_to_data.images lock;\n"
              "# run it again after changing the dependencies in pyproject.toml.\n")
    path.write_text(header + "".join(f"{name}=={version}\n" for name, version in pins))
    return len(pins)


def wheelhouse_key(requirements: list[str], target: TargetPython, variant: ImageVariant = CPU_VARIANT) -> str:
    """Changes when the requirement list, the interpreter the wheels are for or the variant changes."""
    material: dict[str, Any] = {"requirements": sorted(requirements), "python": target.version,
                                "glibc": target.glibc, "machine": target.machine}
    if variant.cuda:  # "torch==2.13.0" names both builds; the CPU key stays what it was
        material["variant"] = variant.name
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def ensure_wheelhouse(directory: Path, target: TargetPython, requirements: list[str] | None = None,
                      *, rebuild: bool = False, variant: ImageVariant = CPU_VARIANT,
                      constraints: Path | None = None) -> str:
    """Download (or reuse) the wheels for ``target`` into ``directory``; returns the key.

    ``pip download --only-binary`` with the target's Python version and glibc: the host's
    interpreter may be newer (a wheel requiring Python >= 3.11.5 does not install on Debian
    bookworm's 3.11.2), and nothing is compiled on the host. With ``constraints`` (both images
    pass the same file) every package but torch's stack must come out at its pinned version: a
    reused wheelhouse that no longer matches is downloaded again, a fresh one that brings a
    package the file does not pin is refused (the two images would drift apart).
    """
    requirements = requirements or image_requirements(variant=variant)
    key = wheelhouse_key(requirements, target, variant)
    pins = read_constraints(constraints) if constraints is not None else None
    stamp = directory / WHEELHOUSE_STAMP
    if not rebuild and stamp.is_file():
        try:
            if json.loads(stamp.read_text()).get("key") == key:
                drift = unpinned_wheels(directory, pins) if pins is not None else []
                if not drift:
                    log.info("reusing wheelhouse %s (key %s)", directory, key)
                    return key
                log.info("wheelhouse %s no longer matches %s (%s): downloading it again", directory,
                         constraints, ", ".join(drift[:5]))
        except ValueError:
            pass
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
    started = time.perf_counter()
    log.info("building wheelhouse %s: %d requirement(s) for Python %s, glibc %s", directory,
             len(requirements), target.version, target.glibc)
    try:
        (scratch / "requirements.txt").write_text("\n".join(requirements) + "\n")
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                   *target.pip_arguments(), "--dest", str(scratch), "-r", str(scratch / "requirements.txt")]
        if constraints is not None:
            command += ["-c", str(constraints)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ImageBuildError(
                "pip download failed while building the image's wheelhouse:\n"
                + _tail("\n".join(line for line in (done.stdout + done.stderr).splitlines() if "is ignored" not in line), 40)
            )
        _check_torch_wheel(scratch, variant, shown=directory)
        if pins is not None and (drift := unpinned_wheels(scratch, pins)):
            raise ImageBuildError(
                f"the image's wheelhouse would hold packages {constraints} does not pin: {', '.join(drift)}; "
                "both images install the same versions of everything but torch, so pin them: run "
                "python -m compute_to_data.images lock, review and commit the file, then build again"
            )
        (scratch / "requirements.txt").unlink()
        stamp_data = {"key": key, "requirements": requirements, "python": target.version, "glibc": target.glibc,
                      "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (scratch / WHEELHOUSE_STAMP).write_text(json.dumps(stamp_data, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        scratch.rename(directory)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    size = sum(p.stat().st_size for p in directory.glob("*.whl"))
    log.info("wheelhouse built in %.0f s: %d wheels, %.0f MB", time.perf_counter() - started,
             len(list(directory.glob("*.whl"))), size / 1e6)
    return key


def _check_torch_wheel(directory: Path, variant: ImageVariant = CPU_VARIANT, *, shown: Path | None = None) -> None:
    """CPU image: refuse a CUDA torch (gigabytes of nvidia-* wheels, breaks the size budget).
    CUDA image: refuse anything but a CUDA torch with its nvidia-* wheels. ``shown`` is the
    wheelhouse to name in the error (``directory`` may be its scratch copy)."""
    wheels = sorted(directory.glob("torch-*.whl"))
    if not wheels:
        raise ImageBuildError(f"the wheelhouse {shown or directory} has no torch wheel")
    nvidia = sorted(p.name for p in directory.glob("nvidia_*.whl"))
    if variant.cuda:
        _check_cuda_torch_wheel(shown or directory, wheels[0].name, nvidia)
        return
    if ("+cpu" not in wheels[0].name or nvidia) and not os.environ.get(ALLOW_NON_CPU_TORCH_ENV):
        raise ImageBuildError(
            f"pip chose {wheels[0].name}{' and ' + ', '.join(nvidia[:3]) if nvidia else ''}, not the CPU build of "
            "torch. Put torch-<version>+cpu-cp311-*.whl in a find-links directory (PIP_FIND_LINKS) or set "
            f"{TORCH_REQUIREMENT_ENV}; set {ALLOW_NON_CPU_TORCH_ENV}=1 to build a CUDA image on purpose"
        )


def _check_cuda_torch_wheel(directory: Path, torch_wheel: str, nvidia: list[str]) -> None:
    how = ("put the CUDA build of torch (PyPI's torch-<version>-cp311-*manylinux*.whl, or +cuNNN from "
           "PyTorch's index) and the nvidia-*, cuda-* and triton wheels it requires in a pip find-links "
           f"directory (PIP_FIND_LINKS) ahead of any +cpu wheel, or name it in {CUDA_TORCH_REQUIREMENT_ENV}, "
           "then run c2d image build --cuda again")
    if "+cpu" in torch_wheel:
        raise ImageBuildError(f"the wheelhouse {directory} holds {torch_wheel}, the CPU build of torch, "
                              f"not a CUDA build: {how}")
    if not nvidia:
        raise ImageBuildError(f"the wheelhouse {directory} holds {torch_wheel} but none of the nvidia-* wheels "
                              f"(cuDNN, cuBLAS, ...) a CUDA torch loads: {how}")


# --- sources, content hash, context --------------------------------------------------------------
def _package_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative name, file) of everything the project wheel is built from, symlinks resolved."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            yield name, root / name
    package = root / "compute_to_data"
    for current, dirs, files in os.walk(package, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        for file in sorted(files):
            path = Path(current) / file
            if path.suffix not in _SKIP_SUFFIXES:
                yield path.relative_to(root).as_posix(), path


def _notebook_files(directories: list[Path]) -> list[tuple[str, Path]]:
    found: dict[str, Path] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.ipynb")):
            found[path.name] = path  # later directories win
    return sorted(found.items())


def content_hash(root: Path, dockerfile: Path, requirements: list[str], wheelhouse: str,
                 base_image_id: str, notebooks: list[tuple[str, Path]], build_image_id: str = "",
                 variant: ImageVariant = CPU_VARIANT, constraints: str = "") -> str:
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + len(data).to_bytes(8, "big") + data)

    add("Dockerfile", dockerfile.read_bytes())
    if variant.cuda:
        add("variant", variant.name.encode())
    add("requirements", "\n".join(requirements).encode())
    if constraints:  # the pins decide the wheels as much as the requirements do
        add("constraints", constraints.encode())
    add("wheelhouse", wheelhouse.encode())
    add("base", base_image_id.encode())
    if build_image_id and build_image_id != base_image_id:
        add("build", build_image_id.encode())
    for name, path in _package_files(root):
        add("src:" + name, path.read_bytes())
    for name, path in notebooks:
        add("notebook:" + name, path.read_bytes())
    return digest.hexdigest()[:20]


def _build_project_wheel(root: Path, out_dir: Path) -> Path:
    """A wheel of this checkout, built from a clean copy (the checkout is not written to)."""
    with tempfile.TemporaryDirectory(prefix="c2d-src-") as tmp:
        src = Path(tmp) / "src"
        for name, path in _package_files(root):
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        command = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                   "--no-build-isolation", "--wheel-dir", str(out_dir), str(src)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            raise ImageBuildError("building the compute_to_data wheel failed:\n" + _tail(done.stdout + done.stderr, 30))
    wheels = sorted(out_dir.glob("compute_to_data-*.whl"))
    if len(wheels) != 1:
        raise ImageBuildError(f"expected one compute_to_data wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def assemble_context(context: Path, root: Path, dockerfile: Path, requirements: list[str],
                     wheelhouse: Path, notebooks: list[tuple[str, Path]]) -> None:
    """Lay out the build context the Dockerfile expects (see its header)."""
    if context.exists():
        shutil.rmtree(context)
    (context / "wheelhouse").mkdir(parents=True)
    (context / "dist").mkdir()
    (context / "notebooks").mkdir()
    shutil.copyfile(dockerfile, context / "Dockerfile")
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
    for wheel in sorted(wheelhouse.glob("*.whl")):
        _link_or_copy(wheel, context / "wheelhouse" / wheel.name)
    _build_project_wheel(root, context / "dist")
    for name, path in notebooks:
        shutil.copyfile(path, context / "notebooks" / name)
    if not notebooks:  # COPY of an empty directory must not fail
        (context / "notebooks" / ".keep").write_text("")


# --- docker --------------------------------------------------------------------------------------
@dataclass
class BuiltImage:
    tag: str
    id: str
    size: int
    seconds: float
    reused: bool
    base_image: str
    content_hash: str

    def describe(self) -> str:
        state = "up to date" if self.reused else f"built in {self.seconds:.0f} s"
        return f"{self.tag}  {self.id}  {self.size / 1e6:.0f} MB  ({state}; base {self.base_image})"


def docker_client(timeout: int = 600) -> Any:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise ImageBuildError("the docker Python package is not installed (pip install docker)") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        raise ImageBuildError(
            f"no Docker daemon answers ({exc}); start one (bash scripts/docker-env does)"
        ) from exc
    return client


@dataclass(frozen=True)
class BuildPlan:
    """What one ``c2d image build`` builds, decided before Docker is asked anything."""

    variant: ImageVariant
    tag: str
    dockerfile: Path
    wheelhouse: Path
    requirements: list[str]
    constraints: Path  # the same file for both variants

    def build_args(self, base_image: str, build_image_ref: str) -> dict[str, str]:
        return {"BASE_IMAGE": base_image, "BUILD_IMAGE": build_image_ref, "TORCH_VARIANT": self.variant.name}


def plan_build(root: Path, *, cuda: bool = False, wheelhouse: Path | None = None, tag: str | None = None) -> BuildPlan:
    """The CPU image, or with ``cuda`` its twin: same Dockerfile, own tag, wheelhouse and torch."""
    variant = image_variant(cuda)
    return BuildPlan(
        variant=variant,
        tag=tag or default_tag(cuda=cuda),
        dockerfile=root / "containers" / "classifier" / "Dockerfile",
        wheelhouse=wheelhouse or default_wheelhouse(cuda=cuda),
        requirements=image_requirements(root, variant),
        constraints=constraints_path(root),
    )


def build_image(
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    build_image_ref: str | None = None,
    wheelhouse: Path | None = None,
    tag: str | None = None,
    if_stale: bool = False,
    extra_notebook_dirs: list[Path] | None = None,
    client: Any = None,
    work_dir: Path | None = None,
    cuda: bool = False,
) -> BuiltImage:
    """Build the classifier image (wheelhouse first, if needed); reuse it when nothing changed.

    ``build_image_ref`` is where the virtualenv is made (default: chosen by
    :func:`choose_build_image`); it must be the same system as ``base_image`` (same python3 path).
    ``cuda`` builds ``compute-to-data/classifier-cuda`` from a wheelhouse with a CUDA torch.
    """
    import docker.errors

    root = source_root()
    plan = plan_build(root, cuda=cuda, wheelhouse=wheelhouse, tag=tag)
    tag, dockerfile, requirements, wheelhouse = plan.tag, plan.dockerfile, plan.requirements, plan.wheelhouse
    client = client or docker_client()
    try:
        base = client.images.get(base_image)
    except docker.errors.ImageNotFound:
        raise ImageBuildError(
            f"base image {base_image} is not on this host and cannot be pulled here; run "
            f"bash scripts/docker-env (it builds {LOCAL_BASE_IMAGE} with debootstrap) and pass --base {LOCAL_BASE_IMAGE}"
        ) from None
    build_ref = build_image_ref or choose_build_image(client, base_image)
    try:
        build_base = client.images.get(build_ref)
    except docker.errors.ImageNotFound:
        raise ImageBuildError(f"build image {build_ref} is not on this host") from None
    key = ensure_wheelhouse(wheelhouse, probe_base_python(client, base_image), requirements, variant=plan.variant,
                            constraints=plan.constraints)
    _check_torch_wheel(wheelhouse, plan.variant)  # also a reused one: its files may have been swapped
    notebooks = _notebook_files([root / "notebooks", *(extra_notebook_dirs or [])])
    wanted_hash = content_hash(root, dockerfile, requirements, key, base.id, notebooks, build_base.id, plan.variant,
                               plan.constraints.read_text())

    previous_id: str | None = None
    try:
        previous = client.images.get(tag)
        previous_id = previous.id
        if if_stale and (previous.labels or {}).get(LABEL_CONTENT_HASH) == wanted_hash:
            log.info("%s is up to date (content hash %s)", tag, wanted_hash)
            return BuiltImage(tag, previous.id, int(previous.attrs.get("Size", 0)), 0.0, True, base_image, wanted_hash)
    except docker.errors.ImageNotFound:
        pass

    started = time.perf_counter()
    scratch_parent = work_dir or wheelhouse.parent  # same filesystem as the wheelhouse: hard links
    scratch_parent.mkdir(parents=True, exist_ok=True)
    context = Path(tempfile.mkdtemp(prefix="c2d-image-context.", dir=scratch_parent))
    try:
        assemble_context(context, root, dockerfile, requirements, wheelhouse, notebooks)
        labels = {
            LABEL_CONTENT_HASH: wanted_hash,
            LABEL_VERSION: __version__,
            LABEL_BASE_IMAGE: base_image,
            LABEL_BASE_IMAGE_ID: base.id,
            LABEL_BUILD_IMAGE: build_ref,
            LABEL_WHEELHOUSE_KEY: key,
            LABEL_TORCH_VARIANT: plan.variant.name,
        }
        log.info("building %s from %s (context %s)", tag, base_image, context)
        output: list[str] = []
        for chunk in client.api.build(
            path=str(context), tag=tag, buildargs=plan.build_args(base_image, build_ref), labels=labels,
            rm=True, forcerm=True, pull=False, network_mode="none", decode=True,
        ):
            if "stream" in chunk:
                line = chunk["stream"].rstrip()
                if line:
                    output.append(line)
                    log.info("build: %s", line)
            if "error" in chunk:
                raise ImageBuildError(
                    f"docker build of {tag} failed: {chunk['error'].strip()}\n" + "\n".join(output[-30:])
                )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    image = client.images.get(tag)
    seconds = time.perf_counter() - started
    if previous_id and previous_id != image.id:
        try:  # the old build, now untagged; keep it if a container or another tag still uses it
            client.images.remove(previous_id)
        except docker.errors.APIError as exc:
            log.debug("kept previous image %s: %s", previous_id, exc)
    return BuiltImage(tag, image.id, int(image.attrs.get("Size", 0)), seconds, False, base_image, wanted_hash)


def list_images(client: Any = None) -> list[dict[str, Any]]:
    """Images this project built (they carry the version label)."""
    client = client or docker_client(timeout=30)
    rows = []
    for image in client.images.list(filters={"label": LABEL_VERSION}):
        labels = image.labels or {}
        rows.append({
            "tags": list(image.tags),
            "id": image.id,
            "size": int(image.attrs.get("Size", 0)),
            "created": image.attrs.get("Created", ""),
            "version": labels.get(LABEL_VERSION, ""),
            "base": labels.get(LABEL_BASE_IMAGE, ""),
            "variant": labels.get(LABEL_TORCH_VARIANT, "cpu"),
            "content_hash": labels.get(LABEL_CONTENT_HASH, ""),
        })
    return sorted(rows, key=lambda r: r["created"], reverse=True)


def lock_constraints(*, base_image: str | None = None, client: Any = None, root: Path | None = None) -> tuple[Path, int]:
    """Resolve the CPU image's requirements with no pins (for the base image's Python) and pin the result.

    The CPU requirements decide the shared versions; the CUDA build of torch has the same
    non-CUDA dependencies, and its wheelhouse build refuses anything the file leaves out.
    """
    root = root or source_root()
    client = client or docker_client()
    target = probe_base_python(client, base_image or choose_base_image(client))
    path = constraints_path(root)
    with tempfile.TemporaryDirectory(prefix="c2d-lock-") as tmp:
        scratch = Path(tmp) / "wheels"
        ensure_wheelhouse(scratch, target, image_requirements(root, CPU_VARIANT), rebuild=True)
        count = write_constraints(path, [w.name for w in scratch.glob("*.whl")])
    return path, count


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- `python -m compute_to_data.images ensure` (scripts/docker-env) ------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_to_data.images",
                                     description="Build the classifier image if it is missing or stale.")
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure", help="wheelhouse + image, reusing what is up to date")
    ensure.add_argument("--base", default=DEFAULT_BASE_IMAGE)
    ensure.add_argument("--build-base", default=None, help="image the virtualenv is made in (default: see choose_build_image)")
    ensure.add_argument("--wheelhouse", type=Path, required=True)
    ensure.add_argument("--tag", default=None)
    ensure.add_argument("--cuda", action="store_true", help="the CUDA twin (wheelhouse with a CUDA torch)")
    lock = sub.add_parser("lock", help=f"resolve the CPU image's requirements afresh and write {CONSTRAINTS_FILE}")
    lock.add_argument("--base", default=None, help="base image whose Python and glibc the wheels are for "
                      "(default: as c2d image build chooses)")
    args = parser.parse_args(argv)
    prefix = "docker-env" if args.command == "ensure" else "images"
    logging.basicConfig(level=logging.INFO, format=f"[{prefix}] %(message)s", stream=sys.stderr)
    if args.command == "lock":
        try:
            path, count = lock_constraints(base_image=args.base)
        except ComputeToDataError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        print(f"{path}: {count} packages pinned")
        return 0
    try:
        built = build_image(base_image=args.base, build_image_ref=args.build_base, wheelhouse=args.wheelhouse,
                            tag=args.tag, if_stale=True, cuda=args.cuda)
    except ComputeToDataError as exc:
        print(f"[docker-env] ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"[docker-env] {built.describe()}", file=sys.stderr)
    print(built.tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
