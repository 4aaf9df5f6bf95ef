"""Runs one queued task in its own process, as the local worker or the delay server would, and
kills that process at a chosen point: the fault suite's engine.

    python -m tests.faults.driver --grid DIR --user alice --collection C [--mode local|rules]
        [--kill step:execute:start | progress:5 | part:2] [--signal KILL|TERM]

``local``: the task lifecycle's ``start`` (what ``c2d submit --local``'s worker runs, SIGTERM
turned into a recorded failure). ``rules``: the rulebase's internal rule ``c2d_run_task`` on the
fake rule-engine server over the same catalog (what the delay server runs); ``C2D_FAULT_IRODS``
(``msiModAVUMetadata:7``) makes that microservice fail after 7 calls. The settings come from
``$C2D_SETTINGS``. Exit code: 0 succeeded, 1 not, 3 refused, 143 terminated.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.engine.context import TaskContext
from tests.faults import fault_runner


def kill_points(context: TaskContext, spec: str | None, sig: int) -> TaskContext:
    """Listeners that signal this process at ``spec``."""
    if not spec:
        return context
    kind, _, rest = spec.partition(":")

    def fire() -> None:
        print(f"driver: {signal.Signals(sig).name} at {spec}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), sig)

    if kind == "step":
        step, _, event = rest.partition(":")
        context.step_listeners.append(lambda name, ev, _s: fire() if (name, ev) == (step, event or "start") else None)
    elif kind == "progress":
        context.progress_listeners.append(lambda done, total: fire() if done >= int(rest) else None)
    elif kind == "part":
        context.part_listeners.append(lambda index, _n: fire() if index >= int(rest) else None)
    else:
        raise SystemExit(f"unknown kill point {spec!r}")
    return context


def run_local(args: argparse.Namespace, sig: int) -> int:
    from compute_to_data.domain.settings import Settings
    from compute_to_data.engine.termination import Terminated, sigterm_as_exception
    from compute_to_data.grid.local import LocalGrid
    from compute_to_data.service.tasks import TaskService

    grid = LocalGrid(args.grid, user=args.user)
    settings = Settings.load()
    context = kill_points(TaskContext(grid=grid, settings=settings, progress_interval=0.0), args.kill, sig)
    try:
        with sigterm_as_exception():
            outcome = TaskService(grid, settings).start(args.collection, context)
    except Terminated as exc:
        print(f"driver: {exc}", file=sys.stderr)
        return 143
    except ComputeToDataError as exc:
        print(f"driver: refused: {exc}", file=sys.stderr)
        return 3
    print(f"driver: {outcome.state.value if outcome.state else 'unknown'}: {outcome.error or ''}", file=sys.stderr)
    return 0 if outcome.succeeded else 1


def run_rules(args: argparse.Namespace, sig: int) -> int:
    from compute_to_data import rules
    from tests.fakes.irods_server import FakeIrodsServer

    server = FakeIrodsServer(args.grid, host="irods-provider")
    server.load_rulebase(rules)
    fault = os.environ.get("C2D_FAULT_IRODS")
    if fault:
        name, _, after = fault.partition(":")
        server.faults[name] = int(after)
    made = rules._context

    def with_kill_points(*a: Any, **kw: Any) -> TaskContext:
        context = made(*a, **kw)
        context.progress_interval = 0.0
        return kill_points(context, args.kill, sig)

    rules._context = with_kill_points  # type: ignore[assignment]
    run = server.irule("c2d_run_task", rules._encode({"collection": args.collection, "hops": 0}), user=args.user)
    print(f"driver: c2d_run_task: {run.code} {run.stdout.strip()} {run.error}", file=sys.stderr)
    if not run.ok:
        return 3
    return 0 if "state: succeeded" in run.stdout else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--mode", choices=("local", "rules"), default="local")
    parser.add_argument("--kill", default=None)
    parser.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    fault_runner.register()
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
    return run_local(args, sig) if args.mode == "local" else run_rules(args, sig)


if __name__ == "__main__":
    sys.exit(main())
