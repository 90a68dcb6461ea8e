"""The run monitor: what a ``Run`` displays as.

It polls the store, never the worker: each refresh reads the run's row and only the
metric chunks newer than the last one seen, and touches a widget only when its content
changed. Charts are drawn in the browser (:class:`LiveChart` is fed only new points), so
the kernel stays nearly idle while a run trains. Polling stops when the run has ended or
the monitor is closed.
"""

from __future__ import annotations

import html
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ..config import get_config
from ..metric_names import panel_of
from ..poller import POLLER
from ..procs import log_tail
from ..store import TERMINAL, RunRecord
from ..training.frames import log_interval_note, progress_of
from .chart import LiveChart

if TYPE_CHECKING:
    from ..training.run import Run

_COLORS = {
    "queued": "#888",
    "running": "#1565c0",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "stopped": "#ef6c00",
    "lost": "#6a1b9a",
}
LOG_TAIL_LINES = 15

__all__ = ["RunMonitor", "panel_of"]


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunMonitor(W.VBox):
    """Live view of one run: status, progress and ETA, charts, latest values, log tail,
    worker load and a Stop button.

    Example::

        >>> mon = RunMonitor(jupyter_ext.get_run("baseline"))  # doctest: +SKIP
        >>> mon.chart.data.tail()  # doctest: +SKIP
    """

    def __init__(self, run: Run, refresh_s: float | None = None, **kwargs: Any) -> None:
        self.run = run
        self._store = run._store
        self._lock = threading.Lock()
        self._last_chunk = 0
        self._latest: dict[str, float] = {}
        self._log_state: tuple[int, float] | None = None
        self.closed = False
        self.header = W.HTML()
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="50%"))
        self.bar_label = W.HTML()
        self.chart = LiveChart(x_label="step")
        self.table = W.HTML()
        self.system = W.HTML()
        self.error = W.HTML()
        self.log_view = W.HTML()
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _b: self.request_stop())
        super().__init__(
            children=[
                W.HBox([self.header, self.stop_button]),
                W.HBox([self.bar, self.bar_label]),
                self.chart,
                W.HBox([self.table, self.system]),
                self.error,
                W.Accordion(children=[self.log_view], titles=("Log",)),
            ],
            **kwargs,
        )
        self.updates = 0  # refreshes that changed something (tests and benchmarks read it)
        live = self.refresh()
        interval = refresh_s if refresh_s is not None else get_config().monitor_refresh_s
        self._task = POLLER.every(interval, self, RunMonitor.refresh) if live else None

    # -- polling ------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read what is new in the store and redraw what changed. False once the run ended."""
        with self._lock:
            if self.closed:
                return False
            row = self.run.row
            series, last = self._store.read_metrics(self.run.id, after=self._last_chunk)
            changed = False
            if series:
                self._last_chunk = last
                points = {}
                for key, s in series.items():
                    if key not in self._latest:
                        self.chart.set_series(key, panel=panel_of(key), label=key)
                    points[key] = (s.step, s.value)
                    self._latest[key] = float(s.value[-1])
                self.chart.append(points)
                changed |= self._set(self.table, self._table_html())
            changed |= self._set(self.header, self._header_html(row))
            changed |= self._progress(row)
            changed |= self._set(self.system, self._system_html(row))
            changed |= self._logs(row)
            if row.status in TERMINAL:
                changed |= self._set(self.error, self._error_html(row))
                self.stop_button.disabled = True
                self.stop_button.description = "Stopped" if row.status == "stopped" else "Stop"
            if changed:
                self.updates += 1
            return row.status not in TERMINAL

    @staticmethod
    def _set(widget: W.HTML, value: str) -> bool:
        if widget.value == value:
            return False
        widget.value = value
        return True

    def _header_html(self, row: RunRecord) -> str:
        color = _COLORS.get(row.status, "#333")
        exp = html.escape(row.experiment)
        note = log_interval_note(row)
        if note:
            note = f"<br><span style='color:#666;font-size:90%'>{html.escape(note)}</span>"
        return (
            f"<b>{html.escape(row.name)}</b> <code>{row.id}</code> "
            f"<span style='color:{color};font-weight:bold'>{row.status}</span> "
            f"<span style='color:#666'>experiment {exp} &middot; {row.accelerator} "
            f"&times;{row.devices}</span>{note}"
        )

    def _progress(self, row: RunRecord) -> bool:
        p = progress_of(row)
        frac = p["fraction"] or 0.0
        if abs(self.bar.value - frac) > 1e-9:
            self.bar.value = frac
        color = {"failed": "danger", "lost": "danger", "stopped": "warning", "succeeded": "success"}
        style = color.get(row.status, "info")
        if self.bar.bar_style != style:
            self.bar.bar_style = style
        if p["step"] is None:
            text = "starting..." if row.status in ("queued", "running") else ""
        else:
            total = f"/{p['total_steps']}" if p["total_steps"] else ""
            text = f"epoch {p['epoch']} &middot; step {p['step']}{total}"
            if row.status == "running":
                text += f" &middot; ETA {_fmt_s(p['eta_s'])}"
            started, ended = row.started, row.ended or time.time()
            if started:
                text += f" &middot; elapsed {_fmt_s(ended - started)}"
        return self._set(self.bar_label, text)

    def _table_html(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{v:.5g}</td></tr>"
            for k, v in sorted(self._latest.items())
        )
        return f"<table><tr><th>metric</th><th>latest</th></tr>{cells}</table>"

    @staticmethod
    def _system_html(row: RunRecord) -> str:
        if row.status != "running" or row.cpu_pct is None:
            return ""
        parts = [f"CPU {row.cpu_pct:.0f}%", f"RAM {row.rss_mb or 0:.0f} MiB"]
        if row.gpu_mem_mb is not None:
            parts.append(f"GPU mem {row.gpu_mem_mb:.0f} MiB")
        return "<span style='color:#666'>worker: " + " &middot; ".join(parts) + "</span>"

    @staticmethod
    def _error_html(row: RunRecord) -> str:
        if not row.error:
            return ""
        return (
            "<details open><summary style='color:#c62828'><b>"
            + html.escape(row.status)
            + "</b></summary><pre style='white-space:pre-wrap'>"
            + html.escape(row.error)
            + "</pre></details>"
        )

    def _logs(self, row: RunRecord) -> bool:
        path = os.path.join(row.run_dir or "", "worker.log")
        try:
            st = os.stat(path)
        except OSError:
            return False
        state = (st.st_size, st.st_mtime)
        if state == self._log_state:
            return False
        self._log_state = state
        return self._set(
            self.log_view, f"<pre>{html.escape(log_tail(path, LOG_TAIL_LINES, 16384))}</pre>"
        )

    # -- actions ------------------------------------------------------------------------
    def request_stop(self) -> None:
        """What the Stop button does: ask the worker to stop at its next step."""
        self.run.stop(wait=False)
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping..."

    @property
    def polling(self) -> bool:
        return self._task is not None and not self._task.cancelled and not self.closed

    def close(self) -> None:
        with self._lock:
            self.closed = True
        if self._task is not None:
            self._task.cancel()
        self.chart.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        latest = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self._latest.items()))
        bundle["text/plain"] = repr(self.run) + (f"\n{latest}" if latest else "")
        return bundle
