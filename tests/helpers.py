"""Small helpers for tests: waiting on a condition with a deadline (never a bare sleep).

Deadlines are set for a quiet machine. The suite must also pass while other work keeps
every core busy, so a deadline that runs out is not failed at once: the machine's
slowdown is measured right then (the wall time of a fixed CPU-bound task over its CPU
time, which is 1 on an idle core and grows with contention) and the deadline is
stretched by that factor, once. A broken behaviour still fails: it fails later, by as
much as the machine is slower.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_MAX_STRETCH = 8.0


def slowdown() -> float:
    """How many times slower than an idle core this process runs now (>= 1).

    Example::

        >>> slowdown() >= 1.0
        True
    """
    ratios = []
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        n = 0
        for i in range(300_000):  # ~20 ms of pure Python on an idle core
            n += i
        cpu = time.process_time() - c0
        ratios.append((time.perf_counter() - w0) / max(cpu, 1e-6))
    return min(max(sorted(ratios)[1], 1.0), _MAX_STRETCH)


def wait_for(
    cond: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
):
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds,
    stretched once by :func:`slowdown` when the machine is busy."""
    start = time.monotonic()
    deadline = start + timeout
    stretched = False
    while True:
        value = cond()
        if value:
            return value
        now = time.monotonic()
        if now > deadline:
            factor = 1.0 if stretched else slowdown()
            stretched = True
            if factor > 1.05:
                deadline = start + timeout * factor
                continue
            raise AssertionError(f"timed out after {now - start:.0f} s waiting for {what or cond}")
        time.sleep(interval)
