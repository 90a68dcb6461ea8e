"""Tables for reading: runs, deployments and comparison summaries as HTML.

Pure functions: a DataFrame in, HTML out; nothing here reads the store. The frames the
API returns keep full precision and plain columns; only their notebook display goes
through here (:class:`RunsFrame`, :class:`DeploymentsFrame`, :class:`SummaryFrame`), so
``df.to_csv()`` and ``df["val_loss"].min()`` see the data unchanged.

What a person reads: name first and a short id last (the full id in a tooltip), status as
a coloured badge, hparams and latest metrics as their own columns at 4 significant digits,
times as "3 min ago" (the exact time in a tooltip), durations as "0:04", the best value of
each metric marked, and a table that scrolls inside itself rather than being clipped.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .metric_names import best_mode, panel_of

#: status -> colour of its badge; unknown statuses are grey
STATUS_COLOURS: dict[str, str] = {
    "queued": "#6e7781",
    "starting": "#0969da",
    "running": "#0969da",
    "succeeded": "#1a7f37",
    "built": "#1a7f37",
    "stopped": "#9a6700",
    "failed": "#cf222e",
    "lost": "#8250df",
    "replaced": "#6e7781",
    "removed": "#6e7781",
    "alive": "#1a7f37",  # cluster nodes
    "dead": "#cf222e",
}
_GREY = "#6e7781"
_BEST_STYLE = "font-weight:600;background:rgba(26,127,55,0.16);"
_MISSING = "—"

# Inline styles, not a <style> block: they survive JupyterLab's sanitiser in untrusted
# notebooks and beat its `.jp-RenderedHTMLCommon table` rules (fixed layout, centred).
_WRAP_DIV = "overflow-x:auto;max-width:100%;"
_TABLE = (
    "border-collapse:collapse;table-layout:auto;width:auto;margin:0 0 0.5em 0;"
    "font-size:12px;line-height:1.4;"
)
_CELL = "padding:3px 8px;vertical-align:middle;border:none;"
_SEP = "border-left:1px solid var(--jp-border-color2,#ddd);"  # between column groups
_HEAD = "border-bottom:1px solid var(--jp-border-color1,#bbb);font-weight:600;"
_GROUP = "border-bottom:1px solid var(--jp-border-color2,#ddd);font-weight:500;opacity:0.75;"
_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:11px;"


# -- value formatting -------------------------------------------------------------------
def number(value: Any) -> str:
    """A number for reading: 4 significant digits, integers whole, NaN as a dash.

    Example::

        >>> number(0.035864870995), number(3.6704e-05), number(64), number(12345.67)
        ('0.03586', '3.67e-05', '64', '12346')
        >>> number(float("nan")), number(None), number(True)
        ('—', '', 'True')
    """
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return _MISSING
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if 1e4 <= abs(v) < 1e6:
        return f"{v:.0f}"  # "1.235e+04" reads worse than the whole number
    return f"{v:.4g}"


def ago(when: Any, now: float | None = None) -> str:
    """How long ago ``when`` was: "just now", "42 s ago", "3 min ago", "2 h ago",
    "yesterday", "5 days ago", then the date. ``when`` is Unix seconds, a datetime or a
    pandas Timestamp (naive ones are UTC, as ``pd.Timestamp(t, unit="s")`` makes them).

    Example::

        >>> ago(1000.0, now=1180.0), ago(0.0, now=7200.0), ago(None)
        ('3 min ago', '2 h ago', '')
    """
    t = _epoch(when)
    if t is None:
        return ""
    delta = (time.time() if now is None else now) - t
    if delta < -60:
        return f"in {_span(-delta)}"  # another machine's clock ahead of ours
    if delta < 10:
        return "just now"
    if 86400 <= delta < 2 * 86400:
        return "yesterday"
    if delta < 30 * 86400:
        return f"{_span(delta)} ago"
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d")


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''}"


def _epoch(when: Any) -> float | None:
    """Unix seconds of a time given as seconds, datetime, Timestamp or datetime64."""
    if when is None or (isinstance(when, float) and math.isnan(when)):
        return None
    if isinstance(when, (int, float, np.integer, np.floating)):
        return float(when)
    try:
        ts = pd.Timestamp(when)
    except (TypeError, ValueError):
        return None
    if pd.isna(ts):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def exact_time(when: Any) -> str:
    """The local date and time of ``when`` to the second, for a tooltip.

    Example::

        >>> exact_time(0.0)  # doctest: +SKIP
        '1970-01-01 00:00:00 UTC'
    """
    t = _epoch(when)
    if t is None:
        return ""
    local = _dt.datetime.fromtimestamp(t).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def duration(seconds: Any) -> str:
    """A duration as a clock: "0:04", "12:30", "1:02:03", "2 d 3:04:05" ('' if unknown).

    Example::

        >>> duration(4.2), duration(750), duration(3723), duration(None)
        ('0:04', '12:30', '1:02:03', '')
    """
    if seconds is None:
        return ""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if math.isnan(s):
        return ""
    total = round(max(s, 0.0))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}" if hours or days else f"{minutes}:{secs:02d}"
    return f"{days} d {clock}" if days else clock


def short_id(run_id: Any) -> str:
    """The part of an id a person tells runs apart by: the random suffix of a run id
    (``20261202-071503-482-k7q2m9xa`` -> ``k7q2m9xa``), else the last 8 characters.

    Example::

        >>> short_id("20261202-071503-482-k7q2m9xa"), short_id("abcdef0123456789")
        ('k7q2m9xa', '23456789')
    """
    text = "" if run_id is None else str(run_id)
    head, sep, tail = text.rpartition("-")
    if sep and head and 4 <= len(tail) <= 12:
        return tail
    return text[-8:]


def badge(status: Any) -> str:
    """A status as a coloured badge (HTML).

    Example::

        >>> "running" in badge("running")
        True
    """
    text = "" if status is None else str(status)
    c = STATUS_COLOURS.get(text, _GREY)
    return (
        f'<span style="display:inline-block;padding:0 7px;border-radius:9px;'
        f"font-size:11px;line-height:17px;white-space:nowrap;color:{c};"
        f'background:{c}1f;border:1px solid {c}59">{html.escape(text)}</span>'
    )


def _esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _breakable(text: str) -> str:
    """Escaped text that may wrap after _ . / - (long metric names, ids, paths)."""
    return re.sub(r"([_./-])", r"\1<wbr>", html.escape(text))


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (hparams as columns).

    Example::

        >>> flatten({"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}})
        {'lr': 0.1, 'opt.name': 'adam', 'opt.betas': [0.9, 0.99]}
    """
    out: dict[str, Any] = {}
    if not isinstance(d, Mapping):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _value_cell(v: Any) -> Cell:
    """An hparam-like value: numbers right-aligned, text wrapped, long reprs cut."""
    if v is None or isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
        return Cell(_esc(number(v)), numeric=True)
    text = v if isinstance(v, str) else repr(v)
    if len(text) > 40:
        return Cell(_esc(text[:39] + "…"), title=text)
    return Cell(_esc(text))


