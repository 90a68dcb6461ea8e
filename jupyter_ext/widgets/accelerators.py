"""The accelerators panel: a card per device with live memory and load bars, the kinds
this machine lacks folded away with the reason, and controls that set the selection.

The panel is shown at once and filled from a background thread, because the first look
at the devices imports torch and Lightning (seconds). It follows the kernel's selection
through :func:`jupyter_ext.selector.watch`, so ``%accelerator cpu`` updates every open
panel. Nothing here imports torch, Lightning or pandas before the loader thread does.
"""

from __future__ import annotations

import html
import logging
import math
import threading
import traceback
from collections.abc import Iterable
from typing import Any

import ipywidgets as W
from traitlets import Unicode

from .. import selector as sel_mod
from ..config import get_config
from ..poller import POLLER

log = logging.getLogger(__name__)

LOADING = "Loading accelerators… (importing torch)"
_STRATEGIES = ["auto", "ddp", "ddp_spawn", "ddp_notebook", "fsdp", "deepspeed", "single_device"]
# Lightning's own order for accelerator="auto" / "gpu", so the card it would pick is marked.
_AUTO_ORDER = ("tpu", "mps", "cuda")
_GPU_ORDER = ("mps", "cuda")
_BAR_CHARS = 20

_CARD_STYLE = (
    "border:1px solid var(--jp-border-color2,#ccc);border-radius:6px;padding:8px 12px;"
    "min-width:260px;max-width:360px;flex:1 1 280px;"
    "background:var(--jp-layout-color1,#fff);color:var(--jp-ui-font-color1,#222)"
)
_SELECTED_STYLE = "border:2px solid var(--jp-brand-color1,#1976d2);padding:7px 11px"


