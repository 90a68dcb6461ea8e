"""A local Ray head for trying clusters out and for tests, started and stopped by its group.

``ray start --head --block`` runs in the foreground as the leader of a session of its
own, so the head and every process it starts (GCS, raylet, dashboard, workers) share one
process group, and stopping sends signals to exactly that group: never ``ray stop``,
which stops every Ray instance on the machine. The head gets a ``--temp-dir`` of its
own and free ports for its internal agents, so it runs beside any other Ray here.

From a shell (what ``make cluster`` / ``make cluster-stop`` run)::

    python -m jupyter_ext.cluster.head start --temp-dir .ray
    python -m jupyter_ext.cluster.head stop --temp-dir .ray
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import procs

#: Unix socket paths are limited to 107 bytes and Ray puts a ~65-character tail under its
#: temp dir (session_<date>_<time>_<pid>/sockets/plasma_store).
MAX_TEMP_DIR_CHARS = 40
_INFO = "head.json"
_LOG = "head.log"


@dataclass(frozen=True)
class LocalHead:
    """A running local Ray head: ``dashboard`` (http URL, what ``%cluster`` takes),
    ``client`` (ray:// URL), ``gcs`` (host:port, what ``ray start --address`` takes to add a
    node), ``temp_dir``, ``pid`` (its process group) and ``started`` (Unix time of the pid).

    Example::

        >>> head = start_head(".ray")  # doctest: +SKIP
        >>> head.dashboard  # doctest: +SKIP
        'http://127.0.0.1:8265'
    """

    dashboard: str
    client: str
    gcs: str
    temp_dir: str
    pid: int
    started: float
    log: str

    def ready(self, timeout: float = 2.0) -> bool:
        """Whether the dashboard answers and the head node is registered alive (the
        dashboard answers ~10 s before the raylet registers).

        Example::

            >>> head.ready()  # doctest: +SKIP
            True
        """
        from .inventory import cluster_info

        try:
            info = cluster_info(self.dashboard, timeout=timeout)
        except (ConnectionError, RuntimeError):
            return False
        return any(n.alive and n.head for n in info.nodes)

    def running(self) -> bool:
        """Whether any process of the head's group is still there."""
        return procs.process_alive(self.pid, self.started) or bool(procs.group_members(self.pid))


