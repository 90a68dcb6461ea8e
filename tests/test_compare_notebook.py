"""examples/compare_experiments.ipynb runs top to bottom in a real kernel."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "compare_experiments.ipynb"

pytestmark = pytest.mark.timeout(600)


def _outputs(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        parts.append(o.get("data", {}).get("text/plain", ""))
        if o.get("output_type") == "error":
            parts.append(f"{o['ename']}: {o['evalue']}")
    return "\n".join(parts)


def test_example_notebook_runs_and_compares_sweep_with_imported_run(workspace, tmp_path):
    source = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code"), (
        "commit the example with outputs stripped"
    )
    nb_path = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    env = dict(os.environ, JUPYTER_EXT_HOME=str(workspace), JUPYTER_EXT_WARM_START="0")
    client = NotebookClient(
        nb, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)

    code = [c for c in nb.cells if c.cell_type == "code"]
    text = {c.source.splitlines()[0]: _outputs(c) for c in code}
    assert not [c for c in code if any(o.output_type == "error" for o in c.outputs)]
    finished = text["for run in sweep:"]
    assert finished.count("'succeeded'") == 3
    summary = text['summary = jupyter_ext.summary("digits-lr")']
    assert all(name in summary for name in ("lr-0.5", "lr-0.1", "lr-0.02"))
    assert "Imported 1 run" in text["imported = %import_logs {out} --experiment baseline"]
    assert "Imported 0 runs (1 already in the workspace)" in text["%import_logs {out}"]
    both = next(c for c in code if c.source.startswith("both = "))
    bundle = both.outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    assert "Comparison of 4 runs" in bundle["text/plain"]
    assert "baseline/version_0" in bundle["text/plain"]
    exported = text['both.save(out / "comparison.svg")']
    assert "comparison.png" in exported and "summary.csv" in exported
