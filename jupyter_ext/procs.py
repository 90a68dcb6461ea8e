"""Processes we start and watch: liveness with pid-reuse checks, stop escalation, log tails.

Workers and inference servers are started in sessions of their own (so they outlive the
kernel and stop as a group); everything here works from any process that knows a pid and
its start time, which is what the store records. Children this process started are
tracked so their exit status is collected and they never linger as zombies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

# A pid whose start time differs from the recorded one by more than this was reused.
_SAME_START_S = 1.0
_POLL_S = 0.05  # how often a stop checks whether the group is gone

_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Remember a child we started, so :func:`reap` collects its exit status.

    Example::

        >>> proc = track(subprocess.Popen(["sleep", "1"]))  # doctest: +SKIP
    """
    with _children_lock:
        _children[proc.pid] = proc
    return proc


def reap() -> None:
    """Collect the exit status of every tracked child that has ended."""
    with _children_lock:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def process_started(pid: int) -> float | None:
    """The creation time of a live process (to tell a pid from a reused one).

    Example::

        >>> process_started(os.getpid()) > 0
        True
    """
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _reused(pid: int, started: float | None) -> bool:
    """Whether ``pid`` now belongs to another process than the one started at ``started``."""
    now = process_started(pid)
    return now is not None and started is not None and abs(now - started) > _SAME_START_S


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` still runs the process that was started at ``started``.

    Example::

        >>> process_alive(os.getpid(), process_started(os.getpid()))
        True
    """
    import psutil

    if not pid:
        return False
    reap()  # a child of ours that ended is a zombie until collected
    if _reused(pid, started):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``.

    Example::

        >>> group_members(deployment.pid)  # doctest: +SKIP
        [4242, 4250]
    """
    import psutil

    reap()
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def signal_group(pid: int | None, sig: int, started: float | None = None) -> bool:
    """Send ``sig`` to the process group led by ``pid``; True if it was delivered.

    A leader whose pid now belongs to another process (reused) is left alone.

    Example::

        >>> signal_group(run_pid, signal.SIGTERM, started)  # doctest: +SKIP
        True
    """
    if not pid or _reused(pid, started):
        return False
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        # The leader is gone: what is left of its group keeps the leader's pid as id.
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
    return True


def stop_group(
    pid: int | None,
    started: float | None = None,
    *,
    term_timeout: float = 10.0,
    kill_timeout: float = 5.0,
) -> bool:
    """SIGTERM a process group (a worker with its ranks and loaders, a server with its
    workers), then SIGKILL what remains after ``term_timeout`` s; wait up to
    ``kill_timeout`` s for it to go. True if anything was running.

    The group id is the leader's pid (it was started in a session of its own); with the
    leader gone, processes left in that group are its children.

    Example::

        >>> stop_group(deployment_pid, started, term_timeout=10, kill_timeout=5)  # doctest: +SKIP
        True
    """
    if not pid or _reused(pid, started) or not group_members(pid):
        return False
    for sig, wait in ((signal.SIGTERM, term_timeout), (signal.SIGKILL, kill_timeout)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_members(pid):
                return True
            time.sleep(_POLL_S)
    return True


def log_tail(path: Path | str | None, lines: int | None = 100, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file, reading at most its last ``max_bytes``
    (``lines=None``: the whole file). '' when there is no such file.

    Example::

        >>> log_tail("/nonexistent.log")
        ''
    """
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            if lines is None:
                return fh.read().decode(errors="replace")
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""
