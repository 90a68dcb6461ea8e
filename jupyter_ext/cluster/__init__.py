"""Ray clusters: addresses, what a cluster has, and which one this kernel's runs go to.

Importing this package is cheap: Ray loads only when a cluster is first asked.

Example::

    from jupyter_ext.cluster import use_cluster, check_request
    info = use_cluster("http://127.0.0.1:8265")     # later runs go there
    check_request(info, accelerator="cpu", devices=2, num_nodes=1)
"""

from __future__ import annotations

from .._lazy import lazy_attributes

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "ClusterAddress": "address",
    "ClusterInfo": "inventory",
    "ClusterRequestError": "inventory",
    "ClusterUnreachable": "address",
    "LocalHead": "head",
    "NodeInfo": "inventory",
    "check_request": "inventory",
    "cluster_info": "inventory",
    "current_cluster": "selection",
    "current_cluster_info": "selection",
    "parse_address": "address",
    "start_head": "head",
    "stop_head": "head",
    "use_cluster": "selection",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
