"""`make bench`: run every benchmark module (bench_*.py) in turn, each in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    failed = 0
    for path in sorted(here.glob("bench_*.py")):
        print(f"\n##### {path.stem}", flush=True)
        failed |= subprocess.call(
            [sys.executable, "-m", f"benchmarks.{path.stem}"], cwd=here.parent
        )
    sys.exit(failed)
