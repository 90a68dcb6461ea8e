"""The local backend: each run's worker is a subprocess in a session of its own.

A warm spare (torch and Lightning imported, CUDA untouched) waits for the next run of this
kernel; it reads its one job from a pipe that only this kernel holds, so an idle spare
leaves with the kernel, while a run it took outlives the kernel like any other.
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
from pathlib import Path
from typing import TYPE_CHECKING

from ... import procs
from .base import Launched, Launcher, LaunchFailed, LaunchOutcome

if TYPE_CHECKING:
    from ...store import RunRecord

WORKER = [sys.executable, "-m", "jupyter_ext.training.worker"]


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
        from ..worker import SPARE_READY

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

    def launch(self, run: RunRecord, home: Path, *, heartbeat_s: float) -> LaunchOutcome:
        procs.reap()
        log_path = Path(run.run_dir) / "worker.log"  # type: ignore[arg-type]
        env = worker_env()
        proc = self.spares.take() if self.spares is not None and self.spares.home == home else None
        warm = False
        if proc is not None:
            job = {
                "run_id": run.id,
                "home": str(home),
                "cwd": run.cwd,
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
            try:
                proc = self._start_cold(run, home, heartbeat_s, log_path, env)
            except OSError as exc:  # no such interpreter, run dir gone, out of pids
                return LaunchFailed(f"could not start the worker ({sys.executable}): {exc}")
        procs.track(proc)
        return Launched(proc.pid, procs.process_started(proc.pid), socket.gethostname(), warm)

    @staticmethod
    def _start_cold(
        run: RunRecord, home: Path, heartbeat_s: float, log_path: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [
                    *WORKER,
                    "--run-id",
                    run.id,
                    "--home",
                    str(home),
                    "--heartbeat",
                    str(heartbeat_s),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=run.cwd,
                env=env,
                start_new_session=True,  # survives the kernel; stopped as a group
            )

    def terminate(self, run: RunRecord, *, kill: bool = False) -> bool:
        if not run.pid or run.host != socket.gethostname():
            return False
        sig = signal.SIGKILL if kill else signal.SIGTERM
        # the worker and every rank/loader it started
        return procs.signal_group(run.pid, sig, run.pid_started)

    def shutdown(self) -> None:
        if self.spares is not None:
            self.spares.shutdown()
