"""The run monitor in a real JupyterLab: a %%train run draws live, and Stop stops it."""

from __future__ import annotations

import re

import pytest
from helpers import wait_for
from playwright.sync_api import expect
from test_training import MODEL_CELL

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_monitor_draws_a_live_run_and_its_stop_button_stops_it(lab):
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            "%%train --name in-browser --max-epochs 1000 --log-every-n-steps 1\n"
            + MODEL_CELL
            + "\nmodel = Net(step_delay=0.05)",
        ]
    )
    lab.run_cell(0)
    lab.run_cell(1)
    out = lab.output(1)
    expect(out.get_by_text("in-browser", exact=True).first).to_be_visible(timeout=60_000)
    chart = out.locator(".jupyter-ext-chart")
    expect(chart).to_be_visible(timeout=60_000)

    def points() -> int:
        return int(chart.get_attribute("data-points") or 0)

    first = wait_for(points, timeout=120, what="first points drawn")
    wait_for(lambda: points() > first, timeout=60, what="the chart to follow the run")
    expect(
        out.locator(".widget-label, .widget-html").get_by_text("step", exact=False).first
    ).to_be_visible()

    out.get_by_role("button", name="Stop").click()
    expect(out.get_by_text("stopped", exact=True).first).to_be_visible(timeout=120_000)
    # An ended run has nothing to stop: no button that looks live.
    expect(out.get_by_role("button", name=re.compile(r"^Stop"))).to_be_hidden(timeout=30_000)
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()
