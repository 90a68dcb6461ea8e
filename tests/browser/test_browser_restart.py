"""After a kernel restart, views of the dead kernel show their last state and one line.

ipywidgets keeps a dead kernel's views and marks each one disconnected (a broken-link
icon on every widget, buttons that look live and do nothing). Ours keep the last state
drawn, hide what needs a kernel, and say how to re-attach.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import wait_for
from labdriver import count_ink
from playwright.sync_api import expect
from test_training import MODEL_CELL

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]
DOCS = Path(__file__).resolve().parents[2] / "docs"

SETUP = """
import time, numpy as np
import jupyter_ext
from jupyter_ext.store import open_store
st = open_store()
for lr in (0.1, 0.01):
    r = st.create_run(name=f"restart-lr-{lr}", experiment="restart-exp", status="succeeded",
                      started=time.time() - 60, ended=time.time(), hparams={"lr": lr})
    st.add_metrics(r.id, [("loss", s, 0, time.time(), np.exp(-s * lr)) for s in range(40)])
view = jupyter_ext.compare("restart-exp")
view
"""

# Every pseudo-element icon ipywidgets draws on a disconnected widget, as (content, display).
_ICONS = """(root) => Array.from(root.querySelectorAll('.jupyter-widgets-disconnected'))
  .map((el) => { const s = getComputedStyle(el, '::before'); return [s.content, s.display]; })"""


def _restart_kernel(lab) -> None:
    page = lab.page
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Kernel", exact=True).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Restart Kernel")).first.click()
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    lab.wait_kernel_idle()


def test_comparison_after_a_kernel_restart_keeps_its_last_state(lab):
    lab.open_notebook([SETUP])
    out = lab.run_cell(0)
    chart = out.locator(".jupyter-ext-chart")
    expect(chart).to_have_attribute("data-points", "80", timeout=60_000)
    hint = out.locator(".jupyter-ext-restart-hint")
    expect(hint).to_be_hidden()  # alive: no line
    panel = chart.locator('[data-panel="loss"]')
    swatch = panel.locator(".jxc-legend .jxc-swatch").first
    wait_for(lambda: count_ink(lab.page, panel.locator("canvas"), swatch, "backgroundColor")["series"] > 30,
             timeout=30, what="the curves")  # fmt: skip

    _restart_kernel(lab)
    view = out.locator(".jupyter-ext-view")
    expect(view).to_have_class(re.compile("jupyter-widgets-disconnected"), timeout=30_000)
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("kernel restarted")
    expect(hint).to_contain_text("jupyter_ext.compare('restart-exp')")
    expect(out.get_by_text("metrics", exact=True)).to_be_hidden()
    icons = lab.page.evaluate(_ICONS, view.element_handle())
    assert icons, "ipywidgets marks the views disconnected"
    assert all(content == "none" or display == "none" for content, display in icons), icons
    # Controls that need a kernel are gone; the curves drawn stay.
    expect(out.locator(".jupyter-ext-live-only").first).to_be_hidden()
    expect(out.get_by_role("button", name="Re-list runs")).to_be_hidden()
    assert count_ink(lab.page, panel.locator("canvas"), swatch, "backgroundColor")["series"] > 30
    DOCS.mkdir(exist_ok=True)
    out.screenshot(path=DOCS / "comparison-after-restart.png")
    lab.assert_no_widget_errors()


def test_monitor_of_a_running_run_after_a_kernel_restart(lab):
    # The run outlives its kernel: the old monitor keeps its last state and no Stop that
    # looks live; %load_ext says the run is still going; %monitor re-attaches; %stop ends it.
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            "%%train --name restart-live --max-epochs 1000 --log-every-n-steps 1\n"
            + MODEL_CELL
            + "\nmodel = Net(step_delay=0.05)",
            "%load_ext jupyter_ext",
            "%monitor restart-live",
            "%stop restart-live",
        ]
    )
    lab.run_cell(0)
    old = lab.run_cell(1)
    chart = old.locator(".jupyter-ext-chart")
    wait_for(lambda: int(chart.get_attribute("data-points") or 0) > 0, timeout=240,
             what="the run's first points")  # fmt: skip
    expect(old.get_by_role("button", name="Stop")).to_be_visible()

    _restart_kernel(lab)
    hint = old.locator(".jupyter-ext-restart-hint")
    expect(hint).to_be_visible(timeout=30_000)
    expect(hint).to_contain_text("%monitor restart-live")
    expect(old.get_by_role("button", name="Stop")).to_be_hidden()
    icons = lab.page.evaluate(_ICONS, old.locator(".jupyter-ext-view").element_handle())
    assert icons and all(c == "none" or d == "none" for c, d in icons), icons
    DOCS.mkdir(exist_ok=True)
    lab.output(1).screenshot(path=DOCS / "monitor-after-restart.png")

    lab.run_cell(2)
    lab.wait_text("restart-live", cell=2)  # "1 run still going: restart-live ..."
    new = lab.run_cell(3).locator(".jupyter-ext-chart")
    first = wait_for(lambda: int(new.get_attribute("data-points") or 0), timeout=60,
                     what="the re-attached monitor's points")  # fmt: skip
    wait_for(lambda: int(new.get_attribute("data-points") or 0) > first, timeout=60,
             what="the re-attached monitor to follow the run")  # fmt: skip
    lab.run_cell(4)
    expect(lab.output(3).get_by_text("stopped", exact=True).first).to_be_visible(timeout=120_000)
    lab.assert_no_widget_errors()