# -- the table model ---------------------------------------------------------------------
@dataclass
class Cell:
    """One cell: its HTML, tooltip, and whether it is a number (right-aligned)."""

    html: str
    title: str = ""
    numeric: bool = False
    style: str = ""


@dataclass
class Column:
    """One column of a rendered table; ``group`` labels a header spanning its run."""

    header: str
    cells: list[Cell]
    group: str = ""
    title: str = ""
    nowrap: bool = False
    wide: bool = False  # long free text (names, paths): wraps within a bounded width
    min_em: float = 6.0  # the narrowest a wide column gets before the table scrolls


def _number_column(
    header: str, values: Sequence[Any], mode: str | None, group: str = "", what: str = ""
) -> Column:
    """Numbers at 4 significant digits, full precision in the tooltip, the best marked
    (``mode`` 'min' or 'max'; only when at least two rows have a value to compare)."""
    floats = []
    for v in values:
        try:
            floats.append(float(v) if v is not None else math.nan)
        except (TypeError, ValueError):
            floats.append(math.nan)
    finite = [f for f in floats if math.isfinite(f)]
    best = None
    if mode in ("min", "max") and len(finite) >= 2 and len(set(finite)) > 1:
        best = max(finite) if mode == "max" else min(finite)
    cells = []
    for v, f in zip(values, floats, strict=True):
        full = repr(f) if math.isfinite(f) else ""
        if best is not None and f == best:
            cells.append(
                Cell(_esc(number(v)), f"best {what or header} ({mode}): {full}", True, _BEST_STYLE)
            )
        else:
            cells.append(Cell(_esc(number(v)), full, True))
    return Column(header, cells, group=group, nowrap=True)


