"""Run a parameterized notebook with papermill, render its report, write ``result.json``.

This is what runs inside the container (and in the in-process runner's child process). It
imports papermill and nbconvert, so nothing the iRODS server imports may import this module.

Whatever happens, the output directory ends up with ``report.html`` and ``result.json``: a
researcher looking at a failed task sees the notebook up to the failing cell and a one-line
error, never just a missing report.

The report reads as results: it opens with the cells the notebook tags ``results`` (counts per
class, score distribution, the least certain images with thumbnails), then the task's provenance
(``params.json`` key ``c2d_report``), the timings, and the rest of the notebook (its
explanations) in notebook order. The code cells' source is hidden (nbconvert's
``exclude_input``), the parameters cells are left out, and host staging paths are shown as the
container contract's ``/inputs``, ``/outputs`` and ``/task``. ``notebook.ipynb`` keeps
everything, in execution order.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from compute_to_data.contract.files import write_text_atomic
from compute_to_data.contract.results import read_progress
from compute_to_data.contract.workdir import RUNTIME_DIR_ENV
from compute_to_data.domain import conventions as names
from compute_to_data.domain.timings import format_seconds, run_timing_name, timing_rows

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"
#: the report context of this run, kept in the output directory (hidden: not a result) so that a
#: report rendered after a kill (``--interrupted``) still shows the provenance.
REPORT_CONTEXT_FILE = ".c2d-report.json"
#: cells left out of the report entirely: papermill's parameters cells (``notebook.ipynb`` has
#: them) and cells a notebook author tags ``remove-cell``; ``remove-output`` drops outputs only.
REPORT_REMOVED_CELL_TAGS = frozenset({"parameters", "injected-parameters", "remove-cell"})
REPORT_REMOVED_OUTPUT_TAGS = frozenset({"remove-output"})
#: cells a notebook tags ``results`` open the report (before the provenance, the timings and the
#: notebook's explanations): the people who validate predictions look for the results first.
REPORT_RESULTS_TAG = "results"
#: papermill's note that a cell failed (the first cell of a failed run's notebook): kept on top.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
_TEXT_OUTPUT_TYPES = ("text/plain", "text/markdown", "text/html", "text/latex", "image/svg+xml")
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
    """Never a half-written file, nor a ``.tmp`` left behind; a full disk names the directory."""
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")



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


def _executed_notebook_timings(output_dir: Path) -> dict[str, float]:
    try:
        return notebook_timings(nbformat.read(output_dir / names.NOTEBOOK_FILE, as_version=4))
    except (OSError, ValueError, AttributeError):
        return {}


def read_pipeline(output_dir: Path) -> dict[str, Any] | None:
    """How the notebook fed the model (device, precision used and asked for, workers), if it said.

    Recorded in ``result.json`` as provenance: a ``bf16`` task that ran in fp32 on a device
    without bf16 says so there.
    """
    try:
        pipeline = json.loads((output_dir / TIMINGS_FILE).read_text(encoding="utf-8")).get("pipeline")
    except (OSError, ValueError, AttributeError):
        return None
    return pipeline if isinstance(pipeline, dict) else None


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


def use_private_runtime() -> None:
    """Have the kernel's connection file written in the run's private scratch directory, when
    the runner gave one (``C2D_RUNTIME_DIR``).

    jupyter_client writes it with ``tempfile.mkstemp`` (``/tmp/tmpXXXX.json``) and removes it
    when the kernel shuts down, which a killed or cancelled run never does: the file, with the
    kernel's HMAC key, would stay. Only this process's ``tempfile.tempdir`` changes, not
    ``TMPDIR``: the kernel inherits the environment, and a long ``TMPDIR`` breaks what binds
    Unix sockets there (PyTorch's DataLoader workers, 108 bytes at most).
    """
    scratch = os.environ.get(RUNTIME_DIR_ENV)
    if scratch and Path(scratch).is_dir():
        tempfile.tempdir = scratch


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


# --- the report context: provenance and host paths ---------------------------------------------
def report_context(raw: object, params: dict[str, Any]) -> dict[str, Any]:
    """The context a report shows: ``{"provenance": {...}, "paths": {host path: shown as}}``.

    ``raw`` is the ``c2d_report`` value the task passed (untrusted shape: only dicts of plain
    values are kept). The run's own ``input_dir``/``output_dir`` are always shown as the
    container's ``/inputs`` and ``/outputs``, resolved and unresolved.
    """
    doc = raw if isinstance(raw, dict) else {}
    provenance: dict[str, Any] = doc["provenance"] if isinstance(doc.get("provenance"), dict) else {}
    given: dict[str, Any] = doc["paths"] if isinstance(doc.get("paths"), dict) else {}
    paths = {str(k): str(v) for k, v in given.items() if isinstance(k, str) and k.startswith("/") and len(k) > 1}
    for key, shown in (("input_dir", names.CONTAINER_INPUT_DIR), ("output_dir", names.CONTAINER_OUTPUT_DIR)):
        value = params.get(key)
        if isinstance(value, str) and value.startswith("/") and value != shown:
            paths.setdefault(value, shown)
    for host, shown in list(paths.items()):
        try:
            resolved = str(Path(host).resolve())
        except OSError:
            continue
        paths.setdefault(resolved, shown)
    return {"provenance": provenance, "paths": {k: v for k, v in paths.items() if k != v}}


def read_report_context(output_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((output_dir / REPORT_CONTEXT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"provenance": {}, "paths": {}}
    return report_context(doc, {})


def notebook_timings(nb: nbformat.NotebookNode) -> dict[str, float]:
    """From papermill's metadata: ``kernel_start_seconds`` (papermill start to the first cell)
    and ``cells_seconds`` (all cells' execution time)."""
    from datetime import datetime

    def moment(text: object) -> datetime | None:
        try:
            return datetime.fromisoformat(str(text)) if text else None
        except ValueError:
            return None

    timings: dict[str, float] = {}
    began = moment(nb.metadata.get("papermill", {}).get("start_time"))
    starts = [moment(c.metadata.get("papermill", {}).get("start_time")) for c in nb.cells]
    known = [m for m in starts if m is not None]
    if began is not None and known:
        try:
            timings["kernel_start_seconds"] = round(max(0.0, (min(known) - began).total_seconds()), 3)
        except TypeError:  # naive and aware times mixed: papermill never writes that
            pass
    durations = [c.metadata.get("papermill", {}).get("duration") for c in nb.cells]
    numbers = [float(d) for d in durations if isinstance(d, (int, float))]
    if numbers:
        timings["cells_seconds"] = round(sum(numbers), 3)
    return timings


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


def _show(value: object) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


#: provenance rows, in the order a reader wants them: (key in the context, label).
_PROVENANCE_ROWS = (
    ("task_type", "task type"), ("submitted_by", "submitted by"), ("input_collection", "input collection"),
    ("inputs", "inputs"), ("model", "model"), ("model_checksum", "model checksum"), ("labels", "labels"),
    ("labels_checksum", "labels checksum"), ("shards_notebook", "notebook of the shards"),
    ("shards_notebook_checksum", "notebook checksum of the shards"),
    ("notebook", "notebook"), ("notebook_checksum", "notebook checksum"), ("image", "container image"),
    ("image_digest", "image digest"), ("compute_resource", "compute resource"), ("runner", "runner"),
)


_LEFT = ' style="margin-left:0"'  # nbconvert centres markdown tables


def _provenance_cell(provenance: dict[str, Any]) -> nbformat.NotebookNode:
    """The task's provenance, after the results; every value escaped (it holds user-chosen paths)."""
    def row(label: str, value: object) -> str:
        return (f'<tr><th style="text-align:left;padding-right:1em">{html.escape(label)}</th>'
                f"<td>{html.escape(_show(value))}</td></tr>")

    task_id = provenance.get("task_id", "")
    rows = [row("task", task_id)] if task_id else []
    rows += [row(label, provenance[key]) for key, label in _PROVENANCE_ROWS if provenance.get(key) not in (None, "")]
    parameters = provenance.get("parameters")
    if isinstance(parameters, dict):
        rows += [row(f"parameter {k}", v) for k, v in sorted(parameters.items())]
    parts = [
        '<div class="c2d-provenance" style="border:1px solid #ccd;padding:0.6em 1em;margin:1em 0">',
        f"<h2>Provenance of task {html.escape(str(task_id))}</h2>" if task_id else "<h2>Provenance</h2>",
        '<p style="color:#666">This report shows the results; the code is hidden. The executed notebook '
        f"(<code>{names.NOTEBOOK_FILE}</code> in the task collection) has the code and every output.</p>",
    ]
    if rows:
        parts.append(f"<table{_LEFT}>" + "".join(rows) + "</table>")
    parts.append("</div>")
    cell: nbformat.NotebookNode = nbformat.v4.new_markdown_cell("".join(parts))
    cell.metadata["tags"] = ["c2d-provenance"]
    return cell


def _timings_cell(provenance: dict[str, Any], run_timings: dict[str, float]) -> nbformat.NotebookNode | None:
    """The steps of the task up to the notebook run (from the provenance) and the run's own."""
    timings: dict[str, float] = {}
    before = provenance.get("timings")
    if isinstance(before, dict):
        timings.update({str(k): float(v) for k, v in before.items() if isinstance(v, (int, float))})
    timings.update({run_timing_name(k): v for k, v in run_timings.items()})
    rows = "".join(
        f'<tr><td style="padding-left:{1 + 1.5 * r.depth}em">{html.escape(r.name)}</td>'
        f'<td style="text-align:right">{html.escape(format_seconds(r.seconds))}</td></tr>'
        for r in timing_rows(timings)
    )
    if not rows:
        return None
    cell: nbformat.NotebookNode = nbformat.v4.new_markdown_cell(
        '<div class="c2d-timings" style="border:1px solid #ccd;padding:0.6em 1em;margin:1em 0">'
        '<h2>Timings</h2><p style="color:#666">Steps of the task up to the notebook run, and the run itself '
        f"(seconds).</p><table{_LEFT}>{rows}</table></div>"
    )
    cell.metadata["tags"] = ["c2d-timings"]
    return cell


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


Cells = list[nbformat.NotebookNode]


def results_first(cells: Cells) -> tuple[Cells, Cells, Cells]:
    """(papermill's leading error note, the results, the rest) of an executed notebook.

    The results are the cells tagged ``results``, in notebook order, as sections: a markdown
    cell and the code cells after it. A section whose code cells have no output (the run failed
    before them) is left out, and with no output in any section there are no results to show:
    the report then opens with the provenance, never with headings over nothing.
    """
    leading: Cells = []
    for cell in cells:
        if PAPERMILL_ERROR_TAG not in _tags(cell):
            break
        leading.append(cell)
    sections: list[Cells] = []
    rest: Cells = []
    for cell in cells[len(leading):]:
        if REPORT_RESULTS_TAG not in _tags(cell):
            rest.append(cell)
        elif cell.cell_type == "code" and sections:
            sections[-1].append(cell)
        else:
            sections.append([cell])

    def has_output(section: Cells) -> bool:
        return any(c.get("outputs") for c in section if c.cell_type == "code")

    def shown(section: Cells) -> bool:
        return has_output(section) or all(c.cell_type != "code" for c in section)

    if not any(has_output(s) for s in sections):
        return leading, [], rest
    return leading, [c for s in sections if shown(s) for c in s], rest


def _path_pairs(paths: dict[str, str]) -> list[tuple[str, str]]:
    """Longest host path first, so ``.../task/model`` wins over ``.../task``."""
    return sorted(paths.items(), key=lambda item: len(item[0]), reverse=True)


def _replace_paths(text: str, pairs: list[tuple[str, str]]) -> str:
    for host, shown in pairs:
        if host in text:
            text = text.replace(host, shown)
    return text


def hide_host_paths(nb: nbformat.NotebookNode, paths: dict[str, str]) -> None:
    """Show host staging paths as the container sees them, in every cell's text and outputs."""
    pairs = _path_pairs(paths)
    if not pairs:
        return
    for cell in nb.cells:
        cell.source = _replace_paths(cell.source, pairs)
        for output in cell.get("outputs", []):
            if "text" in output and isinstance(output.text, str):
                output.text = _replace_paths(output.text, pairs)
            if "evalue" in output:
                output.evalue = _replace_paths(str(output.evalue), pairs)
            if "traceback" in output:
                output.traceback = [_replace_paths(str(line), pairs) for line in output.traceback]
            for mime in _TEXT_OUTPUT_TYPES:
                value = output.get("data", {}).get(mime)
                if isinstance(value, str):
                    output.data[mime] = _replace_paths(value, pairs)
                elif isinstance(value, list):
                    output.data[mime] = [_replace_paths(str(line), pairs) for line in value]


def report_exporter() -> Any:
    """nbconvert's HTML exporter configured for a results report: no code, no prompts, no
    parameters cells (TagRemovePreprocessor)."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.TemplateExporter.exclude_input = True
    config.TemplateExporter.exclude_input_prompt = True
    config.TemplateExporter.exclude_output_prompt = True
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = set(REPORT_REMOVED_CELL_TAGS)
    config.TagRemovePreprocessor.remove_all_outputs_tags = set(REPORT_REMOVED_OUTPUT_TAGS)
    return HTMLExporter(config=config)


def render_report(output_dir: Path, *, banner: str | None = None, context: dict[str, Any] | None = None,
                  run_timings: dict[str, float] | None = None) -> float:
    """Render ``notebook.ipynb`` (or an error page if there is none) to ``report.html``.

    The cells tagged ``results`` come first (:func:`results_first`), then the provenance, the
    timings and the rest of the notebook. ``banner`` puts a visible error box at the very top
    (papermill adds its own only for exceptions raised inside a cell); ``context`` (default: the one this run saved) gives the provenance
    and the host paths to hide; ``run_timings`` the run's own timings so far. Returns the
    seconds it took.
    """
    started = time.perf_counter()
    if context is None:
        context = read_report_context(output_dir)
    source = output_dir / names.NOTEBOOK_FILE
    try:
        nb = nbformat.read(source, as_version=4)
    except (OSError, ValueError) as exc:
        log.warning("no executed notebook to render (%s); writing an error report", exc)
        nb = _error_notebook()
        if not banner:
            banner = f"no executed notebook was produced ({one_line(str(exc))})"
    timings = dict(run_timings or {})
    for key, value in notebook_timings(nb).items():
        timings.setdefault(key, value)
    hide_host_paths(nb, context.get("paths", {}))
    provenance = context.get("provenance", {})
    # Results first; then the provenance, the timings and the notebook's explanations.
    leading, results, rest = results_first(list(nb.cells))
    timings_cell = _timings_cell(provenance, timings)
    cells = [*leading, *results, _provenance_cell(provenance), *([timings_cell] if timings_cell else []), *rest]
    if banner:
        cells.insert(0, _banner(_replace_paths(banner, _path_pairs(context.get("paths", {})))))
    nb.cells = cells
    title = f"Report of task {provenance['task_id']}" if provenance.get("task_id") else "Task report"
    body, _ = report_exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    write_text_atomic(output_dir / names.REPORT_FILE, body)
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
    context: dict[str, Any] = {"provenance": {}, "paths": {}}
    papermill_seconds = 0.0
    try:
        params = load_parameters(params_path, output_dir)
        # Not a notebook parameter: what the report shows about the task, kept for an
        # interrupted run's report too.
        context = report_context(params.pop(names.REPORT_CONTEXT_PARAMETER, None), params)
        write_json_atomic(output_dir / REPORT_CONTEXT_FILE, context)
        if not notebook.is_file():
            raise FileNotFoundError(f"notebook {notebook} does not exist")
        import papermill

        use_private_runtime()
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

    timings = {"papermill_seconds": round(papermill_seconds, 3)}
    timings.update(_executed_notebook_timings(output_dir))
    timings.update({k: round(v, 3) for k, v in read_timings(output_dir).items()})
    render_seconds = 0.0
    try:
        render_seconds = render_report(output_dir, banner=banner, context=context, run_timings=timings)
    except Exception as exc:  # the report is best effort; result.json must still be written
        log.exception("could not render %s", names.REPORT_FILE)
        error = error or f"the notebook ran but its report could not be rendered: {describe_exception(exc)}"
    timings["render_seconds"] = round(render_seconds, 3)

    input_dir = Path(params["input_dir"]) if params.get("input_dir") else None
    total, done = count_images(output_dir, input_dir)
    result = {
        "status": "failed" if error else "succeeded",
        "started": started,
        "finished": names.iso_utc(),
        "images_total": total,
        "images_done": done,
        "error": error,
        "timings": timings,
        "pipeline": read_pipeline(output_dir),
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
    saved = {**_executed_notebook_timings(output_dir), **read_timings(output_dir)}
    try:
        render_seconds = render_report(output_dir, banner=error, run_timings=saved)
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
        "timings": {**saved, "render_seconds": round(render_seconds, 3)},
    }
    write_json_atomic(output_dir / names.RESULT_FILE, result)
    return result
