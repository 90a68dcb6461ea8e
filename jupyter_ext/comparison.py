"""Comparing runs: which runs, their metrics as pandas frames, a summary, a live view.

The functions here are the Python face of ``%compare``::

    jupyter_ext.compare(["lr-0.1", "lr-0.01"])        # live widget, one chart per metric
    jupyter_ext.metrics("sweep", keys=["val_loss"])   # long DataFrame of an experiment
    jupyter_ext.summary(jupyter_ext.runs().query("status == 'succeeded'"))
    jupyter_ext.samples(["ft-a", "ft-b"])             # a fine-tune's sample generations

Runs are given as ids, names (a name used twice means the newest run of that name), an
experiment name (all its runs), :class:`~jupyter_ext.training.run.Run` objects, or a
``runs()``-style DataFrame (its ``id`` column), alone or in a list.

:class:`Comparison` is the data side of the live view: it remembers the last metric chunk
read per run, so each poll reads only what is new, and stops reading a run once it ended.
The live view itself (``compare()``) is :mod:`jupyter_ext.widgets.compare`, which builds
on this module; nothing here imports a widget.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .axes import X_AXES, X_FORMAT  # noqa: F401 (re-exported: comparison.X_AXES)
from .metric_names import best_mode
from .sample_texts import prompt_outputs, sample_records
from .store import ACTIVE, RunRecord, Series, Store, open_store
from .training.resolve import RunNotFound, resolve_run
from .training.run import current

__all__ = [
    "Comparison",
    "RunNotFound",
    "best_mode",
    "metrics",
    "prompt_outputs",
    "resolve_runs",
    "samples",
    "summary",
]

_X_ALIASES = {"wall": "time", "walltime": "time", "relative": "elapsed", "since_start": "elapsed"}

_COLUMNS = ["run", "name", "key", "step", "epoch", "time", "value"]
_SAMPLE_COLUMNS = ["run", "name", "step", "epoch", "prompt", "output"]


# -- which runs -----------------------------------------------------------------------
def resolve_runs(runs: Any, store: Store | None = None) -> list[RunRecord]:
    """Records of the runs ``runs`` refers to, in the given order, without duplicates.

    Example::

        >>> [r.name for r in resolve_runs(["baseline", "sweep"])]  # doctest: +SKIP
        ['baseline', 'sweep-lr0.1', 'sweep-lr0.01']
    """
    store = store or open_store()
    rows: dict[str, RunRecord] = {}
    for ref in _flatten(runs):
        for row in resolve_run(ref, store, experiments=True):
            rows.setdefault(row.id, row)
    if not rows:
        raise ValueError(
            "no runs to compare: pass run ids or names, an experiment name, or a "
            "jupyter_ext.runs() DataFrame with at least one row"
        )
    return list(rows.values())


def _flatten(runs: Any) -> Iterable[Any]:
    if runs is None:
        return
    if isinstance(runs, pd.DataFrame):
        if "id" not in runs.columns:
            raise ValueError(
                "a DataFrame of runs needs an 'id' column (as jupyter_ext.runs() returns); "
                f"this one has {list(runs.columns)}"
            )
        yield from runs["id"].tolist()
    elif isinstance(runs, pd.Series):
        yield from runs.tolist()
    elif isinstance(runs, (str, bytes)) or hasattr(runs, "id"):
        yield runs
    elif isinstance(runs, Iterable):
        for item in runs:
            yield from _flatten(item)
    else:
        raise TypeError(
            f"cannot compare {type(runs).__name__!r}: give run ids or names, an experiment "
            "name, Run objects, or a runs() DataFrame"
        )


# -- labels and hparams ---------------------------------------------------------------
def _flat_hparams(hp: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (hp or {}).items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat_hparams(v, name + "."))
        else:
            out[name] = v
    return out


def differing_hparams(rows: Sequence[RunRecord]) -> list[str]:
    """Hyperparameter names whose values are not the same in every run (missing counts).

    Example::

        >>> differing_hparams(store.list_runs(experiment="sweep"))  # doctest: +SKIP
        ['lr']
    """
    flats = [_flat_hparams(r.hparams or {}) for r in rows]
    if len(flats) < 2:
        return []
    keys = list(dict.fromkeys(k for f in flats for k in f))
    missing = object()
    return [k for k in keys if len({repr(f.get(k, missing)) for f in flats}) > 1]


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run_labels(rows: Sequence[RunRecord]) -> dict[str, str]:
    """Legend labels: each run's name plus the hparams that differ between ``rows``.

    Example::

        >>> run_labels(store.list_runs(experiment="sweep"))  # doctest: +SKIP
        {'20261123-142501-482-k7q2m9xa': 'm (lr=0.1)', '20261123-142502-...': 'm (lr=0.01)'}
    """
    diff = differing_hparams(rows)
    names = [r.name for r in rows]
    labels = {}
    for r in rows:
        flat = _flat_hparams(r.hparams or {})
        parts = [f"{k}={_fmt_value(flat[k])}" for k in diff if k in flat][:4]
        label = r.name
        if names.count(r.name) > 1 and not parts:
            label += f" [{r.id}]"
        labels[r.id] = f"{label} ({', '.join(parts)})" if parts else label
    return labels


# -- the data model of a comparison ---------------------------------------------------
class _Parts:
    """A growing series kept as chunks and joined only when read."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[Series] = []

    def add(self, s: Series) -> None:
        self.parts.append(s)

    def get(self) -> Series:
        if len(self.parts) != 1:
            self.parts = [Series.concat(self.parts)]
        return self.parts[0]


