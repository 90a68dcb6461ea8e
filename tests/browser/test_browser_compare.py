"""The comparison view in a real JupyterLab: live points, a new metric's panel, controls."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SETUP = """
import time, numpy as np
import jupyter_ext
from jupyter_ext.store import open_store
st = open_store()
ids = []
for lr in (0.1, 0.01):
    r = st.create_run(name=f"b-lr-{lr}", experiment="browser-sweep", status="running",
                      heartbeat=time.time(), hparams={"lr": lr})
    ids.append(r.id)
    st.add_metrics(r.id, [("loss", s, 0, time.time(), np.exp(-s * lr)) for s in range(50)])
view = jupyter_ext.compare("browser-sweep")
view
"""

MORE = """
for i in ids:
    st.update_run(i, heartbeat=time.time())
    st.add_metrics(i, [("loss", s, 1, time.time(), 0.5) for s in range(50, 60)]
                   + [("acc", 60, 1, time.time(), 0.9)])
"""

END = "for i in ids: st.update_run(i, status='succeeded')"

CHECK = "print('x axis:', view.chart.x_label, '| max x:', view.chart.data.x.max())"


def test_comparison_follows_runs_and_redraws_on_controls(lab):
    lab.open_notebook([SETUP, MORE, END, CHECK])
    chart = lab.run_cell(0).locator(".jupyter-ext-chart")
    expect(chart).to_have_attribute("data-points", "100", timeout=60_000)
    # Runs and metrics are checkboxes with whole labels; the experiment asked for is chosen.
    out = lab.output(0)
    expect(out.locator(".jupyter-ext-checklist input[type=checkbox]")).to_have_count(3)
    expect(out.get_by_text("b-lr-0.01 · running", exact=False)).to_be_visible()
    expect(out.locator("select").first).to_have_value("browser-sweep")
    legend = chart.locator('[data-panel="loss"] .jxc-legend')
    expect(legend).to_contain_text("b-lr-0.1 (lr=0.1)")
    expect(legend).to_contain_text("b-lr-0.01 (lr=0.01)")

    # The store moves on: the view gets only the new points, and a panel for the new metric.
    lab.run_cell(1)
    expect(chart).to_have_attribute("data-points", "122", timeout=60_000)
    expect(chart.locator('[data-panel="acc"]')).to_have_count(1, timeout=30_000)

    lab.run_cell(2)
    output = lab.output(0)
    expect(output).to_contain_text("all shown runs ended", timeout=30_000)

    # Switching the x axis redraws from one snapshot, with every point still there.
    output.locator(".jxc-x").select_option("epoch")  # the chart's own x-axis selector
    lab.run_cell(3)
    lab.wait_text("x axis: epoch | max x: 1", cell=3)  # the kernel saw the click
    expect(chart).to_have_attribute("data-points", "122", timeout=30_000)
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()
