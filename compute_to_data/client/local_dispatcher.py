"""Runs a sharded task's queued shards on a LocalGrid: worker processes, at most N at once.

On a zone the delay server does this: one queued rule per shard, up to
``number_of_concurrent_delay_rule_executors`` (default 4) at once, each dispatched to its
resource's host. A LocalGrid has no delay server, so this dispatcher starts one worker process
per shard (``python -m compute_to_data.client.local_worker --task <shard collection>``), at
most ``local_concurrent_runs`` (settings, default 4) at once; each worker takes its resource's
slot as on a zone (``COMPUTE_RESOURCE_MAX_TASKS``), so a resource never runs more than its
capacity whatever the number of workers, and a worker waiting for a slot has staged its shard
already (pipelining). The shard that ends last renders the task's report.

SIGTERM (or Ctrl-C) of the dispatcher is passed to its workers, which record their shards
``failed`` and clean up as a terminated run does; the shards it never started are named in
:attr:`LocalDispatcher.never_started` for the caller to record ``failed`` (the task service's
``abandon``), so the task ends failed and a resume runs what is left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


class LocalDispatcher:
    def __init__(self, grid_dir: Path, user: str, *, settings_file: Path | None = None, workers: int = 4,
                 log_dir: Path | None = None) -> None:
        self.grid_dir = Path(grid_dir)
        self.user = user
        self.settings_file = settings_file
        self.workers = max(1, workers)
        self.log_dir = Path(log_dir) if log_dir is not None else self.grid_dir / "logs"
        #: exit code of each shard's worker (0 succeeded, 1 failed, 143 terminated)
        self.exit_codes: dict[str, int] = {}
        #: most shard workers that ran at once
        self.most_at_once = 0
        #: what stopped the dispatcher before every shard ran ("SIGTERM", "SIGINT"), or None
        self.stopped_by: str | None = None
        #: the shards it never started because it was stopped (still queued: the caller records them)
        self.never_started: list[str] = []

    def command(self, collection: str) -> list[str]:
        command = [sys.executable, "-m", "compute_to_data.client.local_worker",
                   "--grid", str(self.grid_dir), "--user", self.user, "--task", collection]
        if self.settings_file is not None:
            command += ["--settings", str(self.settings_file)]
        return command

    def run(self, collections: list[str]) -> dict[str, int]:
        """Run every shard, at most ``workers`` at once; returns each worker's exit code."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pending = list(collections)
        running: dict[subprocess.Popen[bytes], str] = {}
        stop = {"signal": 0}

        def forward(signum: int, frame: FrameType | None) -> None:
            stop["signal"] = signum

        previous = signal.signal(signal.SIGTERM, forward) if _main_thread() else None
        try:
            while pending or running:
                if stop["signal"] and not self.stopped_by:
                    self.stopped_by = signal.Signals(stop["signal"]).name
                    self.never_started.extend(pending)
                    pending.clear()
                    for process in running:
                        _terminate(process)
                while pending and len(running) < self.workers:
                    collection = pending.pop(0)
                    running[self._start(collection)] = collection
                self.most_at_once = max(self.most_at_once, len(running))
                for process in [p for p in running if p.poll() is not None]:
                    collection = running.pop(process)
                    self.exit_codes[collection] = int(process.returncode)
                    log.info("shard %s: worker exited %d", collection, process.returncode)
                if running:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.stopped_by = "SIGINT"
            self.never_started.extend(pending)
            for process in running:
                _terminate(process)
            for process in running:
                process.wait()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self.exit_codes

    def _start(self, collection: str) -> "subprocess.Popen[bytes]":
        name = collection.strip("/").replace("/", "_")[-120:]
        with open(self.log_dir / f"{name}.log", "ab") as out:
            return subprocess.Popen(  # noqa: S603 - our own module, arguments are not shell-parsed
                self.command(collection), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ),
            )


def _terminate(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        try:
            process.terminate()
        except ProcessLookupError:
            pass


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
