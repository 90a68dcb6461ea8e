"""Accelerator discovery: every device Lightning and torch know of, with live load.

Kinds come from Lightning's accelerator registry (cpu, cuda, mps, tpu and anything a
plugin registers); availability and device counts from each Lightning accelerator class;
names and memory from torch, NVIDIA memory and utilisation from NVML (nvidia-ml-py),
and CPU/RAM from psutil.
"""

from __future__ import annotations

import contextlib
import platform
from typing import Any

import pandas as pd
import psutil

COLUMNS = [
    "accelerator",
    "index",
    "name",
    "available",
    "memory_total_mb",
    "memory_used_mb",
    "utilization_pct",
    "note",
]
_MB = 1024 * 1024


def _registry() -> dict[str, type]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    kinds = {}
    for name in sorted(AcceleratorRegistry.available_accelerators()):
        kinds[name] = AcceleratorRegistry[name]["accelerator"]
    return kinds


def _cpu_name() -> str:
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name} ({psutil.cpu_count(logical=True)} logical cores)"


def _cpu_rows() -> list[dict[str, Any]]:
    mem = psutil.virtual_memory()
    return [
        {
            "accelerator": "cpu",
            "index": 0,
            "name": _cpu_name(),
            "available": True,
            "memory_total_mb": mem.total / _MB,
            "memory_used_mb": (mem.total - mem.available) / _MB,
            # interval=None compares with the previous call: non-blocking, which a
            # panel refreshing every second needs (the first call reads 0.0).
            "utilization_pct": psutil.cpu_percent(interval=None),
            "note": "",
        }
    ]


def _nvml_rows() -> list[dict[str, Any]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    rows = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except pynvml.NVMLError:
                util = float("nan")
            name = pynvml.nvmlDeviceGetName(h)
            rows.append(
                {
                    "accelerator": "cuda",
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "available": True,
                    "memory_total_mb": mem.total / _MB,
                    "memory_used_mb": mem.used / _MB,
                    "utilization_pct": util,
                    "note": "",
                }
            )
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return rows


def _cuda_rows(count: int) -> list[dict[str, Any]]:
    rows = _nvml_rows()
    if rows is not None and len(rows) >= count:
        return rows[:count] if count else rows
    # Not NVIDIA (ROCm) or NVML missing: torch still knows names and memory.
    import torch

    rows = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        rows.append(
            {
                "accelerator": "cuda",
                "index": i,
                "name": props.name,
                "available": True,
                "memory_total_mb": total / _MB,
                "memory_used_mb": (total - free) / _MB,
                "utilization_pct": float("nan"),
                "note": "install nvidia-ml-py for utilisation" if rows is None else "",
            }
        )
    return rows


def _mps_rows() -> list[dict[str, Any]]:
    import torch

    return [
        {
            "accelerator": "mps",
            "index": 0,
            "name": "Apple Metal (MPS)",
            "available": True,
            "memory_total_mb": torch.mps.recommended_max_memory() / _MB,
            "memory_used_mb": torch.mps.driver_allocated_memory() / _MB,
            "utilization_pct": float("nan"),
            "note": "",
        }
    ]


def _generic_rows(kind: str, cls: type) -> list[dict[str, Any]]:
    try:
        count = int(cls.auto_device_count())
    except Exception:
        count = 1
    return [
        {
            "accelerator": kind,
            "index": i,
            "name": f"{cls.__name__} device {i}",
            "available": True,
            "memory_total_mb": float("nan"),
            "memory_used_mb": float("nan"),
            "utilization_pct": float("nan"),
            "note": "",
        }
        for i in range(count)
    ]


def _unavailable_row(kind: str, cls: type, reason: str) -> dict[str, Any]:
    return {
        "accelerator": kind,
        "index": pd.NA,
        "name": cls.__name__,
        "available": False,
        "memory_total_mb": float("nan"),
        "memory_used_mb": float("nan"),
        "utilization_pct": float("nan"),
        "note": reason,
    }


def _is_available(cls: type) -> tuple[bool, str]:
    try:
        ok = bool(cls.is_available())
    except Exception:  # e.g. XLA's accelerator raises when torch_xla is absent
        ok = False
    return ok, "" if ok else why_unavailable(_kind_of(cls))


def _kind_of(cls: type) -> str:
    for kind, registered in _registry().items():
        if registered is cls:
            return kind
    return cls.__name__


def why_unavailable(kind: str) -> str:
    """Why an accelerator kind cannot be used here, in plain words (not install advice
    for hardware the machine does not have).

    Example::

        >>> why_unavailable("mps") if platform.system() != "Darwin" else "skip"
        'Apple GPUs (MPS) exist only on macOS with Apple silicon'
    """
    import importlib.util

    if kind == "cuda":
        import torch

        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            return "the installed torch is a CPU-only build (no CUDA support)"
        if not _nvidia_driver():
            return "no NVIDIA GPU or driver on this machine"
        return "torch sees no CUDA device (check CUDA_VISIBLE_DEVICES)"
    if kind == "mps":
        if platform.system() != "Darwin":
            return "Apple GPUs (MPS) exist only on macOS with Apple silicon"
        return "torch was built without MPS support, or this Mac has no Apple GPU"
    if kind in ("tpu", "xla"):
        if importlib.util.find_spec("torch_xla") is None:
            return "no TPU here (torch_xla, which TPU machines come with, is not installed)"
        return "torch_xla found no TPU device"
    return "not available on this machine"


def _nvidia_driver() -> bool:
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no driver
        return False
    with contextlib.suppress(Exception):
        pynvml.nvmlShutdown()
    return True


def accelerators() -> pd.DataFrame:
    """List every accelerator device with live memory and utilisation.

    One row per device; accelerator kinds Lightning knows but this machine lacks get one
    row with ``available=False`` and a note saying why.

    Example::

        >>> import jupyter_ext
        >>> df = jupyter_ext.accelerators()
        >>> df.loc[df.accelerator == "cpu", "available"].item()
        True
    """
    rows: list[dict[str, Any]] = []
    for kind, cls in _registry().items():
        ok, reason = _is_available(cls)
        if not ok:
            rows.append(_unavailable_row(kind, cls, reason))
        elif kind == "cpu":
            rows.extend(_cpu_rows())
        elif kind == "cuda":
            rows.extend(_cuda_rows(int(cls.auto_device_count())))
        elif kind == "mps":
            rows.extend(_mps_rows())
        else:
            rows.extend(_generic_rows(kind, cls))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["index"] = df["index"].astype("Int64")
    # Available devices first, CPU leading, so the table reads like a choice.
    order = {"cpu": 0}
    df = df.sort_values(
        ["available", "accelerator", "index"],
        ascending=[False, True, True],
        key=lambda s: s.map(order).fillna(1) if s.name == "accelerator" else s,
    )
    return df.reset_index(drop=True)


def available_kinds() -> list[str]:
    """Accelerator kinds usable on this machine, e.g. ``['cpu']`` or ``['cpu', 'cuda']``."""
    return [kind for kind, cls in _registry().items() if _is_available(cls)[0]]


def unavailable_reason(kind: str) -> str | None:
    """Why ``kind`` (a registered accelerator name) is unavailable here; None if it is
    available or not a name Lightning registers (then Lightning judges it).

    Example::

        >>> unavailable_reason("cpu") is None
        True
    """
    cls = _registry().get(kind)
    if cls is None:
        return None
    ok, reason = _is_available(cls)
    return None if ok else reason