def free_port() -> int:
    """A TCP port nobody listens on at this moment, on 127.0.0.1.

    Example::

        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_executable() -> str:
    # The `ray` script beside this interpreter: the head must run the venv's Ray, the one
    # the kernel's clients speak to.
    here = Path(sys.executable).parent / "ray"
    if not here.exists():
        raise FileNotFoundError(
            f"no `ray` command beside {sys.executable}; install the extra: "
            "pip install 'jupyter-ext[ray]'"
        )
    return str(here)


def start_head(
    temp_dir: str | os.PathLike[str],
    *,
    dashboard_port: int = 8265,
    client_port: int = 10001,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    wait_s: float | None = 120.0,
) -> LocalHead:
    """Start ``ray start --head --block`` on 127.0.0.1 in a session of its own, with its
    temp dir (and log ``head.log``, and ``head.json`` describing it) under ``temp_dir``.
    ``wait_s`` None returns at once (check :meth:`LocalHead.ready`); else wait that many
    seconds for it to be ready, or stop it and raise ``TimeoutError`` with its log.

    Example::

        >>> head = start_head("/tmp/rh", dashboard_port=free_port(), client_port=free_port(),
        ...                   num_cpus=2, object_store_memory=80_000_000)  # doctest: +SKIP
    """
    temp = Path(temp_dir).resolve()
    if len(str(temp)) > MAX_TEMP_DIR_CHARS:
        raise ValueError(
            f"temp_dir {str(temp)!r} is {len(str(temp))} characters long; Ray's Unix sockets "
            f"under it need it to be at most {MAX_TEMP_DIR_CHARS} (e.g. /tmp/ray-mine)"
        )
    temp.mkdir(parents=True, exist_ok=True)
    existing = read_head(temp)
    if existing is not None and existing.running():
        raise RuntimeError(
            f"a Ray head started here is already running (pid {existing.pid}, "
            f"{existing.dashboard}); stop it first"
        )
    log = temp / _LOG
    cmd = [
        _ray_executable(), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", "0",  # Ray picks a free GCS port and records it in temp_dir
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(client_port),
        "--temp-dir", str(temp),
        "--disable-usage-stats",
        "--include-dashboard", "true",
    ]  # fmt: skip
    # Ray's agents default to fixed ports (52365, ...): free ones let this head run beside
    # another Ray on the machine (a `make cluster` head during the tests).
    for flag in (
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
        "--node-manager-port",
        "--object-manager-port",
    ):
        cmd += [flag, str(free_port())]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if object_store_memory is not None:
        cmd += ["--object-store-memory", str(object_store_memory)]
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)  # the head starts a cluster; it joins none
    # A SIGTERM otherwise drains the node for up to 30 s; a local head has nowhere to drain to.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # With RAY_AUTH_MODE unset, `ray start` turns token authentication on whenever
    # ~/.ray/auth_token exists, while clients with it unset send no token: say it outright.
    # A local head without tokens listens for the dashboard on 127.0.0.1 only;
    # RAY_AUTH_MODE=token in the environment keeps tokens on (clients then need it too).
    env.setdefault("RAY_AUTH_MODE", "disabled")
    (temp / "ray_current_cluster").unlink(missing_ok=True)  # read below: must be this head's
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    procs.track(proc)
    started = procs.process_started(proc.pid) or time.time()
    try:
        gcs = _wait_gcs(temp, proc, log, wait_s if wait_s is not None else 120.0)
        head = LocalHead(
            dashboard=f"http://127.0.0.1:{dashboard_port}",
            client=f"ray://127.0.0.1:{client_port}",
            gcs=gcs,
            temp_dir=str(temp),
            pid=proc.pid,
            started=started,
            log=str(log),
        )
        (temp / _INFO).write_text(json.dumps(asdict(head), indent=1))
        if wait_s is not None:
            deadline = time.monotonic() + wait_s
            while not head.ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the Ray head did not become ready in {wait_s:.0f} s (exit status "
                        f"{proc.poll()}); its log ({log}):\n{procs.log_tail(log, 30)}"
                    )
                time.sleep(0.25)
    except BaseException:
        # also on Ctrl-C: a head nobody waits for must not linger
        stop_head(proc.pid, started, term_timeout=5.0)
        raise
    return head


def _wait_gcs(temp: Path, proc: subprocess.Popen, log: Path, wait_s: float) -> str:
    """The GCS address ``ray start`` records in its temp dir once the GCS is up."""
    record = temp / "ray_current_cluster"
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(OSError):
            text = record.read_text().strip()
            if text:
                return text
        if proc.poll() is not None:
            raise RuntimeError(
                f"`ray start --head` exited with status {proc.returncode}; its log ({log}):\n"
                + procs.log_tail(log, 30)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"`ray start --head` recorded no GCS address in {wait_s:.0f} s; its log ({log}):\n"
                + procs.log_tail(log, 30)
            )
        time.sleep(0.1)


def read_head(temp_dir: str | os.PathLike[str]) -> LocalHead | None:
    """The head :func:`start_head` recorded under ``temp_dir``, running or not; None if none.

    Example::

        >>> read_head("/nonexistent") is None
        True
    """
    try:
        data = json.loads((Path(temp_dir) / _INFO).read_text())
        return LocalHead(**data)
    except (OSError, ValueError, TypeError):
        return None


def stop_head(
    pid: int,
    started: float | None = None,
    *,
    term_timeout: float = 20.0,
    kill_timeout: float = 10.0,
) -> bool:
    """Stop the head whose ``ray start --block`` has ``pid``: SIGTERM its process group,
    SIGKILL what remains after ``term_timeout`` s, and also end what it started in
    process groups or sessions of their own (Ray runs job drivers in sessions of their
    own). True if anything was running; raises RuntimeError if a process of the group is
    still there after ``kill_timeout`` s.

    Example::

        >>> stop_head(head.pid, head.started)  # doctest: +SKIP
        True
    """
    import psutil

    if (
        started is not None
        and not procs.process_alive(pid, started)
        and not (procs.group_members(pid))
    ):
        return False
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        descendants = psutil.Process(pid).children(recursive=True)
    ran = procs.stop_group(pid, started, term_timeout=term_timeout, kill_timeout=kill_timeout)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()  # psutil refuses a pid that now belongs to another process
    psutil.wait_procs(descendants, timeout=kill_timeout)
    procs.reap()
    left = procs.group_members(pid)
    if left:
        raise RuntimeError(f"processes {left} of the Ray head's group {pid} did not stop")
    return ran or bool(descendants)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_ext.cluster.head",
        description="Start or stop a local Ray head (by its process group, never `ray stop`).",
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--temp-dir", default=".ray", help="the head's own Ray temp dir")
    parser.add_argument("--dashboard-port", type=int, default=8265)
    parser.add_argument("--client-port", type=int, default=10001)
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for it")
    args = parser.parse_args(argv)
    temp = Path(args.temp_dir)
    if args.action == "start":
        try:
            head = start_head(
                temp,
                dashboard_port=args.dashboard_port,
                client_port=args.client_port,
                num_cpus=args.num_cpus,
                wait_s=args.wait,
            )
        except (RuntimeError, TimeoutError, ValueError, FileNotFoundError) as exc:
            print(f"could not start a Ray head: {exc}", file=sys.stderr)
            return 1
        print(
            f"Ray head running (process group {head.pid}, log {head.log}).\n"
            f"In a notebook:   %cluster {head.dashboard}\n"
            f"Ray Client:      {head.client}\n"
            f"Add a node:      ray start --address {head.gcs}\n"
            "Stop it:         make cluster-stop"
        )
        return 0
    head = read_head(temp)
    if head is None or not head.running():
        print(f"no Ray head started under {temp} is running")
        if args.action == "stop":
            (temp / _INFO).unlink(missing_ok=True)
        return 0 if args.action == "stop" else 1
    if args.action == "status":
        print(f"Ray head running: process group {head.pid}, {head.dashboard}")
        return 0
    stop_head(head.pid, head.started)
    (temp / _INFO).unlink(missing_ok=True)
    print(f"stopped the Ray head (process group {head.pid}, {head.dashboard})")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
