"""A notebook saved after its run ended shows the run's final state when opened again.

The monitor is a widget, which needs the kernel that made it. Our JupyterLab extension
keeps a static copy of an ended run's monitor in the notebook when it is saved, and shows
that copy when the notebook is opened later (the old kernel gone).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from helpers import wait_for
from playwright.sync_api import expect
from test_training import MODEL_CELL

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]
DOCS = Path(__file__).resolve().parents[2] / "docs"
WIDGET = "application/vnd.jupyter.widget-view+json"


def _kept(path: Path) -> dict | None:
    """The monitor's output in the saved file, once it holds the final state."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):  # the server is still writing it
        return None
    for out in nb.cells[1].get("outputs", []):
        if out.get("metadata", {}).get("jupyter_ext", {}).get("final"):
            return out
    return None


def test_saved_notebook_shows_a_finished_runs_final_state_without_its_kernel(lab):
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            "%%train --name saved-run --max-epochs 2 --log-every-n-steps 1\n"
            + MODEL_CELL
            + "\nmodel = Net()",
            "import jupyter_ext\n"
            "jupyter_ext.get_run('saved-run').wait(timeout=240, raise_on_failure=True)",
        ]
    )
    lab.run_cell(0)
    cell = lab.run_cell(1)
    lab.run_cell(2, timeout=300)
    ended = cell.locator(".jupyter-ext-view.jupyter-ext-ended")
    expect(ended).to_be_visible(timeout=60_000)
    expect(ended.locator(".uplot").first).to_be_visible()

    lab.page.keyboard.press("Control+s")
    path = lab.server.root / lab.path
    out = wait_for(lambda: _kept(path), timeout=60, what="the saved notebook to keep the state")
    html = out["data"]["text/html"]
    assert WIDGET in out["data"]  # the live widget is still there for this session
    assert "saved-run" in html and "succeeded in" in html and "<img" in html
    assert "<button" not in html and "<input" not in html  # nothing that needs a kernel

    # Open it again: the old kernel is gone; the output shows the kept state.
    name = lab.path
    lab.close()
    lab.path = name
    lab.page = lab.context.new_page()
    lab.page.on("console", lab._on_console)
    lab.page.goto(lab.notebook_url())
    lab.wait_kernel_idle()
    saved = lab.output(1).locator(".jupyter-ext-saved")
    expect(saved).to_be_visible(timeout=60_000)
    expect(saved).to_contain_text("succeeded in")
    expect(saved).to_contain_text("saved-run")
    expect(saved.locator("img").first).to_be_visible()
    assert saved.locator("img").first.evaluate("(img) => img.naturalWidth") > 100
    expect(lab.notebook.get_by_text(re.compile("Error displaying widget"))).to_have_count(0)
    DOCS.mkdir(exist_ok=True)
    lab.output(1).screenshot(path=DOCS / "monitor-saved.png")
