"""The run monitor and the comparison view render in Notebook 7 (the `notebook` package),
served by the same Jupyter server as the lab tests, in the same headless Chromium."""

from __future__ import annotations

import pytest
from helpers import wait_for
from playwright.sync_api import expect
from test_training import MODEL_CELL

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_monitor_and_comparison_render_in_notebook_7(nb7):
    nb7.open_notebook(
        [
            "%load_ext jupyter_ext",
            "%%train --name in-nb7 --max-epochs 2 --log-every-n-steps 1\n"
            + MODEL_CELL
            + "\nmodel = Net()",
            "import jupyter_ext\njupyter_ext.get_run('in-nb7').wait(timeout=180)\n"
            "jupyter_ext.compare('in-nb7')",
        ]
    )
    nb7.run_cell(0)
    nb7.run_cell(1)
    out = nb7.output(1)
    chart = out.locator(".jupyter-ext-chart")
    expect(chart).to_be_visible(timeout=60_000)
    wait_for(lambda: int(chart.get_attribute("data-points") or 0) >= 16, timeout=180,
             what="the monitor to draw the run")  # fmt: skip
    expect(out.get_by_text("succeeded", exact=True).first).to_be_visible(timeout=120_000)

    nb7.run_cell(2)
    compare = nb7.output(2).locator(".jupyter-ext-chart")
    expect(compare).to_be_visible(timeout=60_000)
    expect(compare.locator(".jxc-legend").first).to_contain_text("in-nb7")
    nb7.assert_no_widget_errors()
    # Notebook 7's own bundle logs these (lab user settings for a plugin it lacks, also on
    # a bare notebook; a lab-only command).
    upstream = ("reading 'schema'", "'filebrowser:open-path' not registered")
    nb7.console_errors = [e for e in nb7.console_errors if not any(u in e for u in upstream)]
    nb7.assert_no_console_errors()
