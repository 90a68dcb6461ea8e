"""Training runs: launch a Lightning ``Trainer.fit`` in a worker and follow it.

``train()`` validates everything it can in the kernel (Trainer argument names, the
selection through Lightning, that the objects pickle), writes the run to the store and
its payload to the run directory, hands it to the launcher and returns a :class:`Run`
at once. A ``Run`` is a handle on the store: every property reads the store, so it works
the same from another kernel or after a restart.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from . import payload as payload_mod
from . import selector
from .config import get_config
from .store import ACTIVE, TERMINAL, Store, open_store
from .trainer_args import validate as validate_trainer_args
from .worker import META, PAYLOAD

_SELECTION_KEYS = ("accelerator", "devices", "precision", "strategy")


class RunNotFound(LookupError):
    """No run matches; the message lists the closest names."""


class RunFailed(RuntimeError):
    """Raised by ``Run.wait(raise_on_failure=True)`` for a failed or lost run."""


class Run:
    """A training run in the workspace store.

    Example::

        >>> run = jupyter_ext.train(model, datamodule=dm, max_epochs=3)  # doctest: +SKIP
        >>> run.wait().status  # doctest: +SKIP
        'succeeded'
        >>> run.metrics.query("key == 'val_loss'").value.min()  # doctest: +SKIP
    """

    def __init__(self, run_id: str, store: Store | None = None) -> None:
        self._store = store or open_store()
        if self._store.get_run(run_id) is None:
            raise RunNotFound(f"no run with id {run_id!r} in {self._store.path}")
        self.id = run_id
        self._monitor: Any = None

    # -- state, always read from the store ---------------------------------------------
    @property
    def row(self) -> dict[str, Any]:
        """The run's store row (all columns), after checking whether its worker is alive."""
        row = self._store.get_run(self.id)
        assert row is not None
        if row["status"] in ACTIVE and self._store.reap_lost(get_config().lost_after_s, [row]):
            row = self._store.get_run(self.id)
            assert row is not None
        return row

    @property
    def name(self) -> str:
        return self.row["name"]

    @property
    def experiment(self) -> str:
        return self.row["experiment"]

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, stopped or lost."""
        return self.row["status"]

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def progress(self) -> dict[str, Any]:
        """epoch, step, total_steps, fraction (0..1 or None) and eta_s of the run."""
        return progress_of(self.row)

    @property
    def metrics(self) -> pd.DataFrame:
        """Every logged metric: a long DataFrame with key, step, epoch, time, value."""
        series, _ = self._store.read_metrics(self.id)
        return metrics_frame(series)

    @property
    def hparams(self) -> dict[str, Any]:
        return self.row["hparams"] or {}

    @property
    def error(self) -> str | None:
        """The traceback of a failed run (or why a run was lost); None otherwise."""
        return self.row["error"]

    @property
    def best_checkpoint(self) -> str | None:
        return self.row["best_checkpoint"]

    @property
    def last_checkpoint(self) -> str | None:
        return self.row["last_checkpoint"]

    @property
    def run_dir(self) -> Path:
        return Path(self.row["run_dir"])

    def logs(self, tail: int | None = 100) -> str:
        """The worker's stdout/stderr (the last ``tail`` lines; None for all)."""
        path = self.run_dir / "worker.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace")
        if tail is None:
            return text
        return "\n".join(text.splitlines()[-tail:])

    # -- actions ------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, raise_on_failure: bool = False) -> Run:
        """Block until the run has ended; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            status = self.status
            if status in TERMINAL:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.name} ({self.id}) still {status} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        if raise_on_failure and status in ("failed", "lost"):
            raise RunFailed(f"run {self.name} ({self.id}) {status}:\n{self.error}")
        return self

    def stop(self, wait: bool = True, timeout: float = 60.0) -> str:
        """Stop gracefully: the worker finishes its step, saves ``last.ckpt`` and ends as
        ``stopped``. If it has not ended after ``timeout`` s, its process group is
        terminated (and killed 10 s later). Returns the final (or current) status."""
        row = self.row
        if row["status"] in TERMINAL:
            return row["status"]
        self._store.update_run(self.id, stop_requested=1)
        if not wait:
            return self.status
        try:
            return self.wait(timeout=timeout).status
        except TimeoutError:
            pass
        from .launchers import get_launcher

        launcher = get_launcher()
        launcher.terminate(row)
        try:
            return self.wait(timeout=10).status
        except TimeoutError:
            launcher.terminate(row, kill=True)
        self._store.update_run(
            self.id,
            only_if_status=(*ACTIVE, "lost"),
            status="stopped",
            ended=time.time(),
            error="Stopped by force: the worker did not stop gracefully in time.",
        )
        return self.status

    def resume(self, name: str | None = None, wait: bool = False, **trainer_kwargs: Any) -> Run:
        """A new run that continues this one from its last (else best) checkpoint.

        Same model, data, Trainer arguments and selection, with ``trainer_kwargs`` on top
        (e.g. ``max_epochs=20`` to train longer); step and epoch go on where they were.

        Example::

            >>> run.stop()  # doctest: +SKIP
            >>> more = run.resume(max_epochs=20)  # doctest: +SKIP
        """
        ckpt = self.last_checkpoint or self.best_checkpoint
        if not ckpt or not Path(ckpt).exists():
            raise FileNotFoundError(
                f"run {self.name} ({self.id}) has no checkpoint to resume from "
                f"(status {self.status})"
            )
        saved = payload_mod.load(self.run_dir / PAYLOAD)
        return train(
            saved["model"],
            saved["datamodule"],
            train_dataloaders=saved["train_dataloaders"],
            val_dataloaders=saved["val_dataloaders"],
            name=name or f"{self.name}-resumed",
            experiment=self.experiment,
            wait=wait,
            ckpt_path=ckpt,
            **{**saved["trainer_kwargs"], **trainer_kwargs},
        )

    def load_model(self, checkpoint: str | None = None) -> Any:
        """The run's model with the weights of its best (else last) checkpoint.

        The model object comes from the run's own payload (its class travels with it),
        so this works for classes defined only in a notebook.
        """
        import torch

        path = checkpoint or self.best_checkpoint or self.last_checkpoint
        if not path or not Path(path).exists():
            raise FileNotFoundError(
                f"run {self.name} ({self.id}) has no checkpoint yet (status {self.status}); "
                "checkpoints are written at the end of each epoch and when a run stops"
            )
        model = payload_mod.load(self.run_dir / PAYLOAD)["model"]
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        return model.eval()

    def monitor(self) -> Any:
        """The live monitor widget of this run (the same one each time)."""
        if self._monitor is None or self._monitor.closed:
            from .widgets.monitor import RunMonitor

            self._monitor = RunMonitor(self)
        return self._monitor

    # -- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return describe(self.row)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .display import in_kernel

        if not in_kernel():
            return {"text/plain": repr(self)}
        return self.monitor()._repr_mimebundle_(include=include, exclude=exclude)


# -- helpers shared with the views ---------------------------------------------------------
def progress_of(row: dict[str, Any]) -> dict[str, Any]:
    total, step = row.get("total_steps"), row.get("step")
    fraction = None
    if total and step is not None:
        fraction = min(step / total, 1.0)
    if row["status"] == "succeeded":
        fraction = 1.0
    return {
        "epoch": row.get("epoch"),
        "step": step,
        "total_steps": total,
        "fraction": fraction,
        "eta_s": row.get("eta_s") if row["status"] in ACTIVE else None,
    }


def metrics_frame(series: dict[str, Any]) -> pd.DataFrame:
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


def _duration(row: dict[str, Any]) -> float | None:
    start = row.get("started") or row.get("created")
    end = row.get("ended") or (time.time() if row["status"] in ACTIVE else None)
    return None if start is None or end is None else end - start


def describe(row: dict[str, Any]) -> str:
    p = progress_of(row)
    prog = ""
    if p["step"] is not None:
        prog = f" step {p['step']}" + (f"/{p['total_steps']}" if p["total_steps"] else "")
    return f"<Run {row['name']} ({row['id']}) {row['status']}{prog}>"


# -- the API -------------------------------------------------------------------------------
def _default_name(store: Store, model: Any) -> str:
    base = type(model).__name__
    taken = set(store.run_names())
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _notebook_path() -> str | None:
    path = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server for each kernel
    if path:
        return path
    main = sys.modules.get("__main__")
    return getattr(main, "__vsc_ipynb_file__", None)  # VS Code


def train(
    model: Any,
    datamodule: Any = None,
    *,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    name: str | None = None,
    experiment: str | None = None,
    wait: bool = False,
    ckpt_path: str | os.PathLike[str] | None = None,
    **trainer_kwargs: Any,
) -> Run:
    """Launch ``Trainer(**trainer_kwargs).fit(model, ...)`` in a worker process; return its Run.

    The kernel's accelerator selection applies unless ``accelerator``/``devices``/
    ``precision``/``strategy`` are given here. Returns at once unless ``wait``.
    ``ckpt_path`` resumes from a checkpoint (``Trainer.fit``'s argument), e.g. the
    ``last_checkpoint`` of a stopped run; :meth:`Run.resume` does that for you.

    Example::

        >>> run = jupyter_ext.train(model, datamodule=dm, max_epochs=3)  # doctest: +SKIP
        >>> run.status  # doctest: +SKIP
        'running'
    """
    from lightning.pytorch import LightningDataModule, LightningModule

    if not isinstance(model, LightningModule):
        raise TypeError(
            f"model must be a lightning LightningModule, got {type(model).__module__}."
            f"{type(model).__name__}; wrap a torch.nn.Module in a LightningModule with "
            "training_step and configure_optimizers"
        )
    if datamodule is not None and not isinstance(datamodule, LightningDataModule):
        raise TypeError(
            f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}; "
            "pass plain DataLoaders as train_dataloaders=/val_dataloaders="
        )
    if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
        raise ValueError("give either datamodule or train_dataloaders/val_dataloaders, not both")
    if (
        datamodule is None
        and train_dataloaders is None
        and not _overrides(model, "train_dataloader")
    ):
        raise ValueError(
            "no training data: pass datamodule=, or train_dataloaders=, or define "
            "train_dataloader() on the model"
        )
    validate_trainer_args(trainer_kwargs)
    if ckpt_path is not None:
        ckpt_path = Path(ckpt_path).expanduser().resolve()
        if not ckpt_path.is_file():
            raise FileNotFoundError(
                f"ckpt_path {str(ckpt_path)!r} is not a file: give the path of a Lightning "
                "checkpoint, e.g. run.last_checkpoint of an earlier run"
            )
    sel = selector.resolve(**{k: v for k, v in trainer_kwargs.items() if k in _SELECTION_KEYS})
    full_kwargs = {**trainer_kwargs, **sel.trainer_kwargs()}
    objects = {
        "model": model,
        "datamodule": datamodule,
        "train_dataloaders": train_dataloaders,
        "val_dataloaders": val_dataloaders,
        "trainer_kwargs": full_kwargs,
        "ckpt_path": None if ckpt_path is None else str(ckpt_path),
    }
    data = payload_mod.dumps(objects)  # fails here, before anything is written or launched

    cfg = get_config()
    home = cfg.home_path.resolve()
    store = open_store(home)
    hparams = dict(getattr(model, "hparams", {}) or {})
    row = store.create_run(
        name=name or _default_name(store, model),
        experiment=experiment or "default",
        accelerator=sel.accelerator,
        devices=sel.devices,
        precision=sel.precision,
        strategy=sel.strategy,
        hparams=json.loads(json.dumps(hparams, default=str)),
        trainer_args={k: v for k, v in trainer_kwargs.items() if _jsonable(v)},
        model_class=f"{type(model).__module__}.{type(model).__qualname__}",
        notebook=_notebook_path(),
        cwd=os.getcwd(),
        launcher="local",
    )
    run_dir = home / "runs" / row["id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PAYLOAD).write_bytes(data)
    (run_dir / META).write_text(json.dumps({"sys_path": [p for p in sys.path if p]}))
    store.update_run(row["id"], run_dir=str(run_dir))
    row["run_dir"] = str(run_dir)

    from .launchers import get_launcher

    launcher = get_launcher()
    try:
        launched = launcher.launch(row, home, heartbeat_s=cfg.heartbeat_s)
    except Exception as exc:
        store.update_run(
            row["id"], status="failed", ended=time.time(), error=f"launch failed: {exc}"
        )
        raise
    store.update_run(
        row["id"],
        only_if_status=("queued",),
        pid=launched.pid,
        pid_started=launched.pid_started,
        host=launched.host,
        heartbeat=time.time(),
        launcher=f"{launcher.name}{' (warm)' if launched.warm else ''}",
    )
    run = Run(row["id"], store)
    if wait:
        run.wait()
    return run


def _overrides(model: Any, hook: str) -> bool:
    from lightning.pytorch.utilities.model_helpers import is_overridden

    return is_overridden(hook, model)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def get_run(ref: str | Run) -> Run:
    """A run by id or by name (a name used by several runs means the newest, with a warning).

    Example::

        >>> jupyter_ext.get_run("baseline").status  # doctest: +SKIP
        'succeeded'
    """
    if isinstance(ref, Run):
        return ref
    store = open_store()
    ref = str(ref).strip()
    if store.get_run(ref) is not None:
        return Run(ref, store)
    named = store.runs_named(ref)
    if named:
        if len(named) > 1:
            others = ", ".join(r["id"] for r in named[1:])
            warnings.warn(
                f"{len(named)} runs are named {ref!r}; using the newest ({named[0]['id']}). "
                f"Others: {others}. Use an id to pick another.",
                stacklevel=2,
            )
        return Run(named[0]["id"], store)
    candidates = store.run_names() + [r["id"] for r in store.list_runs()]
    close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else " `%runs` lists them."
    raise RunNotFound(f"no run named or with id {ref!r} in this workspace.{hint}")


def runs(experiment: str | None = None, status: str | None = None) -> pd.DataFrame:
    """Every run of the workspace as a DataFrame (lost workers are detected first).

    Example::

        >>> jupyter_ext.runs(status="running")  # doctest: +SKIP
    """
    from .store import STATUSES

    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    store = open_store()
    store.reap_lost(get_config().lost_after_s)
    rows = store.list_runs(experiment=experiment, status=status)
    records = []
    for r in rows:
        p = progress_of(r)
        records.append(
            {
                "id": r["id"],
                "name": r["name"],
                "experiment": r["experiment"],
                "status": r["status"],
                "progress": p["fraction"],
                "accelerator": r["accelerator"],
                "devices": r["devices"],
                "hparams": r["hparams"],
                "metrics": store.last_metrics(r["id"]),
                "created": pd.Timestamp(r["created"], unit="s"),
                "duration_s": _duration(r),
            }
        )
    columns = ["id", "name", "experiment", "status", "progress", "accelerator", "devices",
               "hparams", "metrics", "created", "duration_s"]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)
