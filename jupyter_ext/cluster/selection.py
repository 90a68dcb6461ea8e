"""Which Ray cluster this kernel's later runs go to (none: this machine).

Kernel-process state, like the launcher (:func:`jupyter_ext.training.launchers.get_launcher`):
it lasts until the kernel ends or :func:`use_cluster` changes it. A run that names its own
cluster (``train(..., cluster=ADDRESS)``) does not change it.
"""

from __future__ import annotations

import threading

from .address import ClusterAddress, parse_address
from .inventory import ClusterInfo, cluster_info

_current: ClusterAddress | None = None
_lock = threading.Lock()


def use_cluster(
    address: str | ClusterAddress | None, *, client: str | None = None, timeout: float = 5.0
) -> ClusterInfo | None:
    """Send this kernel's later runs to the Ray cluster at ``address`` (what ``ray job
    submit --address`` takes: ``http://HOST:8265``, ``ray://HOST:10001`` or ``auto``), or
    back to this machine with ``None`` or ``"local"``. ``client`` is the Ray Client
    address when it is not the head's default (``ray://HOST:10001``).

    The cluster is asked first: returns what it has (a :class:`ClusterInfo`, shown as its
    nodes), or raises :class:`ClusterUnreachable` / ValueError and leaves the selection as
    it was.

    Example::

        >>> use_cluster("http://127.0.0.1:8265")  # doctest: +SKIP
        Runs of this kernel go to the Ray cluster at http://127.0.0.1:8265: 1 node, ...
        >>> use_cluster("local") is None  # doctest: +SKIP
        True
    """
    global _current
    if address is None or (isinstance(address, str) and address.strip().lower() == "local"):
        if client is not None:
            raise ValueError("client= goes with a cluster address, not with local runs")
        with _lock:
            _current = None
        return None
    if isinstance(address, ClusterAddress):
        addr = address if client is None else parse_address(address.text, client)
    else:
        addr = parse_address(address, client)
    info = cluster_info(addr, timeout=timeout)  # unreachable: raises, nothing changes
    with _lock:
        _current = addr
    return info


def current_cluster() -> ClusterAddress | None:
    """The cluster this kernel's later runs go to, or None for this machine.

    Example::

        >>> current_cluster() is None  # doctest: +SKIP
        True
    """
    with _lock:
        return _current


def current_cluster_info(timeout: float = 5.0) -> ClusterInfo | None:
    """A fresh look at the selected cluster, or None when runs stay on this machine
    (what ``%cluster`` and ``%accelerators`` show). Raises :class:`ClusterUnreachable`
    when the selected cluster does not answer now.

    Example::

        >>> current_cluster_info() is None  # doctest: +SKIP
        True
    """
    addr = current_cluster()
    return None if addr is None else cluster_info(addr, timeout=timeout)
