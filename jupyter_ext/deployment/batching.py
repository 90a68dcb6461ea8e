"""Dynamic batching: concurrent requests stacked into one forward pass and split back.

A request's rows join a queue and the first one schedules a flush; the flush runs after the
requests that arrived in the same turn of the event loop have been read and queued too, takes
what is queued (up to ``max_batch_size`` rows), runs the model once on the stacked batch and
hands each request its own rows. While a batch runs, new requests wait in their sockets, so
under load batches form by themselves; ``timeout_ms`` lets a batch that is not full wait
that long for more (0: never wait, so a lone request pays nothing).

The model runs in the event loop's thread (a small CPU model finishes before a thread hop
would), or with ``in_thread`` in one worker thread, for models that release the GIL for long
(a GPU), so the loop goes on reading requests meanwhile.

Errors stay per request: when a stacked batch fails, each of its requests is run alone, so
only the requests that fail get the error. Standard library and numpy only (a bundle
carries this file).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("jupyter_ext.serving")


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Run ``predict`` (batch -> batch, row i of the output for row i of the input) on
    stacked concurrent requests.

    Example::

        >>> batcher = Batcher(predictor, max_batch_size=16, timeout_ms=2)  # doctest: +SKIP
        >>> y = await batcher(x)  # in a request handler; x: [n, ...] rows  # doctest: +SKIP
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        timeout_ms: float,
        *,
        in_thread: bool = False,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1; got {max_batch_size}")
        self.predict = predict
        self.max_rows = max_batch_size
        self.timeout_s = max(0.0, timeout_ms) / 1000
        self._queue: deque[_Pending] = deque()
        self._rows = 0
        self._flushing: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        # one thread: the model runs one batch at a time
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="predict") if in_thread else None
        self.batches = 0  # counters for the logs and the tests
        self.requests = 0

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        pending = _Pending(x, loop.create_future())
        self._queue.append(pending)
        self._rows += len(x)
        if self._flushing is None or self._flushing.done():
            # a task, not a direct call: it runs after the handlers already scheduled in
            # this turn of the loop, whose requests then join the same batch
            self._flushing = loop.create_task(self._flush())
        elif self._wake is not None and self._rows >= self.max_rows:
            self._wake.set()  # a waiting batch is full: go now
        return await pending.future

    async def _flush(self) -> None:
        while self._queue:
            if self.timeout_s and self._rows < self.max_rows:
                await self._fill()
            batch = self._take()
            try:
                await self._serve(batch)
            except Exception as exc:  # never leave a request waiting: fail this batch only
                log.exception("batching failed")
                for p in batch:
                    _settle(p, exc=exc)

    async def _fill(self) -> None:
        """Wait for more rows until the batch is full or the oldest request's time is up."""
        left = self._queue[0].arrived + self.timeout_s - time.monotonic()
        if left <= 0:
            return
        self._wake = asyncio.Event()
        try:
            async with asyncio.timeout(left):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._wake = None

    def _take(self) -> list[_Pending]:
        """The oldest requests whose rows fit in one batch (always at least one)."""
        batch = [self._queue.popleft()]
        rows = len(batch[0].x)
        while self._queue and rows + len(self._queue[0].x) <= self.max_rows:
            p = self._queue.popleft()
            rows += len(p.x)
            batch.append(p)
        self._rows -= rows
        return batch

    async def _run(self, x: np.ndarray) -> np.ndarray:
        if self._executor is None:
            return self._checked(x)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._checked, x)

    async def _serve(self, batch: list[_Pending]) -> None:
        xs = [p.x for p in batch]
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        self.batches += 1
        self.requests += len(batch)
        try:
            y = await self._run(x)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc=exc)
                return
            # one bad request must not fail the others stacked with it: run each alone
            for p in batch:
                try:
                    _settle(p, await self._run(p.x))
                except Exception as alone:
                    _settle(p, exc=alone)
            return
        start = 0
        for p in batch:
            _settle(p, y[start : start + len(p.x)])
            start += len(p.x)

    def _checked(self, x: np.ndarray) -> np.ndarray:
        y = self.predict(x)
        if getattr(y, "shape", (None,))[:1] != (len(x),):
            raise ValueError(
                f"the model returned shape {list(getattr(y, 'shape', []))} for a batch of "
                f"{len(x)} rows; batching needs row i of the output for row i of the input"
            )
        return y

    def close(self) -> None:
        """Stop the worker thread, if any (pending requests end with the server)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(p: _Pending, value: np.ndarray | None = None, exc: BaseException | None = None) -> None:
    if p.future.done():  # the client went away and its handler was cancelled
        return
    if exc is not None:
        p.future.set_exception(exc)
    else:
        p.future.set_result(value)
