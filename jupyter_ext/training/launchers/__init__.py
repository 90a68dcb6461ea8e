"""Launchers start a run's worker: which one this kernel uses.

A launcher is handed a run that is already in the store (with its run directory and
payload written) and returns a :class:`Launched` value; stopping goes through the store
(``stop_requested``), with :meth:`Launcher.terminate` as the last resort. The interface is
:mod:`.base`; backends live beside it, one module each: :mod:`.local` (subprocesses, with
a warm spare).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .base import Launched, Launcher, LaunchFailed, LaunchOutcome

if TYPE_CHECKING:
    from ...store import RunRecord

__all__ = [
    "LaunchFailed",
    "LaunchOutcome",
    "Launched",
    "Launcher",
    "get_launcher",
    "launcher_for",
    "set_launcher",
]


_launcher: Launcher | None = None
_launcher_lock = threading.Lock()


def get_launcher() -> Launcher:
    """This kernel's launcher (local, with a warm spare unless configured off).

    The local launcher follows the configuration at every call, so ``%config
    ToolkitConfig.warm_start = False`` (or a new ``home``) takes effect for the next run.
    """
    global _launcher
    from ...config import get_config
    from .local import LocalLauncher

    cfg = get_config()
    home = cfg.home_path.resolve()
    with _launcher_lock:
        if _launcher is None:
            _launcher = LocalLauncher(cfg.warm_start, home, cfg.heartbeat_s)
        elif isinstance(_launcher, LocalLauncher):
            _launcher.configure(cfg.warm_start, home, cfg.heartbeat_s)
        return _launcher


def launcher_for(run: RunRecord) -> Launcher:
    """The launcher that can signal ``run``'s worker: its cluster's for a cluster run,
    else this kernel's.

    Example::

        >>> launcher_for(run.row).terminate(run.row)  # doctest: +SKIP
    """
    if run.cluster:
        from ...cluster.launcher import launcher_for_fields

        return launcher_for_fields(run.cluster)
    return get_launcher()


def set_launcher(launcher: Launcher | None) -> Launcher | None:
    """Use another backend for the runs launched from now on; returns the previous one.

    ``None`` goes back to the configured default (built at the next launch).

    Example::

        >>> previous = set_launcher(LocalLauncher(warm_start=False))  # doctest: +SKIP
    """
    global _launcher
    with _launcher_lock:
        previous, _launcher = _launcher, launcher
    return previous
