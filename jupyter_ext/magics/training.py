"""%%train, %runs, %monitor and %stop."""

from __future__ import annotations

import warnings
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..selector import SelectionError
from ..training import run as runs_api
from ..training.payload import PayloadError
from ..training.resolve import RunNotFound
from ..training.trainer_args import TrainerArgError
from . import _on_load
from ._args import parse, parse_with_trainer_args
from ._cell import CellNamespace


def _start_spare(ip: Any) -> None:
    """Start the warm spare worker as the extension loads (if configured)."""
    from ..config import get_config
    from ..training.launchers import get_launcher

    if get_config().warm_start:
        get_launcher()


def _say_what_is_going(ip: Any) -> None:
    """One line about the runs still going: after a kernel restart, the person learns
    that their runs outlived it and how to see them."""
    from ..config import get_config
    from ..store import ACTIVE, open_store
    from ..training.frames import still_going

    store = open_store()
    store.reap_lost(get_config().lost_after_s)
    line = still_going(store.list_runs(status=ACTIVE, newest_first=True))
    if line:
        print(line)


_on_load.append(_start_spare)
_on_load.append(_say_what_is_going)


@magics_class
class TrainingMagics(Magics):
    @magic_arguments()
    @argument("--name", help="Run name (default: the model class and a number).")
    @argument("--experiment", help="Experiment to group the run under (default: 'default').")
    @argument(
        "--model", default=None, help="Variable holding the LightningModule (default: model)."
    )
    @argument("--datamodule", default=None, help="Variable holding the LightningDataModule.")
    @argument("--train-dataloaders", default=None, help="Variable holding training DataLoader(s).")
    @argument("--val-dataloaders", default=None, help="Variable holding validation DataLoader(s).")
    @argument("--wait", action="store_true", help="Block until the run ends.")
    @argument(
        "--cluster",
        default=None,
        help="Run on this Ray cluster (http://HOST:8265) or 'local' (default: %%cluster's).",
    )
    @cell_magic
    def train(self, line: str, cell: str) -> Any:
        """Run the cell, then train its `model` in a worker process; show the live monitor.

        Any Trainer argument passes through: --max-epochs 3 --limit-train-batches 0.1
        --accelerator cpu --devices 2 --strategy ddp; --ckpt-path PATH resumes from a
        checkpoint (Trainer.fit's argument). Unknown ones are refused with the
        closest valid name, before the cell runs. The kernel stays free unless --wait.
        The model is the `model` this cell assigns, and `datamodule` if it assigns one,
        else `train_dataloaders`/`val_dataloaders` if it assigns them. Objects left by
        an earlier cell are not taken silently: name them, e.g. --model model.
        """
        args, trainer_kwargs = parse_with_trainer_args(self.train, line)
        cell_ns = CellNamespace(self.shell)
        if not cell_ns.run(cell):
            return None  # the cell's own error is already shown; nothing launched
        model = cell_ns.required("model", args.model, "LightningModule", "--model")
        dm = cell_ns.optional("datamodule", args.datamodule, "LightningDataModule", "--datamodule")
        tdl = vdl = None
        if dm is None:
            tdl = cell_ns.optional(
                "train_dataloaders", args.train_dataloaders, "DataLoader", "--train-dataloaders"
            )
            vdl = cell_ns.optional(
                "val_dataloaders", args.val_dataloaders, "DataLoader", "--val-dataloaders"
            )
        for note in cell_ns.notes:
            print(note)
        try:
            return runs_api.train(
                model,
                dm,
                train_dataloaders=tdl,
                val_dataloaders=vdl,
                name=args.name,
                experiment=args.experiment,
                wait=args.wait,
                cluster=args.cluster,
                **trainer_kwargs,
            )
        except (
            TypeError, ValueError, OSError, PayloadError, SelectionError, TrainerArgError
        ) as exc:  # fmt: skip
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("--experiment", help="Only runs of this experiment.")
    @argument("--status", help="Only runs with this status (queued, running, succeeded, ...).")
    @line_magic
    def runs(self, line: str = "") -> Any:
        """Every run of the workspace as a DataFrame, shown as a table for reading (name
        first, status badge, hparams and latest metrics as columns, best marked; see
        jupyter_ext.tables). Example: %runs --experiment digits --status succeeded"""
        args = parse(self.runs, line)
        try:
            return runs_api.runs(experiment=args.experiment, status=args.status)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @staticmethod
    def _get(ref: str) -> runs_api.Run:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run = runs_api.get_run(ref)
            except RunNotFound as exc:
                raise UsageError(str(exc)) from None
        for w in caught:
            print(w.message)
        return run

    @magic_arguments()
    @argument("run", help="the run's id or name (see %runs)")
    @line_magic
    def monitor(self, line: str = "") -> Any:
        """%monitor RUN: the live monitor of a run (by id or name), also after a restart."""
        return self._get(parse(self.monitor, line).run)

    @magic_arguments()
    @argument("run", help="the run's id or name (see %runs)")
    @argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="ask the worker to stop and return at once (default: wait until it has ended)",
    )
    @line_magic
    def stop(self, line: str = "") -> None:
        """%stop RUN: stop a run gracefully (last checkpoint kept); waits until it has ended."""
        args = parse(self.stop, line)
        run = self._get(args.run)
        before = run.status
        if before not in ("queued", "running"):
            print(f"{run.name} ({run.id}) is already {before}")
            return
        status = run.stop(wait=args.wait)
        print(f"{run.name} ({run.id}): {status}")
