"""The accelerators panel: a live device table and controls that set the selection."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as W
import pandas as pd
from traitlets import Unicode

from .. import selector as sel_mod
from ..config import get_config
from ..devices import accelerators
from ..poller import POLLER

_STRATEGIES = ["auto", "ddp", "ddp_spawn", "ddp_notebook", "fsdp", "deepspeed", "single_device"]


def _fmt_table(df: pd.DataFrame) -> str:
    view = df.copy()
    for col in ("memory_total_mb", "memory_used_mb"):
        view[col] = view[col].map(lambda v: "" if pd.isna(v) else f"{v / 1024:.1f} GiB")
    view["utilization_pct"] = view["utilization_pct"].map(
        lambda v: "" if pd.isna(v) else f"{v:.0f}%"
    )
    view["index"] = view["index"].astype(object).where(view["index"].notna(), "")
    view = view.rename(
        columns={
            "memory_total_mb": "memory",
            "memory_used_mb": "used",
            "utilization_pct": "load",
        }
    )
    return view.to_html(index=False, classes="jupyter-ext-table", border=0)


class AcceleratorsPanel(W.VBox):
    """Live device table plus accelerator/devices/precision/strategy controls.

    Applying the controls calls :func:`jupyter_ext.select`; Lightning's refusal shows
    inline in ``message``. The table refreshes every ``ToolkitConfig.panel_refresh_s``
    seconds until the panel is closed.

    Example::

        >>> panel = AcceleratorsPanel()  # doctest: +SKIP
        >>> panel.accelerator.value = "cpu"; panel.apply.click()  # doctest: +SKIP
        >>> panel.close()  # doctest: +SKIP
    """

    table_text = Unicode(help="The device table as plain text (what text front ends show).")

    def __init__(self, refresh_s: float | None = None, **kwargs: Any) -> None:
        from lightning.pytorch.accelerators import AcceleratorRegistry

        self._lock = threading.Lock()
        self.table = W.HTML()
        current = sel_mod.selection()
        kinds = ["auto", *sorted(AcceleratorRegistry.available_accelerators())]
        self.accelerator = W.Dropdown(
            options=kinds,
            value=current.accelerator if current.accelerator in kinds else "auto",
            description="accelerator",
        )
        self.devices = W.Text(value=str(current.devices), description="devices")
        self.precision = W.Dropdown(
            options=["default", *sel_mod.PRECISIONS],
            value=current.precision if current.precision in sel_mod.PRECISIONS else "default",
            description="precision",
        )
        self.strategy = W.Combobox(
            options=_STRATEGIES, value=current.strategy, description="strategy", ensure_option=False
        )
        self.apply = W.Button(description="Use for next runs", button_style="primary")
        self.message = W.HTML(value=self._selection_html(current))
        self.apply.on_click(lambda _b: self.apply_selection())
        controls = W.HBox([self.accelerator, self.devices, self.precision, self.strategy])
        super().__init__(
            children=[self.table, controls, W.HBox([self.apply]), self.message], **kwargs
        )
        self.refresh()
        interval = refresh_s if refresh_s is not None else get_config().panel_refresh_s
        self._task = POLLER.every(interval, self, AcceleratorsPanel.refresh)

    @staticmethod
    def _selection_html(sel: sel_mod.Selection) -> str:
        return f"<b>Selection for next runs:</b> <code>{sel}</code>"

    def refresh(self) -> None:
        """Re-read the devices and redraw the table (called by the poller)."""
        df = accelerators()
        html = _fmt_table(df)
        with self._lock:
            if html != self.table.value:
                self.table.value = html
            self.table_text = df.to_string(index=False)

    def apply_selection(self) -> sel_mod.Selection | None:
        """Select what the controls say; show the selection, or Lightning's refusal."""
        precision = None if self.precision.value == "default" else self.precision.value
        try:
            chosen = sel_mod.select(
                self.accelerator.value,
                devices=self.devices.value,
                precision=precision,
                strategy=self.strategy.value or "auto",
            )
        except sel_mod.SelectionError as exc:
            text = str(exc).replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br>")
            self.message.value = f"<span style='color:#b00'><b>Refused.</b> {text}</span>"
            return None
        self.message.value = self._selection_html(chosen)
        return chosen

    @property
    def refreshing(self) -> bool:
        """Whether the table is still being refreshed."""
        return not self._task.cancelled

    def close(self) -> None:
        self._task.cancel()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = f"{self.table_text}\n{sel_mod.selection()}"
        return bundle
