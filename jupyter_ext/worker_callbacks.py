"""Callbacks the worker adds beside the user's: progress/stop, and checkpoints.

The training step only updates a few attributes here; the heartbeat thread reads them
and writes the store, so recording progress costs the step almost nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class ProgressCallback(Callback):
    """Track epoch, step, total steps and ETA; honour a stop request at the next step.

    ``stop_event`` is set by the heartbeat thread when someone asked the run to stop;
    under several processes (DDP) the decision is reduced across ranks so they all stop
    at the same step.
    """

    def __init__(self, stop_event: threading.Event, sync_every: int = 10) -> None:
        self.stop_event = stop_event
        self.sync_every = sync_every
        self.epoch = 0
        self.step = 0
        self.total_steps: int | None = None
        self.started_at: float | None = None
        self.first_step_at: float | None = None
        self.stopped = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started_at = time.time()
        total = trainer.estimated_stepping_batches
        self.total_steps = int(total) if total not in (None, float("inf")) else None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        if self.first_step_at is None:
            self.first_step_at = time.time()
        wanted = self.stop_event.is_set()
        if trainer.world_size > 1:
            # collective: only every few steps, and on the same step on every rank
            if self.step % self.sync_every:
                return
            wanted = trainer.strategy.reduce_boolean_decision(wanted, all=False)
        if wanted:
            self.stopped = True
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch = trainer.current_epoch

    def eta_s(self) -> float | None:
        """Seconds to the last step at the rate since the first step, if known."""
        if not (self.total_steps and self.first_step_at and self.step):
            return None
        rate = self.step / max(time.time() - self.first_step_at, 1e-6)
        return max(self.total_steps - self.step, 0) / rate if rate > 0 else None


def _monitor_for(metrics: dict[str, Any]) -> tuple[str, str] | None:
    """Pick the metric that defines "best": val_loss, else a val loss, else a val accuracy."""
    keys = sorted(metrics)
    if "val_loss" in keys:
        return "val_loss", "min"
    for k in keys:
        if k.startswith("val") and "loss" in k:
            return k, "min"
    for k in keys:
        if k.startswith("val") and any(
            w in k for w in ("acc", "f1", "auroc", "precision", "recall")
        ):
            return k, "max"
    return None


class AutoCheckpoint(ModelCheckpoint):
    """ModelCheckpoint keeping ``last.ckpt`` and the best one by a metric chosen on first sight.

    The model's validation metrics are only known once it has logged them, so the
    monitored key is picked at the first validation end (``val_loss`` if logged); with
    no validation metrics the latest checkpoint counts as the best.
    """

    def __init__(self, dirpath: str, monitor: str | None = None, mode: str = "min") -> None:
        super().__init__(
            dirpath=dirpath,
            filename="best-{epoch}-{step}",
            monitor=monitor,
            mode=mode,
            save_last=True,
            save_top_k=1,
        )
        self._auto = monitor is None

    def _choose(self, trainer: Trainer) -> None:
        if not self._auto or self.monitor is not None:
            return
        picked = _monitor_for(trainer.callback_metrics)
        if picked is None:
            return
        self.monitor, mode = picked
        self.mode = mode
        inf = torch.tensor(torch.inf)
        self.kth_value = inf if mode == "min" else -inf
        self.filename = "best-{epoch}-{step}-{" + self.monitor + ":.4f}"

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._choose(trainer)
        super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._choose(trainer)
        super().on_train_epoch_end(trainer, pl_module)
