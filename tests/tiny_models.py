"""Tiny Lightning models and data for tests: seconds on a CPU, deterministic data."""

from __future__ import annotations

import os
import threading
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def loaders(n: int = 256, batch_size: int = 32, features: int = 4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] > 0).long()
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=batch_size), DataLoader(ds, batch_size=batch_size)


class Tiny(L.LightningModule):
    """A linear classifier; ``step_delay`` slows each step (to have time to act on a run),
    ``fail_at`` raises in training_step at that global step, ``hold_at`` holds the run at
    that step until the file ``hold_file`` exists (a test lets it go on when it is ready)."""

    def __init__(
        self,
        lr: float = 0.1,
        step_delay: float = 0.0,
        fail_at: int | None = None,
        hold_at: int | None = None,
        hold_file: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        if self.hparams.fail_at is not None and self.global_step >= self.hparams.fail_at:
            raise ValueError(f"boom at step {self.global_step}")
        if self.hparams.hold_file and self.global_step >= (self.hparams.hold_at or 0):
            deadline = time.monotonic() + 300
            while not os.path.exists(self.hparams.hold_file) and time.monotonic() < deadline:
                time.sleep(0.05)  # held: waits on the file, with a deadline
        if self.hparams.step_delay:
            time.sleep(self.hparams.step_delay)  # simulates a heavier step, not a sync
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Locked(Tiny):
    """Holds a lock, which cannot be pickled."""

    def __init__(self):
        super().__init__()
        self.cache = {"guard": threading.Lock()}


class Marker(L.Callback):
    """A user callback: writes a file at the end of training (proves it ran in the worker)."""

    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer, pl_module):
        with open(self.path, "w") as fh:
            fh.write(str(trainer.global_step))
