"""The monitor in a real JupyterLab: a failed run leads with its error, an ended run shows
its final state and no Stop button, a stopped one says how to go on.

The three monitors are saved to ``docs/monitor-failed.png``, ``docs/monitor-finished.png``
and ``docs/monitor-stopped.png`` for the README.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_tracebacks import CLASS_CELL
from test_training import MODEL_CELL

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUN_S = 180_000  # ms: a cold worker imports torch and Lightning first


def _visible_stop_buttons(out) -> int:
    buttons = out.get_by_role("button", name=re.compile(r"^Stop"))
    return sum(1 for b in buttons.all() if b.is_visible())


def test_a_failed_run_leads_with_the_error_and_the_cells_lines(lab):
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            CLASS_CELL,  # In[2]: the model class, wrong input size on line 7
            "%%train --name bc-bug --experiment bc --max-epochs 3 --train-dataloaders data\n"
            "model = BadNet()",
        ]
    )
    lab.run_all()
    out = lab.output(2)
    expect(out.get_by_text("failed after", exact=False)).to_be_visible(timeout=RUN_S)

    error = out.locator(".jx-error")
    expect(error).to_have_count(1)
    head = error.locator(".jx-error-head")
    expect(head).to_have_text(
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x30 and 20x2)"
    )
    frames = error.locator(".jx-frame")
    expect(frames).to_have_count(2)  # the person's two frames, nothing of Lightning's
    expect(frames.nth(0)).to_contain_text("Cell In[2], line 14, in training_step")
    expect(frames.nth(1)).to_contain_text("Cell In[2], line 10, in forward")
    expect(frames.nth(1)).to_contain_text("return self.net(x)")
    full = error.locator("details.jx-error-full")
    expect(full).to_have_count(1)
    expect(full.locator("summary")).to_contain_text(re.compile(r"\d+ frames in Lightning"))
    expect(full.locator("pre")).to_be_hidden()  # folded until asked for

    # the error first: above the person's frames, above the folded traceback and the chart
    y = [loc.bounding_box()["y"] for loc in (head, frames.nth(0), full)]
    assert y == sorted(y), y
    chart = out.locator(".jupyter-ext-chart")
    if chart.count():
        assert chart.first.bounding_box()["y"] > y[-1]
    assert _visible_stop_buttons(out) == 0
    DOCS.mkdir(exist_ok=True)
    out.screenshot(path=DOCS / "monitor-failed.png")

    full.locator("summary").click()  # unfolded, the whole traceback is there
    expect(full.locator("pre")).to_contain_text("lightning/pytorch/trainer/trainer.py")
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()


def test_a_finished_run_shows_its_final_state_without_a_stop_button(lab):
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            "%%train --name bc-1 --experiment bc --max-epochs 15\n"
            + MODEL_CELL
            + "\nmodel = Net(step_delay=0.02)",
        ]
    )
    lab.run_all()
    out = lab.output(1)
    progress = out.locator(".jx-progress")
    expect(progress).to_contain_text("succeeded in 0:", timeout=RUN_S)
    expect(progress).to_contain_text("epoch 15/15 · step 120/120")
    expect(progress).to_contain_text(re.compile(r"[\d.]+ steps/s · [\d,]+ samples/s"))
    expect(progress).not_to_contain_text("ETA")
    assert _visible_stop_buttons(out) == 0
    expect(out.locator(".jx-error")).to_have_count(0)
    expect(out.get_by_text("Tip:", exact=False)).to_have_count(0)  # the log tail has no ads
    DOCS.mkdir(exist_ok=True)
    out.screenshot(path=DOCS / "monitor-finished.png")
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()


def test_stop_keeps_a_checkpoint_and_lightnings_warnings_show_as_notices(lab):
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            "%%train --name bc-stop --experiment bc --max-epochs 1000 --log-every-n-steps 50"
            " --precision 16-mixed\n" + MODEL_CELL + "\nmodel = Net(step_delay=0.05)",
        ]
    )
    lab.run_all()
    out = lab.output(1)
    notices = out.locator(".jx-notice")
    expect(
        notices.filter(has_text="log_every_n_steps=50 is more than the 8 batches")
    ).to_have_count(1, timeout=RUN_S)
    expect(notices.filter(has_text="precision 16-mixed is not supported on CPU")).to_have_count(1)
    expect(out.locator(".jx-progress")).to_contain_text("ETA")
    out.get_by_role("button", name="Stop").click()
    progress = out.locator(".jx-progress")
    expect(progress).to_contain_text("stopped after", timeout=120_000)
    expect(progress).to_contain_text("checkpoint kept")
    expect(progress.locator("code")).to_have_text("run.resume()")
    expect(out.get_by_role("button", name=re.compile(r"^Stop"))).to_be_hidden(timeout=30_000)
    DOCS.mkdir(exist_ok=True)
    out.screenshot(path=DOCS / "monitor-stopped.png")
    lab.assert_no_widget_errors()
    lab.assert_no_console_errors()
