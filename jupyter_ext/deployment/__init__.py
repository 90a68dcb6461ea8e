"""Deployment: push a model to a local inference server or a self-contained bundle.

Where a model goes is a deploy target (:mod:`.targets`: ``local``, ``bundle``; one module
each); what a target is given is the artifact :mod:`.export` made and checked.

``deploy``, ``deployments``, ``get_deployment`` and ``Deployment`` are the public API (also on
the ``jupyter_ext`` package). Importing this package is cheap: a serving process imports it
too, and must not pay for torch unless its artifact needs it.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "DeployError": "export",
    "Deployment": "client",
    "DeploymentNotFound": "api",
    "deploy": "api",
    "deployments": "api",
    "get_deployment": "api",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
