"""The live chart (uPlot, through the chart module) in a real JupyterLab.

Points sent from the kernel are drawn; with real runs, the monitor and a comparison draw
uPlot charts whose synced cursor reads the values the runs logged, a drag zooms every
panel and a double-click resets them, and log y and smoothing change the pixels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import wait_for
from labdriver import count_ink
from playwright.sync_api import Locator, Page, expect
from test_training import MODEL_CELL

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
RUN_MS = 240_000  # a tiny run on two busy cores, spare start included
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _ink(lab, chart, panel="loss", series=0) -> dict[str, int]:
    p = chart.locator(f'[data-panel="{panel}"]')
    swatch = p.locator(".jxc-legend .jxc-swatch").nth(series)
    return count_ink(lab.page, p.locator("canvas"), swatch, "backgroundColor")


def _pixels(page: Page, panel: Locator) -> str:
    """A digest of what a panel's canvas shows (changes when anything drawn changes)."""
    return page.evaluate("(c) => c.toDataURL()", panel.locator("canvas").element_handle())


def _at(page: Page, panel: Locator, fx: float) -> tuple[float, float]:
    box = panel.locator(".u-over").bounding_box()
    assert box is not None
    return box["x"] + fx * box["width"], box["y"] + box["height"] / 2


def _x_range(panel: Locator) -> tuple[float, float]:
    return float(panel.get_attribute("data-x-min")), float(panel.get_attribute("data-x-max"))


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
    expect(chart.locator('[data-panel="loss"] .uplot')).to_have_count(1, timeout=30_000)

    # Before any point: the empty panel's axes are drawn, but no curve.
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

    # The chart follows JupyterLab's theme: axes and grid are redrawn in the dark theme's ink.
    panel = chart.locator('[data-panel="loss"]')
    light = _pixels(lab.page, panel)
    page = lab.page
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Settings", exact=True).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="JupyterLab Dark").first.click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    wait_for(lambda: _pixels(page, panel) != light, timeout=30, what="the chart in dark ink")
    # Back to the light theme: the lab's settings outlive this test.
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Settings", exact=True).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="JupyterLab Light").first.click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true", timeout=30_000)
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


def _train(name: str, lr: float, epochs: int) -> str:
    return (
        f"%%train --name {name} --experiment chart-browser --max-epochs {epochs} "
        "--log-every-n-steps 1\n" + MODEL_CELL + f"\nmodel = Net(lr={lr})"
    )


COMPARE = """
import json
runs = [jupyter_ext.get_run(n) for n in ("chart-a", "chart-b")]
for r in runs:
    r.wait(timeout=300, raise_on_failure=True)
view = jupyter_ext.compare(runs, metrics=["train_loss", "val_loss"])
display(view)
logged = {r.id: {int(s): float(v) for s, v in r.metrics.query("key == 'train_loss'")[["step", "value"]].values} for r in runs}
print("LOGGED " + json.dumps(logged))
"""
STATE = "print('STATE', view.chart.log_y, view.chart.smoothing)"


