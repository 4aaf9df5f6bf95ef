"""A delay server for the fake iRODS server that runs queued rules by itself, several at once.

``FakeIrodsServer.run_delay_queue`` runs the queue when a test asks, one rule after the other.
Some behaviour exists only while rules run at once: a run that queues replication agents and
waits for them needs them to run while it waits. This runs the queue in the background as the
real delay server does (docs/irods-behaviour.md, ``F:delay_server_polls_and_runs_several_at_once``):
it looks at the queue every ``poll_seconds`` (30 s by default on a real zone) and starts what
it finds, at most ``executors`` rules at once (``number_of_concurrent_delay_rule_executors``,
default 4), each in a thread of its own: its own agent, with its own ``callback``.

    with FakeDelayServer(server, poll_seconds=0.01):
        server.irule("c2d_run", config)
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from tests.fakes.irods_server import DelayedRule, FakeIrodsServer, RuleRun


class FakeDelayServer:
    def __init__(self, server: FakeIrodsServer, *, poll_seconds: float = 0.01, executors: int = 4) -> None:
        self.server = server
        self.poll_seconds = poll_seconds
        self.executors = threading.BoundedSemaphore(executors)
        self.runs: list[tuple[DelayedRule, RuleRun]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poller = threading.Thread(target=self._poll, name="fake-delay-server", daemon=True)

    def __enter__(self) -> "FakeDelayServer":
        self._poller.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Start nothing more; wait for the rules that run (they end by themselves)."""
        self._stop.set()
        self._poller.join(timeout)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            while not self._stop.is_set():
                if not self.executors.acquire(timeout=self.poll_seconds):
                    break
                entry = self.server.take_delayed()
                if entry is None:
                    self.executors.release()
                    break
                thread = threading.Thread(target=self._run, args=(entry,), name=f"delayed-{entry.id}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _run(self, entry: DelayedRule) -> None:
        try:
            self.runs.append((entry, self.server.run_delayed(entry)))
        finally:
            self.executors.release()
