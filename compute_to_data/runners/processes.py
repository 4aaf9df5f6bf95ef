"""The processes of a run on this host, found by markers in their environment, and stopped.

Every process a runner starts for a run carries ``C2D_TASK_ID`` (the task, or ``<task>-NNNN``
for a shard: any run of it) and ``C2D_RUN_ID`` (this one run: ``<run key>@<started>``), and
inherits them into every process it starts. A reaper, which holds the task's run lock, stops
every process of the task; a cancel stops only the run it cancelled, never the run of a resume
that followed it. Linux ``/proc`` only; other hosts find nothing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux ``/proc``), parents before children.

    Jupyter starts the kernel in its own session, so killing the child's process group alone
    would leave the kernel (and its DataLoader workers) running.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(children.get(pid, []))
    return tree


def kill_tree(root: int) -> None:
    """SIGKILL ``root``, every descendant and their process groups (never our own group).

    The tree is frozen with SIGSTOP first, so nothing can fork a process we would miss.
    """
    own_group = os.getpgid(0)
    frozen: set[int] = set()
    if Path("/proc").is_dir():
        for _ in range(5):
            new = [pid for pid in process_tree(root) if pid not in frozen]
            if not new:
                break
            for pid in new:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except (ProcessLookupError, PermissionError):
                    pass
                frozen.add(pid)
    for pid in frozen | {root}:
        try:
            group = os.getpgid(pid)
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


ENV_TASK_ID = "C2D_TASK_ID"
#: the one run's identity (``run_id``)
ENV_RUN_ID = "C2D_RUN_ID"


def run_id(run_key: str, started: str) -> str:
    """The identity of one run of a task (or shard): its run key and its ``c2d::started``."""
    return f"{run_key}@{started}"


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes on this host (that we may inspect) whose environment has ``name=value``.

    Never this process nor its ancestors: a caller that inherited the variable is not its run.
    """
    wanted = f"{name}={value}".encode()
    exclude = _ancestors(os.getpid())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                state = fh.read().rpartition(")")[2].split()[0]
        except OSError:  # gone, or another user's
            continue
        if state != "Z" and wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _ancestors(pid: int) -> set[int]:
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                pid = int(fh.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain
