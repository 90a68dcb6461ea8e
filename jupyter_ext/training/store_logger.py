"""A Lightning Logger that records every ``self.log`` metric and the hparams in the store.

Modelled on Lightning's CSVLogger: the smallest complete Logger. Rows are buffered in
memory (an append per metric, nothing else on the training step) and written in one
transaction per flush, which the worker's heartbeat thread triggers at least every
second and the worker at every status change.
"""

from __future__ import annotations

import threading
import time
from argparse import Namespace
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ..store import Store


def _plain(value: Any) -> Any:
    """hparams as JSON-friendly values (tensors, paths and classes become text)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return str(value)


class StoreLogger(Logger):
    """Record metrics and hparams of a run into the workspace store.

    Example::

        >>> logger = StoreLogger(open_store(), run_id)  # doctest: +SKIP
        >>> Trainer(logger=[logger, CSVLogger("logs")])  # doctest: +SKIP
    """

    def __init__(self, store: Store, run_id: str) -> None:
        super().__init__()
        self._store = store
        self._run_id = run_id
        self._rows: list[tuple[str, int, int, float, float]] = []
        self._lock = threading.Lock()
        self._epoch = 0
        self._flushed_at = time.monotonic()
        self.max_delay_s = 2.0

    @property
    def name(self) -> str:
        return "jupyter_ext"

    @property
    def version(self) -> str:
        return self._run_id

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        record = self._store.get_run(self._run_id)
        current = (record.hparams if record is not None else None) or {}
        current.update(_plain(dict(params)))
        self._store.update_run(self._run_id, hparams=current)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = time.time()
        # Lightning adds the current epoch to every dict it hands loggers.
        epoch = metrics.get("epoch", self._epoch)
        self._epoch = int(epoch)
        step = int(step) if step is not None else -1
        rows = [
            (key, step, self._epoch, now, float(value))
            for key, value in metrics.items()
            if key != "epoch"
        ]
        with self._lock:
            self._rows.extend(rows)

    def flush(self) -> int:
        """Write buffered rows in one transaction; returns how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
            self._flushed_at = time.monotonic()
        if not rows:
            return 0
        try:
            return self._store.add_metrics(self._run_id, rows)
        except Exception:
            with self._lock:  # keep them for the next flush rather than lose them
                self._rows[:0] = rows
            raise

    @rank_zero_only
    def save(self) -> None:
        # Lightning calls save() after every log_metrics, i.e. every step. The worker's
        # heartbeat thread flushes twice a second; only write here if it has fallen
        # behind (a stalled thread must not hold metrics back for long).
        if time.monotonic() - self._flushed_at > self.max_delay_s:
            self.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()
