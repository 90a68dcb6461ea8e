"""Target ``local``: a serving process on this machine, started, health-checked and stopped.

The server runs ``python -m jupyter_ext.deployment.server`` in its own session (so its own
process group): it outlives the kernel, and stopping it signals the whole group, which is
the only way to stop LitServe, whose parent leaves its workers serving when it alone gets
SIGTERM. For the FastAPI engine the kernel binds the port itself and hands the listening
socket over, so the port is known and held from the first moment (no race for a "free"
port, and a port in use is refused here, clearly).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .export import DeployError
from .server import KEY_ENV

SERVER_MODULE = "jupyter_ext.deployment.server"
# Popen objects of servers this process started, so stopped ones get reaped (no zombies)
_children: dict[int, subprocess.Popen] = {}


class PortInUseError(DeployError):
    """The requested port is taken; the message says by what, and what to do."""


def bind_host(host: str) -> str:
    """The address to bind for ``host`` ("localhost" is bound as 127.0.0.1).

    Example::

        >>> bind_host("localhost")
        '127.0.0.1'
    """
    return "127.0.0.1" if host == "localhost" else host


def _holder(port: int) -> str:
    """Who listens on ``port`` (best effort: other users' processes may be hidden)."""
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    cmd = " ".join(psutil.Process(conn.pid).cmdline())[:100]
                    return f" (by pid {conn.pid}: {cmd})"
                return ""
    return ""


def reserve_port(host: str, port: int | None) -> socket.socket:
    """A listening socket on ``host:port`` (any free port when ``port`` is None or 0).

    Example::

        >>> sock = reserve_port("127.0.0.1", None)
        >>> sock.getsockname()[1] > 0
        True
        >>> sock.close()
    """
    host = bind_host(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # reuse a port whose old connections linger in TIME_WAIT (a redeploy on the same port);
    # a port another socket listens on is still refused
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port or 0))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is in use{_holder(port or 0)}; pass another port "
                "(--port P), or none to take a free one"
            ) from None
        raise DeployError(f"cannot bind {host}:{port}: {exc}") from None
    return sock


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now.

    Example::

        >>> port_free("127.0.0.1", 8080)  # doctest: +SKIP
        True
    """
    try:
        reserve_port(host, port).close()
    except DeployError:
        return False
    return True


def spawn(
    directory: Path,
    *,
    host: str,
    engine: str,
    log_path: Path,
    sock: socket.socket | None = None,
    port: int | None = None,
    api_key: str | None = None,
    options: list[str] | None = None,
) -> subprocess.Popen:
    """Start a serving process for the artifact in ``directory`` in a new session.

    The FastAPI engine gets ``sock`` (already bound); LitServe binds ``port`` itself.

    Example::

        >>> proc = spawn(art_dir, host="127.0.0.1", engine="fastapi", sock=sock,
        ...              log_path=art_dir / "server.log")  # doctest: +SKIP
    """
    cmd = [sys.executable, "-m", SERVER_MODULE, str(directory), "--host", bind_host(host)]
    cmd += ["--engine", engine, *(options or [])]
    pass_fds: tuple[int, ...] = ()
    if sock is not None:
        cmd += ["--fd", str(sock.fileno())]
        pass_fds = (sock.fileno(),)
    else:
        cmd += ["--port", str(port)]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop(KEY_ENV, None)
    if api_key:
        env[KEY_ENV] = api_key  # the environment, not argv: argv is visible to every user
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    _children[proc.pid] = proc
    return proc


def log_tail(path: Path | str | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' if there is none).

    Example::

        >>> log_tail("/nonexistent.log")
        ''
    """
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> float:
    """Poll ``/v2/health/ready`` until 200; seconds it took. Fails early if the server exits.

    Example::

        >>> wait_healthy("http://127.0.0.1:8080", proc, log_path)  # doctest: +SKIP
        0.84
    """
    import httpx

    t0 = time.monotonic()
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            code = proc.poll()
            if code is not None:
                raise DeployError(
                    f"the server exited (code {code}) before it was healthy; its log ends with:"
                    f"\n{log_tail(log_path)}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/v2/health/ready").status_code == 200:
                    return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise DeployError(
                    f"the server was not healthy after {timeout:.0f} s; its log ends with:\n"
                    f"{log_tail(log_path)}"
                )
            time.sleep(0.05)  # polling interval of the health check


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``.

    Example::

        >>> group_members(deployment.pid)  # doctest: +SKIP
        [4242, 4250]
    """
    import psutil

    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def _reap(pid: int) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def _leader_is_ours(pid: int, started: float | None) -> bool:
    """False when ``pid`` now belongs to another process (the pid was reused)."""
    from ..store import process_started

    now = process_started(pid)
    return now is None or started is None or abs(now - started) <= 1.0


def stop_group(pid: int | None, started: float | None = None, timeout: float = 10.0) -> bool:
    """SIGTERM the server's process group, SIGKILL what remains after ``timeout``.

    Returns True if anything was running. The group id is the server's pid (it was started
    in a new session); with its leader gone, processes left in that group are its children.

    Example::

        >>> stop_group(deployment_pid, started)  # doctest: +SKIP
        True
    """
    if not pid:
        return False
    if not _leader_is_ours(pid, started) or not group_members(pid):
        _reap(pid)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if pid in _children:
                _children[pid].poll()  # reaps the leader once it exits
            if not group_members(pid):
                _reap(pid)
                return True
            time.sleep(0.05)  # polling interval while the group exits
    _reap(pid)
    return True
