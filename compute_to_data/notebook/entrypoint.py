"""Command line of the notebook runner: the container's entrypoint and the in-process child.

    python -m compute_to_data.notebook.entrypoint --params P --notebook NB --output-dir O [--timeout S]

executes NB with the parameters in P, writes ``O/notebook.ipynb``, ``O/report.html`` and
``O/result.json`` (see ``execute.py``), and exits 0 if the run succeeded, 1 if it failed.

    python -m compute_to_data.notebook.entrypoint --output-dir O --interrupted "timed out after 60 s"

is what a runner calls after it had to kill a run: it renders the partially executed notebook
papermill saved and writes a failed ``result.json`` with that message (exit code 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from compute_to_data.domain import conventions as names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m compute_to_data.notebook.entrypoint",
        description="Execute a parameterized notebook; always write report.html and result.json.",
    )
    parser.add_argument("--params", type=Path, help=f"JSON file of notebook parameters ({names.PARAMS_FILE})")
    parser.add_argument("--notebook", type=Path, help="the notebook to execute (.ipynb)")
    parser.add_argument("--output-dir", type=Path, required=True, help="where results are written")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds any single notebook cell may run (the runner limits the whole run)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: python3)")
    parser.add_argument("--interrupted", metavar="MESSAGE", default=None,
                        help="do not execute: finalize a killed run with this error message")
    parser.add_argument("--input-dir", type=Path, default=None, help="with --interrupted: the inputs, to count them")
    parser.add_argument("--started", default=None, help="with --interrupted: when the run started (ISO 8601)")
    args = parser.parse_args(argv)
    if args.interrupted is None and (args.params is None or args.notebook is None):
        parser.error("--params and --notebook are required (unless --interrupted is given)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from compute_to_data.notebook import execute

    if args.interrupted is not None:
        execute.finalize_interrupted(args.output_dir, args.interrupted, input_dir=args.input_dir,
                                     started=args.started)
        return 1
    result = execute.execute(args.notebook, args.params, args.output_dir, timeout=args.timeout,
                             kernel_name=args.kernel)
    if result["status"] == "succeeded":
        logging.getLogger(__name__).info("succeeded: %d image(s)", result["images_done"])
        return 0
    logging.getLogger(__name__).error("failed: %s", result["error"])
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
