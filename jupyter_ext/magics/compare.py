"""%compare and %import_logs."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ._args import parse


@magics_class
class CompareMagics(Magics):
    @magic_arguments()
    @argument("runs", nargs="+", help="Run ids, run names or experiment names.")
    @argument(
        "--metric",
        "-m",
        action="append",
        dest="metrics",
        help="A metric to chart (repeat for several); default: every metric logged.",
    )
    @argument(
        "--x",
        default="step",
        choices=["step", "epoch", "time", "elapsed"],
        help="x axis: step, epoch, time (wall clock) or elapsed (since the run started).",
    )
    @argument("--smoothing", type=float, default=0.0, help="EMA smoothing, 0 to 0.99.")
    @argument("--log", action="store_true", help="Logarithmic y axis.")
    @line_magic
    def compare(self, line: str = "") -> Any:
        """Compare runs in live charts (one per metric) with a summary table.

        Example: %compare lr-0.1 lr-0.01 --metric val_loss --metric val_acc --x epoch
        The result is the comparison view; `.data` and `.summary` are DataFrames.
        """
        from ..training.resolve import RunNotFound
        from ..widgets.compare import compare

        args = parse(self.compare, line)
        try:
            return compare(
                args.runs,
                metrics=args.metrics,
                x=args.x,
                smoothing=args.smoothing,
                log_y=args.log,
            )
        except (RunNotFound, ValueError) as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("path", help="A CSVLogger / TensorBoard log directory, metrics.csv or event file.")
    @argument("--experiment", "-e", help="Experiment to file the runs under.")
    @line_magic
    def import_logs(self, line: str = "") -> Any:
        """Import runs that Lightning's CSVLogger or TensorBoardLogger wrote elsewhere.

        Example: %import_logs lightning_logs/ --experiment baseline
        Importing the same logs twice does not duplicate them. Returns a DataFrame of the
        runs found (pass it to jupyter_ext.compare).
        """
        from ..importers import LogImportError, import_logs

        args = parse(self.import_logs, line)
        try:
            found = import_logs(args.path, experiment=args.experiment)
        except (LogImportError, FileNotFoundError) as exc:
            raise UsageError(str(exc)) from None
        new = int(found["imported"].sum())
        print(
            f"Imported {new} run{'s' * (new != 1)}"
            + (f" ({len(found) - new} already in the workspace)" if len(found) > new else "")
        )
        return found
