"""One background thread that drives every live view (panel, monitor, comparison).

A kernel's event loop only runs between cells, so a view timed on it would freeze while
the user runs anything else; one shared daemon thread keeps all views live at a few Hz
without a thread per widget. Tasks hold their owner weakly: a closed or garbage-collected
view stops being polled.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Task:
    """A periodic call of ``method`` on ``owner``; cancel() stops it."""

    def __init__(self, owner: Any, method: Callable[[Any], Any], interval: float) -> None:
        self._owner = weakref.ref(owner)
        self._method = method
        self.interval = interval
        self.cancelled = False
        self.calls = 0

    def cancel(self) -> None:
        self.cancelled = True

    def _run(self) -> bool:
        """Run once; False means drop the task (cancelled, owner gone, or said stop)."""
        keep = self._call()
        if not keep:
            self.cancelled = True
        return keep

    def _call(self) -> bool:
        owner = self._owner()
        if owner is None or self.cancelled:
            return False
        try:
            keep = self._method(owner)
        except Exception:
            log.exception("live view %r failed; it stops refreshing", owner)
            return False
        finally:
            del owner
        self.calls += 1
        return keep is not False and not self.cancelled


class Poller:
    """A scheduler thread for periodic tasks, started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Task]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def every(self, interval: float, owner: Any, method: Callable[[Any], Any]) -> Task:
        """Call ``method(owner)`` every ``interval`` seconds until it returns False, the
        task is cancelled, or ``owner`` is garbage-collected.

        Example::

            >>> task = POLLER.every(0.5, view, type(view).refresh)  # doctest: +SKIP
            >>> task.cancel()  # doctest: +SKIP
        """
        task = Task(owner, method, interval)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + interval, next(self._counter), task))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="jupyter-ext-poller", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return task

    def active(self) -> int:
        """How many tasks are scheduled and not cancelled."""
        with self._cond:
            return sum(1 for _, _, t in self._heap if not t.cancelled)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, _, task = self._heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(timeout=delay)
                    continue
                heapq.heappop(self._heap)
            if task._run():
                with self._cond:
                    # Schedule from now, not from `due`: a slow refresh never piles up.
                    heapq.heappush(
                        self._heap, (time.monotonic() + task.interval, next(self._counter), task)
                    )


POLLER = Poller()
