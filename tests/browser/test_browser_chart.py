"""The live chart in a real JupyterLab: points sent from the kernel are drawn on its canvas."""

from __future__ import annotations

import pytest
from helpers import wait_for
from labdriver import count_ink
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def _ink(lab, chart) -> dict[str, int]:
    panel = chart.locator('[data-panel="loss"]')
    canvas, swatch = panel.locator("canvas"), panel.locator(".jxc-swatch")
    return count_ink(lab.page, canvas, swatch, "backgroundColor")


def test_live_chart_draws_appended_points(lab):
    # The view is up before the points exist: they arrive as one "append" message.
    lab.open_notebook(
        [
            "from jupyter_ext.widgets.chart import LiveChart\n"
            "import numpy as np\n"
            "c = LiveChart()\n"
            'c.set_series("a", panel="loss", label="a")\n'
            "display(c)",
            'c.append({"a": (np.arange(100), np.random.rand(100))})',
        ]
    )
    chart = lab.run_cell(0).locator(".jupyter-ext-chart")
    expect(chart).to_be_visible(timeout=60_000)
    expect(chart).to_have_attribute("data-points", "0")
    expect(chart.locator('[data-panel="loss"] .jxc-swatch')).to_have_count(1)

    # Before any point: the empty panel is drawn ("no data yet"), but no curve.
    before = wait_for(
        lambda: (m := _ink(lab, chart))["inked"] and m, timeout=30, what="empty panel"
    )
    assert before["series"] == 0, before

    lab.run_cell(1)
    expect(chart).to_have_attribute("data-points", "100", timeout=60_000)
    after = wait_for(
        lambda: (m := _ink(lab, chart))["series"] > 200 and m, timeout=30, what="the curve drawn"
    )
    assert after["inked"] > before["inked"], (before, after)
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()


def test_live_chart_filled_before_it_is_shown(lab):
    # Points appended before the view exists reach it in its first snapshot.
    lab.open_notebook(
        [
            "from jupyter_ext.widgets.chart import LiveChart\n"
            "import numpy as np\n"
            "c = LiveChart()\n"
            'c.set_series("a", panel="loss", label="a")\n'
            'c.append({"a": (np.arange(500), np.sin(np.arange(500) / 40))})',
            "c",
        ]
    )
    lab.run_all()
    chart = lab.output(1).locator(".jupyter-ext-chart")
    expect(chart).to_have_attribute("data-points", "500", timeout=60_000)
    wait_for(lambda: _ink(lab, chart)["series"] > 200, timeout=30, what="the curve drawn")
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()
