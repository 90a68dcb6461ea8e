"""A warm spare text server: a Python process with torch, transformers, peft, FastAPI and
uvicorn already imported, waiting for the one deployment it will serve.

Importing those takes seconds (more than loading a small model), so a kernel that
deployed one text model keeps a spare for the next (``ToolkitConfig.warm_start``, as for
training workers). The spare's stdin is one end of a socket pair whose other end only the
deploying kernel holds: an idle spare exits when its kernel goes (it reads end-of-file),
and the job arrives on it together with the already-bound listening socket
(``socket.send_fds``), so a warm deployment is served exactly like a cold one: same
server code, same process group, same port handover.

Run as ``python -m jupyter_ext.deployment.textgen.spare``; the kernel side is
:class:`SparePool`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

READY = b"ready\n"
MODULE = "jupyter_ext.deployment.textgen.spare"


def _warm_imports() -> None:
    """What a text server imports before it can load a model (the slow part of a start)."""
    import fastapi  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import uvicorn  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    from transformers.generation.continuous_batching import continuous_api  # noqa: F401

    from . import engine, openai_app  # noqa: F401

    try:  # the most common architecture's module; others import when loaded
        from transformers.models.llama import modeling_llama  # noqa: F401
    except ImportError:
        pass


def main() -> int:
    """The spare: import, say ready, wait for one job, then become its server.

    Example::

        $ python -m jupyter_ext.deployment.textgen.spare  # stdin: a socket pair end
    """
    chan = socket.socket(fileno=os.dup(0))
    received: list[Any] = []
    got = threading.Event()

    def watch() -> None:
        # started before the slow imports: a spare whose kernel goes exits at once
        try:
            message, fds, _, _ = socket.recv_fds(chan, 1 << 16, 1)
        except OSError:
            message, fds = b"", []
        if not message or not fds:
            os._exit(0)  # the kernel went away (or shut the pool down): nothing to serve
        received.append((message, fds))
        got.set()

    threading.Thread(target=watch, name="spare-watch", daemon=True).start()
    _warm_imports()
    chan.sendall(READY)
    got.wait()
    message, fds = received[0]
    job = json.loads(message)
    log = os.open(job["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the kernel's end may close: the server no longer reads it
    chan.close()
    os.chdir(job["directory"])
    from ..server import KEY_ENV

    os.environ.pop(KEY_ENV, None)
    if job.get("api_key"):
        os.environ[KEY_ENV] = job["api_key"]
    from ..server import main as server_main

    server_main([job["directory"], "--host", job["host"], "--fd", str(fds[0]), *job["options"]])
    return 0


class SparePool:
    """This kernel's one warm spare text server, replaced in the background once taken.

    Example::

        >>> pool = SparePool()  # doctest: +SKIP
        >>> pool.ensure()  # doctest: +SKIP
        >>> proc = pool.hand_over(directory, sock, host="127.0.0.1", log_path=log,
        ...                       api_key=None, options=[])  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._chan: socket.socket | None = None
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Start a spare if there is none alive.

        Example::

            >>> pool().ensure()  # doctest: +SKIP
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            ours, theirs = socket.socketpair()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            env.pop("DEPLOY_API_KEY", None)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", MODULE],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # the server it becomes outlives the kernel
            )
            theirs.close()
            self._chan, self._ready = ours, False

    def _wait_ready(self, timeout: float) -> bool:
        chan, proc = self._chan, self._proc
        if chan is None or proc is None:
            return False
        if self._ready:
            return proc.poll() is None
        chan.settimeout(timeout)
        try:
            self._ready = chan.recv(len(READY)) == READY
        except OSError:
            self._ready = False
        finally:
            chan.settimeout(None)
        return self._ready and proc.poll() is None

    def hand_over(
        self,
        directory: Path,
        sock: socket.socket,
        *,
        host: str,
        log_path: Path,
        api_key: str | None,
        options: list[str],
        timeout: float = 30.0,
    ) -> subprocess.Popen | None:
        """Give the spare this deployment (it serves on ``sock``); its process, or None
        when there is no spare that finished importing within ``timeout``.

        Example::

            >>> proc = pool().hand_over(art, sock, host="127.0.0.1", log_path=art / "server.log",
            ...                         api_key=None, options=[])  # doctest: +SKIP
        """
        with self._lock:
            if not self._wait_ready(timeout):
                self._discard()
                return None
            proc, chan = self._proc, self._chan
            self._proc = self._chan = None
        job = {
            "directory": str(directory), "host": host, "log_path": str(log_path),
            "api_key": api_key, "options": options,
        }  # fmt: skip
        assert chan is not None and proc is not None
        try:
            socket.send_fds(chan, [json.dumps(job).encode()], [sock.fileno()])
        except OSError:
            proc.kill()
            return None
        finally:
            chan.close()
        return _track(proc)

    def _discard(self) -> None:
        if self._chan is not None:
            self._chan.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._proc = self._chan = None

    def shutdown(self) -> None:
        """Let an idle spare exit (it reads end-of-file).

        Example::

            >>> pool().shutdown()  # doctest: +SKIP
        """
        with self._lock:
            proc = self._proc
            if self._chan is not None:
                self._chan.close()
            self._proc = self._chan = None
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, idle: nothing to lose
                proc.wait(timeout=5)


def _track(proc: subprocess.Popen) -> Any:
    from ...procs import track

    return track(proc)


_pool: SparePool | None = None
_pool_lock = threading.Lock()


def pool() -> SparePool:
    """This kernel's spare pool (one per process).

    Example::

        >>> pool().ensure()  # doctest: +SKIP
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SparePool()
        return _pool


def prewarm(wait: bool = False, timeout: float = 60.0) -> None:
    """Start this kernel's warm spare text server now, so the next text ``deploy()`` skips
    the imports (``wait``: return once it is ready).

    Example::

        >>> prewarm(wait=True)  # doctest: +SKIP
    """
    p = pool()
    p.ensure()
    if wait:
        t0 = time.monotonic()
        with p._lock:
            p._wait_ready(max(0.0, timeout - (time.monotonic() - t0)))


if __name__ == "__main__":
    sys.exit(main())
