"""Run a parameterized notebook with papermill, render its report, write ``result.json``.

This is what runs inside the container (and in the in-process runner's child process). It
imports papermill and nbconvert, so nothing the iRODS server imports may import this module.

Whatever happens, the output directory ends up with ``report.html`` and ``result.json``: a
researcher looking at a failed task sees the notebook up to the failing cell and a one-line
error, never just a missing report.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from .. import conventions as names
from ..runners.base import read_progress

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"
DEFAULT_KERNEL = "python3"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_ERROR_CHARS = 500


# --- small helpers -----------------------------------------------------------------------------
def one_line(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """Collapse a message to one readable line: no colour codes, no newlines, bounded length."""
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_exception(exc: BaseException, timeout: float | None = None) -> str:
    """The message a researcher sees for a failed run: exception name and message, one line."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        evalue = one_line(exc.evalue or "")
        return one_line(f"{exc.ename}: {evalue}" if evalue else exc.ename)
    if isinstance(exc, TimeoutError) and timeout:
        return f"timed out: a notebook cell ran longer than {timeout:g} s"
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)



def count_images(output_dir: Path, input_dir: Path | None, *, finished: bool = True) -> tuple[int, int]:
    """(images_total, images_done).

    For a run that finished, predictions.json wins (it lists every image); for an interrupted
    one, ``.progress`` does. Without either: the number of input files, none done.
    """
    progress = read_progress(output_dir)
    if not finished and progress is not None:
        return progress[1], progress[0]
    try:
        doc = json.loads((output_dir / names.PREDICTIONS_JSON).read_text(encoding="utf-8"))
        images = doc.get("images", [])
        return len(images), len(images)
    except (OSError, ValueError, AttributeError):
        pass
    if progress is not None:
        return progress[1], progress[0]
    if input_dir is not None and input_dir.is_dir():
        return sum(len(files) for _, _, files in os.walk(input_dir)), 0
    return 0, 0


