"""The chart module's JavaScript unit tests (protocol, smoothing, buckets), run by node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LABEXT = Path(__file__).resolve().parents[1] / "labextension"


@pytest.mark.skipif(shutil.which("node") is None, reason="node builds and tests the front end")
def test_chart_module_unit_tests_pass():
    if not (LABEXT / "node_modules" / "esbuild").is_dir():
        pytest.skip("labextension/node_modules is missing: `make install` runs npm ci")
    result = subprocess.run(
        ["node", "scripts/test-js.js"], cwd=LABEXT, capture_output=True, text=True, timeout=300
    )
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert "# fail 0" in result.stdout and "# pass " in result.stdout, tail
