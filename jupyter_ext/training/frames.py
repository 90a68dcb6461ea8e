"""Run records and metric series as what the API and the views show.

Pure functions over :class:`~jupyter_ext.store.RunRecord` and metric series, shared by
``Run``, ``runs()``, the monitor and the comparison, so none of them imports another.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from ..store import ACTIVE, RunRecord, Series


def progress_of(row: RunRecord) -> dict[str, Any]:
    """epoch, step, total_steps, fraction (0..1 or None) and eta_s of a run.

    Example::

        >>> progress_of(store.get_run(run_id))["fraction"]  # doctest: +SKIP
        0.42
    """
    total, step = row.total_steps, row.step
    fraction = None
    if total and step is not None:
        fraction = min(step / total, 1.0)
    if row.status == "succeeded":
        fraction = 1.0
    return {
        "epoch": row.epoch,
        "step": step,
        "total_steps": total,
        "fraction": fraction,
        "eta_s": row.eta_s if row.status in ACTIVE else None,
    }


def metrics_frame(series: dict[str, Series]) -> pd.DataFrame:
    """A long DataFrame (key, step, epoch, time, value) of a run's metric series.

    Example::

        >>> metrics_frame(store.read_metrics(run_id)[0]).key.unique()  # doctest: +SKIP
        array(['train_loss', 'val_loss'], dtype=object)
    """
    frames = [
        pd.DataFrame({"key": k, "step": s.step, "epoch": s.epoch, "time": s.time, "value": s.value})
        for k, s in series.items()
        if len(s)
    ]
    if not frames:
        return pd.DataFrame(
            {
                "key": pd.Series(dtype=str),
                "step": pd.Series(dtype="int64"),
                "epoch": pd.Series(dtype="int64"),
                "time": pd.Series(dtype=float),
                "value": pd.Series(dtype=float),
            }
        )
    return pd.concat(frames, ignore_index=True)


def duration_s(row: RunRecord) -> float | None:
    """Seconds the run has taken so far (running) or took (ended)."""
    start = row.started or row.created
    end = row.ended or (time.time() if row.status in ACTIVE else None)
    return None if start is None or end is None else end - start


def describe(row: RunRecord) -> str:
    """One line: ``<Run NAME (ID) STATUS step S/T>``."""
    p = progress_of(row)
    prog = ""
    if p["step"] is not None:
        prog = f" step {p['step']}" + (f"/{p['total_steps']}" if p["total_steps"] else "")
    return f"<Run {row.name} ({row.id}) {row.status}{prog}>"


def log_interval_note(row: RunRecord) -> str:
    """Say how often on-step metrics are logged, and whether the toolkit chose it.

    Example::

        >>> log_interval_note(record)  # doctest: +SKIP
        'on-step metrics every 1 step (chosen for this 32-step run; set ...)'
    """
    n = row.log_every_n_steps
    if not n:
        return ""
    steps = f"{n} step{'s' if n != 1 else ''}"
    if row.log_every_chosen:
        length = f"{row.total_steps}-step " if row.total_steps else ""
        return (
            f"on-step metrics every {steps} (chosen for this {length}run; "
            "set log_every_n_steps to override)"
        )
    return f"on-step metrics every {steps} (log_every_n_steps)"


def still_going(rows: list[RunRecord], shown: int = 5) -> str:
    """One line naming the runs that are still going ('' when none), for a kernel that
    (re)loads the extension: runs outlive kernels, and this is how a person learns so.

    Example::

        >>> still_going(store.list_runs(status=ACTIVE))  # doctest: +SKIP
        '1 run still going: baseline (running, step 120/500). `%monitor NAME` re-attaches.'
    """
    if not rows:
        return ""
    parts = []
    for r in rows[:shown]:
        p = progress_of(r)
        where = f", step {p['step']}/{p['total_steps'] or '?'}" if p["step"] is not None else ""
        parts.append(f"{r.name} ({r.status}{where})")
    more = f" and {len(rows) - shown} more (`%runs --status running`)" if len(rows) > shown else ""
    noun = "run" if len(rows) == 1 else "runs"
    return f"{len(rows)} {noun} still going: {', '.join(parts)}{more}. `%monitor NAME` re-attaches."