def read_timings(output_dir: Path) -> dict[str, float]:
    try:
        doc = json.loads((output_dir / TIMINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in doc.items() if k.endswith("_seconds") and isinstance(v, (int, float))}


def ensure_writable_runtime() -> None:
    """Point Jupyter/IPython/matplotlib state at a scratch directory when HOME is read-only.

    Containers run with a read-only root filesystem and an arbitrary uid, so ``~`` is often not
    writable; the kernel's connection file and matplotlib's font cache must go somewhere.
    """
    home = Path(os.path.expanduser("~"))
    if home.is_dir() and os.access(home, os.W_OK):
        return
    scratch = Path(tempfile.gettempdir()) / f"c2d-runtime-{os.getuid()}"
    for var, sub in (("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib"), ("XDG_CACHE_HOME", "cache")):
        if var not in os.environ:
            (scratch / sub).mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(scratch / sub)


def choose_kernel(preferred: str | None = None) -> str:
    """``preferred`` (default python3) if Jupyter knows it, else another Python kernel.

    ipykernel always provides ``python3`` running ``sys.executable`` when it is importable, so
    the fallback only matters on unusual installs.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    wanted = preferred or DEFAULT_KERNEL
    manager = KernelSpecManager()
    specs = manager.find_kernel_specs()
    if wanted in specs:
        return wanted
    for name in sorted(specs):
        try:
            if manager.get_kernel_spec(name).language.lower() == "python":
                log.warning("Jupyter kernel %r not found; using %r", wanted, name)
                return name
        except Exception:  # a broken kernelspec must not hide a good one
            continue
    raise RuntimeError(
        f"no Jupyter kernel {wanted!r} (or any Python kernel) is installed; "
        "install ipykernel in the Python that runs the notebook"
    )


# --- rendering ---------------------------------------------------------------------------------
def _error_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# The notebook could not be run"))
    return nb


def _banner(message: str) -> nbformat.NotebookNode:
    import html

    cell = nbformat.v4.new_markdown_cell(
        '<div style="border:2px solid #cc3311;padding:0.6em;color:#cc3311;font-size:1.2em">'
        f"<b>The task failed:</b> {html.escape(message)}</div>"
    )
    cell.metadata["tags"] = ["c2d-error"]
    return cell


def render_report(output_dir: Path, *, banner: str | None = None) -> float:
    """Render ``notebook.ipynb`` (or an error page if there is none) to ``report.html``.

    ``banner`` puts a visible error box at the top (papermill adds its own only for exceptions
    raised inside a cell). Returns the seconds it took.
    """
    from nbconvert import HTMLExporter

    started = time.perf_counter()
    source = output_dir / names.NOTEBOOK_FILE
    try:
        nb = nbformat.read(source, as_version=4)
    except (OSError, ValueError) as exc:
        log.warning("no executed notebook to render (%s); writing an error report", exc)
        nb = _error_notebook()
        if not banner:
            banner = f"no executed notebook was produced ({one_line(str(exc))})"
    if banner:
        nb.cells.insert(0, _banner(banner))
    body, _ = HTMLExporter().from_notebook_node(nb)
    tmp = output_dir / (names.REPORT_FILE + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, output_dir / names.REPORT_FILE)
    return time.perf_counter() - started


# --- the whole run -----------------------------------------------------------------------------
def load_parameters(params_path: Path, output_dir: Path) -> dict[str, Any]:
    if not params_path.is_file():
        raise FileNotFoundError(f"parameters file {params_path} does not exist")
    try:
        doc = json.loads(params_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameters file {params_path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{params_path} must hold a JSON object of notebook parameters")
    given = doc.get("output_dir")
    if given and Path(given).resolve() != output_dir.resolve():
        log.warning("params.json output_dir %s differs from --output-dir %s; using the latter", given, output_dir)
    doc["output_dir"] = str(output_dir)
    unusable = sorted(k for k in doc if not (isinstance(k, str) and k.isidentifier()))
    if unusable:  # e.g. "$comment": papermill would inject it as Python and fail
        log.warning("ignoring parameters that are not Python names: %s", ", ".join(map(repr, unusable)))
    return {k: v for k, v in doc.items() if k not in unusable}


def execute(
    notebook: Path,
    params_path: Path,
    output_dir: Path,
    *,
    timeout: float | None = None,
    kernel_name: str | None = None,
) -> dict[str, Any]:
    """Execute ``notebook`` with the parameters in ``params_path``; always write report and result.

    ``timeout`` bounds each cell (papermill's execution timeout); the runner enforces the
    wall-clock limit of the whole run. Returns the ``result.json`` document.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    started = names.iso_utc()
    error: str | None = None
    banner: str | None = None
    params: dict[str, Any] = {}
    papermill_seconds = 0.0
    try:
        params = load_parameters(params_path, output_dir)
        if not notebook.is_file():
            raise FileNotFoundError(f"notebook {notebook} does not exist")
        import papermill

        ensure_writable_runtime()
        kernel = choose_kernel(kernel_name)
        log.info("executing %s with kernel %s into %s", notebook, kernel, output_dir)
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output_dir / names.NOTEBOOK_FILE),
                parameters=params,
                kernel_name=kernel,
                execution_timeout=timeout,
                progress_bar=False,
                log_output=True,
                report_mode=False,
            )
        finally:
            papermill_seconds = time.perf_counter() - t0
    except Exception as exc:
        from papermill.exceptions import PapermillExecutionError

        error = describe_exception(exc, timeout)
        if not isinstance(exc, PapermillExecutionError):
            banner = error  # papermill marks failing cells itself; anything else needs a banner
        log.error("notebook failed: %s", error)

    render_seconds = 0.0
    try:
        render_seconds = render_report(output_dir, banner=banner)
    except Exception as exc:  # the report is best effort; result.json must still be written
        log.exception("could not render %s", names.REPORT_FILE)
        error = error or f"the notebook ran but its report could not be rendered: {describe_exception(exc)}"

    input_dir = Path(params["input_dir"]) if params.get("input_dir") else None
    total, done = count_images(output_dir, input_dir)
    timings = {"papermill_seconds": round(papermill_seconds, 3), "render_seconds": round(render_seconds, 3)}
    timings.update({k: round(v, 3) for k, v in read_timings(output_dir).items()})
    result = {
        "status": "failed" if error else "succeeded",
        "started": started,
        "finished": names.iso_utc(),
        "images_total": total,
        "images_done": done,
        "error": error,
        "timings": timings,
    }
    write_json_atomic(output_dir / names.RESULT_FILE, result)
    return result


def finalize_interrupted(output_dir: Path, error: str, *, input_dir: Path | None = None,
                         started: str | None = None) -> dict[str, Any]:
    """After a run was killed (timeout, cancel): render what was saved, write a failed result.

    papermill saves the output notebook after every cell, so the report shows how far it got.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    render_seconds = 0.0
    try:
        render_seconds = render_report(output_dir, banner=error)
    except Exception:
        log.exception("could not render %s", names.REPORT_FILE)
    total, done = count_images(output_dir, input_dir, finished=False)
    result = {
        "status": "failed",
        "started": started,
        "finished": names.iso_utc(),
        "images_total": total,
        "images_done": done,
        "error": error,
        "timings": {"render_seconds": round(render_seconds, 3), **read_timings(output_dir)},
    }
    write_json_atomic(output_dir / names.RESULT_FILE, result)
    return result
