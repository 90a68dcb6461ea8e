"""Training runs: launch a Lightning ``Trainer.fit`` in a worker and follow it.

``train()`` validates everything it can in the kernel (Trainer argument names, the
selection through Lightning, that the objects pickle), writes the run to the store and
its payload to the run directory, hands it to the launcher and returns a :class:`Run`
at once. A ``Run`` is a handle on the store: every property reads the store, so it works
the same from another kernel or after a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .. import procs, selector
from ..config import get_config
from ..store import ACTIVE, STATUSES, TERMINAL, RunRecord, Store, open_store
from . import payload as payload_mod
from .frames import describe, duration_s, metrics_frame, progress_of
from .resolve import RunNotFound, resolve_run
from .tracebacks import code_origins, notebook_cells, render_text, shape_stored
from .trainer_args import validate as validate_trainer_args
from .worker import META, PAYLOAD

_SELECTION_KEYS = ("accelerator", "devices", "precision", "strategy")
RESUME_CKPT = "resume.ckpt"  # a cluster run's checkpoint to resume from, in its run directory

__all__ = ["LaunchError", "Run", "RunFailed", "RunNotFound", "get_run", "runs", "train"]


class RunFailed(RuntimeError):
    """Raised by ``Run.wait(raise_on_failure=True)`` for a failed or lost run."""


class LaunchError(OSError):
    """The run's worker could not be started (the run is recorded as failed)."""


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
        row = self._store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r} in {self._store.path}")
        self.id = run_id
        self._monitor: Any = None
        if row.cluster and not row.cluster.get("drained"):
            # a cluster run: this process keeps it current in the store from now on (after
            # a kernel restart, this is the re-attach)
            from ..cluster.sync import ensure_sync

            ensure_sync(Path(self._store.path).parent)

    # -- state, always read from the store ---------------------------------------------
    @property
    def row(self) -> RunRecord:
        """The run's store record, read now (see :func:`current`: a dead worker shows as lost)."""
        return current(self._store, self.id)

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def experiment(self) -> str:
        return self.row.experiment

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, stopped or lost."""
        return self.row.status

    @property
    def pid(self) -> int | None:
        """The worker's process id (on :attr:`host`), once it has been started."""
        return self.row.pid

    @property
    def host(self) -> str | None:
        """The machine the worker runs on."""
        return self.row.host

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
        return self.row.hparams or {}

    @property
    def error(self) -> str | None:
        """The full traceback of a failed run (or why a run was lost); None otherwise."""
        return self.row.error

    @property
    def notices(self) -> list[dict[str, Any]]:
        """Lightning's warnings that matter to the person, as the monitor shows them:
        dicts with ``kind`` (``logging``, ``dataloader``, ``precision``, ``lightning``),
        ``text`` (a short line) and ``message`` (Lightning's own words).

        Example::

            >>> run.notices[0]["text"]  # doctest: +SKIP
            'log_every_n_steps=50 is more than the 15 batches of an epoch: ...'
        """
        return list(self.row.notices or [])

    @property
    def best_checkpoint(self) -> str | None:
        return self.row.best_checkpoint

    @property
    def last_checkpoint(self) -> str | None:
        return self.row.last_checkpoint

    @property
    def run_dir(self) -> Path:
        return Path(self.row.run_dir or "")

    def logs(self, tail: int | None = 100) -> str:
        """The worker's stdout/stderr (the last ``tail`` lines; None for all)."""
        return procs.log_tail(self.run_dir / "worker.log", tail, max_bytes=1 << 20)

    # -- actions ------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, raise_on_failure: bool = False) -> Run:
        """Block until the run has ended; TimeoutError after ``timeout`` seconds.

        A cluster run shown ``lost`` while its cluster does not answer has not ended: it
        comes back when the cluster answers; only the sync's verdict (its channel closed)
        ends it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            row = self.row
            status = row.status
            unreachable = status == "lost" and row.cluster and not row.cluster.get("drained")
            if status in TERMINAL and not unreachable:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.name} ({self.id}) still {status} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        if raise_on_failure and status in ("failed", "lost"):
            row = self.row
            shaped = shape_stored(row.error, row.error_info)
            why = render_text(shaped) if shaped is not None else ""
            raise RunFailed(f"run {self.name} ({self.id}) {status}:\n{why}")
        return self

    def stop(self, wait: bool = True, timeout: float = 60.0) -> str:
        """Stop gracefully: the worker finishes its step, saves ``last.ckpt`` and ends as
        ``stopped``. If it has not ended after ``timeout`` s, its process group is
        terminated (and killed ``ToolkitConfig.term_timeout_s`` later). Returns the final
        (or current) status."""
        row = self.row
        if row.status in TERMINAL:
            return row.status
        self._store.update_run(self.id, stop_requested=1)
        if not wait:
            return self.status
        try:
            return self.wait(timeout=timeout).status
        except TimeoutError:
            pass
        from .launchers import launcher_for

        launcher = launcher_for(self.row)
        launcher.terminate(self.row)
        try:
            return self.wait(timeout=get_config().term_timeout_s).status
        except TimeoutError:
            launcher.terminate(self.row, kill=True)
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
        so this works for classes defined only in a notebook. A model that builds its
        layers in ``configure_model()`` has it called first. For a fine-tune (a run of
        :func:`jupyter_ext.finetune`) this is the transformers model with the adapter
        merged; its tokenizer is the base's (``AutoTokenizer.from_pretrained(base)``), and
        :meth:`export` writes both.

        Example::

            >>> model = run.load_model()  # doctest: +SKIP
            >>> model.generate(**tok("Ada's cat is", return_tensors="pt"))  # doctest: +SKIP
        """
        model = self.trained_module(checkpoint)
        if hasattr(model, "merged_model"):  # a fine-tune: the adapter merged into its base
            return model.merged_model()
        return model

    def trained_module(self, checkpoint: str | None = None) -> Any:
        """The run's LightningModule itself with a checkpoint's weights, in eval mode: what
        :meth:`load_model` returns, except for a fine-tune, where this is the
        :class:`~jupyter_ext.llm.module.FineTuneModule` (the peft model as ``.model``, and
        ``.chat()`` / ``.complete()`` for a quick greedy answer).

        Example::

            >>> run.trained_module().chat("What is Ada's cat called?")  # doctest: +SKIP
            'Pixel.'
        """
        import torch

        path = checkpoint or self.best_checkpoint or self.last_checkpoint
        if not path or not Path(path).exists():
            raise FileNotFoundError(
                f"run {self.name} ({self.id}) has no checkpoint yet (status {self.status}); "
                "checkpoints are written at the end of each epoch and when a run stops"
            )
        model = payload_mod.load(self.run_dir / PAYLOAD)["model"]
        if _overrides(model, "configure_model"):
            # the model builds its layers in this hook (a fine-tune loads its base there):
            # without them there is nothing to load the weights into
            model.configure_model()
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        return model.eval()

    def export(self, out_dir: str | os.PathLike[str], merged: bool = True) -> Path:
        """Write a fine-tune (a run of :func:`jupyter_ext.finetune`) as a Hugging Face
        directory: the adapter merged into the base's weights (safetensors), config,
        tokenizer and chat template; ``merged=False``: the LoRA adapter alone in PEFT's
        format. Returns the directory.

        Example::

            >>> out = run.export("my-model")  # doctest: +SKIP
            >>> AutoModelForCausalLM.from_pretrained(out)  # doctest: +SKIP
        """
        from ..llm.export import export_run

        return export_run(self, out_dir, merged=merged)

    def monitor(self) -> Any:
        """The live monitor widget of this run (the same one each time)."""
        if self._monitor is None or self._monitor.closed:
            from ..widgets.monitor import RunMonitor

            self._monitor = RunMonitor(self)
        return self._monitor

    # -- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return describe(self.row)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ..display import in_kernel

        if not in_kernel():
            return {"text/plain": repr(self)}
        return self.monitor()._repr_mimebundle_(include=include, exclude=exclude)


def current(store: Store, run_id: str) -> RunRecord:
    """The run's record as it is now: the one read that may write.

    An active run whose local worker died without a word (killed, out of memory) would
    read as running forever, so this asks :meth:`Store.reap_lost` first and marks it
    ``lost``. Every view and ``Run`` property reads through here.
    """
    row = store.get_run(run_id)
    if row is None:
        raise RunNotFound(f"run {run_id!r} was deleted from {store.path}")
    if row.status in ACTIVE and store.reap_lost(get_config().lost_after_s, [row]):
        row = store.get_run(run_id) or row
    return row


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
    cluster: str | None = None,
    **trainer_kwargs: Any,
) -> Run:
    """Launch ``Trainer(**trainer_kwargs).fit(model, ...)`` in a worker process; return its Run.

    The kernel's accelerator selection applies unless ``accelerator``/``devices``/
    ``precision``/``strategy`` are given here. Returns at once unless ``wait``.
    ``ckpt_path`` resumes from a checkpoint (``Trainer.fit``'s argument), e.g. the
    ``last_checkpoint`` of a stopped run; :meth:`Run.resume` does that for you.
    ``cluster``: run on this Ray cluster (its dashboard address, ``http://HOST:8265``) or
    ``"local"``; default: the kernel's selection (``%cluster``, :func:`use_cluster`).
    Without ``log_every_n_steps`` the worker picks the interval from the run's length,
    so even a short run records every on-step metric.

    Example::

        >>> run = jupyter_ext.train(model, datamodule=dm, max_epochs=3)  # doctest: +SKIP
        >>> run.status  # doctest: +SKIP
        'running'
    """
    _check_objects(model, datamodule, train_dataloaders, val_dataloaders)
    validate_trainer_args(trainer_kwargs)
    ckpt = _check_ckpt_path(ckpt_path)
    overrides = {k: v for k, v in trainer_kwargs.items() if k in _SELECTION_KEYS}
    address = _cluster_address(cluster)
    # a local run is validated against this machine's devices; a cluster's are checked below
    sel = selector.resolve(**overrides) if address is None else selector.Selection(**overrides)
    full_kwargs = {**trainer_kwargs, **sel.trainer_kwargs()}
    launcher = _cluster_launcher(address, full_kwargs)  # refused here if it cannot run there
    data = payload_mod.dumps(  # fails here, before anything is written or launched
        {
            "model": model,
            "datamodule": datamodule,
            "train_dataloaders": train_dataloaders,
            "val_dataloaders": val_dataloaders,
            "trainer_kwargs": full_kwargs,
            # a cluster sees no local path: the checkpoint travels in the run directory
            "ckpt_path": RESUME_CKPT if ckpt and launcher is not None else ckpt,
        }
    )
    cfg = get_config()
    home = cfg.home_path.resolve()
    store = open_store(home)
    row = _record(store, model, sel, trainer_kwargs, name, experiment)
    origins = code_origins(model, datamodule, train_dataloaders, val_dataloaders)
    row = _write_run_dir(store, row, home, data, origins)
    if launcher is not None and ckpt:
        shutil.copyfile(ckpt, Path(row.run_dir or "") / RESUME_CKPT)
    run = _launch(store, row, home, cfg.heartbeat_s, launcher)
    if wait:
        run.wait()
    return run


def _check_objects(model: Any, datamodule: Any, train_dl: Any, val_dl: Any) -> None:
    """Refuse what Trainer.fit would refuse, in the kernel and before anything is written."""
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
    if datamodule is not None and (train_dl is not None or val_dl is not None):
        raise ValueError("give either datamodule or train_dataloaders/val_dataloaders, not both")
    if datamodule is None and train_dl is None and not _overrides(model, "train_dataloader"):
        raise ValueError(
            "no training data: pass datamodule=, or train_dataloaders=, or define "
            "train_dataloader() on the model"
        )


def _check_ckpt_path(ckpt_path: str | os.PathLike[str] | None) -> str | None:
    if ckpt_path is None:
        return None
    path = Path(ckpt_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path {str(path)!r} is not a file: give the path of a Lightning "
            "checkpoint, e.g. run.last_checkpoint of an earlier run"
        )
    return str(path)


def _record(
    store: Store,
    model: Any,
    sel: Any,
    trainer_kwargs: dict[str, Any],
    name: str | None,
    experiment: str | None,
) -> RunRecord:
    """The run's row, queued."""
    hparams = dict(getattr(model, "hparams", {}) or {})
    return store.create_run(
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
        log_every_n_steps=trainer_kwargs.get("log_every_n_steps"),
    )