def _name_column(header: str, values: Iterable[Any], min_em: float = 9.0) -> Column:
    cells = [Cell(_breakable(str(v or ""))) for v in values]
    return Column(header, cells, wide=True, min_em=min_em)


def _id_column(header: str, values: Iterable[Any]) -> Column:
    cells = [
        Cell(f'<span style="{_MONO}">{_esc(short_id(v))}</span>', title=str(v or ""))
        for v in values
    ]
    return Column(header, cells, nowrap=True)


def _status_column(values: Iterable[Any]) -> Column:
    return Column("status", [Cell(badge(v)) for v in values], nowrap=True)


def _time_column(header: str, values: Iterable[Any], now: float | None) -> Column:
    cells = [Cell(_esc(ago(v, now)), title=exact_time(v)) for v in values]
    return Column(header, cells, nowrap=True)


def _duration_column(header: str, values: Iterable[Any]) -> Column:
    cells = [Cell(_esc(duration(v)), numeric=True) for v in values]
    return Column(header, cells, nowrap=True)


def _progress_cell(fraction: Any) -> Cell:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        return Cell("")
    if not math.isfinite(f):
        return Cell("")
    pct = max(0.0, min(f, 1.0)) * 100
    bar = (
        '<span style="display:inline-block;width:48px;height:6px;border-radius:3px;'
        "background:var(--jp-layout-color3,#ddd);vertical-align:middle;margin-right:6px;"
        'overflow:hidden"><span style="display:block;height:100%;'
        f'width:{pct:.0f}%;background:#0969da"></span></span>'
    )
    return Cell(f"{bar}{pct:.0f}%", title=f"{f:.4f}", numeric=True)


def render(columns: Sequence[Column], caption: str = "", empty: str = "nothing to show") -> str:
    """The HTML of a table made of ``columns`` (all the same length), with an optional
    caption below it; header groups span their columns. The table scrolls sideways
    inside its own box when it is wider than the output area.

    Example::

        >>> render([Column("name", [Cell("a"), Cell("b")])]).count("<tr")
        3
    """
    n = len(columns[0].cells) if columns else 0
    if not columns or n == 0:
        return f'<div style="opacity:0.7;font-size:12px">{_esc(empty)}</div>'
    grouped = any(c.group for c in columns)
    # a thin rule where a group of columns starts or ends reads as W&B's column groups
    sep = [i > 0 and columns[i].group != columns[i - 1].group for i in range(len(columns))]
    head = ["<thead><tr>"]
    second: list[str] = []
    i = 0
    while i < len(columns):
        col = columns[i]
        if grouped and col.group:
            j = i
            while j < len(columns) and columns[j].group == col.group:
                second.append(_th(columns[j], sep=sep[j]))
                j += 1
            head.append(
                f'<th colspan="{j - i}" style="{_CELL}{_GROUP}{_SEP if sep[i] else ""}'
                f'text-align:center">{_breakable(col.group)}</th>'
            )
            i = j
            continue
        head.append(_th(col, rowspan=2 if grouped else 1, sep=sep[i]))
        i += 1
    head.append("</tr>")
    if grouped:
        head.append("<tr>" + "".join(second) + "</tr>")
    head.append("</thead>")
    body = ["<tbody>"]
    for r in range(n):
        cells = (_td(c, c.cells[r], s) for c, s in zip(columns, sep, strict=True))
        body.append("<tr>" + "".join(cells) + "</tr>")
    body.append("</tbody>")
    cap = (
        f'<div style="font-size:11px;opacity:0.75;margin-top:2px">{caption}</div>'
        if caption
        else ""
    )
    return (
        f'<div class="jupyter-ext-table" style="{_WRAP_DIV}"><table style="{_TABLE}">'
        + "".join(head)
        + "".join(body)
        + f"</table>{cap}</div>"
    )


def _th(col: Column, rowspan: int = 1, sep: bool = False) -> str:
    span = f' rowspan="{rowspan}"' if rowspan > 1 else ""
    align = "right" if col.cells and all(c.numeric for c in col.cells if c.html) else "left"
    title = f' title="{_esc(col.title)}"' if col.title else ""
    rule = _SEP if sep else ""
    return (
        f'<th{span}{title} style="{_CELL}{_HEAD}{rule}text-align:{align};'
        f'vertical-align:bottom">{_breakable(col.header)}</th>'
    )


