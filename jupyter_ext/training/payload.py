"""Payloads: the objects a cell defines, serialized for a worker process.

cloudpickle sends classes defined in the notebook by value, so a worker can rebuild a
model whose class exists only in the kernel. When something cannot be pickled, the error
names the attribute path that fails (``model.cache.lock``) before anything is launched.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import cloudpickle


class PayloadError(TypeError):
    """An object of the cell cannot be sent to a worker; the message names which and why."""


def _children(obj: Any) -> list[tuple[str, Any]]:
    """Attribute-path steps to look inside ``obj`` for the unpicklable part."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        out += [(f"[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        out += [(f"[{i}]", v) for i, v in enumerate(obj)]
    else:
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            for k, v in state.items():
                # torch.nn.Module keeps children in _modules/_parameters/_buffers: show
                # them as the attributes users wrote (model.encoder, not model._modules)
                if k in ("_modules", "_parameters", "_buffers") and isinstance(v, dict):
                    out += [(f".{ck}", cv) for ck, cv in v.items()]
                else:
                    out.append((f".{k}", v))
    return out


def _fails(obj: Any) -> Exception | None:
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:
        return exc
    return None


def find_unpicklable(obj: Any, path: str, max_depth: int = 12) -> tuple[str, Exception] | None:
    """The deepest attribute path under ``obj`` that fails to pickle, with its error."""
    exc = _fails(obj)
    if exc is None:
        return None
    seen: set[int] = set()
    current, where, err = obj, path, exc
    for _ in range(max_depth):
        seen.add(id(current))
        for step, child in _children(current):
            if id(child) in seen:
                continue
            child_exc = _fails(child)
            if child_exc is not None:
                current, where, err = child, where + step, child_exc
                break
        else:
            break
    return where, err


def dumps(objects: dict[str, Any]) -> bytes:
    """Serialize the named objects; raise PayloadError naming the failing attribute.

    Example::

        >>> import threading
        >>> class Holder: pass
        >>> h = Holder(); h.lock = threading.Lock()
        >>> dumps({"model": h})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        PayloadError: cannot send `model.lock` to the worker: cannot pickle '_thread.lock' ...
    """
    try:
        return cloudpickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    for name, obj in objects.items():
        found = find_unpicklable(obj, name)
        if found is not None:
            where, err = found
            raise PayloadError(
                f"cannot send `{where}` to the worker: {err}. Objects a run needs are "
                "pickled with cloudpickle; create this attribute inside the model's hooks "
                "(e.g. setup()), or exclude it from pickling (__getstate__)."
            ) from None
    raise PayloadError("the payload cannot be pickled (no single object fails alone)")


def write(path: Path, data: bytes) -> int:
    """Write a payload made by :func:`dumps` atomically; returns its size in bytes.

    Example::

        >>> write(run_dir / "payload.pkl", dumps({"model": model}))  # doctest: +SKIP
        18234
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a worker never sees a half-written payload
    return len(data)


def load(path: Path) -> dict[str, Any]:
    """Load a payload written by :func:`write`. Only ever called on our own workspace."""
    with open(path, "rb") as fh:
        return pickle.load(io.BufferedReader(fh))
