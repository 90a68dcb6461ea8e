"""The accelerators panel in a real JupyterLab: it renders, and its controls select."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_accelerators_panel_renders_and_selects(lab):
    page = lab.open_notebook(
        [
            "%load_ext jupyter_ext\n%accelerators",
            "import jupyter_ext\nprint(jupyter_ext.selection())",
        ]
    )
    cell = lab.run_cell(0)
    table = cell.locator("table.jupyter-ext-table")
    cpu_row = table.locator("tr", has=page.locator("td", has_text=re.compile(r"^cpu$")))
    expect(cpu_row).to_have_count(1, timeout=60_000)
    expect(cpu_row).to_contain_text(re.compile(r"\d+(\.\d+)? GiB"))
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()

    message = cell.locator(".widget-html", has_text="Selection for next runs")
    cell.get_by_role("textbox", name="devices").fill("2")
    cell.get_by_role("button", name="Use for next runs").click()
    expect(message).to_contain_text("devices=2")

    # The kernel holds the selection the panel made: the next cell sees it.
    lab.run_cell(1)
    lab.wait_text("devices=2", cell=1)

    # A choice Lightning refuses is explained inline, in the panel, not as a traceback.
    cell.get_by_role("combobox", name="strategy").fill("fsdp")
    cell.get_by_role("button", name="Use for next runs").click()
    refusal = cell.locator(".widget-html", has_text="Refused")
    expect(refusal).to_contain_text("GPU")
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()
