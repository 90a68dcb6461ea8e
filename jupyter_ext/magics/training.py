"""%%train, %runs, %monitor and %stop."""

from __future__ import annotations

import warnings
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .. import training
from ..payload import PayloadError
from ..selector import SelectionError
from ..trainer_args import TrainerArgError, parse_flags
from . import _on_load
from ._args import parse, split_known


def _start_spare(ip: Any) -> None:
    """Start the warm spare worker as the extension loads (if configured)."""
    from ..config import get_config
    from ..launchers import get_launcher

    if get_config().warm_start:
        get_launcher()


_on_load.append(_start_spare)


@magics_class
class TrainingMagics(Magics):
    def _var(self, name: str, required: bool, what: str, option: str) -> Any:
        ns = self.shell.user_ns
        if name in ns:
            return ns[name]
        if required:
            raise UsageError(
                f"the cell defines no `{name}`: assign your {what} to `{name}`, "
                f"or name its variable with {option} VAR"
            )
        return None

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
    @cell_magic
    def train(self, line: str, cell: str) -> Any:
        """Run the cell, then train its `model` in a worker process; show the live monitor.

        Any Trainer argument passes through: --max-epochs 3 --limit-train-batches 0.1
        --accelerator cpu --devices 2 --strategy ddp; --ckpt-path PATH resumes from a
        checkpoint (Trainer.fit's argument). Unknown ones are refused with the
        closest valid name, before the cell runs. The kernel stays free unless --wait.
        By default the model is `model`, and `datamodule` if defined, else
        `train_dataloaders`/`val_dataloaders` if defined.
        """
        tokens = split_known(line)
        args, rest = self.train.parser.parse_known_args(tokens)
        try:
            trainer_kwargs = parse_flags(rest)
        except TrainerArgError as exc:
            raise UsageError(str(exc)) from None
        result = self.shell.run_cell(cell)
        if not result.success:
            return None  # the cell's own error is already shown; nothing launched
        model = self._var(args.model or "model", True, "LightningModule", "--model")
        dm = self._var(
            args.datamodule or "datamodule",
            args.datamodule is not None,
            "LightningDataModule",
            "--datamodule",
        )
        tdl = vdl = None
        if dm is None:
            tdl = self._var(
                args.train_dataloaders or "train_dataloaders",
                args.train_dataloaders is not None,
                "DataLoader",
                "--train-dataloaders",
            )
            vdl = self._var(
                args.val_dataloaders or "val_dataloaders",
                args.val_dataloaders is not None,
                "DataLoader",
                "--val-dataloaders",
            )
        try:
            return training.train(
                model,
                dm,
                train_dataloaders=tdl,
                val_dataloaders=vdl,
                name=args.name,
                experiment=args.experiment,
                wait=args.wait,
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
        """Every run of the workspace as a DataFrame."""
        args = parse(self.runs, line)
        try:
            return training.runs(experiment=args.experiment, status=args.status)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _get(self, ref: str) -> training.Run:
        if not ref.strip():
            raise UsageError("name a run: its id or its name (see %runs)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run = training.get_run(ref.strip())
            except training.RunNotFound as exc:
                raise UsageError(str(exc)) from None
        for w in caught:
            print(w.message)
        return run

    @line_magic
    def monitor(self, line: str = "") -> Any:
        """%monitor RUN: the live monitor of a run (by id or name), also after a restart."""
        return self._get(line)

    @line_magic
    def stop(self, line: str = "") -> None:
        """%stop RUN: stop a run gracefully (last checkpoint kept); waits until it has ended."""
        run = self._get(line)
        before = run.status
        if before not in ("queued", "running"):
            print(f"{run.name} ({run.id}) is already {before}")
            return
        status = run.stop()
        print(f"{run.name} ({run.id}): {status}")
