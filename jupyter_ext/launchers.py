"""Launchers start a run's worker. The local subprocess launcher is the first backend.

A launcher is handed a run that is already in the store (with its run directory and
payload written) and returns a :class:`Launched` value; stopping goes through the store
(``stop_requested``), with :meth:`Launcher.terminate` as the last resort. A cluster
backend (Ray) implements the same two methods and starts the same worker command.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import process_started

WORKER = [sys.executable, "-m", "jupyter_ext.worker"]


@dataclass(frozen=True)
class Launched:
    """Where a run's worker went: its pid (on ``host``) and whether a warm spare took it."""

    pid: int
    pid_started: float | None
    host: str
    warm: bool


class Launcher(ABC):
    """The interface every backend implements.

    ``launch`` must return quickly (the worker loads the payload and imports on its own
    time) and the worker must be independent of the kernel: it survives a kernel restart.
    """

    name: str = "abstract"

    @abstractmethod
    def launch(self, run: dict[str, Any], home: Path, *, heartbeat_s: float) -> Launched:
        """Start the worker for ``run`` (a store row); return where it runs."""

    @abstractmethod
    def terminate(self, run: dict[str, Any], *, kill: bool = False) -> bool:
        """Signal the worker (SIGTERM, or SIGKILL with ``kill``); True if one was signalled."""

    def shutdown(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release what the launcher holds (idle spares); running workers are left alone."""


def worker_env() -> dict[str, str]:
    """The kernel's environment, minus what only makes sense inside a kernel."""
    env = dict(os.environ)
    if env.get("MPLBACKEND", "").startswith("module://"):
        env.pop("MPLBACKEND")  # matplotlib-inline needs IPython; a worker has none
    for key in ("JPY_PARENT_PID", "JPY_SESSION_NAME"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SparePool:
    """One warm spare worker, replaced in the background after it takes a run.

    The spare reads its job from a pipe whose other end only this kernel holds, so an
    idle spare exits with its kernel and never outlives it.
    """

    def __init__(self, home: Path, heartbeat_s: float) -> None:
        self.home, self.heartbeat_s = home, heartbeat_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Start a spare if there is none alive."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            log_dir = self.home / "spares"
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / "spares.log", "ab") as log:
                self._proc = subprocess.Popen(
                    [*WORKER, "--spare", "--heartbeat", str(self.heartbeat_s)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=worker_env(),
                    start_new_session=True,  # a run it takes must survive the kernel
                )

    def take(self) -> subprocess.Popen[bytes] | None:
        """The spare, if one is alive (the pool forgets it); None otherwise."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return None
        return proc

    def ready(self) -> bool:
        """Whether the spare has finished importing (it says so in the spares log)."""
        from .worker import SPARE_READY

        pid = self.pid
        if pid is None:
            return False
        try:
            text = (self.home / "spares" / "spares.log").read_text(errors="replace")
        except OSError:
            return False
        return f"{SPARE_READY} {pid}" in text

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def shutdown(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.stdin.close()  # type: ignore[union-attr]  # EOF: the spare exits
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


class LocalLauncher(Launcher):
    """Run workers as local subprocesses in their own session; optionally keep a warm spare.

    Example::

        >>> launcher = LocalLauncher(warm_start=False)  # doctest: +SKIP
        >>> launcher.launch(store.get_run(run_id), home, heartbeat_s=1.0)  # doctest: +SKIP
        Launched(pid=4242, pid_started=..., host='vm', warm=False)
    """

    name = "local"

    def __init__(self, warm_start: bool = True, home: Path | None = None, heartbeat_s: float = 1.0):
        self.spares: SparePool | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self.configure(warm_start, home, heartbeat_s)
        atexit.register(self.shutdown)

    def configure(self, warm_start: bool, home: Path | None, heartbeat_s: float) -> None:
        """Follow the configuration: start, move or drop the warm spare as it says."""
        wanted = warm_start and home is not None
        current = self.spares
        if current is not None and (
            not wanted or current.home != home or current.heartbeat_s != heartbeat_s
        ):
            current.shutdown()
            self.spares = current = None
        if wanted and current is None:
            self.spares = SparePool(home, heartbeat_s)  # type: ignore[arg-type]
            # Off the caller's thread: Popen itself is quick, but extension load must be instant.
            threading.Thread(target=self.spares.ensure, daemon=True).start()

    def _reap(self) -> None:
        # Poll finished children so they do not linger as zombies in the kernel.
        self._children = [p for p in self._children if p.poll() is None]

    def launch(self, run: dict[str, Any], home: Path, *, heartbeat_s: float) -> Launched:
        self._reap()
        log_path = Path(run["run_dir"]) / "worker.log"
        env = worker_env()
        proc = self.spares.take() if self.spares is not None and self.spares.home == home else None
        warm = False
        if proc is not None:
            job = {
                "run_id": run["id"],
                "home": str(home),
                "cwd": run["cwd"],
                "env": env,
                "log": str(log_path),
            }
            try:
                proc.stdin.write((json.dumps(job) + "\n").encode())  # type: ignore[union-attr]
                proc.stdin.close()  # type: ignore[union-attr]
                warm = True
            except (BrokenPipeError, OSError):
                proc = None
            if self.spares is not None:
                threading.Thread(target=self.spares.ensure, daemon=True).start()
        if proc is None:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [
                        *WORKER,
                        "--run-id",
                        run["id"],
                        "--home",
                        str(home),
                        "--heartbeat",
                        str(heartbeat_s),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=run["cwd"],
                    env=env,
                    start_new_session=True,  # survives the kernel; stopped as a group
                )
        self._children.append(proc)
        return Launched(proc.pid, process_started(proc.pid), socket.gethostname(), warm)

    def terminate(self, run: dict[str, Any], *, kill: bool = False) -> bool:
        pid = run.get("pid")
        if not pid or run.get("host") != socket.gethostname():
            return False
        sig = signal.SIGKILL if kill else signal.SIGTERM
        try:
            os.killpg(os.getpgid(pid), sig)  # the worker and every rank/loader it started
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def shutdown(self) -> None:
        if self.spares is not None:
            self.spares.shutdown()


_launcher: Launcher | None = None
_launcher_lock = threading.Lock()


def get_launcher() -> Launcher:
    """This kernel's launcher (local, with a warm spare unless configured off).

    The local launcher follows the configuration at every call, so ``%config
    ToolkitConfig.warm_start = False`` (or a new ``home``) takes effect for the next run.
    """
    global _launcher
    from .config import get_config

    cfg = get_config()
    home = cfg.home_path.resolve()
    with _launcher_lock:
        if _launcher is None:
            _launcher = LocalLauncher(cfg.warm_start, home, cfg.heartbeat_s)
        elif isinstance(_launcher, LocalLauncher):
            _launcher.configure(cfg.warm_start, home, cfg.heartbeat_s)
        return _launcher


def set_launcher(launcher: Launcher) -> Launcher | None:
    """Use another backend for the runs launched from now on; returns the previous one."""
    global _launcher
    with _launcher_lock:
        previous, _launcher = _launcher, launcher
    return previous
