"""Cluster runs stay current while the Jupyter server runs, with no kernel open.

A cluster run's worker writes to its channel on the cluster, not to the store
(:mod:`jupyter_ext.cluster.channel`); something on the workspace's side has to drain it.
A kernel does while it holds the run, but the person may have closed the notebook, or the
kernel may have died. :class:`ClusterWatch` is the server's part: a daemon thread that
looks at the store every ``JupyterExtServer.cluster_check_s`` seconds and, while any
cluster run has something left to bring in, keeps this process's
:class:`~jupyter_ext.cluster.sync.ClusterSync` running (the one a kernel would run, with
its lease on each channel: two processes never apply the same metrics twice). The sync
also forwards stop requests, so the sidebar's Stop (``POST runs/{id}/stop``, which sets
``stop_requested`` in the store) reaches a cluster run's worker.

Ray stays optional: the check is one store read and imports no Ray; without Ray installed
the watch says once that it cannot bring cluster runs in and the server works as before.
Nothing here runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

from ..store import open_store

log = logging.getLogger("jupyter_ext.server")


def ray_installed() -> bool:
    """Whether Ray can be imported here (without importing it: that takes seconds).

    Example::

        >>> isinstance(ray_installed(), bool)
        True
    """
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: blocked (sys.modules["ray"] = None)
        return False


class ClusterWatch(threading.Thread):
    """Starts the workspace's cluster sync in this process whenever cluster runs are
    pending (a daemon thread; ends with ``stop()`` or when ``loop``, the server's event
    loop, is closed).

    Example::

        >>> watch = ClusterWatch(Path("~/.local/share/jupyter_ext"), check_s=2.0)
        >>> watch.start()  # doctest: +SKIP
        >>> watch.sync  # doctest: +SKIP
        <ClusterSync(jupyter-ext-cluster-sync, started daemon ...)>
    """

    def __init__(
        self,
        home: Path,
        check_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        super().__init__(name="jupyter-ext-cluster-watch", daemon=True)
        self.home = home
        self.check_s = check_s
        self.loop = loop
        self.log = logger or log
        self.sync: Any = None  # the ClusterSync this watch started (None until needed)
        self._warned = False
        self._done = threading.Event()

    def run(self) -> None:
        # a first look at once: after a server restart, runs still out there re-attach now
        while True:
            if self.loop is not None and self.loop.is_closed():
                break  # the server is gone (an in-process server in tests ends this way)
            try:
                self.check()
            except Exception as exc:  # a bad look must not end the watch
                self.log.warning("jupyter_ext.server: cluster runs: %s", exc)
            if self._done.wait(self.check_s):
                break
        if self.sync is not None:
            self.sync.stop()  # the server's; a kernel in this process would start its own

    def stop(self) -> None:
        self._done.set()

    def check(self) -> Any:
        """One look: start (or restart) the sync if cluster runs are pending; returns it,
        or None when there is nothing to bring in or no Ray to bring it in with."""
        if not (self.home / "store.sqlite").exists():
            return None  # no workspace yet: do not create one just to look
        from ..cluster.sync import ensure_sync, pending_runs

        # the store's own resolved path: the same key the views' Run objects use, so
        # both find one sync rather than replacing each other's
        store = open_store(self.home)
        pending = pending_runs(store)
        if not pending:
            return None
        if not ray_installed():
            if not self._warned:
                self._warned = True
                self.log.warning(
                    "jupyter_ext.server: %d cluster run(s) in %s cannot be kept current: Ray "
                    "is not installed in the server's environment (pip install "
                    "'jupyter_ext[ray]')",
                    len(pending),
                    self.home,
                )
            return None
        self.sync = ensure_sync(Path(store.path).parent)
        return self.sync


def start_watch(serverapp: Any, home: Path, check_s: float) -> ClusterWatch | None:
    """Start the server's cluster watch over the workspace at ``home`` (none when
    ``check_s`` is 0: kernels alone keep cluster runs current then).

    Example::

        >>> start_watch(serverapp, get_config().home_path, 2.0)  # doctest: +SKIP
    """
    if check_s <= 0:
        return None
    io_loop = getattr(serverapp, "io_loop", None)
    watch = ClusterWatch(
        home, check_s, loop=getattr(io_loop, "asyncio_loop", None), logger=serverapp.log
    )
    watch.start()
    return watch
