"""Importing runs that Lightning logged elsewhere: CSVLogger and TensorBoard logs.

Imported runs land in the workspace store as finished runs (``source`` 'csv' or
'tensorboard'), so they compare with the toolkit's own runs in one chart::

    jupyter_ext.import_logs("old_logs/")                 # every run found below
    jupyter_ext.compare(jupyter_ext.import_logs("lightning_logs/version_3"))

Importing is idempotent: each run is keyed by a hash of its metric files, so importing
the same logs again (even from another copy) returns the existing run.

CSV rows are checked as they are read: a truncated or corrupt ``metrics.csv`` is refused
naming the file and the line, and nothing of that import is recorded.
"""

from __future__ import annotations

import csv
import hashlib
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .store import Series, Store, open_store

_EVENTS = "events.out.tfevents.*"
_SKIP_KEYS = {"step", "epoch", "global_step"}


class LogImportError(ValueError):
    """Logs that cannot be imported; the message names the file (and line) and why."""


@dataclass
class _Found:
    """One run read from disk, ready to be recorded."""

    source: str
    path: Path  # the metrics.csv, or the directory of the event files
    key: str
    name: str
    experiment: str
    hparams: dict[str, Any]
    series: dict[str, Series]
    started: float | None
    ended: float | None
    files: list[Path] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.series.values())


# -- hparams.yaml ---------------------------------------------------------------------
class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that reads ``!!python/...`` tags as plain data instead of refusing them
    (Lightning writes e.g. Namespaces that way) and never constructs objects."""


def _plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_TolerantLoader.add_multi_constructor("", _plain)


def _read_hparams(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise LogImportError(f"{path}{where}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LogImportError(f"{path}: expected a mapping of hyperparameters, got {type(data)}")
    return {str(k): v for k, v in data.items()}


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def _run_name(version_dir: Path) -> tuple[str, str]:
    """(name, experiment) from ``.../<logger name>/version_N``."""
    parent = version_dir.parent.name or "imported"
    return f"{parent}/{version_dir.name}", parent


# -- CSVLogger ------------------------------------------------------------------------
def read_csv_logs(path: str | Path) -> dict[str, Series]:
    """Read a Lightning CSVLogger ``metrics.csv`` into ``{key: Series}`` (time is NaN:
    CSVLogger records none). Refuses a truncated or corrupt file, naming file and line.

    Example::

        >>> series = read_csv_logs("lightning_logs/version_0/metrics.csv")  # doctest: +SKIP
        >>> series["val_loss"].value  # doctest: +SKIP
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise LogImportError(f"{path}: empty file, expected a header line like 'epoch,step,…'")
        header = [h.strip() for h in header]
        if "step" not in header:
            raise LogImportError(
                f"{path}, line 1: no 'step' column in the header {header}; "
                "is this a Lightning CSVLogger metrics.csv?"
            )
        width = len(header)
        i_step = header.index("step")
        i_epoch = header.index("epoch") if "epoch" in header else None
        metric_cols = [j for j, h in enumerate(header) if h not in _SKIP_KEYS]
        steps: list[int] = []
        epochs: list[int] = []
        cells: list[list[str]] = []
        lines: list[int] = []
        epoch = 0
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise LogImportError(
                    f"{path}, line {line}: expected {width} fields ({','.join(header)}), "
                    f"found {len(row)}; the file is truncated or corrupt"
                )
            try:
                steps.append(int(float(row[i_step])))
            except ValueError:
                raise LogImportError(
                    f"{path}, line {line}: step {row[i_step]!r} is not a number"
                ) from None
            if i_epoch is not None and row[i_epoch].strip():
                try:
                    epoch = int(float(row[i_epoch]))
                except ValueError:
                    raise LogImportError(
                        f"{path}, line {line}: epoch {row[i_epoch]!r} is not a number"
                    ) from None
            epochs.append(epoch)
            cells.append(row)
            lines.append(line)
    out: dict[str, Series] = {}
    step_arr = np.asarray(steps, dtype=np.int64)
    epoch_arr = np.asarray(epochs, dtype=np.int64)
    for j in metric_cols:
        rows_with, values = [], []
        for r, row in enumerate(cells):
            cell = row[j].strip()
            if not cell:
                continue  # not logged at this step
            try:
                values.append(float(cell))
            except ValueError:
                raise LogImportError(
                    f"{path}, line {lines[r]}: {header[j]} value {cell!r} is not a "
                    "number; the file is corrupt"
                ) from None
            rows_with.append(r)
        if rows_with:
            idx = np.asarray(rows_with)
            out[header[j]] = Series(
                step_arr[idx],
                epoch_arr[idx],
                np.full(len(idx), np.nan),
                np.asarray(values, dtype=np.float64),
            )
    return out


