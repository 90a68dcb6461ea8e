"""Accelerator discovery: every device Lightning and torch know of, with live load.

Kinds come from Lightning's accelerator registry (cpu, cuda, mps, tpu and anything a
plugin registers); availability and device counts from each Lightning accelerator class;
names and memory from torch, NVIDIA memory and utilisation from NVML (nvidia-ml-py),
and CPU/RAM from psutil.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
import time
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


# One CPU-load sampler for the process. psutil.cpu_percent(interval=None) keeps its last
# reading per thread, so the first call on each thread (a panel's loader, the poller, a
# server handler) reads 0 %; readings here are shared by every caller and thread.
_CPU_MIN_WINDOW_S = 0.5
_cpu_lock = threading.Lock()
_cpu_last: tuple[float, float, float, float] | None = None  # (when, busy, total, pct)


def _busy_total() -> tuple[float, float]:
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    # iowait is time the CPU waited doing nothing: idle, as psutil counts it too.
    return total - t.idle - getattr(t, "iowait", 0.0), total


def cpu_load() -> float:
    """System-wide CPU load in % since the previous reading, from any thread; readings
    closer than half a second return the previous figure. The very first one measures
    over 0.1 s.

    Example::

        >>> 0.0 <= cpu_load() <= 100.0
        True
    """
    global _cpu_last
    with _cpu_lock:
        now = time.monotonic()
        if _cpu_last is None:
            busy0, total0 = _busy_total()
            time.sleep(0.1)  # a first window to measure over; once per process
            now = time.monotonic()
        elif now - _cpu_last[0] < _CPU_MIN_WINDOW_S:
            return _cpu_last[3]
        else:
            _, busy0, total0, _ = _cpu_last
        busy, total = _busy_total()
        d_total = total - total0
        pct = 100.0 * (busy - busy0) / d_total if d_total > 0 else 0.0
        pct = round(max(0.0, min(100.0, pct)), 1)
        _cpu_last = (now, busy, total, pct)
        return pct


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
            "utilization_pct": cpu_load(),
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


# What each kind is, in words a person knows (class names like XLAAccelerator are not).
_TITLES = {
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "gpu": "GPU",
    "mps": "Apple GPU (MPS)",
    "tpu": "Google TPU (XLA)",
    "xla": "Google TPU (XLA)",
}


def kind_title(kind: str, cls: type | None = None) -> str:
    """What an accelerator kind is, in plain words; a plugin's kind falls back to its
    class name without the ``Accelerator`` suffix.

    Example::

        >>> kind_title("tpu")
        'Google TPU (XLA)'
    """
    if kind in _TITLES:
        return _TITLES[kind]
    name = cls.__name__ if cls is not None else kind
    return name.removesuffix("Accelerator") or name


def _unavailable_row(kind: str, cls: type, reason: str) -> dict[str, Any]:
    return {
        "accelerator": kind,
        "index": pd.NA,
        "name": kind_title(kind, cls),
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
    """Why an accelerator kind cannot be used here, in plain words: what is missing on
    this machine, never install advice for hardware it does not have.

    Example::

        >>> why_unavailable("mps") if platform.system() == "Linux" else "skip"
        'Apple MPS exists only on macOS, not on Linux'
    """
    import importlib.util

    if kind == "cuda":
        import torch

        cpu_only = torch.version.cuda is None and getattr(torch.version, "hip", None) is None
        if not _nvidia_driver():
            # Both facts matter: a CUDA build of torch would not help without a driver.
            return "no NVIDIA driver on this machine" + (
                " (and this torch is a CPU-only build)" if cpu_only else ""
            )
        if cpu_only:
            return "CUDA build of torch missing: the installed torch is CPU-only"
        return "torch sees no CUDA device (check CUDA_VISIBLE_DEVICES)"
    if kind == "mps":
        if platform.system() != "Darwin":
            return f"Apple MPS exists only on macOS, not on {platform.system() or 'this OS'}"
        return "torch was built without MPS support, or this Mac has no Apple GPU"
    if kind in ("tpu", "xla"):
        if importlib.util.find_spec("torch_xla") is None:
            return "no torch_xla installed (TPU machines come with it)"
        return "torch_xla found no TPU device"
    return "not available on this machine"


def _nvidia_driver() -> bool:
    """Whether an NVIDIA driver is loaded: NVML answers, or (without nvidia-ml-py) the
    kernel module or the driver's library is there."""
    try:
        import pynvml
    except ImportError:
        if os.path.exists("/proc/driver/nvidia/version"):
            return True
        try:
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            return False
        return True
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
