"""%%finetune: LoRA fine-tuning of an open causal LM from a cell (see jupyter_ext.finetune)."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ._args import parse_with_trainer_args, split_known
from ._cell import CellNamespace


@magics_class
class FineTuneMagics(Magics):
    @magic_arguments()
    @argument("base", help="Hugging Face model directory or hub id (first on the line).")
    @argument("--name", help="Run name (default: the base's name, '-lora-' and a number).")
    @argument("--experiment", help="Experiment to group the run under (default: 'default').")
    @argument("--data", default=None, help="Variable holding the records (default: data).")
    @argument("--val-data", default=None, help="Variable holding validation records.")
    @argument("--lora-r", type=int, default=16, help="LoRA rank (default 16).")
    @argument("--lora-alpha", type=int, default=32, help="LoRA alpha (default 32).")
    @argument(
        "--target-modules",
        default="all-linear",
        help="Modules that get adapters: all-linear (default) or names, comma-separated.",
    )
    @argument("--learning-rate", type=float, default=2e-4, help="Learning rate (default 2e-4).")
    @argument("--max-length", type=int, default=1024, help="Tokens per record (default 1024).")
    @argument("--batch-size", type=int, default=8, help="Records per step (default 8).")
    @argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="Fraction held out for validation when no validation data is given (default 0.1).",
    )
    @argument("--wait", action="store_true", help="Block until the run ends.")
    @argument(
        "--cluster",
        default=None,
        help="Run on this Ray cluster (http://HOST:8265) or 'local' (default: %%cluster's).",
    )
    @cell_magic
    def finetune(self, line: str, cell: str) -> Any:
        """%%finetune BASE: run the cell, then fine-tune BASE with LoRA on its `data`.

        BASE (first on the line) is a Hugging Face model directory or hub id. The cell
        assigns `data`: chat records [{"messages": [...]}], prompt/completion pairs,
        texts, a DataFrame, a datasets.Dataset or a .jsonl path (and `val_data` if it has
        validation records). Trainer arguments pass through: --max-steps 300
        --max-epochs 2 --precision bf16-mixed. Returns the run, shown as its live
        monitor; the kernel stays free unless --wait.
        """
        tokens = split_known(line)
        if not tokens or tokens[0].startswith("-"):
            raise UsageError(
                "%%finetune needs the base first: %%finetune BASE [options], where BASE is "
                "a Hugging Face model directory or hub id"
            )
        args, trainer_kwargs = parse_with_trainer_args(self.finetune, line)
        cell_ns = CellNamespace(self.shell)
        if not cell_ns.run(cell):
            return None  # the cell's own error is already shown; nothing launched
        data = cell_ns.required("data", args.data, "fine-tuning records", "--data")
        val_data = cell_ns.optional("val_data", args.val_data, "validation records", "--val-data")
        for note in cell_ns.notes:
            print(note)
        targets = args.target_modules
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        from ..llm.finetune import finetune

        try:
            return finetune(
                args.base,
                data,
                lora_r=args.lora_r,
                lora_alpha=args.lora_alpha,
                target_modules=targets,
                learning_rate=args.learning_rate,
                max_length=args.max_length,
                batch_size=args.batch_size,
                val_data=val_data,
                val_fraction=args.val_fraction,
                name=args.name,
                experiment=args.experiment,
                wait=args.wait,
                cluster=args.cluster,
                **trainer_kwargs,
            )
        except (TypeError, ValueError, OSError) as exc:
            # PayloadError, SelectionError and TrainerArgError are among these
            raise UsageError(str(exc)) from None