def _found_csv(metrics_csv: Path, experiment: str | None) -> _Found:
    series = read_csv_logs(metrics_csv)
    version_dir = metrics_csv.parent
    name, default_exp = _run_name(version_dir)
    hp_file = version_dir / "hparams.yaml"
    stat = metrics_csv.stat()
    started = hp_file.stat().st_mtime if hp_file.is_file() else None
    return _Found(
        source="csv",
        path=metrics_csv,
        key="csv:" + _digest([metrics_csv]),
        name=name,
        experiment=experiment or default_exp,
        hparams=_read_hparams(hp_file),
        series=series,
        started=min(started, stat.st_mtime) if started else stat.st_mtime,
        ended=stat.st_mtime,
        files=[metrics_csv],
    )


# -- TensorBoard ----------------------------------------------------------------------
def read_tensorboard_logs(path: str | Path) -> dict[str, Series]:
    """Scalars of TensorBoard event files (a directory, or one file) as ``{key: Series}``.

    Needs the ``tensorboard`` package (``pip install 'jupyter-ext[tensorboard]'``).
    The ``epoch`` scalar Lightning logs becomes the epoch column of the other series.

    Example::

        >>> series = read_tensorboard_logs("tb_logs/my_model/version_0")  # doctest: +SKIP
    """
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError:
        raise LogImportError(
            "reading TensorBoard logs needs the tensorboard package: "
            "pip install 'jupyter-ext[tensorboard]'"
        ) from None
    acc = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    try:
        acc.Reload()
    except Exception as exc:  # tensorboard raises assorted errors on damaged files
        raise LogImportError(f"{path}: cannot read TensorBoard events ({exc})") from None
    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    tags = acc.Tags()
    for tag in tags.get("scalars", []):
        events = acc.Scalars(tag)
        raw[tag] = (
            np.array([e.step for e in events], dtype=np.int64),
            np.array([e.wall_time for e in events], dtype=np.float64),
            np.array([e.value for e in events], dtype=np.float64),
        )
    for tag in tags.get("tensors", []):
        # TF2-style summaries store scalars as tensors of the "scalars" plugin.
        if tag in raw or acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        events = acc.Tensors(tag)
        raw[tag] = (
            np.array([e.step for e in events], dtype=np.int64),
            np.array([e.wall_time for e in events], dtype=np.float64),
            np.array(
                [float(tensor_util.make_ndarray(e.tensor_proto).reshape(-1)[0]) for e in events],
                dtype=np.float64,
            ),
        )
    epoch_steps = epoch_vals = None
    if "epoch" in raw:
        order = np.argsort(raw["epoch"][0], kind="stable")
        epoch_steps = raw["epoch"][0][order]
        epoch_vals = raw["epoch"][2][order].astype(np.int64)
    out = {}
    for tag, (steps, times, values) in raw.items():
        if tag in _SKIP_KEYS:
            continue
        if tag == "hp_metric" and np.all(values == -1):
            continue  # Lightning's placeholder when no hp_metric was logged
        if epoch_steps is not None and len(epoch_steps):
            pos = np.searchsorted(epoch_steps, steps, side="right") - 1
            epochs = np.where(pos >= 0, epoch_vals[np.clip(pos, 0, None)], 0)
        else:
            epochs = np.zeros(len(steps), dtype=np.int64)
        out[tag] = Series(steps, epochs.astype(np.int64), times, values)
    return out