def test_monitor_and_comparison_of_real_runs_zoom_hover_log_and_smooth(lab):
    page = lab.open_notebook(
        [
            "%load_ext jupyter_ext\nimport jupyter_ext",
            _train("chart-a", 0.05, 3),
            _train("chart-b", 0.01, 2),
            COMPARE,
            STATE,
        ]
    )
    lab.run_cell(0)
    monitor = lab.run_cell(1).locator(".jupyter-ext-chart")
    lab.run_cell(2)
    # The monitor of a real run draws its curves with uPlot.
    expect(monitor.locator(".uplot").first).to_be_visible(timeout=RUN_MS)
    wait_for(lambda: int(monitor.get_attribute("data-points") or 0) > 0, timeout=RUN_MS / 1000,
             what="the monitor's first points")  # fmt: skip

    out = lab.run_cell(3, timeout=RUN_MS / 1000)
    text = out.inner_text()
    logged = json.loads(re.search(r"LOGGED (\{.*\})", text).group(1))
    chart = out.locator(".jupyter-ext-chart")
    loss, val = chart.locator('[data-panel="train_loss"]'), chart.locator('[data-panel="val_loss"]')
    expect(chart.locator(".uplot")).to_have_count(2, timeout=60_000)
    for series in (0, 1):
        wait_for(lambda s=series: _ink(lab, chart, "train_loss", s)["series"] > 30, timeout=30,
                 what=f"run {series}'s curve")  # fmt: skip
    full = _x_range(loss)

    # Hover: the tooltip reads each run's logged value at that step; the cursor is synced,
    # so the other panel's legend reads its values at the same x.
    page.mouse.move(*_at(page, loss, 0.5))
    tip = loss.locator(".jxc-tip")
    expect(tip).to_be_visible(timeout=10_000)
    rows = tip.locator(".jxc-row")
    expect(rows).to_have_count(2)
    for i in range(2):
        row = rows.nth(i)
        run_id = row.get_attribute("data-series").split("/")[0]
        step = int(float(row.get_attribute("data-x")))
        assert float(row.get_attribute("data-raw")) == pytest.approx(logged[run_id][str(step)])
    first_step = int(float(rows.nth(0).get_attribute("data-x")))
    assert tip.locator(".jxc-tip-head").inner_text() == f"step {first_step}"
    expect(val.locator(".jxc-value").first).not_to_have_text("", timeout=5_000)
    assert not val.locator(".jxc-tip").is_visible()  # one tooltip: the hovered panel's
    page.screenshot(path=DOCS / "chart-hover.png")

    # Drag to zoom: every panel shows the same narrower x range; a double-click resets.
    page.mouse.move(*_at(page, loss, 0.2))
    page.mouse.down()
    page.mouse.move(*_at(page, loss, 0.6), steps=8)
    page.mouse.up()
    wait_for(lambda: _x_range(loss)[1] - _x_range(loss)[0] < (full[1] - full[0]) * 0.6,
             timeout=10, what="the drag to zoom in")  # fmt: skip
    assert _x_range(val) == _x_range(loss)
    expect(chart.locator(".jxc-reset")).to_be_visible()
    loss.locator(".u-over").dblclick()
    wait_for(lambda: _x_range(loss) == full and _x_range(val) == full, timeout=10,
             what="the double-click to reset the zoom")  # fmt: skip

    # "Align to shortest": every panel ends where the shorter run (2 of 3 epochs) ends.
    short_end = min(max(int(k) for k in steps) for steps in logged.values())
    chart.locator(".jxc-shortest").click()
    wait_for(lambda: _x_range(loss)[1] == short_end and _x_range(val)[1] == short_end,
             timeout=10, what="the x axes to end with the shorter run")  # fmt: skip
    loss.locator(".u-over").dblclick()
    wait_for(lambda: _x_range(loss) == full, timeout=10, what="the reset")

    # Log y and smoothing redraw the pixels, and reach the kernel.
    page.mouse.move(0, 0)
    before = _pixels(page, loss)
    chart.locator(".jxc-log").check()
    wait_for(lambda: _pixels(page, loss) != before, timeout=10, what="log y to redraw")
    logy = _pixels(page, loss)
    chart.locator(".jxc-smooth").fill("0.9")
    wait_for(lambda: _pixels(page, loss) != logy, timeout=10, what="smoothing to redraw")
    page.mouse.move(*_at(page, loss, 0.5))
    expect(tip).to_contain_text("raw", timeout=10_000)
    lab.run_cell(4)
    lab.wait_text("STATE True 0.9", cell=4)

    # A legend click hides a run on every panel.
    chart.locator('[data-panel="train_loss"] .jxc-item').first.click()
    expect(chart.locator(".jxc-item.jxc-off")).to_have_count(2)
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()
