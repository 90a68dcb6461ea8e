"""The accelerator selection that runs launched from this kernel use by default.

Validation is Lightning's own: the selection is handed to Lightning's accelerator
connector, exactly as ``Trainer(...)`` would, so our rules never drift from Lightning's.
Runs execute in a worker script, not in the notebook, so Lightning's "not compatible
with an interactive environment" refusal (which would reject ``ddp``) is judged as the
worker will see it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .config import get_config

PRECISIONS = ("16-mixed", "bf16-mixed", "32-true", "64-true", "16-true", "bf16-true")


class SelectionError(ValueError):
    """A selection Lightning refuses; the message lists what is available."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """What the next runs use: ``Trainer(accelerator=, devices=, precision=, strategy=)``."""

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    precision: str | None = None
    strategy: str = "auto"

    def trainer_kwargs(self) -> dict[str, Any]:
        """The Trainer arguments this selection stands for (precision left out when unset)."""
        kw: dict[str, Any] = {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "strategy": self.strategy,
        }
        if self.precision is not None:
            kw["precision"] = self.precision
        return kw

    def __str__(self) -> str:
        prec = self.precision or "default"
        return (
            f"accelerator={self.accelerator} devices={self.devices} "
            f"precision={prec} strategy={self.strategy}"
        )


_current: Selection | None = None

log = logging.getLogger(__name__)
# Views that show the selection (every open accelerators panel) register here, so that
# `%accelerator`, `select()` and a panel's own controls can never leave one stale.
_watchers: list[Callable[[], Callable[[Selection], Any] | None]] = []
_watch_lock = threading.Lock()


def watch(callback: Callable[[Selection], Any]) -> Callable[[], None]:
    """Call ``callback(selection)`` whenever this kernel's selection changes
    (:func:`select`, :func:`reset`); returns a function that stops the calls.

    A bound method is held weakly, so a view that is garbage-collected drops out by
    itself. A callback that raises is logged; the selection still changes.

    Example::

        >>> stop = watch(lambda sel: print("now", sel.accelerator))
        >>> _ = select("cpu")  # doctest: +SKIP
        now cpu
        >>> stop()
    """
    if not callable(callback):
        raise TypeError(f"watch() needs a callable, not {callback!r}")
    ref: Callable[[], Callable[[Selection], Any] | None]
    if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
        ref = weakref.WeakMethod(callback)  # type: ignore[arg-type]
    else:
        ref = lambda: callback  # noqa: E731  (a strong reference for plain functions)
    with _watch_lock:
        _watchers.append(ref)

    def unwatch() -> None:
        with _watch_lock:
            if ref in _watchers:
                _watchers.remove(ref)

    return unwatch


def _notify() -> None:
    sel = selection()
    with _watch_lock:
        refs = list(_watchers)
    for ref in refs:
        callback = ref()
        if callback is None:
            with _watch_lock, contextlib.suppress(ValueError):
                _watchers.remove(ref)
            continue
        try:
            callback(sel)
        except Exception:
            log.exception("a view of the accelerator selection failed to update")


def _parse_devices(devices: Any) -> int | str | list[int]:
    if devices is None:
        return "auto"
    if isinstance(devices, bool):
        raise SelectionError(f"devices must be a count, a list of indices or 'auto', not {devices}")
    if isinstance(devices, int):
        return devices
    if isinstance(devices, (list, tuple)):
        return [int(d) for d in devices]
    text = str(devices).strip()
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    if text.lstrip("-").isdigit():
        return int(text)
    if "," in text or text.startswith("["):
        try:
            return [int(p) for p in text.strip("[]").split(",") if p.strip()]
        except ValueError:
            pass
    raise SelectionError(
        f"devices={devices!r} is not understood: give a count (2), a list of indices "
        "('0,1') or 'auto'"
    )


@contextlib.contextmanager
def _as_script() -> Iterator[None]:
    """Judge the selection as the worker (a script, not an interactive session) will."""
    from lightning.pytorch.trainer.connectors import accelerator_connector as ac

    saved = ac._IS_INTERACTIVE
    ac._IS_INTERACTIVE = False
    try:
        yield
    finally:
        ac._IS_INTERACTIVE = saved


def validate(sel: Selection) -> Selection:
    """Check a selection with Lightning's accelerator connector; raise SelectionError if refused.

    Example::

        >>> validate(Selection("cpu", devices=2, precision="bf16-mixed"))  # doctest: +SKIP
        Selection(accelerator='cpu', devices=2, precision='bf16-mixed', strategy='auto')
    """
    from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

    from .devices import available_kinds, unavailable_reason

    reason = unavailable_reason(sel.accelerator)
    if reason is not None:
        # Said in our words: Lightning's refusal would advise installing packages for
        # hardware this machine does not have (`pip install torch_xla` on a laptop).
        raise SelectionError(
            f"{sel.accelerator} is not available here: {reason}.\n"
            f"Available accelerators here: {', '.join(available_kinds())}."
        )
    try:
        with _as_script():
            _AcceleratorConnector(**sel.trainer_kwargs())
    except Exception as exc:  # Lightning raises several types; all mean "refused"
        msg = str(exc).strip()
        avail = ", ".join(available_kinds())
        if "precision" in msg.lower() and "invalid" in msg.lower():
            hint = f"Valid precision values: {', '.join(PRECISIONS)}."
        else:
            hint = f"Available accelerators here: {avail}."
        raise SelectionError(f"Lightning refuses {sel}: {msg}\n{hint}") from None
    return sel


def select(
    accelerator: str = "auto",
    devices: int | str | list[int] | None = None,
    precision: str | int | None = None,
    strategy: str | None = None,
) -> Selection:
    """Choose the accelerator (and devices, precision, strategy) for the runs that follow.

    Refused, with what is available, when Lightning would refuse it.

    Example::

        >>> import jupyter_ext
        >>> jupyter_ext.select("cpu", devices=2, precision="bf16-mixed")  # doctest: +SKIP
        Selection(accelerator='cpu', devices=2, precision='bf16-mixed', strategy='auto')
    """
    global _current
    _current = validate(_make(accelerator, devices, precision, strategy))
    _notify()
    return _current


def _make(accelerator: Any, devices: Any, precision: Any, strategy: Any) -> Selection:
    return Selection(
        accelerator=str(accelerator).strip().lower() or "auto",
        devices=_parse_devices(devices),
        precision=None if precision in (None, "") else str(precision),
        strategy=str(strategy or "auto"),
    )


def resolve(**overrides: Any) -> Selection:
    """The current selection with one run's overrides applied, validated by Lightning.

    The kernel's selection is left as it is: ``train(..., devices=2)`` changes that run only.

    Example::

        >>> jupyter_ext.select("cpu")  # doctest: +SKIP
        >>> resolve(devices=2, strategy="ddp").devices  # doctest: +SKIP
        2
    """
    fields = dataclasses.asdict(selection())
    unknown = set(overrides) - set(fields)
    if unknown:
        raise SelectionError(f"not a selection field: {', '.join(sorted(unknown))}")
    fields.update(overrides)
    return validate(_make(**fields))


def selection() -> Selection:
    """The current selection (the configured default until :func:`select` is called).

    Example::

        >>> import jupyter_ext
        >>> jupyter_ext.selection().accelerator  # doctest: +SKIP
        'auto'
    """
    if _current is not None:
        return _current
    cfg = get_config()
    return Selection(
        accelerator=cfg.accelerator,
        devices=_parse_devices(cfg.devices),
        precision=cfg.precision,
        strategy=cfg.strategy,
    )


def reset() -> None:
    """Forget the kernel's choice and fall back to the configured default."""
    global _current
    _current = None
    _notify()


def device() -> Any:
    """A ``torch.device`` matching the selection, for code running in the kernel itself.

    Example::

        >>> import torch, jupyter_ext
        >>> x = torch.zeros(3, device=jupyter_ext.device())  # doctest: +SKIP
    """
    import torch

    from .devices import available_kinds

    sel = selection()
    kind = sel.accelerator
    if kind in ("auto", "gpu"):
        kinds = available_kinds()
        kind = next((k for k in ("cuda", "mps") if k in kinds), "cpu")
    if kind == "cuda":
        index = sel.devices[0] if isinstance(sel.devices, list) and sel.devices else 0
        return torch.device("cuda", index)
    if kind == "mps":
        return torch.device("mps")
    if kind == "tpu":
        import torch_xla.core.xla_model as xm  # only importable where XLA exists

        return xm.xla_device()
    return torch.device("cpu")
