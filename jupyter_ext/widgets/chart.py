"""LiveChart: the one chart component of the toolkit (run monitor and comparison).

Curves are drawn in the browser by uPlot, through the chart module the JupyterLab panels
use too (``labextension/src/chart/``, bundled into ``static/chart.js`` inside this package:
no network at run time), because re-rendering a matplotlib PNG costs ~90 ms of kernel time
per refresh while a live chart must leave the kernel nearly idle. The kernel keeps every
point (numpy) and sends a view only what it lacks:

* a view that starts asks for a snapshot, answered with every series downsampled to a
  couple of thousand points (:mod:`jupyter_ext.downsample`, extremes kept);
* afterwards :meth:`LiveChart.append` sends one message carrying only the new points, as
  binary float64 buffers.

In the browser a person zooms (drag; double-click resets; every panel follows), reads every
series' raw and smoothed value under a cursor synced across panels, hides a run from the
legend, and switches log y, smoothing and (where the owner offers them) the x axis; those
choices come back into :attr:`log_y`, :attr:`smoothing` and :attr:`x_axis`.

matplotlib renders the same data for static images, export (:meth:`LiveChart.save`) and
front ends without widgets (:meth:`LiveChart.figure`, the ``image/png`` fallback).
"""

from __future__ import annotations

import base64
import io
import itertools
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import pandas as pd
from traitlets import Bool, Dict, Enum, Float, Int, List, Tuple, Unicode, validate

from ..downsample import DEFAULT_POINTS, ema, minmax_indices

if TYPE_CHECKING:
    import matplotlib.figure

# matplotlib's "tab10": distinct, colour-blind tolerable, and what users expect.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]+|rgba?\([\d\s.,%]+\))$")
_EMPTY_DATA = {"series": object, "panel": object, "label": object, "x": float, "y": float}
_ESM_FILE = Path(__file__).with_name("static") / "chart.js"
# What a view shows when the front end was never built (a source checkout without Node).
_UNBUILT = """// jupyter_ext LiveChart: front end not built
export default { render({ el }) {
  el.textContent = "jupyter_ext: the chart's front end is not built (static/chart.js is " +
    "missing). Run `make install`, or `npm run build` in labextension/.";
} };
"""


def _load_esm() -> str:
    if not _ESM_FILE.is_file():
        return _UNBUILT
    # A leading comment line keeps anywidget from taking one-line minified code for a path.
    return "// jupyter_ext LiveChart (labextension/src/chart, uPlot)\n" + _ESM_FILE.read_text(
        encoding="utf-8"
    )


