"""The accelerators panel in a real JupyterLab: a loading line first, then a card per
device with bars, the missing kinds folded with plain reasons, controls that select, and
a selection line that follows ``%accelerator``.

The panel is saved to ``docs/accelerators-panel.png`` for the README.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"

# Records, from before the cell runs, when the loading line and the first device card
# are first in the page (a loading line replaced within one poll would escape a locator).
_WATCH = """() => {
  const seen = (window.__accSeen = { loading: null, card: null });
  const check = () => {
    const now = performance.now();
    if (seen.loading === null && document.querySelector('.jx-acc-loading')) seen.loading = now;
    if (seen.card === null && document.querySelector('.jx-acc-card')) seen.card = now;
  };
  new MutationObserver(check).observe(document.body, { childList: true, subtree: true });
  check();
}"""


def test_accelerators_panel_loads_shows_cards_and_follows_selection(lab):
    page = lab.open_notebook(
        [
            "%load_ext jupyter_ext\n%accelerators",
            "import jupyter_ext\nprint(jupyter_ext.selection())",
            "%accelerator cpu",
        ]
    )
    page.evaluate(_WATCH)
    cell = lab.run_cell(0)
    panel = cell.locator(".jx-accelerators")

    # The CPU card: a name, a RAM bar and a CPU load bar, values with units.
    cpu = panel.locator(".jx-acc-card[data-kind='cpu']")
    expect(cpu).to_have_count(1, timeout=60_000)
    expect(cpu.locator(".jx-acc-bar")).to_have_count(2)
    expect(cpu.locator(".jx-acc-bar-fill")).to_have_count(2)
    expect(cpu.locator(".jx-acc-metric[data-metric='memory'] .jx-acc-value")).to_have_text(
        re.compile(r"^\d+(\.\d)? (GiB|MiB) / \d+\.\d GiB \(\d+ %\)$")
    )
    expect(cpu.locator(".jx-acc-metric[data-metric='load'] .jx-acc-value")).to_have_text(
        re.compile(r"^\d+ %$")
    )
    expect(cpu).to_contain_text("RAM")
    expect(cpu).to_contain_text("CPU load")
    # The loading line came first, and went once the data were there.
    seen = page.evaluate("window.__accSeen")
    assert seen["loading"] is not None, "the loading line never showed"
    assert seen["card"] is not None and seen["loading"] < seen["card"], seen
    expect(panel.locator(".jx-acc-loading")).to_have_count(0)

    # The missing kinds are folded; opened, each says why in plain words.
    folded = panel.locator("details.jx-acc-unavailable")
    expect(folded.locator("summary")).to_have_text(re.compile(r"^Not available here: .*tpu"))
    missing = folded.locator(".jx-acc-missing")
    expect(missing.first).to_be_hidden()
    folded.locator("summary").click()
    if not torch.cuda.is_available():
        expect(missing.filter(has_text="NVIDIA GPU (CUDA)")).to_contain_text(
            re.compile(r"no NVIDIA driver|CUDA build of torch missing")
        )
    expect(missing.filter(has_text="Apple GPU (MPS)")).to_contain_text(
        "Apple MPS exists only on macOS"
    )
    expect(missing.filter(has_text="Google TPU (XLA)")).to_contain_text("no torch_xla installed")
    expect(panel).not_to_contain_text(re.compile(r"\w+Accelerator\b"))  # no class names
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()

    # The controls select; the kernel holds what the panel chose.
    line = panel.locator(".jx-acc-selection")
    expect(line).to_have_text(re.compile(r"^accelerator=auto "))
    cell.get_by_role("textbox", name="devices").fill("2")
    cell.get_by_role("button", name="Use for next runs").click()
    expect(line).to_contain_text("devices=2")
    lab.run_cell(1)
    lab.wait_text("devices=2", cell=1)

    # A choice Lightning refuses is explained inline, in the panel, not as a traceback.
    cell.get_by_role("combobox", name="strategy").fill("fsdp")
    cell.get_by_role("button", name="Use for next runs").click()
    refusal = cell.locator(".widget-html", has_text="Refused")
    expect(refusal).to_contain_text("GPU")

    # %accelerator in another cell: the panel's selection line and controls follow, and
    # the old refusal is gone.
    lab.run_cell(2)
    lab.wait_text("Selection for next runs: accelerator=cpu", cell=2)
    expect(line).to_have_text(re.compile(r"^accelerator=cpu devices=auto "))
    expect(cell.get_by_role("combobox", name="accelerator")).to_have_value("cpu")
    expect(cell.get_by_role("textbox", name="devices")).to_have_value("auto")
    expect(refusal).to_have_count(0)
    expect(cpu.locator(".jx-acc-selected")).to_have_text("selected")
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()

    DOCS.mkdir(exist_ok=True)
    panel.screenshot(path=DOCS / "accelerators-panel.png")
