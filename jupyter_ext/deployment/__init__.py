"""Deployment: push a model to a local inference server or a self-contained bundle.

``deploy``, ``deployments``, ``get_deployment`` and ``Deployment`` are the public API (also on
the ``jupyter_ext`` package). Importing this package is cheap: a serving process imports it
too, and must not pay for torch unless its artifact needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DeployError": "export",
    "Deployment": "client",
    "DeploymentNotFound": "api",
    "deploy": "api",
    "deployments": "api",
    "get_deployment": "api",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
