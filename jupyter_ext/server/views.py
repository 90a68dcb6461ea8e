"""What the REST API answers: plain JSON-ready dicts built from the toolkit's Python API.

Every function here is synchronous and may touch SQLite, psutil or NVML, so the handlers
call them off the event loop (``asyncio.to_thread``). They raise :class:`ApiError` for
answers other than 200 (unknown run, bad cursor, run already ended).

Times are Unix seconds (floats). Non-finite floats (NaN, +-inf) become ``null``: JSON has
no spelling for them, and ``JSON.parse`` refuses Python's ``NaN``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tornado.web import HTTPError

from ..config import get_config
from ..store import TERMINAL, DeploymentRecord, RunRecord, Series, Store, open_store

# Deployment record fields the API shows (``info`` is summarised, never sent whole).
_DEPLOYMENT_FIELDS = ("name", "target", "status", "url", "format", "engine", "created",
                      "ended", "path", "host", "port", "pid", "run_id", "error")  # fmt: skip


class ApiError(HTTPError):
    """An answer other than 200: HTTP ``code``, message, and extra JSON fields.

    A tornado ``HTTPError``, so raised anywhere in a handler (or in the thread it awaits)
    it ends the request with that status and is logged as one line, without a traceback.

    Example::

        >>> raise ApiError(404, "no run with id 'x'")  # doctest: +SKIP
    """

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(code, message)
        self.message = message
        self.extra = extra


def jsonable(value: Any) -> Any:
    """``value`` with only JSON types left: numpy scalars and arrays become Python
    numbers and lists, non-finite floats and missing values (NaN, pd.NA, NaT) ``None``.

    Example::

        >>> jsonable({"a": np.float64("nan"), "b": np.arange(2), "c": (1.5, float("inf"))})
        {'a': None, 'b': [0, 1], 'c': [1.5, None]}
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if _is_missing(value):
        return None
    if hasattr(value, "timestamp"):  # datetime, pandas Timestamp
        return value.timestamp()
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _floats(values: np.ndarray) -> list[float | None]:
    """A float column as a list, non-finite values as None (JSON has no NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    out: list[float | None] = arr.tolist()
    for i in np.flatnonzero(~np.isfinite(arr)):
        out[i] = None
    return out


def error_line(error: str | None) -> str | None:
    """One line that says what went wrong: a traceback's last line (the exception),
    else the error's first line.

    Example::

        >>> error_line("Traceback (most recent call last):\\n  ...\\nValueError: boom")
        'ValueError: boom'
        >>> error_line("Run lost: no heartbeat for 12 s")
        'Run lost: no heartbeat for 12 s'
    """
    if not error:
        return None
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return None
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


# -- runs ---------------------------------------------------------------------------------
def _store() -> Store:
    return open_store(get_config().home_path)


def _current(store: Store, run_id: str) -> RunRecord:
    """The run as it is now (a dead worker is marked lost first); 404 if unknown."""
    from ..training.run import RunNotFound, current

    try:
        return current(store, run_id)
    except RunNotFound:
        raise ApiError(404, f"no run with id {run_id!r} in {store.path.parent}") from None


def run_item(store: Store, row: RunRecord) -> dict[str, Any]:
    """A run as ``GET runs`` lists it.

    Example::

        >>> run_item(store, store.get_run(run_id))["progress"]["fraction"]  # doctest: +SKIP
        1.0
    """
    from ..metric_names import metric_color
    from ..training.frames import duration_s, position_text, progress_of

    return {
        "id": row.id,
        "name": row.name,
        "experiment": row.experiment,
        "status": row.status,
        "progress": progress_of(row),
        "position": position_text(row),  # "epoch 15/15 · step 225/225", as the monitor reads
        "created": row.created,
        "started": row.started,
        "ended": row.ended,
        "updated": row.updated,
        "duration_s": duration_s(row),
        "accelerator": row.accelerator,
        "devices": row.devices,
        "hparams": row.hparams or {},
        "launcher": row.launcher,
        "pid": row.pid,
        "host": row.host,
        "metrics": (metrics := store.last_metrics(row.id)),
        # One colour per metric, as every notebook monitor draws it (train/val share a hue).
        "colors": {key: metric_color(key) for key in metrics},
        "error_line": error_line(row.error),
    }


def list_runs(
    *,
    experiment: str | None = None,
    status: Sequence[str] | None = None,
    since: float | None = None,
    before: str | None = None,
    limit: int = 200,
    since_overlap_s: float = 0.0,
) -> dict[str, Any]:
    """``GET runs``: newest first, one page of at most ``limit`` runs.

    ``now`` is the server's clock before the listing, to pass back as ``since``; ``next``
    is the ``before`` of the next page (None on the last page).

    Example::

        >>> page = list_runs(status=["running"], limit=50)  # doctest: +SKIP
        >>> page["next"], [r["name"] for r in page["runs"]]  # doctest: +SKIP
        (None, ['baseline'])
    """
    store = _store()
    # The one read that writes: a worker that died without a word is shown as lost.
    store.reap_lost(get_config().lost_after_s)
    if before is not None and store.get_run(before) is None:
        raise ApiError(
            400,
            f"before must be the id of a run in this workspace (the `next` of an earlier "
            f"page), got {before!r}",
            parameter="before",
        )
    now = time.time()
    rows = store.list_runs(
        experiment=experiment,
        status=list(status) if status else None,
        since=None if since is None else since - since_overlap_s,
        before=before,
        limit=limit + 1,  # one more tells whether there is a next page
        newest_first=True,
    )
    page = rows[:limit]
    return {
        "runs": [run_item(store, r) for r in page],
        "now": now,
        "next": page[-1].id if len(rows) > limit else None,
    }


def run_detail(run_id: str) -> dict[str, Any]:
    """``GET runs/{id}``: the listed item plus checkpoints, the full error, metric keys,
    and a fine-tune's sample generations (``samples``).

    Example::

        >>> run_detail(run_id)["metric_keys"]  # doctest: +SKIP
        ['train_loss', 'val_acc', 'val_loss']
    """
    store = _store()
    row = _current(store, run_id)
    return {
        **run_item(store, row),
        "precision": row.precision,
        "strategy": row.strategy,
        "trainer_args": row.trainer_args or {},
        "model_class": row.model_class,
        "log_every_n_steps": row.log_every_n_steps,
        "log_every_chosen": bool(row.log_every_chosen),
        "best_checkpoint": row.best_checkpoint,
        "last_checkpoint": row.last_checkpoint,
        "error": row.error,
        "metric_keys": store.metric_keys(run_id),
        "heartbeat": row.heartbeat,
        "load": {"cpu_pct": row.cpu_pct, "rss_mb": row.rss_mb, "gpu_mem_mb": row.gpu_mem_mb},
        "stop_requested": bool(row.stop_requested),
        "run_dir": row.run_dir,
        "notebook": row.notebook,
        "source": row.source,
        # A fine-tune's sample generations, one entry per validation, newest last
        # ([{step, epoch, samples: [{prompt, output}]}]); null for other runs. The panel
        # escapes the texts: they are model output.
        "samples": jsonable(row.samples),
    }


def series_points(series: Series, max_points: int) -> dict[str, Any]:
    """One metric key's points as JSON columns, downsampled to at most ``max_points``.

    Up to ``max_points`` points come as they are, a non-finite value as ``null``. Beyond
    that, :func:`jupyter_ext.downsample.minmax_indices` keeps each bucket's min and max
    (so every extreme survives) and drops non-finite values, which cannot be drawn.
    ``n`` is the count read, ``nonfinite`` how many of those were NaN or +-inf.

    Example::

        >>> series_points(Series.empty(), 100)["n"]
        0
    """
    from ..downsample import minmax_indices

    n = len(series)
    nonfinite = int(n - np.isfinite(series.value).sum())
    downsampled = n > max_points
    idx: Any = minmax_indices(series.step, series.value, max_points) if downsampled else slice(None)
    return {
        "step": series.step[idx].tolist(),
        "epoch": series.epoch[idx].tolist(),
        "time": _floats(series.time[idx]),
        "value": _floats(series.value[idx]),
        "n": n,
        "nonfinite": nonfinite,
        "downsampled": downsampled,
    }


def run_metrics(
    run_id: str, keys: Sequence[str] | None = None, after: int = 0, max_points: int | None = None
) -> dict[str, Any]:
    """``GET runs/{id}/metrics``: points of metric chunks newer than chunk id ``after``.

    Every requested key is present (empty when nothing new); without ``keys``, every key
    with new points. ``last`` is the chunk id to pass as ``after`` next time. ``max_points``
    defaults to :data:`jupyter_ext.downsample.DEFAULT_POINTS` (2000).

    Example::

        >>> first = run_metrics(run_id, ["train_loss"])  # doctest: +SKIP
        >>> newer = run_metrics(run_id, ["train_loss"], after=first["last"])  # doctest: +SKIP
    """
    from ..downsample import DEFAULT_POINTS

    store = _store()
    row = _current(store, run_id)
    series, last = store.read_metrics(run_id, keys=keys, after=after)
    points = DEFAULT_POINTS if max_points is None else max_points
    names = list(keys) if keys is not None else sorted(series)
    return {
        "id": run_id,
        "status": row.status,
        "after": after,
        "last": last,
        "metrics": {k: series_points(series.get(k, Series.empty()), points) for k in names},
    }


def run_logs(run_id: str, tail: int = 100) -> dict[str, Any]:
    """``GET runs/{id}/logs``: the last ``tail`` lines of the worker's stdout/stderr.

    Example::

        >>> print(run_logs(run_id, tail=5)["text"])  # doctest: +SKIP
    """
    from ..procs import log_tail
    from ..training.frames import without_ads

    store = _store()
    row = _current(store, run_id)
    log = Path(row.run_dir) / "worker.log" if row.run_dir else None
    # As the monitor shows it: Lightning's promotional tips left out (the file keeps them).
    text = without_ads(log_tail(log, tail, max_bytes=1 << 20))
    return {"id": run_id, "status": row.status, "tail": tail, "text": text}


def stop_run(run_id: str) -> dict[str, Any]:
    """``POST runs/{id}/stop``: ask the worker to stop gracefully (``Run.stop(wait=False)``).

    Raises ApiError 409 (with the status) for a run that has already ended.

    Example::

        >>> stop_run(run_id)  # doctest: +SKIP
        {'id': '2026...', 'name': 'long', 'status': 'running', 'stop_requested': True}
    """
    from ..training.run import Run

    store = _store()
    row = _current(store, run_id)
    if row.status in TERMINAL:
        raise ApiError(
            409,
            f"run {row.name} ({run_id}) has already ended: {row.status}",
            id=run_id,
            status=row.status,
        )
    status = Run(run_id, store).stop(wait=False)
    return {"id": run_id, "name": row.name, "status": status, "stop_requested": True}


# -- deployments and devices -------------------------------------------------------------
def deployment_item(record: DeploymentRecord) -> dict[str, Any]:
    """A deployment as ``GET deployments`` lists it (its API key's hash is never sent).

    Example::

        >>> deployment_item(store.get_deployment("mlp"))["url"]  # doctest: +SKIP
        'http://127.0.0.1:41234'
    """
    info = record.info or {}
    return {
        **{f: getattr(record, f) for f in _DEPLOYMENT_FIELDS},
        "reason": info.get("reason"),
        "api_key_required": bool(info.get("api_key_required", False)),
    }


def list_deployments() -> dict[str, Any]:
    """``GET deployments``: every deployment as it is now (a dead server reads ``lost``).

    Example::

        >>> [d["name"] for d in list_deployments()["deployments"]]  # doctest: +SKIP
        ['mlp']
    """
    from ..deployment.records import current_all

    return {"deployments": [deployment_item(r) for r in current_all(_store())]}


def stop_deployment(name: str) -> dict[str, Any]:
    """``DELETE deployments/{name}``: stop it (a local server's whole process group; a
    bundle's record is removed). Returns the deployment as it is afterwards.

    Example::

        >>> stop_deployment("mlp")["status"]  # doctest: +SKIP
        'stopped'
    """
    from ..deployment.api import DeploymentNotFound, get_deployment
    from ..deployment.records import current

    store = _store()
    try:
        dep = get_deployment(name)
    except DeploymentNotFound as exc:
        raise ApiError(404, str(exc)) from None
    before = current(store, name)
    dep.stop()
    after = current(store, name)
    if after is None and before is not None:  # a bundle: its record is gone
        return {**deployment_item(before), "status": "removed"}
    if after is None:
        raise ApiError(404, f"deployment {name!r} disappeared while stopping it")
    return deployment_item(after)


def list_accelerators() -> dict[str, Any]:
    """``GET accelerators``: the rows of :func:`jupyter_ext.accelerators` (live memory and
    utilisation), unknown values as null.

    Example::

        >>> list_accelerators()["accelerators"][0]["accelerator"]  # doctest: +SKIP
        'cpu'
    """
    from ..devices import accelerators

    frame = accelerators()
    return {"accelerators": jsonable(frame.astype(object).to_dict("records"))}