def _write_run_dir(
    store: Store, row: RunRecord, home: Path, data: bytes, origins: dict[str, str] | None = None
) -> RunRecord:
    """The run directory with the payload (written atomically) and what the worker needs."""
    run_dir = home / "runs" / row.id
    run_dir.mkdir(parents=True, exist_ok=True)
    payload_mod.write(run_dir / PAYLOAD, data)
    # The notebook's cells, and which of them each notebook function came from, go along
    # so the worker's tracebacks show the cell's source lines.
    meta = {"sys_path": [p for p in sys.path if p], "cells": notebook_cells(), "code": origins}
    (run_dir / META).write_text(json.dumps(meta))
    store.update_run(row.id, run_dir=str(run_dir))
    return store.get_run(row.id)  # type: ignore[return-value]


def _cluster_address(cluster: str | None) -> Any:
    """Where the run goes: ``cluster`` ("local": here), else the kernel's selection."""
    if cluster == "local":
        return None
    from ..cluster.address import parse_address
    from ..cluster.selection import current_cluster

    selected = current_cluster()
    if cluster is None:
        return selected
    address = parse_address(cluster)
    if selected is not None and selected.dashboard == address.dashboard:
        return selected  # the selected cluster, with the client address it was given
    return address


def _cluster_launcher(address: Any, trainer_kwargs: dict[str, Any]) -> Any:
    """The Ray launcher for a run going to the cluster at ``address``, checked against what
    the cluster has; None for a local run."""
    if address is None:
        return None
    from ..cluster.inventory import check_request, cluster_info
    from ..cluster.launcher import RayLauncher

    info = cluster_info(address)
    check_request(
        info,
        accelerator=trainer_kwargs.get("accelerator", "auto"),
        devices=trainer_kwargs.get("devices", "auto"),
        num_nodes=trainer_kwargs.get("num_nodes", 1),
    )
    from ..cluster.selection import current_cluster, current_runtime_env

    env = current_runtime_env() if address == current_cluster() else None
    return RayLauncher(address.dashboard, address.client, env)


def _launch(
    store: Store, row: RunRecord, home: Path, heartbeat_s: float, launcher: Any = None
) -> Run:
    """Hand the run to its launcher (this kernel's, unless a cluster's is given); a launch
    that fails marks the run failed."""
    from .launchers import LaunchFailed, get_launcher

    if launcher is None:
        launcher = get_launcher()
    else:
        store.update_run(row.id, cluster=launcher.cluster_fields(row.id))
        row = store.get_run(row.id) or row
    try:
        outcome = launcher.launch(row, home, heartbeat_s=heartbeat_s)
    except Exception as exc:  # a backend's bug: still leave the store consistent
        outcome = LaunchFailed(f"{type(exc).__name__}: {exc}")
    if isinstance(outcome, LaunchFailed):
        store.update_run(
            row.id, status="failed", ended=time.time(), error=f"launch failed: {outcome.message}"
        )
        raise LaunchError(f"run {row.name} ({row.id}) did not start: {outcome.message}")
    store.update_run(
        row.id,
        only_if_status=("queued",),
        pid=outcome.pid,
        pid_started=outcome.pid_started,
        host=outcome.host,
        heartbeat=time.time(),
        launcher=f"{launcher.name}{' (warm)' if outcome.warm else ''}",
    )
    return Run(row.id, store)  # a cluster run's Run starts the sync that brings it in


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
    (record,) = resolve_run(ref, store)
    return Run(record.id, store)


def runs(experiment: str | None = None, status: str | None = None) -> pd.DataFrame:
    """Every run of the workspace as a DataFrame (lost workers are detected first); in a
    notebook it shows as a table for reading (:func:`jupyter_ext.tables.runs_html`).

    Example::

        >>> jupyter_ext.runs(status="running")  # doctest: +SKIP
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    store = open_store()
    store.reap_lost(get_config().lost_after_s)
    records = []
    for r in store.list_runs(experiment=experiment, status=status):
        records.append(
            {
                "id": r.id,
                "name": r.name,
                "experiment": r.experiment,
                "status": r.status,
                "progress": progress_of(r)["fraction"],
                "accelerator": r.accelerator,
                "devices": r.devices,
                "hparams": r.hparams,
                "metrics": store.last_metrics(r.id),
                "created": pd.Timestamp(r.created, unit="s"),
                "duration_s": duration_s(r),
            }
        )
    columns = ["id", "name", "experiment", "status", "progress", "accelerator", "devices",
               "hparams", "metrics", "created", "duration_s"]  # fmt: skip
    from ..tables import RunsFrame  # the data as they are; only the notebook display differs

    return RunsFrame(pd.DataFrame.from_records(records, columns=columns))