def _fmt_mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def _num(value: Any) -> float | None:
    """A finite float, or None for NaN / NA / missing (pandas gives all three)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _bar_color(pct: float) -> str:
    if pct >= 90:
        return "var(--jp-error-color1,#d32f2f)"
    if pct >= 70:
        return "var(--jp-warn-color1,#f57c00)"
    return "var(--jp-success-color1,#388e3c)"


def _bar_html(label: str, pct: float | None, text: str, kind: str) -> str:
    """One labelled bar; ``pct`` None draws an empty track (value not known here)."""
    width = 0.0 if pct is None else max(0.0, min(100.0, pct))
    fill = (
        f"<div class='jx-acc-bar-fill' style='width:{width:.1f}%;height:100%;"
        f"border-radius:4px;background:{_bar_color(width)}'></div>"
    )
    return (
        f"<div class='jx-acc-metric' data-metric='{kind}' style='margin-top:6px'>"
        "<div style='display:flex;justify-content:space-between;font-size:12px'>"
        f"<span>{html.escape(label)}</span>"
        f"<span class='jx-acc-value' style='font-variant-numeric:tabular-nums'>"
        f"{html.escape(text)}</span></div>"
        "<div class='jx-acc-bar' style='height:8px;border-radius:4px;margin-top:2px;"
        f"background:var(--jp-layout-color3,#e0e0e0)'>{fill}</div></div>"
    )


def _memory(row: dict[str, Any]) -> tuple[float | None, str]:
    used, total = _num(row.get("memory_used_mb")), _num(row.get("memory_total_mb"))
    if used is None or total is None or total <= 0:
        return None, "not reported"
    pct = 100.0 * used / total
    return pct, f"{_fmt_mb(used)} / {_fmt_mb(total)} ({pct:.0f} %)"


def _load(row: dict[str, Any]) -> tuple[float | None, str]:
    util = _num(row.get("utilization_pct"))
    if util is None:
        return None, "not reported"
    return util, f"{util:.0f} %"


def _chosen_kind(sel: sel_mod.Selection, kinds: Iterable[str]) -> str:
    """The kind Lightning would use for this selection (``auto``/``gpu`` resolved)."""
    have = set(kinds)
    if sel.accelerator == "auto":
        return next((k for k in _AUTO_ORDER if k in have), "cpu")
    if sel.accelerator == "gpu":
        return next((k for k in _GPU_ORDER if k in have), "gpu")
    return sel.accelerator


def _is_selected(row: dict[str, Any], sel: sel_mod.Selection, kind: str) -> bool:
    if row["accelerator"] != kind:
        return False
    if kind == "cpu":
        return True  # CPU "devices" are processes on the one CPU
    index = int(row["index"])
    devices = sel.devices
    if isinstance(devices, list):
        return index in devices
    if isinstance(devices, int) and devices >= 0:
        return index < devices
    return True  # "auto" / -1: every device of the kind


def cards_html(rows: list[dict[str, Any]], sel: sel_mod.Selection) -> str:
    """The device cards (available devices only) as HTML, the selected ones marked.

    Example::

        >>> rows = [{"accelerator": "cpu", "index": 0, "name": "EPYC", "available": True,
        ...          "memory_total_mb": 8192.0, "memory_used_mb": 2048.0,
        ...          "utilization_pct": 12.0, "note": ""}]
        >>> "2.0 GiB / 8.0 GiB (25 %)" in cards_html(rows, sel_mod.Selection("cpu"))
        True
    """
    available = [r for r in rows if r["available"]]
    kind = _chosen_kind(sel, {r["accelerator"] for r in available})
    cards = []
    for row in available:
        selected = _is_selected(row, sel, kind)
        mem_pct, mem_text = _memory(row)
        util_pct, util_text = _load(row)
        is_cpu = row["accelerator"] == "cpu"
        badge = (
            "<span class='jx-acc-selected' style='float:right;font-size:11px;padding:1px 6px;"
            "border-radius:8px;background:var(--jp-brand-color1,#1976d2);color:#fff'>"
            f"{'auto → ' if sel.accelerator in ('auto', 'gpu') else ''}selected</span>"
            if selected
            else ""
        )
        note = (
            f"<div class='jx-acc-note' style='font-size:11px;opacity:.75;margin-top:4px'>"
            f"{html.escape(str(row['note']))}</div>"
            if row.get("note")
            else ""
        )
        cards.append(
            f"<div class='jx-acc-card{' jx-acc-card-selected' if selected else ''}' "
            f"data-kind='{html.escape(str(row['accelerator']))}' data-index='{row['index']}' "
            f"style='{_CARD_STYLE};{_SELECTED_STYLE if selected else ''}'>"
            f"{badge}<div style='font-size:11px;text-transform:uppercase;opacity:.7'>"
            f"{html.escape(str(row['accelerator']))} · {row['index']}</div>"
            f"<div class='jx-acc-name' style='font-weight:600'>{html.escape(str(row['name']))}"
            "</div>"
            + _bar_html("RAM" if is_cpu else "memory", mem_pct, mem_text, "memory")
            + _bar_html("CPU load" if is_cpu else "utilisation", util_pct, util_text, "load")
            + note
            + "</div>"
        )
    return (
        "<div class='jx-acc-cards' style='display:flex;flex-wrap:wrap;gap:8px'>"
        + "".join(cards)
        + "</div>"
    )


def unavailable_html(rows: list[dict[str, Any]]) -> str:
    """The kinds this machine lacks, folded in a ``<details>``, each with its reason.

    Example::

        >>> row = {"accelerator": "tpu", "name": "Google TPU (XLA)", "available": False,
        ...        "note": "no torch_xla installed"}
        >>> "no torch_xla installed" in unavailable_html([row])
        True
    """
    missing = [r for r in rows if not r["available"]]
    if not missing:
        return ""
    items = "".join(
        f"<li class='jx-acc-missing' data-kind='{html.escape(str(r['accelerator']))}'>"
        f"<b>{html.escape(str(r['name']))}</b> <code>{html.escape(str(r['accelerator']))}</code>"
        f": <span class='jx-acc-reason'>{html.escape(str(r['note']))}</span></li>"
        for r in missing
    )
    kinds = ", ".join(html.escape(str(r["accelerator"])) for r in missing)
    return (
        "<details class='jx-acc-unavailable' style='margin-top:4px'>"
        f"<summary style='cursor:pointer'>Not available here: {kinds}</summary>"
        f"<ul style='margin:4px 0 0 0'>{items}</ul></details>"
    )


def _text_bar(pct: float | None) -> str:
    if pct is None:
        return "[" + " " * _BAR_CHARS + "]"
    filled = round(max(0.0, min(100.0, pct)) / 100 * _BAR_CHARS)
    return "[" + "#" * filled + "." * (_BAR_CHARS - filled) + "]"


def panel_text(rows: list[dict[str, Any]], sel: sel_mod.Selection) -> str:
    """What a text front end shows: one block per device, then the missing kinds.

    Example::

        >>> row = {"accelerator": "cpu", "index": 0, "name": "EPYC", "available": True,
        ...        "memory_total_mb": 8192.0, "memory_used_mb": 2048.0,
        ...        "utilization_pct": 12.0, "note": ""}
        >>> print(panel_text([row], sel_mod.Selection("cpu")).splitlines()[1])
        cpu:0  EPYC  (selected)
    """
    available = [r for r in rows if r["available"]]
    kind = _chosen_kind(sel, {r["accelerator"] for r in available})
    lines = ["Accelerators"]
    for row in available:
        auto = "auto → " if sel.accelerator in ("auto", "gpu") else ""
        mark = f"  ({auto}selected)" if _is_selected(row, sel, kind) else ""
        mem_pct, mem_text = _memory(row)
        util_pct, util_text = _load(row)
        is_cpu = row["accelerator"] == "cpu"
        lines.append(f"{row['accelerator']}:{row['index']}  {row['name']}{mark}")
        lines.append(f"  {'RAM' if is_cpu else 'memory':<11} {_text_bar(mem_pct)} {mem_text}")
        lines.append(f"  {'CPU load' if is_cpu else 'utilisation':<11} {_text_bar(util_pct)} "
                     f"{util_text}")  # fmt: skip
    missing = [r for r in rows if not r["available"]]
    if missing:
        lines.append("Not available here:")
        width = max(len(str(r["accelerator"])) for r in missing)
        lines += [f"  {r['accelerator']!s:<{width}}  {r['note']}" for r in missing]
    lines.append(f"Selection for next runs: {sel}")
    return "\n".join(lines)


def _selection_html(sel: sel_mod.Selection) -> str:
    return f"<b>Selection for next runs:</b> <code class='jx-acc-selection'>{sel}</code>"


class AcceleratorsPanel(W.VBox):
    """Device cards with live memory and load bars, the missing kinds with reasons, and
    accelerator/devices/precision/strategy controls that set the kernel's selection.

    Shown at once with a loading line; a background thread imports torch and fills it,
    then the cards refresh every ``ToolkitConfig.panel_refresh_s`` seconds until the
    panel is closed. The selection line follows ``%accelerator`` and
    :func:`jupyter_ext.select` live. Applying the controls calls
    :func:`jupyter_ext.select`; Lightning's refusal shows inline in ``message``.

    Example::

        >>> panel = AcceleratorsPanel()  # doctest: +SKIP
        >>> panel.wait_loaded(60)  # doctest: +SKIP
        True
        >>> panel.accelerator.value = "cpu"; panel.apply.click()  # doctest: +SKIP
        >>> panel.close()  # doctest: +SKIP
    """

    table_text = Unicode(help="The panel as plain text (what text front ends show).")

    def __init__(self, refresh_s: float | None = None, **kwargs: Any) -> None:
        if refresh_s is not None and not refresh_s > 0:
            raise ValueError(f"refresh_s must be a positive number of seconds, not {refresh_s!r}")
        self._lock = threading.RLock()
        self._rows: list[dict[str, Any]] = []
        self._task: Any = None
        self._closed = False
        self._refresh_s = refresh_s if refresh_s is not None else get_config().panel_refresh_s
        self.loaded = threading.Event()
        self.load_error: BaseException | None = None

        current = sel_mod.selection()
        self.status = W.HTML(
            value=f"<span class='jx-acc-loading' style='opacity:.8'>{LOADING}</span>"
        )
        self.cards = W.HTML()
        self.unavailable = W.HTML()
        # Options need Lightning's registry; until it is loaded only the current choice
        # is offered and the controls are disabled.
        self.accelerator = W.Dropdown(
            options=sorted({"auto", current.accelerator}),
            value=current.accelerator,
            description="accelerator",
            disabled=True,
        )
        self.devices = W.Text(value=str(current.devices), description="devices", disabled=True)
        self.precision = W.Dropdown(
            options=["default", *sel_mod.PRECISIONS],
            value="default",
            description="precision",
            disabled=True,
        )
        self.strategy = W.Combobox(
            options=_STRATEGIES,
            value=current.strategy,
            description="strategy",
            ensure_option=False,
            disabled=True,
        )
        self.apply = W.Button(
            description="Use for next runs", button_style="primary", disabled=True
        )
        self.selection_line = W.HTML(value=_selection_html(current))
        self.message = W.HTML()
        self.apply.on_click(lambda _b: self.apply_selection())
        self._show_selection(current)
        controls = W.HBox([self.accelerator, self.devices, self.precision, self.strategy])
        super().__init__(
            children=[
                self.status,
                self.cards,
                self.unavailable,
                controls,
                W.HBox([self.apply]),
                self.selection_line,
                self.message,
            ],
            **kwargs,
        )
        self.add_class("jx-accelerators")
        self.table_text = LOADING
        self._unwatch = sel_mod.watch(self._on_selection)
        self._loader = threading.Thread(
            target=self._load, name="jupyter-ext-accelerators-load", daemon=True
        )
        self._loader.start()

    # -- loading and refreshing -------------------------------------------------------
    def _load(self) -> None:
        try:
            from lightning.pytorch.accelerators import AcceleratorRegistry

            from ..devices import accelerators

            kinds = ["auto", *sorted(AcceleratorRegistry.available_accelerators())]
            rows = accelerators().astype(object).to_dict("records")
            with self._lock:
                if self._closed:
                    return
                current = sel_mod.selection()
                if current.accelerator not in kinds:
                    kinds.append(current.accelerator)  # e.g. "gpu", an alias Lightning accepts
                self.accelerator.options = kinds
                self._show_selection(current)
                for control in (self.accelerator, self.devices, self.precision, self.strategy):
                    control.disabled = False
                self.apply.disabled = False
                self.status.value = ""
                self._draw(rows)
                self._task = POLLER.every(self._refresh_s, self, AcceleratorsPanel.refresh)
        except Exception as exc:
            self.load_error = exc
            self._show_error("Could not load the accelerators", exc)
        finally:
            self.loaded.set()  # also on failure: whoever waits must not wait forever

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the first look at the devices is done (or failed; see
        ``load_error``); False if ``timeout`` seconds passed first.

        Example::

            >>> AcceleratorsPanel().wait_loaded(60)  # doctest: +SKIP
            True
        """
        return self.loaded.wait(timeout)

    def refresh(self) -> bool:
        """Re-read the devices and redraw the cards (called by the poller); False, with
        the error shown in the panel, stops the refreshing."""
        from ..devices import accelerators

        try:
            rows = accelerators().astype(object).to_dict("records")
            with self._lock:
                if self._closed:
                    return False
                self._draw(rows)
        except Exception as exc:
            self._show_error("Refreshing stopped", exc)
            return False
        return True

    def _draw(self, rows: list[dict[str, Any]]) -> None:
        """Redraw from ``rows``; each widget is touched only when its content changed
        (the folded list keeps its open/closed state across refreshes)."""
        self._rows = rows
        sel = sel_mod.selection()
        for widget, value in (
            (self.cards, cards_html(rows, sel)),
            (self.unavailable, unavailable_html(rows)),
        ):
            if widget.value != value:
                widget.value = value
        self.table_text = panel_text(rows, sel)

    def _show_error(self, what: str, exc: BaseException) -> None:
        # Shown in the panel (and its text), with the traceback one click away: an error
        # on a background thread would otherwise be seen by nobody.
        log.error("%s: %s", what, exc, exc_info=exc)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.status.value = (
            "<div class='jx-acc-error' style='color:var(--jp-error-color1,#b00)'>"
            f"<b>{html.escape(what)}:</b> {html.escape(type(exc).__name__)}: "
            f"{html.escape(str(exc))}<details><summary>traceback</summary>"
            f"<pre style='font-size:11px'>{html.escape(tb)}</pre></details></div>"
        )
        self.table_text = f"{what}: {type(exc).__name__}: {exc}"

    # -- the selection ----------------------------------------------------------------
    def _show_selection(self, sel: sel_mod.Selection) -> None:
        """Put ``sel`` into the selection line and the controls."""
        self.selection_line.value = _selection_html(sel)
        if sel.accelerator not in self.accelerator.options:
            self.accelerator.options = [*self.accelerator.options, sel.accelerator]
        self.accelerator.value = sel.accelerator
        self.devices.value = (
            ",".join(map(str, sel.devices)) if isinstance(sel.devices, list) else str(sel.devices)
        )
        precision = sel.precision or "default"
        if precision not in self.precision.options:
            self.precision.options = [*self.precision.options, precision]
        self.precision.value = precision
        self.strategy.value = sel.strategy

    def _on_selection(self, sel: sel_mod.Selection) -> None:
        with self._lock:
            if self._closed:
                return
            self._show_selection(sel)
            self.message.value = ""  # a refusal shown earlier no longer applies
            if self.loaded.is_set() and self.load_error is None:
                self._draw(self._rows)

    def apply_selection(self) -> sel_mod.Selection | None:
        """Select what the controls say; the selection line follows, or Lightning's
        refusal is shown in ``message`` and the selection stays as it was."""
        precision = None if self.precision.value == "default" else self.precision.value
        try:
            chosen = sel_mod.select(
                self.accelerator.value,
                devices=self.devices.value,
                precision=precision,
                strategy=self.strategy.value or "auto",
            )
        except sel_mod.SelectionError as exc:
            text = html.escape(str(exc)).replace("\n", "<br>")
            self.message.value = (
                f"<span style='color:var(--jp-error-color1,#b00)'><b>Refused.</b> {text}</span>"
            )
            return None
        return chosen

    # -- lifecycle and display --------------------------------------------------------
    @property
    def refreshing(self) -> bool:
        """Whether the cards are still being refreshed."""
        return self._task is not None and not self._task.cancelled

    def close(self) -> None:
        """Stop refreshing and following the selection, and close the widgets."""
        # getattr: ipywidgets also calls close() from __del__, after a refused __init__.
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:
                self._closed = True
                if self._task is not None:
                    self._task.cancel()
        unwatch = getattr(self, "_unwatch", None)
        if unwatch is not None:
            unwatch()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        with self._lock:
            if self.loaded.is_set() and self.load_error is None:
                sel = sel_mod.selection()
                bundle["text/plain"] = panel_text(self._rows, sel)
                # A static copy for front ends without widgets (nbconvert's HTML export).
                bundle["text/html"] = (
                    cards_html(self._rows, sel)
                    + unavailable_html(self._rows)
                    + f"<p>{_selection_html(sel)}</p>"
                )
            else:
                bundle["text/plain"] = f"{self.table_text}\nSelection for next runs: " + str(
                    sel_mod.selection()
                )
        return bundle