def _found_tensorboard(target: Path, experiment: str | None) -> _Found:
    directory = target if target.is_dir() else target.parent
    files = sorted(directory.glob(_EVENTS)) if target.is_dir() else [target]
    series = read_tensorboard_logs(target)
    name, default_exp = _run_name(directory)
    times = [float(s.time[np.isfinite(s.time)].min()) for s in series.values() if len(s)]
    ends = [float(s.time[np.isfinite(s.time)].max()) for s in series.values() if len(s)]
    return _Found(
        source="tensorboard",
        path=target,
        key="tensorboard:" + _digest(files),
        name=name,
        experiment=experiment or default_exp,
        hparams=_read_hparams(directory / "hparams.yaml"),
        series=series,
        started=min(times) if times else None,
        ended=max(ends) if ends else None,
        files=files,
    )


# -- discovery and recording ----------------------------------------------------------
def find_logs(path: str | Path, experiment: str | None = None) -> list[_Found]:
    """Read (without recording) every CSVLogger and TensorBoard run at or below ``path``."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if root.is_file():
        if root.name.startswith("events.out.tfevents."):
            return [_found_tensorboard(root, experiment)]
        if root.suffix == ".csv":
            return [_found_csv(root, experiment)]
        raise LogImportError(
            f"{root}: not a CSVLogger metrics.csv nor a TensorBoard events.out.tfevents.* file"
        )
    found = [_found_csv(p, experiment) for p in sorted(root.rglob("metrics.csv"))]
    event_dirs = sorted({p.parent for p in root.rglob(_EVENTS)})
    found += [_found_tensorboard(d, experiment) for d in event_dirs]
    if not found:
        raise LogImportError(
            f"no logs under {root}: expected Lightning CSVLogger output (version_N/metrics.csv) "
            "or TensorBoard event files (events.out.tfevents.*)"
        )
    return found


def _record(found: _Found, store: Store) -> tuple[dict[str, Any], bool]:
    existing = store.run_by_source_key(found.key)
    if existing is not None:
        return existing, False
    last_step = max((int(s.step[-1]) for s in found.series.values() if len(s)), default=None)
    last_epoch = max((int(s.epoch[-1]) for s in found.series.values() if len(s)), default=None)
    row = store.create_run(
        name=found.name,
        experiment=found.experiment,
        status="succeeded",
        created=found.started or found.ended or 0.0,
        started=found.started,
        ended=found.ended,
        hparams=_jsonable(found.hparams),
        source=found.source,
        run_dir=str(found.path.parent if found.path.is_file() else found.path),
        step=last_step,
        epoch=last_epoch,
    )
    try:
        for key, s in found.series.items():
            store.add_series(row.id, key, s)
        # The key goes on last: an import that died half-way is not mistaken for done.
        store.update_run(row.id, source_key=found.key)
    except sqlite3.IntegrityError:
        store.delete_run(row.id)  # another kernel imported the same logs meanwhile
        other = store.run_by_source_key(found.key)
        if other is None:
            raise
        return other, False
    except BaseException:
        store.delete_run(row.id)
        raise
    return store.get_run(row.id) or row, True


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def import_logs(path: str | Path, experiment: str | None = None) -> pd.DataFrame:
    """Record Lightning CSVLogger / TensorBoard runs at or below ``path`` as finished runs.

    Returns one row per run found: id, name, experiment, source, path, points, and
    ``imported`` (False when it was already in the store). The frame has an ``id``
    column, so it can be passed to :func:`jupyter_ext.compare` as it is. ``experiment``
    defaults to the logger's name directory (``lightning_logs``).

    Example::

        >>> import jupyter_ext
        >>> runs = jupyter_ext.import_logs("lightning_logs/")  # doctest: +SKIP
        >>> jupyter_ext.compare(runs, metrics=["val_loss"])  # doctest: +SKIP
    """
    found = find_logs(path, experiment)  # everything parsed before anything is written
    store = open_store()
    records = []
    for f in found:
        row, new = _record(f, store)
        records.append(
            {
                "id": row.id,
                "name": row.name,
                "experiment": row.experiment,
                "source": f.source,
                "path": str(f.path),
                "points": f.points,
                "imported": new,
            }
        )
    columns = ["id", "name", "experiment", "source", "path", "points", "imported"]
    return pd.DataFrame.from_records(records, columns=columns)
