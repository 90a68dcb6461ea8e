"""How long a warm spare outlives its kernel: at rest (imports done) and mid-import.

``python -m benchmarks.bench_spare [--rounds N]``

A stand-in kernel (a real Python process holding the spare's stdin pipe, as a kernel does)
starts a spare through ``SparePool``, then exits with ``os._exit`` at the chosen moment; the
time from its exit to the spare's exit is measured. The anchor is the start-up of a bare
interpreter (``python -c pass``) measured in the same run: a spare cannot leave faster
than a process can start, so the ratio says how close to that floor it gets.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

KERNEL = """
import os, sys
from pathlib import Path
from jupyter_ext.training.launchers.local import SparePool
pool = SparePool(Path(sys.argv[1]), 1.0)
pool.ensure()
print(pool.pid, flush=True)
sys.stdin.readline()  # the probe says when to die
os._exit(0)  # as a killed kernel: no atexit, no graceful close of the pipe
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def interpreter_start() -> float:
    """Seconds for a bare ``python -c pass``: the floor of any process's life."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def spare_exit_after_kernel(home: Path, *, mid_import: bool, timeout: float = 120.0) -> float:
    """Seconds from the kernel's death to its spare's, with the spare mid-import or idle.

    Raises if the spare was not in the asked-for state when the kernel died.
    """
    from jupyter_ext.training.worker import SPARE_READY

    log = home / "spares" / "spares.log"
    kernel = subprocess.Popen(
        [sys.executable, "-c", KERNEL, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid = int(kernel.stdout.readline())  # type: ignore[union-attr]

        def ready() -> bool:
            return log.exists() and f"{SPARE_READY} {pid}" in log.read_text(errors="replace")

        def importing() -> bool:
            # Past interpreter start-up (the watcher thread is up, torch's import has
            # begun) and not yet done importing.
            try:
                p = psutil.Process(pid)
                return p.num_threads() >= 2 and "torch" in " ".join(m.path for m in p.memory_maps())
            except psutil.Error:
                return False

        if mid_import:
            _wait(importing, timeout, "the spare to be importing torch")
        else:
            _wait(ready, timeout, "the spare to finish importing")
        kernel.stdin.write("die\n")  # type: ignore[union-attr]
        kernel.stdin.flush()  # type: ignore[union-attr]
        kernel.wait(timeout=timeout)
        t0 = time.perf_counter()
        _wait(lambda: _gone(pid), timeout, "the spare to exit")
        elapsed = time.perf_counter() - t0
        if mid_import and ready():
            raise RuntimeError("the spare finished importing before its kernel died")
        return elapsed
    finally:
        if kernel.poll() is None:
            kernel.kill()
        kernel.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    rounds = ap.parse_args().rounds
    floor, rest, mid = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            floor.append(interpreter_start())
            rest.append(spare_exit_after_kernel(Path(tmp) / f"rest{i}", mid_import=False))
            mid.append(spare_exit_after_kernel(Path(tmp) / f"mid{i}", mid_import=True))
    f = statistics.median(floor)
    print(f"anchor: bare interpreter start-up      {f * 1000:8.1f} ms (median of {rounds})")
    for label, xs in (("at rest (imports done)", rest), ("mid-import (torch loading)", mid)):
        m = statistics.median(xs)
        print(
            f"kernel exit -> spare exit, {label:27s} median {m * 1000:7.1f} ms, "
            f"max {max(xs) * 1000:7.1f} ms, {m / f:5.2f} x anchor"
        )


if __name__ == "__main__":
    main()
