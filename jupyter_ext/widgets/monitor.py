"""The run monitor: what a ``Run`` displays as.

It polls the store, never the worker: each refresh reads the run's row and only the
metric chunks newer than the last one seen, and touches a widget only when its content
changed. Charts are drawn in the browser (:class:`LiveChart` is fed only new points), so
the kernel stays nearly idle while a run trains. Polling stops when the run has ended or
the monitor is closed.

What it says comes from pure functions tested on their own: the progress line and the
final state from :mod:`..training.frames`, a failure's shape from
:mod:`..training.tracebacks`, each metric's colour from :mod:`..metric_names`, a
fine-tune's sample generations from :func:`samples_html`.
"""

from __future__ import annotations

import html
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import numpy as np

from ..axes import X_AXES, X_FORMAT
from ..config import get_config
from ..metric_names import metric_color, panel_of
from ..poller import POLLER
from ..procs import log_tail
from ..sample_texts import prompt_outputs
from ..store import TERMINAL, RunRecord
from ..training.frames import log_interval_note, progress_of, progress_text, without_ads
from ..training.tracebacks import render_html, render_text, shape_stored
from .chart import LiveChart
from .restart import mark_view, restart_hint

ENDED = "jupyter-ext-ended"
"""DOM class of a monitor whose run has ended (what is saved as its final state)."""

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
SAMPLE_CHARS = 600
"""Longest sample output shown in full; longer ones are cut, the whole text on hover."""

__all__ = ["RunMonitor", "notices_html", "panel_of", "samples_html"]


