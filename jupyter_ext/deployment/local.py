"""Serving processes on this machine: ports, start, health check, stop.

The mechanics under the ``local`` target (:mod:`.targets.local`, which decides when to use
them); process groups and their stopping are :mod:`jupyter_ext.procs`'s.

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
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..procs import log_tail, stop_group, track
from .export import DeployError
from .server import KEY_ENV, is_loopback

SERVER_MODULE = "jupyter_ext.deployment.server"
LOG_LINES = 30  # lines of a server's log quoted when it fails to start


class PortInUseError(DeployError):
    """The requested port is taken; the message says by what, and what to do."""


def bind_host(host: str) -> str:
    """The address to bind for ``host`` ("localhost" is bound as 127.0.0.1).

    Example::

        >>> bind_host("localhost")
        '127.0.0.1'
    """
    return "127.0.0.1" if host == "localhost" else host


def server_url(host: str, port: int) -> str:
    """The URL clients of this machine use for a server bound to ``host:port`` (a
    wildcard or external address is reached through 127.0.0.1).

    Example::

        >>> server_url("0.0.0.0", 8080), server_url("::1", 8080)
        ('http://127.0.0.1:8080', 'http://[::1]:8080')
    """
    url_host = "127.0.0.1" if not is_loopback(host) or host == "localhost" else host
    return f"http://{url_host if ':' not in url_host else f'[{url_host}]'}:{port}"


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
    return track(proc)  # so its exit status is collected once it is stopped (no zombie)


@dataclass(frozen=True)
class Health:
    """How waiting for a server to become healthy ended.

    ``healthy`` after ``seconds``; otherwise the process exited first (``exit_code``) or
    the timeout passed, and ``log_tail`` holds what it printed last.

    Example::

        >>> Health(False, 3.0, exit_code=1).describe()
        'the server exited (code 1) before it was healthy'
    """

    healthy: bool
    seconds: float
    exit_code: int | None = None
    log_tail: str = ""

    @property
    def timed_out(self) -> bool:
        return not self.healthy and self.exit_code is None

    def describe(self) -> str:
        if self.healthy:
            return f"healthy after {self.seconds:.1f} s"
        if self.exit_code is not None:
            return f"the server exited (code {self.exit_code}) before it was healthy"
        return f"the server was not healthy after {self.seconds:.0f} s"


def wait_healthy(
    url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0
) -> Health:
    """Poll ``/v2/health/ready`` until it answers 200, the process exits, or ``timeout``.

    Example::

        >>> wait_healthy("http://127.0.0.1:8080", proc, log_path).seconds  # doctest: +SKIP
        0.84
    """
    import httpx

    t0 = time.monotonic()
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            code = proc.poll()
            if code is not None:
                tail = log_tail(log_path, LOG_LINES)
                return Health(False, time.monotonic() - t0, exit_code=code, log_tail=tail)
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/v2/health/ready").status_code == 200:
                    return Health(True, time.monotonic() - t0)
            if time.monotonic() - t0 > timeout:
                return Health(False, timeout, log_tail=log_tail(log_path, LOG_LINES))
            time.sleep(0.05)  # polling interval of the health check


def stop_server(pid: int | None, started: float | None = None) -> bool:
    """Stop a server's whole process group (SIGTERM, then SIGKILL after the configured
    ``term_timeout_s``); True if anything was running. Its port is free on return.

    Example::

        >>> stop_server(record.pid, record.pid_started)  # doctest: +SKIP
        True
    """
    from ..config import get_config

    cfg = get_config()
    return stop_group(
        pid, started, term_timeout=cfg.term_timeout_s, kill_timeout=cfg.kill_timeout_s
    )