class _Line:
    """All points of one series, kept as appended chunks and joined on demand."""

    __slots__ = ("_xs", "_ys", "n", "nonfinite")

    def __init__(self) -> None:
        self._xs: list[np.ndarray] = []
        self._ys: list[np.ndarray] = []
        self.n = 0
        self.nonfinite = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self._xs.append(x)
        self._ys.append(y)
        self.n += len(y)
        self.nonfinite += int(len(y) - np.count_nonzero(np.isfinite(y)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._xs:
            return np.empty(0), np.empty(0)
        if len(self._xs) > 1:
            self._xs = [np.concatenate(self._xs)]
            self._ys = [np.concatenate(self._ys)]
        return self._xs[0], self._ys[0]


def _as_points(sid: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xa = np.array(x, dtype=np.float64, copy=True).reshape(-1)
    ya = np.array(y, dtype=np.float64, copy=True).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(
            f"series {sid!r}: x and y need the same number of points, got {len(xa)} and {len(ya)}"
        )
    return xa, ya


class LiveChart(anywidget.AnyWidget):
    """Small multiples of line series, drawn in the browser and fed only new points.

    One panel per ``panel`` name (e.g. one per metric); each series belongs to one panel.
    ``smoothing`` draws an EMA with the raw curve faint behind; ``log_y`` a log y axis.
    NaN and inf are kept in :attr:`data` and skipped when drawing, with a note.

    Example::

        >>> chart = LiveChart(x_label="step")
        >>> chart.set_series("a/loss", panel="loss", label="run a")
        >>> chart.append({"a/loss": ([0, 1, 2], [1.0, 0.7, 0.5])})
        >>> chart.data.shape
        (3, 5)
        >>> chart.save("loss.png")  # doctest: +SKIP
    """

    _esm = _load_esm()

    x_label = Unicode("step", help="Label of the x axis (and of the hover readout).").tag(sync=True)
    x_format = Enum(
        ["number", "time", "duration"],
        default_value="number",
        help="How x ticks read: plain numbers, clock time (Unix seconds), or h:mm:ss.",
    ).tag(sync=True)
    log_y = Bool(False, help="Logarithmic y axis (values <= 0 are not drawn).").tag(sync=True)
    smoothing = Float(
        0.0, help="EMA weight 0..0.99; the smoothed line is drawn, the raw curve faint behind."
    ).tag(sync=True)
    height = Int(220, help="Height of each panel in pixels.").tag(sync=True)
    panels = List(Unicode(), help="Order of the panels (one small chart each).").tag(sync=True)
    series = List(
        Dict(), help="Series metadata: dicts with id, panel, label, color, nonfinite."
    ).tag(sync=True)
    notes = Dict(value_trait=Unicode(), help="A note shown under a panel, by panel name.").tag(
        sync=True
    )
    x_choices = List(
        Tuple(Unicode(), Unicode()),
        help="x axes the owner offers, (key, label); the chart shows a selector when 2+.",
    ).tag(sync=True)
    x_axis = Unicode("", help="The x axis chosen among x_choices (set by the view too).").tag(
        sync=True
    )
    toolbar = Bool(True, help="Show log-y, smoothing, zoom and x-axis controls.").tag(sync=True)
    align_runs = Bool(False, help='Series are runs (a comparison): offer "align to shortest".').tag(
        sync=True
    )

    snapshot_points = DEFAULT_POINTS
    """Points per series in a view's first snapshot (appends then carry every new point)."""

    def __init__(
        self,
        *,
        x_label: str = "step",
        log_y: bool = False,
        smoothing: float = 0.0,
        height: int = 220,
        **kw: Any,
    ) -> None:
        self._lines: dict[str, _Line] = {}
        # One lock orders data changes and the messages describing them: the shell thread
        # answers snapshot requests while the poller thread appends.
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._viewed = False
        # Summaries of the last messages sent to views (type, seq, {series id: points}):
        # what went over the wire, for debugging and tests.
        self.sent: deque[dict[str, Any]] = deque(maxlen=50)
        super().__init__(x_label=x_label, log_y=log_y, smoothing=smoothing, height=height, **kw)
        self.on_msg(self._on_view_msg)

    # -- validation ---------------------------------------------------------------------
    @validate("smoothing")
    def _check_smoothing(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value <= 0.99:
            raise ValueError(f"smoothing must be between 0 and 0.99, got {value}")
        return value

    @validate("height")
    def _check_height(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 60 <= value <= 2000:
            raise ValueError(f"height must be between 60 and 2000 pixels, got {value}")
        return value

    # -- series -------------------------------------------------------------------------
    def set_series(self, sid: str, *, panel: str, label: str, color: str | None = None) -> None:
        """Declare (or relabel) series ``sid`` in ``panel``; a colour is picked if None.

        Example::

            >>> chart = LiveChart()
            >>> chart.set_series("run1/val_loss", panel="val_loss", label="run1", color="#d62728")
        """
        if color is not None and not _COLOR.match(color):
            raise ValueError(f"color {color!r} is not a CSS colour like '#1f77b4' or 'red'")
        with self._lock:
            metas = [dict(m) for m in self.series]
            old = next((m for m in metas if m["id"] == sid), None)
            if color is None:
                if old is not None and old["panel"] == panel:
                    color = old["color"]
                else:
                    used = sum(1 for m in metas if m["panel"] == panel and m["id"] != sid)
                    color = PALETTE[used % len(PALETTE)]
            line = self._lines.setdefault(sid, _Line())
            meta = {
                "id": sid,
                "panel": panel,
                "label": label,
                "color": color,
                "nonfinite": line.nonfinite,
            }
            if old is not None:
                metas[metas.index(old)] = meta
            else:
                metas.append(meta)
            if panel not in self.panels:
                self.panels = [*self.panels, panel]
            self.series = metas

    def append(self, points: Mapping[str, tuple[Any, Any]]) -> None:
        """Add new points ``{sid: (x, y)}``; views get one message with only these points.

        Example::

            >>> chart = LiveChart()
            >>> chart.set_series("loss", panel="loss", label="train")
            >>> chart.append({"loss": ([10, 11], [0.5, float("nan")])})
            >>> len(chart.data)
            2
        """
        prepared = []
        for sid, (x, y) in points.items():
            self._require(sid)
            xa, ya = _as_points(sid, x, y)
            if len(xa):
                prepared.append((sid, xa, ya))
        if not prepared:
            return
        with self._lock:
            grew_nonfinite = False
            for sid, xa, ya in prepared:
                line = self._lines[sid]
                before = line.nonfinite
                line.add(xa, ya)
                grew_nonfinite |= line.nonfinite != before
            if grew_nonfinite:
                self._sync_nonfinite()
            self._emit(
                "append",
                {"series": [{"id": s, "n": len(x)} for s, x, _ in prepared]},
                [b for _, x, y in prepared for b in (x, y)],
            )

    def replace(self, sid: str, x: Any, y: Any) -> None:
        """Replace every point of ``sid`` (e.g. when the x axis changes).

        Example::

            >>> chart = LiveChart()
            >>> chart.set_series("loss", panel="loss", label="train")
            >>> chart.replace("loss", [0, 1], [2.0, 1.0])
        """
        self._require(sid)
        xa, ya = _as_points(sid, x, y)
        with self._lock:
            line = _Line()
            line.add(xa, ya)
            changed = line.nonfinite != self._lines[sid].nonfinite
            self._lines[sid] = line
            if changed:
                self._sync_nonfinite()
            idx = minmax_indices(xa, ya, self.snapshot_points)
            self._emit("replace", {"id": sid}, [xa[idx], ya[idx]])

    def replace_many(self, points: Mapping[str, tuple[Any, Any]]) -> None:
        """Replace the points of several series at once; views get one downsampled snapshot
        (a rebuild of a big chart never ships every raw point to the browser).

        Example::

            >>> chart = LiveChart()
            >>> chart.set_series("a", panel="loss", label="a")
            >>> chart.set_series("b", panel="loss", label="b")
            >>> chart.replace_many({"a": ([0, 1], [1.0, 0.5]), "b": ([0, 1], [2.0, 1.0])})
        """
        prepared = []
        for sid, (x, y) in points.items():
            self._require(sid)
            prepared.append((sid, *_as_points(sid, x, y)))
        with self._lock:
            for sid, xa, ya in prepared:
                line = _Line()
                line.add(xa, ya)
                self._lines[sid] = line
            self._sync_nonfinite()
            if self._viewed:
                self.send_snapshot()

    def remove_series(self, sid: str) -> None:
        """Forget series ``sid`` (its panel stays until :attr:`panels` changes)."""
        with self._lock:
            if sid not in self._lines:
                return
            del self._lines[sid]
            self.series = [m for m in self.series if m["id"] != sid]
            self._emit("remove", {"id": sid}, [])

    def clear(self) -> None:
        """Remove every series, panel and note."""
        with self._lock:
            self._lines.clear()
            self.series = []
            self.panels = []
            self.notes = {}
            self._emit("clear", {}, [])

    def _require(self, sid: str) -> None:
        if sid not in self._lines:
            known = ", ".join(sorted(self._lines)) or "none yet"
            raise KeyError(
                f"series {sid!r} is not declared; call set_series({sid!r}, panel=..., "
                f"label=...) first (declared: {known})"
            )

    def _sync_nonfinite(self) -> None:
        self.series = [
            {**m, "nonfinite": self._lines[m["id"]].nonfinite}
            for m in self.series
            if m["id"] in self._lines
        ]

    # -- messages -----------------------------------------------------------------------
    def _on_view_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "snapshot":
            self.send_snapshot()

    def send_snapshot(self) -> None:
        """Send views every series, downsampled (what a view asks for when it starts)."""
        with self._lock:
            self._viewed = True
            items, buffers = [], []
            for sid, line in self._lines.items():
                x, y = line.arrays()
                idx = minmax_indices(x, y, self.snapshot_points)
                items.append({"id": sid, "n": len(idx)})
                buffers += [x[idx], y[idx]]
            self._emit("snapshot", {"series": items}, buffers)

    def _emit(self, kind: str, content: dict[str, Any], arrays: Sequence[np.ndarray]) -> None:
        # Until a view has asked for its snapshot nobody listens: the snapshot will carry it.
        if not self._viewed:
            return
        seq = next(self._seq)
        buffers = [memoryview(np.ascontiguousarray(a, dtype="<f8")) for a in arrays]
        self.send({"type": kind, "seq": seq, **content}, buffers=buffers)
        counts = {s["id"]: s["n"] for s in content.get("series", [])}
        if kind == "replace":
            counts = {content["id"]: len(arrays[0])}
        self.sent.append({"type": kind, "seq": seq, "points": counts})

    # -- data and static rendering ------------------------------------------------------
    @property
    def data(self) -> pd.DataFrame:
        """Every point held, as a long frame: series, panel, label, x, y (NaN/inf kept).

        Example::

            >>> LiveChart().data.columns.tolist()
            ['series', 'panel', 'label', 'x', 'y']
        """
        with self._lock:
            metas = {m["id"]: m for m in self.series}
            frames = []
            for sid, line in self._lines.items():
                x, y = line.arrays()
                meta = metas.get(sid, {})
                frames.append(
                    pd.DataFrame(
                        {
                            "series": sid,
                            "panel": meta.get("panel", ""),
                            "label": meta.get("label", sid),
                            "x": x,
                            "y": y,
                        }
                    )
                )
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_DATA.items()})
        return pd.concat(frames, ignore_index=True)

    @property
    def points(self) -> int:
        """Total number of points held kernel-side."""
        with self._lock:
            return sum(line.n for line in self._lines.values())

    def _panel_order(self) -> list[str]:
        order = list(self.panels)
        order += [m["panel"] for m in self.series if m["panel"] not in order]
        return list(dict.fromkeys(order))

    def figure(self, width: float = 8.0) -> matplotlib.figure.Figure:
        """A static matplotlib rendering of all panels (downsampled, NaN/inf skipped).

        Example::

            >>> chart = LiveChart()
            >>> chart.set_series("loss", panel="loss", label="train")
            >>> chart.append({"loss": ([0, 1, 2], [1.0, 0.5, 0.25])})
            >>> len(chart.figure().axes)
            1
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter

        with self._lock:
            order = self._panel_order()
            metas = [dict(m) for m in self.series]
            arrays = {sid: line.arrays() for sid, line in self._lines.items()}
        n = max(1, len(order))
        ncols = min(n, max(1, int(width // 4)))
        nrows = -(-n // ncols)
        # One legend under all panels when each colour means one label (a comparison: a
        # colour per run); otherwise (a monitor: colours restart per panel) one per panel.
        pairs = list(dict.fromkeys((m["label"], m["color"]) for m in metas))
        shared = len({c for _, c in pairs}) == len(pairs) and len(pairs) > 0
        legend_cols = max(1, min(len(pairs), int(width // 2.7)))
        legend_h = (-(-len(pairs) // legend_cols) * 0.2 + 0.15) if shared else 0.0
        panel_h = self.height / 100 + 0.9
        height_in = panel_h * nrows + legend_h
        fig = Figure(figsize=(width, height_in))
        # Fixed margins in inches: constrained/tight layout would cost a second full draw.
        fig.subplots_adjust(
            left=0.75 / width,
            right=1 - 0.2 / width,
            top=1 - 0.3 / height_in,
            bottom=(0.75 + legend_h) / height_in,
            wspace=0.9 / (width / ncols),
            hspace=0.85 / (self.height / 100),
        )
        if not order:
            ax = fig.add_subplot()
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return fig
        xfmt = _x_formatter(self.x_format)
        # About two points per pixel column of one panel (at savefig's dpi of up to 150).
        budget = max(400, 2 * int(width / ncols * 150))
        handles: dict[str, Any] = {}
        for i, panel in enumerate(order):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            ax.set_title(panel, fontsize=10, loc="left")
            ax.set_xlabel(self.x_label, fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.2)
            if xfmt is not None:
                ax.xaxis.set_major_formatter(FuncFormatter(xfmt))
            nonfinite, drawn = self._draw_panel(
                ax, [m for m in metas if m["panel"] == panel], arrays, budget, handles
            )
            if self.log_y and drawn:
                ax.set_yscale("log")
            if not drawn:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            elif not shared:
                ax.legend(fontsize=7, loc="upper right")
            note = []
            if nonfinite:
                note.append(f"{nonfinite} non-finite value{'s' * (nonfinite > 1)} not drawn")
            if self.notes.get(panel):
                note.append(self.notes[panel])
            if note:
                ax.annotate(
                    " · ".join(note),
                    xy=(0, 0),
                    xycoords="axes fraction",
                    xytext=(0, -28),
                    textcoords="offset points",
                    fontsize=7,
                    color="0.4",
                    va="top",
                )
        if shared and handles:
            fig.legend(
                list(handles.values()),
                list(handles),
                loc="lower left",
                bbox_to_anchor=(0.75 / width, 0.05 / height_in),
                ncols=legend_cols,
                fontsize=8,
                frameon=False,
            )
        return fig

    def _draw_panel(
        self,
        ax: Any,
        metas: list[dict[str, Any]],
        arrays: dict[str, tuple[np.ndarray, np.ndarray]],
        budget: int,
        handles: dict[str, Any],
    ) -> tuple[int, int]:
        """Plot one panel's series; returns (non-finite values skipped, points drawn)."""
        weight = self.smoothing
        nonfinite = drawn = 0
        for meta in metas:
            x, y = arrays.get(meta["id"], (np.empty(0), np.empty(0)))
            nonfinite += int(len(y) - np.count_nonzero(np.isfinite(y)))
            if self.log_y:
                y = np.where(y > 0, y, np.nan)
            curves = [(y, 1.0, meta["label"])]
            if weight > 0:
                curves = [(y, 0.25, None), (ema(y, weight), 1.0, meta["label"])]
            for values, alpha, label in curves:
                idx = minmax_indices(x, values, budget)
                if len(idx) == 0:
                    continue
                (line,) = ax.plot(
                    x[idx],
                    values[idx],
                    color=meta["color"],
                    alpha=alpha,
                    lw=1.4,
                    marker="o" if len(idx) <= 40 else None,
                    ms=3,
                    label=label,
                )
                if label is not None:
                    handles.setdefault(label, line)
                drawn += len(idx)
        return nonfinite, drawn

    def save(self, path: str | Path, format: str | None = None) -> Path:
        """Save the static rendering as PNG or SVG (chosen by ``format`` or the extension).

        Example::

            >>> chart.save("curves.svg")  # doctest: +SKIP
        """
        path = Path(path)
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt not in ("png", "svg"):
            raise ValueError(
                f"cannot save a chart as {fmt or 'a file without extension'!r}: "
                "use a .png or .svg path, or format='png' / 'svg'"
            )
        self.figure().savefig(path, format=fmt, dpi=120)
        return path

    def _png(self) -> bytes:
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    def __repr__(self) -> str:
        with self._lock:
            n_series = len(self._lines)
            points = sum(line.n for line in self._lines.values())
        order = self._panel_order()
        return (
            f"LiveChart: {len(order)} panel{'s' * (len(order) != 1)} "
            f"({', '.join(order) or 'none'}), {n_series} series, {points:,} points"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        out = super()._repr_mimebundle_(**kwargs)
        data, meta = out if isinstance(out, tuple) else (out or {}, {})
        data = dict(data)
        data["text/plain"] = repr(self)
        if self.points:
            # Static fallback for front ends without widgets (and saved notebooks).
            data["image/png"] = base64.b64encode(self._png()).decode("ascii")
        return data, meta


def _x_formatter(kind: str) -> Any:
    import time

    if kind == "time":
        return lambda v, _pos: time.strftime("%H:%M:%S", time.localtime(v))
    if kind == "duration":

        def fmt(v: float, _pos: Any) -> str:
            s = round(v)
            h, m = divmod(abs(s), 3600)
            m, sec = divmod(m, 60)
            sign = "-" if s < 0 else ""
            return f"{sign}{h}:{m:02d}:{sec:02d}" if h else f"{sign}{m}:{sec:02d}"

        return fmt
    return None
