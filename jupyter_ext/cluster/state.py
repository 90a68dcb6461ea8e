"""Which Ray cluster this kernel's later runs go to: the selection's state, alone.

Kept apart from :mod:`.selection` (which asks the cluster before selecting it) so that the
views of a cluster (:mod:`.inventory`) can say whether it is the selected one without
importing what selects it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .address import ClusterAddress

_current: ClusterAddress | None = None
_runtime_env: dict[str, Any] | None = None
_lock = threading.Lock()


def select(address: ClusterAddress | None, runtime_env: dict[str, Any] | None = None) -> None:
    """Record the selection (None: this machine); :func:`.selection.use_cluster` checks it.

    Example::

        >>> select(None)
        >>> current_cluster() is None
        True
    """
    global _current, _runtime_env
    with _lock:
        _current = address
        _runtime_env = dict(runtime_env) if (address is not None and runtime_env) else None


def current_cluster() -> ClusterAddress | None:
    """The cluster this kernel's later runs go to, or None for this machine.

    Example::

        >>> current_cluster() is None  # doctest: +SKIP
        True
    """
    with _lock:
        return _current


def current_runtime_env() -> dict[str, Any] | None:
    """What the selected cluster's jobs get beyond the run (``use_cluster(runtime_env=)``).

    Example::

        >>> current_runtime_env()  # doctest: +SKIP
        {'pip': ['scikit-learn']}
    """
    with _lock:
        return dict(_runtime_env) if _runtime_env else None