def _td(col: Column, cell: Cell, sep: bool = False) -> str:
    style = _CELL + (_SEP if sep else "")
    style += "text-align:right;" if cell.numeric else "text-align:left;"
    if col.nowrap:
        style += "white-space:nowrap;"
    style += cell.style
    title = f' title="{_esc(cell.title)}"' if cell.title else ""
    inner = cell.html
    if col.wide:
        # a bounded width keeps one long name from pushing every column out of view
        inner = (
            f'<div style="min-width:{col.min_em:g}em;max-width:22em;overflow-wrap:anywhere">'
            f"{inner}</div>"
        )
    return f'<td{title} style="{style}">{inner}</td>'


# -- the tables -------------------------------------------------------------------------
def _col(df: pd.DataFrame, name: str) -> list[Any]:
    return list(df[name]) if name in df.columns else [None] * len(df)


def _metric_order(keys: Iterable[str]) -> list[str]:
    """Metrics of one quantity side by side (train_loss next to val_loss)."""
    return sorted(set(keys), key=lambda k: (panel_of(k), k))


def runs_html(df: pd.DataFrame, now: float | None = None) -> str:
    """The table of ``jupyter_ext.runs()`` for reading: name, experiment, status badge,
    progress, device, the hparams that differ (one column each), the latest value of each
    metric (best marked), created ("3 min ago"), duration ("0:04"), and the short id last.
    What every run shares (one experiment, one device, equal hparams) is said once below
    the table instead of as columns of equal values.

    Example::

        >>> html = runs_html(jupyter_ext.runs())  # doctest: +SKIP
    """
    if df.empty:
        return render([], empty="no runs")
    hparams = [flatten(h) for h in _col(df, "hparams")]
    metrics = [m if isinstance(m, Mapping) else {} for m in _col(df, "metrics")]
    shared: dict[str, Any] = {}
    cols = _lead_columns(df, shared)
    cols.append(_status_column(_col(df, "status")))
    if "progress" in df.columns:
        cols.append(Column("progress", [_progress_cell(v) for v in df["progress"]], nowrap=True))
    if "accelerator" in df.columns:
        devices = _col(df, "devices")
        where = [_device(a, d) for a, d in zip(df["accelerator"], devices, strict=True)]
        if _same(where):
            shared["device"] = where[0]
        else:
            cols.append(Column("device", [Cell(_esc(w)) for w in where], nowrap=True))
    shown, same_hparams = _split_hparams(hparams)
    shared.update(same_hparams)
    for key in shown:
        values = [h.get(key) for h in hparams]
        if all(v is None or isinstance(v, (int, float, np.number)) for v in values):
            cols.append(_number_column(key, values, None, group="hparams"))
        else:
            cols.append(Column(key, [_value_cell(v) for v in values], group="hparams"))
    for key in _metric_order(k for m in metrics for k in m):
        values = [m.get(key) for m in metrics]
        mode = best_mode(key)
        col = _number_column(key, values, mode, group="latest metrics")
        col.title = f"latest {key}; best ({mode}) marked"
        cols.append(col)
    if "created" in df.columns:
        cols.append(_time_column("created", df["created"], now))
    if "duration_s" in df.columns:
        cols.append(_duration_column("duration", df["duration_s"]))
    cols.append(_id_column("id", _col(df, "id")))
    return render(cols, _shared_caption(shared))


def _lead_columns(df: pd.DataFrame, shared: dict[str, Any]) -> list[Column]:
    """Name first, then the experiment, unless every row shares it (then it goes into
    ``shared``, said once under the table)."""
    cols = [_name_column("name", _col(df, "name"))]
    if "experiment" in df.columns:
        if _same(df["experiment"]):
            shared["experiment"] = df["experiment"].iloc[0]
        else:
            cols.append(_name_column("experiment", df["experiment"], min_em=6))
    return cols


def _same(values: Iterable[Any]) -> bool:
    """More than one row, all with the same (known) value."""
    seen = [repr(v) for v in values]
    return len(seen) > 1 and len(set(seen)) == 1 and seen[0] not in ("None", "''", "nan")


def _shared_caption(shared: Mapping[str, Any]) -> str:
    if not shared:
        return ""
    same = ", ".join(f"{k}={number(v) if _is_num(v) else v}" for k, v in shared.items())
    return f"every run here: {_esc(same)}"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))


def _device(accelerator: Any, devices: Any) -> str:
    acc = "" if accelerator is None else str(accelerator)
    dev = "" if devices is None else str(devices)
    return f"{acc} \N{MULTIPLICATION SIGN}{dev}" if dev not in ("", "1", "None") else acc