def _code_spans(text: str) -> str:
    """Escape ``text`` for HTML, showing `backticked` parts as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def notices_html(notices: list[dict[str, Any]] | None) -> str:
    """Lightning's warnings as short notices (the full warning on hover).

    Example::

        >>> "few workers" in notices_html([{"kind": "dataloader", "text": "few workers",
        ...                                   "message": "The 'train_dataloader' ..."}])
        True
    """
    if not notices:
        return ""
    rows = []
    for n in notices:
        count = f" <span style='color:#888'>(&times;{n['count']})</span>" if n.get("count") else ""
        rows.append(
            f"<div class='jx-notice' title='{html.escape(str(n.get('message', '')))}' "
            "style='background:#fff8e1;border-left:3px solid #f9a825;padding:2px 8px;"
            f"margin:2px 0;color:#5d4037;font-size:90%'>&#9888; "
            f"{_code_spans(str(n.get('text', '')))}{count}</div>"
        )
    return "<div class='jx-notices'>" + "".join(rows) + "</div>"


def _clip(text: str, limit: int = SAMPLE_CHARS) -> str:
    """``text`` escaped for HTML, cut at ``limit`` characters (the whole text on hover):
    a model that rambles must not push the charts off screen."""
    if not text:
        return "<i>(empty)</i>"
    if len(text) <= limit:
        return html.escape(text)
    return f"<span title='{html.escape(text)}'>{html.escape(text[:limit])}&hellip;</span>"


def _at(step: int, epoch: int) -> str:
    """Where a validation happened, epochs counted from one as the progress line does."""
    parts = [f"step {step}"] if step >= 0 else []
    if epoch >= 0:
        parts.append(f"epoch {epoch + 1}")
    return " · ".join(parts) or "step ?"


def samples_html(entries: list[dict[str, Any]] | None) -> str:
    """A fine-tune's sample generations: per prompt, the newest output and the step it
    came from, and below it, greyed and smaller, the previous validation's output (so a
    person sees the model learn). Every text is escaped: outputs are model text. Empty
    for a run without samples, so no empty section is shown.

    Example::

        >>> q = "Capital of Zorn?"
        >>> out = samples_html([
        ...     {"step": 10, "epoch": 0, "samples": [{"prompt": q, "output": "Blue"}]},
        ...     {"step": 20, "epoch": 1, "samples": [{"prompt": q, "output": "<b>Vell</b>"}]},
        ... ])
        >>> "&lt;b&gt;Vell&lt;/b&gt;" in out and "Blue" in out and "step 20" in out
        True
        >>> samples_html(None)
        ''
    """
    history = prompt_outputs(entries, keep=2)
    if not history:
        return ""
    newest = max(outs[0]["step"] for outs in history.values())
    epoch = max(outs[0]["epoch"] for outs in history.values() if outs[0]["step"] == newest)
    rows = []
    for prompt, outs in history.items():
        latest = outs[0]
        rows.append(
            "<tr style='border-top:1px solid #eee'>"
            "<td class='jx-sample-prompt' style='vertical-align:top;padding:2px 12px 2px 0;"
            f"color:#555;width:30%;white-space:pre-wrap'>{_clip(prompt, 200)}</td>"
            "<td style='vertical-align:top;padding:2px 0'>"
            f"<div class='jx-sample-latest' style='white-space:pre-wrap'>{_clip(latest['output'])}"
            f" <span style='color:#888;font-size:85%'>({_at(latest['step'], latest['epoch'])})"
            "</span></div>"
        )
        if len(outs) > 1:
            prev = outs[1]
            # The same answer again is worth saying in words: greyed text that merely
            # repeats the line above reads as a rendering glitch.
            body = (
                "<i>unchanged</i>" if prev["output"] == latest["output"] else _clip(prev["output"])
            )
            rows.append(
                "<div class='jx-sample-previous' style='color:#999;font-size:85%;"
                f"white-space:pre-wrap'>{_at(prev['step'], prev['epoch'])}: {body}</div>"
            )
        rows.append("</td></tr>")
    grey = (
        " &middot; the previous validation's in grey"
        if any(len(outs) > 1 for outs in history.values())
        else ""
    )
    return (
        "<div class='jx-samples' style='margin:4px 0'>"
        "<div style='font-weight:bold'>Samples <span style='font-weight:normal;color:#666;"
        f"font-size:90%'>&middot; latest at {_at(newest, epoch)}{grey}</span></div>"
        "<table style='border-collapse:collapse;width:100%;font-size:90%'>"
        + "".join(rows)
        + "</table></div>"
    )


def samples_text(entries: list[dict[str, Any]] | None, width: int = 100) -> list[str]:
    """The newest sample per prompt as plain lines, for front ends without widgets.

    Example::

        >>> samples_text([{"step": 5, "samples": [{"prompt": "Hi", "output": "Hello"}]}])
        ['sample (step 5): Hi -> Hello']
    """
    lines = []
    for prompt, outs in prompt_outputs(entries, keep=1).items():
        line = f"sample (step {outs[0]['step']}): {prompt} -> {outs[0]['output']}"
        line = " ".join(line.split())  # one line each, whatever newlines the model wrote
        lines.append(line if len(line) <= width else line[: width - 3] + "...")
    return lines


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
        # narrow enough that the progress line beside it fits on one line
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="35%"))
        self.bar_label = W.HTML()
        self.notices = W.HTML()
        self._x = "step"
        # x by step, epoch, wall time or time since start: the chart's toolbar offers them.
        self.chart = LiveChart(
            x_label=X_AXES["step"], x_choices=list(X_AXES.items()), x_axis="step"
        )
        # A fine-tune's sample generations; hidden (not just empty) for other runs.
        self.samples = W.HTML(layout=W.Layout(display="none"))
        self.table = W.HTML()
        self.system = W.HTML()
        self.error = W.HTML()
        self.log_view = W.HTML()
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _b: self.request_stop())
        super().__init__(
            children=[
                restart_hint(f"%monitor {run.row.name}"),
                W.HBox([self.header, self.stop_button]),
                W.HBox([self.bar, self.bar_label]),
                self.error,  # a failure leads, above the charts
                self.notices,
                self.chart,
                self.samples,
                W.HBox([self.table, self.system]),
                W.Accordion(children=[self.log_view], titles=("Log",)),
            ],
            **kwargs,
        )
        # After a kernel restart: the last state shown, no Stop that looks live.
        mark_view(self, self.stop_button)
        self.chart.observe(self._on_x, "x_axis")
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
                        self.chart.set_series(
                            key, panel=panel_of(key), label=key, color=metric_color(key)
                        )
                    points[key] = (self._x_of(s, row), s.value)
                    self._latest[key] = float(s.value[-1])
                self.chart.append(points)
                changed |= self._set(self.table, self._table_html())
            changed |= self._set(self.header, self._header_html(row))
            changed |= self._progress(row)
            changed |= self._set(self.system, self._system_html(row))
            changed |= self._set(self.notices, notices_html(row.notices))
            changed |= self._samples(row)
            changed |= self._logs(row)
            if row.status in TERMINAL:
                changed |= self._set(self.error, self._error_html(row))
                # an ended run has nothing to stop: no button that looks live
                self.stop_button.disabled = True
                self.stop_button.layout.display = "none"
                # Our JupyterLab extension keeps what an ended run's monitor shows in the
                # notebook when it is saved (a static copy beside the widget).
                self.add_class(ENDED)
            if changed:
                self.updates += 1
            return row.status not in TERMINAL

    def _x_of(self, s: Any, row: RunRecord) -> np.ndarray:
        """The x of a metric series on the axis chosen in the chart's toolbar."""
        if self._x == "epoch":
            return s.epoch
        if self._x == "time":
            return s.time
        if self._x == "elapsed":
            start = row.started if row.started is not None else row.created
            return s.time - start
        return s.step

    def _on_x(self, change: Any) -> None:
        x = change["new"]
        if x not in X_AXES:
            self.chart.x_axis = self._x  # not an axis we have: keep the one shown
            return
        with self._lock:
            self._x = x
            self.chart.x_label = X_AXES[x]
            self.chart.x_format = X_FORMAT[x]
            # Every point again, on the new axis: one downsampled snapshot to the views.
            row = self.run.row
            series, last = self._store.read_metrics(self.run.id)
            self._last_chunk = max(self._last_chunk, last or 0)
            for key, s in series.items():
                if key not in self._latest:
                    self.chart.set_series(
                        key, panel=panel_of(key), label=key, color=metric_color(key)
                    )
                self._latest[key] = float(s.value[-1])
            self.chart.replace_many(
                {key: (self._x_of(s, row), s.value) for key, s in series.items()}
            )

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
        text = _code_spans(progress_text(row, time.time()))
        if row.status in TERMINAL:
            color = _COLORS.get(row.status, "#333")
            head, sep, rest = text.partition(" · ")
            text = f"<b style='color:{color}'>{head}</b>{sep}{rest}"
        return self._set(self.bar_label, f"<span class='jx-progress'>{text}</span>")

    def _table_html(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{v:.5g}</td></tr>"
            for k, v in sorted(self._latest.items())
        )
        return f"<table><tr><th>metric</th><th>latest</th></tr>{cells}</table>"

    def _samples(self, row: RunRecord) -> bool:
        """Show the row's sample generations; the section stays hidden while it has none.

        The row is read on every refresh anyway; the HTML is rebuilt from it and only a
        changed value goes to the browser (the worker writes samples once per validation).
        """
        value = samples_html(row.samples)
        display = None if value else "none"
        if self.samples.layout.display != display:
            self.samples.layout.display = display
        return self._set(self.samples, value)

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
        shaped = shape_stored(row.error, row.error_info)
        if shaped is None:
            return ""
        if row.status == "stopped":  # a forced stop says why, quietly: it is no failure
            return f"<div style='color:#666'>{html.escape(shaped.headline)}</div>"
        return render_html(shaped)

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
        # read a few more lines than shown: the tips taken out leave room for real ones
        tail = without_ads(log_tail(path, LOG_TAIL_LINES + 5, 16384)).split("\n")
        text = "\n".join(tail[-LOG_TAIL_LINES:])
        return self._set(self.log_view, f"<pre>{html.escape(text)}</pre>")

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
        row = self.run.row
        lines = [repr(self.run), progress_text(row)]
        if latest:
            lines.append(latest)
        lines += [f"note: {n.get('text', '')}" for n in row.notices or []]
        lines += samples_text(row.samples)
        shaped = shape_stored(row.error, row.error_info) if row.status in TERMINAL else None
        if shaped is not None:
            lines += ["", render_text(shaped)]
        bundle["text/plain"] = "\n".join(lines)
        return bundle
