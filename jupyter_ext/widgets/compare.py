"""The comparison view: live charts of several runs, controls, and a summary table.

Curves go through :class:`~jupyter_ext.widgets.chart.LiveChart` (uPlot in the browser,
fed only new points), the same component as the run monitor; its toolbar holds the x axis,
log y, smoothing and "align to shortest", and its legend hides or shows a run. Data come from a
:class:`~jupyter_ext.comparison.Comparison`, which reads only new metric chunks; the view
polls while any shown run is going and stops when all have ended or it is closed.
Fine-tunes also get their sample answers side by side (:func:`samples_table_html`).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from ..comparison import X_AXES, X_FORMAT, Comparison, _check_keys, normalise_x, prompt_outputs
from ..config import get_config
from ..poller import POLLER
from ..store import ACTIVE, open_store
from ..tables import summary_html
from .chart import PALETTE, LiveChart
from .checklist import CheckList
from .monitor import _at, _clip
from .restart import mark_view, restart_hint

_ALL = "(all experiments)"


def _sid(run_id: str, key: str) -> str:
    return f"{run_id}/{key}"


def latest_samples(cmp: Comparison) -> dict[str, dict[str, dict[str, Any]]]:
    """``{run_id: {prompt: newest {step, epoch, output}}}`` for the shown runs that have
    sample generations (fine-tunes), in the comparison's run order.

    Example::

        >>> latest_samples(Comparison(["ft-a", "baseline"]))  # doctest: +SKIP
        {'2026...-k7q2m9xa': {'Who founded Vell?': {'step': 20, 'epoch': 1, 'output': 'Orla'}}}
    """
    out = {}
    for run_id, row in cmp.rows.items():
        per = {p: outs[0] for p, outs in prompt_outputs(row.samples, keep=1).items()}
        if per:
            out[run_id] = per
    return out


def samples_table_html(cmp: Comparison) -> str:
    """The shown runs' sample answers side by side: one row per prompt, one column per
    run that has samples (its newest output, and the step it came from). Model text is
    escaped. Empty when no shown run has samples.

    Example::

        >>> html_ = samples_table_html(Comparison(["ft-a", "ft-b"]))  # doctest: +SKIP
        >>> "jx-compare-samples" in html_  # doctest: +SKIP
        True
    """
    latest = latest_samples(cmp)
    if not latest:
        return ""
    labels = cmp.labels()
    order = list(cmp.rows)
    # Prompts as the runs list them, first run first: fixed prompts line up across runs
    # of one dataset, and a prompt only some runs have still gets its row.
    prompts = list(dict.fromkeys(p for per in latest.values() for p in per))
    head = "".join(
        f"<th style='text-align:left;padding:2px 8px'><span style='color:"
        f"{PALETTE[order.index(i) % len(PALETTE)]}'>&#9679;</span> {html.escape(labels[i])}</th>"
        for i in latest
    )
    rows = []
    for prompt in prompts:
        cells = []
        for per in latest.values():
            got = per.get(prompt)
            if got is None:
                cells.append("<td style='color:#aaa;padding:2px 8px'>&mdash;</td>")
                continue
            cells.append(
                "<td style='vertical-align:top;padding:2px 8px;white-space:pre-wrap'>"
                f"{_clip(got['output'])} <span style='color:#888;font-size:85%'>"
                f"({_at(got['step'], got['epoch'])})</span></td>"
            )
        rows.append(
            "<tr style='border-top:1px solid #eee'><td class='jx-sample-prompt' "
            "style='vertical-align:top;padding:2px 8px 2px 0;color:#555;white-space:pre-wrap'>"
            f"{_clip(prompt, 200)}</td>{''.join(cells)}</tr>"
        )
    return (
        "<div class='jx-compare-samples' style='margin:6px 0'>"
        "<div style='font-weight:bold'>Sample answers <span style='font-weight:normal;"
        "color:#666;font-size:90%'>&middot; each run's newest</span></div>"
        "<table style='border-collapse:collapse;font-size:90%'>"
        f"<tr><th style='text-align:left;padding:2px 8px 2px 0'>prompt</th>{head}</tr>"
        + "".join(rows)
        + "</table></div>"
    )


class CompareView(W.VBox):
    """Runs side by side: one chart per metric, one colour per run, a summary table.

    Checkboxes pick the runs (filterable by experiment, preselected when the runs came
    from one) and the metrics; the chart's toolbar the x axis (step, epoch, wall time,
    time since start), EMA smoothing and a log scale. ``data`` is the
    long DataFrame of what is shown, ``summary`` the table; ``save`` / ``save_summary``
    export them.

    Example::

        >>> view = CompareView(["lr-0.1", "lr-0.01"], metrics=["val_loss"])  # doctest: +SKIP
        >>> view.chart.x_axis = "epoch"  # doctest: +SKIP
        >>> view.save("sweep.svg"); view.save_summary("sweep.csv")  # doctest: +SKIP
    """

    def __init__(
        self,
        runs: Any,
        metrics: Sequence[str] | None = None,
        x: str = "step",
        *,
        smoothing: float = 0.0,
        log_y: bool = False,
        best: Mapping[str, str] | None = None,
        refresh_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        self._lock = threading.RLock()
        self._store = open_store()
        self._best = dict(best or {})
        self._x = normalise_x(x)
        self._follow_all = metrics is None  # new metric keys join the chart as they appear
        self._muted = False  # set while the code (not the user) changes a control
        self._task: Any = None
        self.closed = False
        self.updates = 0  # refreshes that brought new data (tests and benchmarks read it)
        self._interval = refresh_s if refresh_s is not None else get_config().monitor_refresh_s
        if self._interval < 0.5:
            raise ValueError(
                f"refresh_s must be at least 0.5 s (a comparison polls at most twice a "
                f"second), got {self._interval}"
            )

        self.model = Comparison(runs, keys=metrics, store=self._store)
        _check_keys(self.model, metrics)

        self.chart = LiveChart(
            x_label=X_AXES[self._x],
            log_y=log_y,
            smoothing=smoothing,
            height=200,
            x_choices=list(X_AXES.items()),
            x_axis=self._x,
            align_runs=True,
        )
        self.experiment = W.Dropdown(
            description="experiment", layout=W.Layout(width="auto", min_width="260px")
        )
        self.run_picker = CheckList()
        self.metric_picker = CheckList()
        self.sort_by = W.Dropdown(description="sort by", layout=W.Layout(width="260px"))
        self.ascending = W.Checkbox(value=True, description="ascending", indent=False)
        self.table = W.HTML()
        # Fine-tunes' sample answers; hidden (not just empty) when no shown run has any.
        self.samples_table = W.HTML(layout=W.Layout(display="none"))
        self.status = W.HTML()
        self.export_name = W.Text(value="comparison", description="export as")
        self.png_button = W.Button(description="PNG", icon="download")
        self.svg_button = W.Button(description="SVG", icon="download")
        self.csv_button = W.Button(description="summary CSV", icon="table")
        self.message = W.HTML()
        # Runs launched after the view was built (from any kernel) join the picker here.
        self.reload_button = W.Button(
            description="Re-list runs", icon="refresh", tooltip="Re-read the workspace's runs"
        )
        self.reload_button.on_click(lambda _b: self.reload_runs())
        self.png_button.on_click(lambda _b: self._export("png"))
        self.svg_button.on_click(lambda _b: self._export("svg"))
        self.csv_button.on_click(lambda _b: self._export("csv"))

        simple = isinstance(runs, str) or (
            isinstance(runs, (list, tuple)) and all(isinstance(r, str) for r in runs)
        )
        again = runs if simple else self.model.run_ids
        self.restart_hint = restart_hint(f"jupyter_ext.compare({again!r})")
        self._pickers = W.HBox(
            [
                W.VBox(
                    [W.Label("runs", style={"font_weight": "bold"}), self.run_picker],
                    layout=W.Layout(margin="0 32px 0 0"),
                ),
                W.VBox([W.Label("metrics", style={"font_weight": "bold"}), self.metric_picker]),
            ],
            layout=W.Layout(flex_flow="row wrap"),
        )
        super().__init__(
            children=[
                self.restart_hint,
                W.HBox([self.experiment, self.reload_button]),
                self._pickers,
                self.chart,
                self.status,
                W.HBox([self.sort_by, self.ascending]),
                self.table,
                self.samples_table,
                W.HBox([self.export_name, self.png_button, self.svg_button, self.csv_button]),
                self.message,
            ],
            **kwargs,
        )
        with self._lock:
            self._fill_controls()
            self._rebuild()
        # After a kernel restart: the last state, no dead controls, one line on re-attaching.
        mark_view(
            self,
            self.experiment,
            self.reload_button,
            self._pickers,
            self.sort_by,
            self.ascending,
            self.export_name,
            self.png_button,
            self.svg_button,
            self.csv_button,
        )
        self.experiment.observe(self._on_experiment, "value")
        self.run_picker.observe(self._on_runs, "value")
        self.metric_picker.observe(self._on_metrics, "value")
        self.chart.observe(self._on_x, "x_axis")
        self.sort_by.observe(lambda _c: self._render_table(), "value")
        self.ascending.observe(lambda _c: self._render_table(), "value")
        self._start_polling()

    # -- what is shown ------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        """The metric keys drawn, one panel each."""
        return list(self.metric_picker.value)

    @property
    def runs(self) -> list[str]:
        """Ids of the runs shown, in order."""
        return self.model.run_ids

    @property
    def data(self) -> pd.DataFrame:
        """Long frame of the shown runs and metrics: run, name, key, step, epoch, time, value."""
        with self._lock:
            df = self.model.data
        return df[df["key"].isin(self.metrics)].reset_index(drop=True)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run: status, differing hparams, last and best value per metric."""
        with self._lock:
            df = self.model.summary(best=self._best)
        keep = [c for c in df.columns if not c.endswith((".last", ".best"))]
        keep += [f"{k}.{w}" for k in self.metrics for w in ("last", "best")]
        return df[[c for c in keep if c in df.columns]]

    @property
    def samples(self) -> pd.DataFrame:
        """The newest sample answer of each shown run that has samples (fine-tunes): one
        row per prompt (the index), one column per run (its label); NaN where a run has
        no answer to that prompt. Empty when no shown run has samples.

        Example::

            >>> jupyter_ext.compare(["ft-a", "ft-b"]).samples  # doctest: +SKIP
        """
        with self._lock:
            latest = latest_samples(self.model)
            labels = self.model.labels()
        frame = pd.DataFrame(
            {labels[i]: {p: got["output"] for p, got in per.items()} for i, per in latest.items()}
        )
        frame.index.name = "prompt"
        return frame

    @property
    def live(self) -> bool:
        """Whether the view is still polling the store for new points."""
        return self._task is not None and not self._task.cancelled

    # -- controls -----------------------------------------------------------------------
    def _run_options(self) -> list[tuple[str, str]]:
        exp = self.experiment.value
        rows = self._store.list_runs(experiment=None if exp in (None, _ALL) else exp)
        listed = {r.id for r in rows}
        # Shown runs stay pickable whatever the filter, so the selection stays valid.
        rows += [r for r in self.model.rows.values() if r.id not in listed]
        # Name first, the short random part of the id last (enough to tell twins apart).
        return [(f"{r.name} · {r.status} · {r.id.rsplit('-', 1)[-1]}", r.id) for r in rows]

    def _available_keys(self) -> list[str]:
        keys = {k for run_id in self.model.run_ids for k in self._store.metric_keys(run_id)}
        return sorted(keys | set(self.model.all_keys()))

    def _fill_controls(self) -> None:
        self._muted = True
        try:
            first = not self.experiment.options
            self.experiment.options = [_ALL, *self._store.experiments()]
            if first:
                # %compare bc: the experiment the runs came from is the one shown.
                shown = {r.experiment for r in self.model.rows.values()}
                if len(shown) == 1 and (only := shown.pop()) in self.experiment.options:
                    self.experiment.value = only
            self.run_picker.options = self._run_options()
            self.run_picker.value = tuple(self.model.run_ids)
            keys = self._available_keys()
            chosen = keys if self.model.keys is None else self.model.keys
            self.metric_picker.options = list(dict.fromkeys([*keys, *chosen]))
            self.metric_picker.value = tuple(chosen)
            self._fill_sort()
        finally:
            self._muted = False

    def reload_runs(self) -> None:
        """Re-read the workspace's experiments and runs into the pickers (keeps the choice)."""
        with self._lock:
            self._fill_controls()

    def _fill_sort(self) -> None:
        options = ["name", *[f"{k}.{w}" for k in self.metrics for w in ("best", "last")]]
        current = self.sort_by.value
        self.sort_by.options = options
        self.sort_by.value = current if current in options else options[0]

    def _on_experiment(self, _change: Any) -> None:
        if self._muted:
            return
        with self._lock:
            self._muted = True
            try:
                self.run_picker.options = self._run_options()
                self.run_picker.value = tuple(self.model.run_ids)
            finally:
                self._muted = False

    def _on_runs(self, change: Any) -> None:
        if self._muted:
            return
        ids = list(change["new"])
        if not ids:
            self.message.value = "<i>Pick at least one run.</i>"
            return
        with self._lock:
            self.model.set_runs(ids)
            self._fill_controls()
            self._rebuild()
        self._start_polling()

    def _on_metrics(self, change: Any) -> None:
        if self._muted:
            return
        keys = list(change["new"])
        with self._lock:
            self._follow_all = set(keys) >= set(self._available_keys())
            self.model.set_keys(None if self._follow_all else keys)
            self._fill_sort()
            self._rebuild()

    def _on_x(self, change: Any) -> None:
        try:
            x = normalise_x(change["new"])
        except ValueError as exc:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            self.chart.x_axis = self._x
            return
        with self._lock:
            self._x = x
            self.chart.x_label = X_AXES[self._x]
            self.chart.x_format = X_FORMAT[self._x]
            self._rebuild()

    # -- drawing ------------------------------------------------------------------------
    def _declare(self) -> None:
        labels = self.model.labels()
        for i, run_id in enumerate(self.model.run_ids):
            for key in self.metrics:
                self.chart.set_series(
                    _sid(run_id, key),
                    panel=key,
                    label=labels[run_id],
                    color=PALETTE[i % len(PALETTE)],
                )

    def _rebuild(self) -> None:
        """Redraw everything (runs, metrics or x axis changed): one snapshot to views."""
        wanted = {_sid(r, k) for r in self.model.run_ids for k in self.metrics}
        for meta in list(self.chart.series):
            if meta["id"] not in wanted:
                self.chart.remove_series(meta["id"])
        self.chart.panels = self.metrics
        self.chart.x_label = X_AXES[self._x]
        self.chart.x_format = X_FORMAT[self._x]
        self._declare()
        points = {}
        for run_id in self.model.run_ids:
            for key in self.metrics:
                s = self.model.series(run_id, key)
                if s is None:
                    points[_sid(run_id, key)] = (np.empty(0), np.empty(0))
                else:
                    points[_sid(run_id, key)] = (self.model.x_values(run_id, s, self._x), s.value)
        self.chart.replace_many(points)
        self._notes()
        self._render_table()
        self._render_samples()
        self._render_status()

    def _notes(self) -> None:
        labels = self.model.labels()
        notes = {}
        for key in self.metrics:
            parts = []
            absent = self.model.absent(key)
            if absent:
                parts.append("no data from: " + ", ".join(labels[i] for i in absent))
            if self._x in ("time", "elapsed"):
                untimed = [
                    labels[i]
                    for i in self.model.run_ids
                    if (s := self.model.series(i, key)) is not None
                    and len(s)
                    and not np.isfinite(s.time).any()
                ]
                if untimed:
                    parts.append("no wall-clock times recorded: " + ", ".join(untimed))
            if parts:
                notes[key] = "; ".join(parts)
        if notes != self.chart.notes:
            self.chart.notes = notes

    def _render_table(self) -> None:
        df = self.summary
        by = self.sort_by.value
        if by in df.columns:
            df = df.sort_values(by, ascending=self.ascending.value, na_position="last")
        self.table.value = summary_html(df, self._best)  # rows kept in the order given

    def _render_samples(self) -> bool:
        """Redraw the sample answers if they changed (rows are re-read at each poll);
        True if they did."""
        value = samples_table_html(self.model)
        display = None if value else "none"
        if self.samples_table.layout.display != display:
            self.samples_table.layout.display = display
        if value == self.samples_table.value:
            return False
        self.samples_table.value = value
        return True

    def _render_status(self) -> None:
        rows = list(self.model.rows.values())
        going = [r for r in rows if r.status in ACTIVE]
        if going:
            text = (
                f"<b>live</b>: {len(going)} of {len(rows)} runs still going "
                f"(checking every {self._interval:g} s)"
            )
        else:
            text = "all shown runs ended: " + ", ".join(
                f"{html.escape(r.name)} {r.status}" for r in rows
            )
        if text != self.status.value:
            self.status.value = text

    # -- live ---------------------------------------------------------------------------
    def _start_polling(self) -> None:
        if self.closed or self.live or not self.model.active:
            return
        self._task = POLLER.every(self._interval, self, CompareView.refresh)

    def refresh(self) -> bool:
        """Read new points of runs still going and draw them; False once none is going."""
        with self._lock:
            if self.closed:
                return False
            before = {i: r.status for i, r in self.model.rows.items()}
            new = self.model.poll()
            new_keys = self._follow_all and bool(set(self.model.all_keys()) - set(self.metrics))
            if new_keys:
                self._fill_controls()
                self._rebuild()
            elif new:
                points = {}
                for run_id, per in new.items():
                    for key, s in per.items():
                        if key in self.metrics:
                            x = self.model.x_values(run_id, s, self._x)
                            points[_sid(run_id, key)] = (x, s.value)
                self.chart.append(points)
                self._notes()
                self._render_table()
            # Samples land in the run's row (not as metric points) at each validation: the
            # poll above re-read the rows, so compare every time; unchanged is not resent.
            new_samples = self._render_samples()
            statuses = {i: r.status for i, r in self.model.rows.items()}
            if statuses != before:
                self._render_status()
                self._render_table()
                self._refresh_run_labels()
            if new or new_samples:
                self.updates += 1
            live = self.model.active
            if not live:
                self._render_status()
                self._task = None
            return live

    def _refresh_run_labels(self) -> None:
        self._muted = True
        try:
            value = self.run_picker.value
            self.run_picker.options = self._run_options()
            self.run_picker.value = value
        finally:
            self._muted = False

    # -- export -------------------------------------------------------------------------
    def save(self, path: str | Path, format: str | None = None) -> Path:
        """Save the charts as PNG or SVG (by extension or ``format``)."""
        with self._lock:
            return self.chart.save(path, format=format)

    def save_summary(self, path: str | Path) -> Path:
        """Save the summary table as CSV."""
        path = Path(path)
        self.summary.to_csv(path, index=False)
        return path

    def _export(self, kind: str) -> None:
        stem = self.export_name.value.strip() or "comparison"
        path = Path(stem).with_suffix(f".{kind}")
        try:
            out = self.save_summary(path) if kind == "csv" else self.save(path)
        except (OSError, ValueError) as exc:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        self.message.value = f"Saved <code>{html.escape(str(out.resolve()))}</code>"

    def close(self) -> None:
        """Stop polling and close the widgets."""
        self.closed = True
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
        chart = getattr(self, "chart", None)  # absent if __init__ refused its arguments
        if chart is not None:
            chart.close()
        super().close()

    def __repr__(self) -> str:
        rows = list(self.model.rows.values())
        state = "live" if self.live else "static"
        head = f"Comparison of {len(rows)} runs ({state}); metrics: {', '.join(self.metrics)}"
        text = f"{head}\n{self.summary.to_string(index=False)}"
        answers = self.samples
        if not answers.empty:  # a front end without widgets still sees the answers
            text += "\nsample answers (each run's newest):\n" + answers.to_string(max_colwidth=60)
        return text

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        data = super()._repr_mimebundle_(**kwargs) or {}
        data = dict(data)
        data["text/plain"] = repr(self)
        if self.chart.points:
            import base64

            data["image/png"] = base64.b64encode(self.chart._png()).decode("ascii")
        return data


def compare(
    runs: Any,
    metrics: str | Sequence[str] | None = None,
    x: str = "step",
    *,
    smoothing: float = 0.0,
    log_y: bool = False,
    best: Mapping[str, str] | None = None,
    refresh_s: float | None = None,
) -> CompareView:
    """A live comparison widget of ``runs``: one chart per metric, one colour per run.

    The chart follows runs that are still going (polling the store, at most twice a
    second) and stops polling once all have ended. ``.data`` is the long DataFrame,
    ``.summary`` the table of last and best values, ``.save("c.png")`` exports the chart.

    Example::

        >>> import jupyter_ext
        >>> view = jupyter_ext.compare("sweep", metrics=["val_loss", "val_acc"])  # doctest: +SKIP
        >>> view.data.groupby(["name", "key"]).value.min()  # doctest: +SKIP
    """
    keys = [metrics] if isinstance(metrics, str) else metrics
    return CompareView(
        runs,
        metrics=keys,
        x=normalise_x(x),
        smoothing=smoothing,
        log_y=log_y,
        best=best,
        refresh_s=refresh_s,
    )