def _split_hparams(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(hparams that differ between rows, {hparam: value} every row shares); a single
    row shows all of its hparams as columns."""
    keys = list(dict.fromkeys(k for h in rows for k in h))
    if len(rows) <= 1:
        return keys, {}
    shown, shared = [], {}
    for k in keys:
        values = [repr(h.get(k, "<missing>")) for h in rows]
        if len(set(values)) == 1:
            shared[k] = rows[0][k]
        else:
            shown.append(k)
    return shown, shared


def deployments_html(df: pd.DataFrame, now: float | None = None) -> str:
    """The table of ``jupyter_ext.deployments()`` for reading: name, status badge, URL,
    format, engine, target, created ("3 min ago"), path, and the error of those that
    have one (its first line; the whole text in the tooltip).

    Example::

        >>> html = deployments_html(jupyter_ext.deployments())  # doctest: +SKIP
    """
    if df.empty:
        return render([], empty="no deployments")
    cols = [_name_column("name", _col(df, "name")), _status_column(_col(df, "status"))]
    urls = []
    for u in _col(df, "url"):
        if u:
            urls.append(Cell(f'<a href="{_esc(u)}" target="_blank" style="{_MONO}">{_esc(u)}</a>'))
        else:
            urls.append(Cell(""))
    cols.append(Column("url", urls, nowrap=True))
    for name in ("format", "engine", "target"):
        if name in df.columns:
            cols.append(Column(name, [Cell(_esc(v or "")) for v in df[name]], nowrap=True))
    if "created" in df.columns:
        cols.append(_time_column("created", df["created"], now))
    if "path" in df.columns:
        paths = [
            Cell(f'<span style="{_MONO}">{_breakable(str(p))}</span>', title=str(p))
            if p
            else Cell("")
            for p in df["path"]
        ]
        cols.append(Column("path", paths, wide=True))
    errors = _col(df, "error")
    if any(errors):
        cells = []
        for e in errors:
            text = str(e or "")
            first = text.strip().splitlines()[0] if text.strip() else ""
            if len(first) > 90:
                first = first[:89] + "…"
            cells.append(Cell(f'<span style="color:#cf222e">{_esc(first)}</span>', title=text))
        cols.append(Column("error", cells, wide=True))
    return render(cols)


_SUMMARY_FIXED = ("run", "name", "experiment", "status")


def summary_html(df: pd.DataFrame, best: Mapping[str, str] | None = None) -> str:
    """The comparison summary (``Comparison.summary()``) for reading: name, experiment,
    status badge, the differing hparams, then per metric its last and best value under
    one heading (the best across runs marked: ``best[key]`` 'min'/'max', else by the
    metric's name), and the short run id last. Rows stay in the order given (sort first);
    an experiment every run shares is said once below the table.

    Example::

        >>> cmp = Comparison(["lr-0.1", "lr-0.01"])  # doctest: +SKIP
        >>> html = summary_html(cmp.summary(), best={"val_mse": "max"})  # doctest: +SKIP
    """
    if df.empty:
        return render([], empty="no runs")
    best = dict(best or {})
    shared: dict[str, Any] = {}
    cols = _lead_columns(df, shared)
    if "status" in df.columns:
        cols.append(_status_column(df["status"]))
    metric_cols = [c for c in df.columns if str(c).endswith((".last", ".best"))]
    for c in df.columns:
        if c in _SUMMARY_FIXED or c in metric_cols:
            continue
        values = list(df[c])
        header = str(c)[3:] if str(c).startswith("hp.") else str(c)
        if all(v is None or _is_num(v) for v in values):
            cols.append(_number_column(header, values, None, group="hparams"))
        else:
            cols.append(Column(header, [_value_cell(v) for v in values], group="hparams"))
    for c in metric_cols:
        key, _, which = str(c).rpartition(".")
        mode = best.get(key) or best_mode(key)
        col = _number_column(which, list(df[c]), mode, group=key, what=f"{key}.{which}")
        over = "its best value over each run" if which == "best" else "its last value"
        col.title = f"{key}: {over}; the best across runs ({mode}) marked"
        cols.append(col)
    cols.append(_id_column("id", _col(df, "run")))
    return render(cols, _shared_caption(shared))


def frame_html(
    df: pd.DataFrame, best: Mapping[str, str] | None = None, now: float | None = None
) -> str:
    """Any results frame (a sweep's trials, a custom listing) for reading, by column:
    ``name`` first, ``id``/``run`` last as a short id, ``status``/``state`` as a badge,
    datetimes as "3 min ago", ``*duration*`` seconds or timedeltas as "0:04", dict columns
    spread into their own columns, numbers at 4 significant digits, and the best value
    marked in the columns ``best`` names ({column: 'min' | 'max'}).

    Example::

        >>> frame_html(pd.DataFrame({"name": ["a", "b"], "value": [0.5, 0.25]}),
        ...            best={"value": "min"}).count('title="best value (min)')
        1
    """
    if df.empty:
        return render([], empty="no rows")
    best = dict(best or {})
    first: list[Column] = []
    middle: list[Column] = []
    last: list[Column] = []
    for c in df.columns:
        name = str(c)
        values = list(df[c])
        lower = name.lower()
        if lower == "name":
            first.append(_name_column(name, values))
        elif lower in ("id", "run", "run_id"):
            last.append(_id_column(name, values))
        elif lower in ("status", "state"):
            middle.append(Column(name, [Cell(badge(_plain(v))) for v in values], nowrap=True))
        elif pd.api.types.is_datetime64_any_dtype(df[c]):
            middle.append(_time_column(name, values, now))
        elif "duration" in lower:
            secs = [v.total_seconds() if isinstance(v, _dt.timedelta) else v for v in values]
            middle.append(_duration_column(name.removesuffix("_s"), secs))
        elif any(isinstance(v, Mapping) for v in values):
            flat = [flatten(v) for v in values]
            for key in dict.fromkeys(k for f in flat for k in f):
                sub = [f.get(key) for f in flat]
                if all(v is None or _is_num(v) for v in sub):
                    middle.append(_number_column(key, sub, best.get(key), group=name))
                else:
                    middle.append(Column(key, [_value_cell(v) for v in sub], group=name))
        elif all(v is None or _is_num(v) for v in values):
            middle.append(_number_column(name, values, best.get(name)))
        else:
            middle.append(Column(name, [_value_cell(v) for v in values]))
    return render(first + middle + last)


def _plain(v: Any) -> str:
    """An enum's value (optuna's TrialState.COMPLETE -> 'complete'), else the text."""
    text = getattr(v, "name", None) if not isinstance(v, str) else v
    return str(text if text is not None else v).lower()


# -- frames that display through these tables ----------------------------------------------
class _ShownFrame(pd.DataFrame):
    """A DataFrame whose notebook display is a table for reading; its data are the
    plain frame's. Anything derived from it (a slice, a sort) is a plain DataFrame."""

    _render: Callable[[pd.DataFrame], str]

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def _repr_html_(self) -> str:
        return type(self)._render(pd.DataFrame(self))


class RunsFrame(_ShownFrame):
    """What ``jupyter_ext.runs()`` returns: shown with :func:`runs_html`.

    Example::

        >>> RunsFrame(pd.DataFrame({"id": [], "name": []}))._repr_html_()
        '<div style="opacity:0.7;font-size:12px">no runs</div>'
    """

    _render = staticmethod(runs_html)


class DeploymentsFrame(_ShownFrame):
    """What ``jupyter_ext.deployments()`` returns: shown with :func:`deployments_html`.

    Example::

        >>> DeploymentsFrame(pd.DataFrame({"name": []}))._repr_html_()
        '<div style="opacity:0.7;font-size:12px">no deployments</div>'
    """

    _render = staticmethod(deployments_html)


class SummaryFrame(_ShownFrame):
    """A comparison summary shown with :func:`summary_html`; the ``best`` overrides
    travel in ``attrs["best"]``.

    Example::

        >>> SummaryFrame(pd.DataFrame({"run": []}))._repr_html_()
        '<div style="opacity:0.7;font-size:12px">no runs</div>'
    """

    def _repr_html_(self) -> str:
        return summary_html(pd.DataFrame(self), self.attrs.get("best"))


def shown(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``df`` as the frame that displays as the ``kind`` table ('runs', 'deployments',
    'summary'); the data are not copied or changed.

    Example::

        >>> type(shown(pd.DataFrame({"name": []}), "deployments")).__name__
        'DeploymentsFrame'
    """
    classes: dict[str, type[_ShownFrame]] = {
        "runs": RunsFrame,
        "deployments": DeploymentsFrame,
        "summary": SummaryFrame,
    }
    if kind not in classes:
        raise ValueError(f"kind must be one of {', '.join(classes)}; got {kind!r}")
    out = classes[kind](df)
    out.attrs.update(df.attrs)
    return out
