"""Callbacks the worker adds beside the user's: progress/stop, logging interval, checkpoints.

The training step only updates a few attributes here; the heartbeat thread reads them
and writes the store, so recording progress costs the step almost nothing.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from ..metric_names import best_mode
from .frames import Pace


class ProgressCallback(Callback):
    """Track epoch, step, the run's length, its pace and ETA; honour a stop request at the
    next step.

    ``stop_event`` is set by the heartbeat thread when someone asked the run to stop;
    under several processes (DDP) the decision is reduced across ranks so they all stop
    at the same step. The timing arithmetic lives in :class:`~.frames.Pace`.
    """

    def __init__(self, stop_event: threading.Event, sync_every: int = 10) -> None:
        self.stop_event = stop_event
        self.sync_every = sync_every
        self.epoch = 0
        self.step = 0
        self.total_steps: int | None = None
        self.total_epochs: int | None = None
        self.started_at: float | None = None
        self.stopped = False
        self.pace = Pace(None)
        self._sanity: tuple[float, float] | None = None  # (started, seconds)

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._sanity = (time.monotonic(), 0.0)

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._sanity is not None:
            self._sanity = (self._sanity[0], time.monotonic() - self._sanity[0])

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started_at = time.time()
        total = trainer.estimated_stepping_batches
        self.total_steps = int(total) if total not in (None, float("inf")) else None
        self.total_epochs = total_epochs(trainer, self.total_steps)
        between = _steps_between_validations(trainer) if trainer.enable_validation else None
        self.pace = Pace(self.total_steps, world_size=trainer.world_size, steps_between=between)
        if self._sanity is not None and self._sanity[1] > 0:
            self.pace.guess_validation(
                self._sanity[1],
                _finite_sum(trainer.num_sanity_val_batches),
                _finite_sum(trainer.num_val_batches),
            )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        self.pace.step(self.step, batch_size(batch), time.monotonic())
        wanted = self.stop_event.is_set()
        if trainer.world_size > 1:
            # collective: only every few steps, and on the same step on every rank
            if self.step % self.sync_every:
                return
            wanted = trainer.strategy.reduce_boolean_decision(wanted, all=False)
        if wanted:
            self.stopped = True
            trainer.should_stop = True

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.pace.validation_started(time.monotonic())

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.pace.validation_ended(time.monotonic())

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch = trainer.current_epoch

    def eta_s(self) -> float | None:
        """Seconds to the last step (validations included), if known."""
        return self.pace.eta_s(time.monotonic())


def _finite_sum(values: Any) -> float:
    try:
        total = float(sum(values or ()))
    except TypeError:
        return 0.0
    return total if math.isfinite(total) else 0.0


def _steps_between_validations(trainer: Trainer) -> float:
    """Training steps from one validation to the next, from Lightning's schedule."""
    batches = trainer.num_training_batches
    every = trainer.val_check_batch
    if not isinstance(batches, (int, float)) or not math.isfinite(batches) or batches <= 0:
        return 0.0
    if not isinstance(every, (int, float)) or not math.isfinite(every) or every <= 0:
        every = batches
    if trainer.check_val_every_n_epoch is not None:
        every = min(every, batches) * trainer.check_val_every_n_epoch
    return every / max(trainer.accumulate_grad_batches, 1)


def total_epochs(trainer: Trainer, total_steps: int | None) -> int | None:
    """How many epochs the run will take: ``max_epochs``, or fewer when ``max_steps``
    ends it first; None when unbounded.

    Example::

        >>> total_epochs(trainer, 225)  # doctest: +SKIP
        15
    """
    epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    batches = trainer.num_training_batches
    if total_steps and isinstance(batches, (int, float)) and math.isfinite(batches) and batches:
        per_epoch = math.ceil(batches / max(trainer.accumulate_grad_batches, 1))
        by_steps = math.ceil(total_steps / per_epoch)
        epochs = by_steps if epochs is None else min(epochs, by_steps)
    return epochs


def batch_size(batch: Any, depth: int = 4) -> int | None:
    """The size of a batch: the first dimension of its first tensor (in tuples, lists,
    dicts and dataclasses, a few levels deep); None when it holds no tensor.

    Example::

        >>> batch_size((torch.zeros(32, 4), torch.zeros(32)))
        32
    """
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if depth <= 0:
        return None
    if isinstance(batch, Mapping):
        items: Any = batch.values()
    elif isinstance(batch, (list, tuple)):
        items = batch
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        items = (getattr(batch, f.name) for f in dataclasses.fields(batch))
    else:
        return None
    for item in items:
        found = batch_size(item, depth - 1)
        if found is not None:
            return found
    return None


def choose_log_interval(total_steps: float | None, points: int = 100, ceiling: int = 50) -> int:
    """How often to log on-step metrics: about ``points`` points over the run, never
    sparser than Lightning's default (``ceiling``), every step for short runs.

    Example::

        >>> choose_log_interval(32), choose_log_interval(2_000), choose_log_interval(None)
        (1, 20, 50)
    """
    if total_steps is None or total_steps == float("inf") or total_steps <= 0:
        return ceiling
    return int(max(1, min(ceiling, total_steps // points)))


class LogInterval(Callback):
    """Pick ``log_every_n_steps`` from the run's length when the user did not set it.

    Lightning's default of 50 records no on-step metric at all for a run shorter than
    50 steps, and a monitor that shows no training curve looks broken. Chosen once the
    run's length is known (``estimated_stepping_batches``), before the first step.
    """

    def __init__(self, on_chosen: Callable[[int], None] | None = None) -> None:
        self.on_chosen = on_chosen
        self.interval: int | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # 1 while the length is estimated: Lightning's data setup warns about batches
        # fewer than the interval, which would be the default's 50 here.
        trainer.log_every_n_steps = 1
        try:
            total = trainer.estimated_stepping_batches
        except Exception:  # data without a length: keep Lightning's default
            total = None
        self.interval = choose_log_interval(total)
        trainer.log_every_n_steps = self.interval
        if self.on_chosen is not None:
            self.on_chosen(self.interval)


def _monitor_for(metrics: dict[str, Any]) -> tuple[str, str] | None:
    """Pick the metric that defines "best": val_loss, else a val loss, else the first
    validation metric whose name says higher is better (accuracy, F1, ...)."""
    keys = sorted(metrics)
    if "val_loss" in keys:
        return "val_loss", "min"
    for k in keys:
        if k.startswith("val") and "loss" in k:
            return k, "min"
    for k in keys:
        if k.startswith("val") and best_mode(k) == "max":
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
