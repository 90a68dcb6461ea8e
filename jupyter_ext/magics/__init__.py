"""The IPython layer: magics that parse arguments, call the Python API and display.

``%load_ext jupyter_ext`` registers every :class:`~IPython.core.magic.Magics` class found
in this package's modules, and the toolkit's configuration (so ``%config ToolkitConfig``
works). Magics hold no logic of their own; errors in what the user typed become
``UsageError`` (one line, kernel untouched).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from IPython.core.magic import Magics

from ..config import ToolkitConfig

# Modules that must run something when the extension loads (the warm spare worker) add a
# callable here from their own module, so this file never needs to know about them.
_on_load: list[Any] = []


def magics_classes() -> list[type[Magics]]:
    """Every Magics class defined in this package, in module order."""
    found: list[type[Magics]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Magics) and obj is not Magics and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def load_ipython_extension(ip: Any) -> None:
    """Register the toolkit's configuration and magics with an IPython shell."""
    cfg = ToolkitConfig.instance(parent=ip)
    if cfg not in ip.configurables:
        ip.configurables.append(cfg)
    for cls in magics_classes():
        ip.register_magics(cls)
    for module in list(_on_load):
        module(ip)


def unload_ipython_extension(ip: Any) -> None:
    """Nothing to undo beyond what IPython does; kept so %reload_ext works."""