class Comparison:
    """The metrics of some runs, read from the store incrementally.

    Each :meth:`poll` reads only chunks newer than the last seen (one query per run still
    going) and returns what was new; a run that has ended is read one last time and then
    never again.

    Example::

        >>> cmp = Comparison(["lr-0.1", "lr-0.01"])  # doctest: +SKIP
        >>> cmp.poll()  # doctest: +SKIP
        {}
        >>> cmp.data.groupby("name").value.count()  # doctest: +SKIP
    """

    def __init__(self, runs: Any, keys: Sequence[str] | None = None, store: Store | None = None):
        self.store = store or open_store()
        self.keys = list(keys) if keys is not None else None
        self.rows: dict[str, RunRecord] = {}
        self._series: dict[str, dict[str, _Parts]] = {}
        self._last: dict[str, int] = {}
        self._done: set[str] = set()
        self.set_runs(runs)

    # runs ----------------------------------------------------------------------------
    def set_runs(self, runs: Any) -> dict[str, dict[str, Series]]:
        """Show these runs (refs as :func:`resolve_runs` takes); returns data of new ones."""
        rows = resolve_runs(runs, self.store)
        ids = [r.id for r in rows]
        for gone in set(self.rows) - set(ids):
            self.rows.pop(gone)
            self._series.pop(gone, None)
            self._last.pop(gone, None)
            self._done.discard(gone)
        new = {}
        for r in rows:
            if r.id not in self.rows:
                self._series[r.id] = {}
                self._last[r.id] = 0
            self.rows[r.id] = r
        self.rows = {i: self.rows[i] for i in ids}  # keep the caller's order
        for run_id in ids:
            if self._last[run_id] == 0 and run_id not in self._done:
                got = self._read(run_id)
                if got:
                    new[run_id] = got
        return new

    @property
    def run_ids(self) -> list[str]:
        return list(self.rows)

    @property
    def active(self) -> bool:
        """Whether any shown run may still log (queued or running, or not read since)."""
        return any(i not in self._done for i in self.rows)

    def labels(self) -> dict[str, str]:
        return run_labels(list(self.rows.values()))

    # reading -------------------------------------------------------------------------
    def _read(self, run_id: str) -> dict[str, Series]:
        # Status before metrics: a run seen ended here has written all its metrics, so
        # this read is its last.
        row = current(self.store, run_id)
        self.rows[run_id] = row
        series, last = self.store.read_metrics(run_id, keys=self.keys, after=self._last[run_id])
        self._last[run_id] = last
        if row.status not in ACTIVE:
            self._done.add(run_id)
        out = {}
        for key, s in series.items():
            if len(s):
                self._series[run_id].setdefault(key, _Parts()).add(s)
                out[key] = s
        return out

    def poll(self) -> dict[str, dict[str, Series]]:
        """Read what is new for every run still going: ``{run_id: {key: new Series}}``."""
        new = {}
        for run_id in self.rows:
            if run_id in self._done:
                continue
            got = self._read(run_id)
            if got:
                new[run_id] = got
        return new

    def set_keys(self, keys: Sequence[str] | None) -> None:
        """Restrict to these metric keys (None: all); re-reads the runs from the start."""
        self.keys = list(keys) if keys is not None else None
        for run_id in self.rows:
            self._series[run_id] = {}
            self._last[run_id] = 0
            self._done.discard(run_id)
            self._read(run_id)

    def series(self, run_id: str, key: str) -> Series | None:
        parts = self._series.get(run_id, {}).get(key)
        return parts.get() if parts is not None else None

    def all_keys(self) -> list[str]:
        """Every metric key logged by at least one shown run, sorted."""
        return sorted({k for per in self._series.values() for k in per})

    def absent(self, key: str) -> list[str]:
        """Ids of shown runs that never logged ``key``."""
        return [i for i in self.rows if key not in self._series.get(i, {})]

    def x_values(self, run_id: str, s: Series, x: str) -> np.ndarray:
        """The x coordinates of ``s`` (a series of run ``run_id``) on axis ``x``."""
        if x == "step":
            return s.step
        if x == "epoch":
            return s.epoch
        if x == "time":
            return s.time
        if x == "elapsed":
            return s.time - self.start_time(run_id)
        raise ValueError(f"unknown x axis {x!r}; one of {', '.join(X_AXES)}")

    def start_time(self, run_id: str) -> float:
        row = self.rows[run_id]
        start = row.started
        if start is None:
            firsts = [
                float(np.nanmin(p.get().time))
                for p in self._series.get(run_id, {}).values()
                if len(p.get()) and np.isfinite(p.get().time).any()
            ]
            start = min(firsts) if firsts else row.created
        return float(start) if start is not None else float("nan")

    # frames --------------------------------------------------------------------------
    @property
    def data(self) -> pd.DataFrame:
        """Long frame of every point read: run, name, key, step, epoch, time, value."""
        frames = []
        for run_id, per in self._series.items():
            name = self.rows[run_id].name
            for key in sorted(per):
                s = per[key].get()
                frames.append(
                    pd.DataFrame(
                        {
                            "run": run_id,
                            "name": name,
                            "key": key,
                            "step": s.step,
                            "epoch": s.epoch,
                            "time": s.time,
                            "value": s.value,
                        }
                    )
                )
        if not frames:
            return _empty_long()
        return pd.concat(frames, ignore_index=True)

    def summary(self, best: Mapping[str, str] | None = None) -> pd.DataFrame:
        """One row per run: id, name, experiment, status, the differing hparams, and for
        each metric ``<key>.last`` and ``<key>.best`` (NaN where a run never logged it)."""
        best = dict(best or {})
        for key, mode in best.items():
            if mode not in ("min", "max"):
                raise ValueError(f"best[{key!r}] must be 'min' or 'max', got {mode!r}")
        rows = list(self.rows.values())
        diff = differing_hparams(rows)
        keys = self.keys if self.keys is not None else self.all_keys()
        fixed = ["run", "name", "experiment", "status"]
        hp_cols = {k: (f"hp.{k}" if k in fixed else k) for k in diff}
        records = []
        for r in rows:
            flat = _flat_hparams(r.hparams or {})
            rec: dict[str, Any] = {
                "run": r.id,
                "name": r.name,
                "experiment": r.experiment,
                "status": r.status,
            }
            for k, col in hp_cols.items():
                rec[col] = flat.get(k)
            for key in keys:
                s = self.series(r.id, key)
                last = best_val = np.nan
                if s is not None and len(s):
                    finite = s.value[np.isfinite(s.value)]
                    last = float(s.value[-1])
                    if len(finite):
                        mode = best.get(key) or best_mode(key)
                        best_val = float(finite.max() if mode == "max" else finite.min())
                rec[f"{key}.last"] = last
                rec[f"{key}.best"] = best_val
            records.append(rec)
        columns = [*fixed, *hp_cols.values()]
        columns += [f"{k}.{w}" for k in keys for w in ("last", "best")]
        return pd.DataFrame.from_records(records, columns=columns)

    def samples(self) -> pd.DataFrame:
        """Every sample generation of the shown runs (a fine-tune writes some at each
        validation), one row per prompt and validation: run, name, step, epoch, prompt,
        output. Empty (with those columns) when no shown run has samples.

        Example::

            >>> cmp = Comparison(["ft-a", "ft-b"])  # doctest: +SKIP
            >>> cmp.samples().groupby("name").step.max()  # doctest: +SKIP
        """
        records = [
            {"run": r.id, "name": r.name, **rec}
            for r in self.rows.values()
            for rec in sample_records(r.samples)
        ]
        return pd.DataFrame.from_records(records, columns=_SAMPLE_COLUMNS).astype(
            {"step": "int64", "epoch": "int64"}
        )


