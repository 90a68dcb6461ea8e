"""%accelerators and %accelerator."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from .. import selector as sel_mod
from ..cluster.address import ClusterUnreachable
from ..cluster.selection import current_cluster_info
from ..devices import accelerators as list_accelerators
from ..display import in_kernel
from ._args import parse

# How long %accelerators waits for its panel's first look at the devices (importing torch
# and Lightning on a loaded machine) before it returns and lets the panel fill later.
LOAD_WAIT_S = 120.0


@magics_class
class AcceleratorMagics(Magics):
    @magic_arguments()
    @argument("--list", action="store_true", help="Return the device table as a DataFrame.")
    @line_magic
    def accelerators(self, line: str = "") -> Any:
        """Show every accelerator device with live memory and load, and pick one.

        Without --list (in a notebook): a panel with the live device table and controls
        that set the selection for the next runs. With --list, or without a widget front
        end: the table as a pandas DataFrame. With a Ray cluster selected (%cluster): the
        cluster's nodes with their CPUs, GPUs and memory instead (--list: one row a node).
        """
        args = parse(self.accelerators, line)
        try:
            cluster = current_cluster_info()
        except ClusterUnreachable as exc:
            raise UsageError(str(exc)) from None
        if cluster is not None:
            # Runs go to that cluster (%cluster): its devices are the ones they can use.
            if args.list:
                return cluster.frame()
            print(
                "This kernel's runs go to a Ray cluster: these are its devices "
                "(%cluster local goes back to this machine's)."
            )
            display(cluster)
            return None
        if args.list or not in_kernel():
            return list_accelerators()
        from ..widgets.accelerators import AcceleratorsPanel

        panel = AcceleratorsPanel()
        # Shown at once, saying it is loading, while a thread imports torch; the cell
        # then waits for the data and re-sends the output, so what a notebook saves and
        # what nbconvert or a text front end shows is the filled panel, not the loading line.
        handle = display(panel, display_id=True)
        if panel.wait_loaded(LOAD_WAIT_S) and handle is not None:
            handle.update(panel)
        return None

    @magic_arguments()
    @argument("kind", nargs="?", help="cpu, cuda, mps, tpu, auto, ... (omit to show the current)")
    @argument("--devices", help="How many devices (2), which ones (0,1), or auto.")
    @argument("--precision", help="e.g. 32-true, 16-mixed, bf16-mixed.")
    @argument("--strategy", help="e.g. auto, ddp, fsdp, deepspeed.")
    @line_magic
    def accelerator(self, line: str = "") -> None:
        """Choose the accelerator (and devices, precision, strategy) for the runs that follow.

        Lightning validates the choice; an unavailable or impossible one is refused with
        what is available. Example: %accelerator cpu --devices 2 --precision bf16-mixed
        """
        args = parse(self.accelerator, line)
        if args.kind is None:
            if any(v is not None for v in (args.devices, args.precision, args.strategy)):
                raise UsageError("name the accelerator too, e.g. %accelerator cpu --devices 2")
            print(f"Selection for next runs: {sel_mod.selection()}")
            return
        try:
            chosen = sel_mod.select(
                args.kind, devices=args.devices, precision=args.precision, strategy=args.strategy
            )
        except sel_mod.SelectionError as exc:
            raise UsageError(str(exc)) from None
        print(f"Selection for next runs: {chosen}")
