"""jupyter_ext: the notebook cockpit for PyTorch Lightning training.

Load the magics with ``%load_ext jupyter_ext``, or call the Python API directly::

    import jupyter_ext
    jupyter_ext.accelerators()              # DataFrame, one row per device
    jupyter_ext.select("cpu", devices=2)    # the selection the next runs use

Importing this package is cheap: torch, Lightning and IPython load only when a function
that needs them is first called.
"""

from __future__ import annotations

from typing import Any

from ._lazy import lazy_attributes
from ._version import __version__

# public name -> module that defines it (loaded on first access). No module may share a
# public function's name, or importing it would shadow the function on the package.
_LAZY = {
    "Deployment": "deployment.client",
    "Run": "training.run",
    "Selection": "selector",
    "SelectionError": "selector",
    "ToolkitConfig": "config",
    "accelerators": "devices",
    "compare": "widgets.compare",
    "deploy": "deployment.api",
    "deployments": "deployment.api",
    "device": "selector",
    "finetune": "llm.finetune",
    "get_config": "config",
    "get_deployment": "deployment.api",
    "get_run": "training.run",
    "import_logs": "importers",
    "metrics": "comparison",
    "runs": "training.run",
    "samples": "comparison",
    "select": "selector",
    "selection": "selector",
    "summary": "comparison",
    "train": "training.run",
    "use_cluster": "cluster.selection",
}

__all__ = [
    "Deployment",
    "Run",
    "Selection",
    "SelectionError",
    "ToolkitConfig",
    "__version__",
    "accelerators",
    "compare",
    "deploy",
    "deployments",
    "device",
    "finetune",
    "get_config",
    "get_deployment",
    "get_run",
    "import_logs",
    "load_ipython_extension",
    "metrics",
    "runs",
    "samples",
    "select",
    "selection",
    "summary",
    "train",
    "unload_ipython_extension",
    "use_cluster",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the built JupyterLab extension is (``jupyter labextension develop`` reads it)."""
    return [{"src": "labextension", "dest": "jupyter-ext-labextension"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server extension lives in :mod:`jupyter_ext.server` (``jupyter server extension
    enable jupyter_ext`` finds it through here)."""
    return [{"module": "jupyter_ext.server"}]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_ext``: register the magics and the configuration."""
    from .magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ip)