def _empty_long() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": pd.Series(dtype=object),
            "name": pd.Series(dtype=object),
            "key": pd.Series(dtype=object),
            "step": pd.Series(dtype="int64"),
            "epoch": pd.Series(dtype="int64"),
            "time": pd.Series(dtype=float),
            "value": pd.Series(dtype=float),
        }
    )


def _check_keys(cmp: Comparison, keys: Sequence[str] | None) -> None:
    """Refuse a metric name no run logged (a typo), once no shown run can still log it.

    A metric that only some runs logged is fine: it is absent for the others.
    """
    if not keys or cmp.active:
        return
    logged = set(cmp.all_keys())
    unknown = [k for k in keys if k not in logged]
    if not unknown:
        return
    available = sorted({k for run_id in cmp.rows for k in cmp.store.metric_keys(run_id)})
    # The single closest name per unknown key: a list of near-misses reads as noise.
    close = list(
        dict.fromkeys(c for k in unknown for c in difflib.get_close_matches(k, available, n=1))
    )
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"no shown run logged {', '.join(map(repr, unknown))}; they logged: "
        f"{', '.join(available) or 'nothing'}.{hint}"
    )


# -- public functions -----------------------------------------------------------------
def metrics(runs: Any, keys: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The metrics of ``runs`` as one long DataFrame: run, name, key, step, epoch, time, value.

    ``keys`` restricts to some metric names; a key some runs never logged simply has no
    rows for them.

    Example::

        >>> import jupyter_ext
        >>> df = jupyter_ext.metrics(["lr-0.1", "lr-0.01"], keys="val_loss")  # doctest: +SKIP
        >>> df.pivot_table(index="step", columns="name", values="value")  # doctest: +SKIP
    """
    keys = [keys] if isinstance(keys, str) else keys
    cmp = Comparison(runs, keys=keys)
    _check_keys(cmp, keys)
    return cmp.data


def summary(
    runs: Any,
    metrics: str | Sequence[str] | None = None,
    best: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per run: its differing hparams, and the last and best value of each metric.

    Best is the minimum for loss-like metrics and the maximum for accuracy-like ones
    (``acc``, ``f1``, ``auc``, ...); override per metric with ``best={"val_mse": "max"}``.
    Non-finite values never count as best.

    Example::

        >>> import jupyter_ext
        >>> jupyter_ext.summary("sweep").sort_values("val_loss.best")  # doctest: +SKIP
        >>> jupyter_ext.summary("sweep").to_csv("sweep.csv", index=False)  # doctest: +SKIP
    """
    keys = [metrics] if isinstance(metrics, str) else metrics
    cmp = Comparison(runs, keys=keys)
    _check_keys(cmp, keys)
    return cmp.summary(best=best)


def samples(runs: Any) -> pd.DataFrame:
    """The sample generations of ``runs`` (fine-tunes write a few at each validation, on
    fixed prompts) as one long DataFrame: run, name, step, epoch, prompt, output.

    Runs without samples (any run that is not a fine-tune) simply have no rows.

    Example::

        >>> import jupyter_ext
        >>> df = jupyter_ext.samples(["ft-a", "ft-b"])  # doctest: +SKIP
        >>> last = df[df.step == df.groupby("run").step.transform("max")]  # doctest: +SKIP
        >>> last.pivot(index="prompt", columns="name", values="output")  # doctest: +SKIP
    """
    return Comparison(runs).samples()


def normalise_x(x: str) -> str:
    """The x axis key for ``x`` (``step``, ``epoch``, ``time`` or ``elapsed``), or an error.

    Example::

        >>> normalise_x("wall")
        'time'
    """
    key = _X_ALIASES.get(str(x).strip().lower(), str(x).strip().lower())
    if key not in X_AXES:
        raise ValueError(
            f"unknown x axis {x!r}: use step, epoch, time (wall clock) or elapsed "
            "(time since the run started)"
        )
    return key
