"""Which Ray cluster this kernel's later runs go to (none: this machine).

Kernel-process state, like the launcher (:func:`jupyter_ext.training.launchers.get_launcher`):
it lasts until the kernel ends or :func:`use_cluster` changes it. A run that names its own
cluster (``train(..., cluster=ADDRESS)``) does not change it.
"""

from __future__ import annotations

from typing import Any

from .address import ClusterAddress, parse_address
from .inventory import ClusterInfo, cluster_info
from .state import current_cluster, current_runtime_env, select

__all__ = [
    "check_runtime_env",
    "current_cluster",
    "current_cluster_info",
    "current_runtime_env",
    "use_cluster",
]

# the toolkit sets these itself: the run directory and the toolkit travel with every job
RESERVED = ("working_dir", "excludes")


def use_cluster(
    address: str | ClusterAddress | None,
    *,
    client: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> ClusterInfo | None:
    """Send this kernel's later runs to the Ray cluster at ``address`` (what ``ray job
    submit --address`` takes: ``http://HOST:8265``, ``ray://HOST:10001`` or ``auto``), or
    back to this machine with ``None`` or ``"local"``. ``client`` is the Ray Client
    address when it is not the head's default (``ray://HOST:10001``). ``runtime_env``:
    what the cluster's nodes need beyond what they have, as Ray's runtime environment
    (``{"pip": ["lightning==2.6.0", "scikit-learn"]}``, ``{"env_vars": {...}}``, ...),
    applied to every run's job; ``working_dir`` is the toolkit's (the run's directory).

    The cluster is asked first: returns what it has (a :class:`ClusterInfo`, shown as its
    nodes), or raises :class:`ClusterUnreachable` / ValueError and leaves the selection as
    it was.

    Example::

        >>> use_cluster("http://127.0.0.1:8265")  # doctest: +SKIP
        Runs of this kernel go to the Ray cluster at http://127.0.0.1:8265: 1 node, ...
        >>> use_cluster("local") is None  # doctest: +SKIP
        True
    """
    if runtime_env is not None:
        check_runtime_env(runtime_env)
    if address is None or (isinstance(address, str) and address.strip().lower() == "local"):
        if client is not None:
            raise ValueError("client= goes with a cluster address, not with local runs")
        select(None)
        return None
    if isinstance(address, ClusterAddress):
        addr = address if client is None else parse_address(address.text, client)
    else:
        addr = parse_address(address, client)
    info = cluster_info(addr, timeout=timeout)  # unreachable: raises, nothing changes
    select(addr, runtime_env)
    return info


def check_runtime_env(runtime_env: Any) -> None:
    """Refuse a runtime environment the jobs cannot take, saying what would be right.

    Example::

        >>> check_runtime_env({"pip": ["scikit-learn"]})  # accepted
    """
    if not isinstance(runtime_env, dict):
        raise ValueError(
            f"runtime_env must be a dict as Ray takes it, e.g. {{'pip': ['scikit-learn']}}; "
            f"got {type(runtime_env).__name__}"
        )
    taken = [k for k in RESERVED if k in runtime_env]
    if taken:
        raise ValueError(
            f"runtime_env may not set {', '.join(taken)}: each run's job carries its own run "
            "directory (the payload); put code the model needs in py_modules or pip"
        )


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
