"""A warm spare leaves with its kernel at any moment: idle, or in the middle of its imports.

The kernel here is a real Python process holding the spare's stdin pipe (as a kernel
does) that dies with ``os._exit``; the end-to-end case with a real ipykernel is in
``test_monitor_and_warm_start.py``. Timings come from ``benchmarks/bench_spare.py``.
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))
from benchmarks.bench_spare import interpreter_start, spare_exit_after_kernel

pytestmark = pytest.mark.timeout(300)


def allowance() -> float:
    """One second, as promised, unless this machine is so loaded that merely starting an
    interpreter takes over 100 ms: then ten interpreter start-ups (measured now)."""
    return max(1.0, 10 * min(interpreter_start() for _ in range(3)))


@pytest.mark.parametrize("mid_import", [True, False], ids=["mid-import", "at-rest"])
def test_spare_exits_within_a_second_of_its_kernel(tmp_path, mid_import):
    limit = allowance()
    elapsed = spare_exit_after_kernel(tmp_path / "ws", mid_import=mid_import)
    print(f"kernel exit -> spare exit ({'mid-import' if mid_import else 'at rest'}): "
          f"{elapsed * 1000:.0f} ms (allowed {limit * 1000:.0f} ms)")  # fmt: skip
    assert elapsed < limit
