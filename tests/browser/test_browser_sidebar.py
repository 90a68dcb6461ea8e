"""The JupyterLab extension in a real JupyterLab: the "Runs" sidebar and its panels.

They talk to the server extension (``jupyter_ext.server``) over its REST API, so what the
kernel launched shows up here with no kernel involved: the sidebar lists a ``%%train``
run until it succeeds, stops another, opens a run panel that still draws its curves after
a page reload with the kernel gone, compares runs, and undeploys a live deployment.
The sidebar and the run panel are saved to ``docs/`` for the README.
"""

from __future__ import annotations

import os
import re
import secrets
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import wait_for
from labdriver import Lab, LabServer, count_ink
from playwright.sync_api import Locator, Page, expect
from test_training import MODEL_CELL
from torch import nn

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

DOCS = Path(__file__).resolve().parents[2] / "docs"
LABEXT = "jupyter-ext-labextension"
SIDEBAR_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="jupyter-ext-sidebar"]'
RUN_S = 240_000  # ms: a tiny run on two busy cores, kernel start included
UI_S = 60_000


def _ink(page: Page, chart: Locator, series: int = 1) -> dict[str, int]:
    """Pixels of ``chart``'s canvas, and those in the colour of its series ``series``."""
    canvas = chart.locator("canvas").first
    swatch = chart.locator(".jxc-legend .jxc-swatch").nth(series - 1)
    return count_ink(page, canvas, swatch, "backgroundColor")


def _require_extensions(server: LabServer) -> None:
    """Fail with the fix when the lab or the server extension is not installed."""
    prefix = Path(os.path.realpath(server._venv_bin)).parent  # the venv the lab runs from
    if not (prefix / "share" / "jupyter" / "labextensions" / LABEXT / "package.json").exists():
        pytest.fail(f"the {LABEXT} lab extension is not installed in {prefix}: run `make install`")
    try:
        server.api("GET", "/jupyter-ext/api/info")
    except urllib.error.HTTPError as exc:
        pytest.fail(f"the jupyter_ext.server extension does not answer ({exc}): `make install`")


def open_lab(lab: Lab, workspace: str, reset: bool = True) -> Page:
    """JupyterLab with no notebook, in lab workspace ``workspace`` (``reset``: empty)."""
    if lab.page is None:
        page = lab.context.new_page()
        page.on("console", lab._on_console)
        page.on("pageerror", lambda exc: lab.console_errors.append(f"pageerror: {exc}"))
        lab.page = page
    query = "?reset&" if reset else "?"
    lab.page.goto(f"{lab.server.url}/lab/workspaces/{workspace}{query}token={lab.server.token}")
    expect(lab.page.locator(SIDEBAR_TAB)).to_be_visible(timeout=120_000)
    return lab.page


def show_sidebar(page: Page) -> Locator:
    """Open the Runs sidebar (its tab in the left bar) unless it is open already."""
    sidebar = page.locator(".jpe-sidebar")
    tab = page.locator(SIDEBAR_TAB)
    expect(tab).to_be_visible(timeout=120_000)
    if not sidebar.is_visible():
        tab.click()
    expect(sidebar).to_be_visible(timeout=UI_S)
    return sidebar


def run_row(sidebar: Locator, experiment: str, name: str) -> Locator:
    group = sidebar.locator(f'.jpe-group[data-experiment="{experiment}"]')
    return group.locator(".jpe-run").filter(
        has=sidebar.page.locator(".jpe-run-name", has_text=re.compile(f"^{re.escape(name)}$"))
    )


def assert_healthy(lab: Lab) -> None:
    """No error widget, no section error, no "not enabled" message, no console error."""
    page = lab.page
    assert page is not None
    lab.assert_no_widget_errors()
    expect(page.locator(".jpe-section-error:visible")).to_have_count(0)
    expect(page.locator(".jpe-missing:visible")).to_have_count(0)
    expect(page.locator(".jpe-panel-message:visible")).to_have_count(0)
    lab.assert_no_console_errors()


def saved_layout(server: LabServer, workspace: str) -> str:
    """The lab workspace as the server keeps it (what a reload restores)."""
    return str(server.api("GET", f"/lab/api/workspaces/{workspace}"))


def test_sidebar_follows_kernel_runs_stops_one_and_panels_survive_a_reload(lab):
    _require_extensions(lab.server)
    experiment = f"sidebar-{secrets.token_hex(3)}"
    train = f"%%train --experiment {experiment} --log-every-n-steps 1 "
    lab.open_notebook(
        [
            "%load_ext jupyter_ext",
            f"{train}--name short --max-epochs 3\n{MODEL_CELL}\nmodel = Net(lr=0.2)",
            f"{train}--name long --max-epochs 1000\n{MODEL_CELL}\nmodel = Net(step_delay=0.05)",
        ]
    )
    page = lab.page
    sidebar = show_sidebar(page)
    lab.run_cell(0)

    # A run the kernel launches appears, with its status, and ends as succeeded.
    lab.run_cell(1)
    short = run_row(sidebar, experiment, "short")
    expect(short).to_have_count(1, timeout=UI_S)
    short_id = short.get_attribute("data-run-id")
    expect(short.locator(".jpe-run-status")).to_have_text("succeeded", timeout=RUN_S)
    expect(short.locator(".jpe-run-metric")).to_contain_text("val_loss", timeout=UI_S)
    wait_for(
        lambda: int(short.locator(".jpe-spark").get_attribute("data-points") or 0) > 1,
        timeout=60,
        what="the sparkline of the finished run",
    )
    expect(short.locator(".jpe-stop")).to_be_hidden()

    # Stop on a running run: it ends as stopped.
    lab.run_cell(2)
    long = run_row(sidebar, experiment, "long")
    expect(long.locator(".jpe-run-status")).to_have_text("running", timeout=RUN_S)
    expect(long.locator(".jpe-progress-text")).to_contain_text("ETA", timeout=UI_S)
    long_id = long.get_attribute("data-run-id")
    long.locator(".jpe-stop").click()
    expect(long.locator(".jpe-run-status")).to_have_text("stopped", timeout=RUN_S)
    expect(long.locator(".jpe-stop")).to_be_hidden()

    # The filter box matches names (and experiment, id, status).
    sidebar.locator(".jpe-filter").fill("stopped")
    expect(short).to_be_hidden()
    expect(long).to_be_visible()
    sidebar.locator(".jpe-filter").fill("")
    expect(short).to_be_visible()
    expect(sidebar.locator(".jpe-accelerator").first).to_be_visible(timeout=UI_S)
    DOCS.mkdir(exist_ok=True)
    sidebar.screenshot(path=DOCS / "labextension-sidebar.png")
    assert_healthy(lab)

    # The kernel goes (closing the notebook shuts it down); a lab with no notebook opens
    # the run and a comparison from the sidebar.
    lab.close()
    workspace = f"{lab.name}-panels"
    page = open_lab(lab, workspace)
    sidebar = show_sidebar(page)
    short = run_row(sidebar, experiment, "short")
    short.locator(".jpe-run-name").click()
    panel = page.locator(f'.jpe-run-panel[data-run-id="{short_id}"]')
    expect(panel.locator(".jpe-run-status")).to_have_text("succeeded", timeout=UI_S)
    run_row(sidebar, experiment, "short").locator(".jpe-select").check()
    run_row(sidebar, experiment, "long").locator(".jpe-select").check()
    sidebar.locator(".jpe-compare").click()
    expect(page.locator(".jpe-compare-panel")).to_be_visible(timeout=UI_S)
    wait_for(
        lambda: (
            f"jupyter-ext-run:{short_id}" in (s := saved_layout(lab.server, workspace))
            and "jupyter-ext-compare:" in s
        ),
        timeout=60,
        what="the lab workspace to record the open panels",
    )

    # After a reload both panels are restored, with their curves drawn.
    page = open_lab(lab, workspace, reset=False)
    panel = page.locator(f'.jpe-run-panel[data-run-id="{short_id}"]')
    compare = page.locator(".jpe-compare-panel")
    expect(panel).to_have_count(1, timeout=UI_S)
    expect(compare).to_have_count(1, timeout=UI_S)
    assert sorted(compare.get_attribute("data-run-ids").split(",")) == sorted([short_id, long_id])
    tab = page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab[data-id="jupyter-ext-run-{short_id}"]')
    expect(tab).to_have_text("short", timeout=UI_S)  # a background tab is named too
    tab.click()
    expect(panel).to_be_visible(timeout=UI_S)
    expect(panel.locator(".jpe-run-status")).to_have_text("succeeded", timeout=UI_S)
    loss = panel.locator('.jpe-chart[data-panel="loss"]')
    expect(loss.locator(".jxc-legend")).to_contain_text("train_loss", timeout=UI_S)
    expect(loss.locator(".jxc-legend")).to_contain_text("val_loss")
    wait_for(lambda: int(loss.get_attribute("data-points") or 0) >= 24, timeout=60,
             what="the run's points in the loss chart")  # fmt: skip
    ink = wait_for(
        lambda: (m := _ink(page, loss))["series"] > 150 and m, timeout=30, what="the curve"
    )
    assert ink["inked"] > ink["series"], ink  # axes and grid are drawn too
    expect(panel.locator(".jpe-latest")).to_contain_text("val_loss")
    expect(panel.locator(".jpe-log")).not_to_be_empty()
    expect(panel.locator(".jpe-stop")).to_be_hidden()
    page.screenshot(path=DOCS / "labextension-run-panel.png")

    # The comparison: one chart per metric, one colour per run, the legend names them.
    page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab[data-id^="jupyter-ext-compare-"]').click()
    expect(compare).to_be_visible(timeout=UI_S)
    chart = compare.locator('.jpe-chart[data-panel="train_loss"]')
    expect(chart.locator(".jxc-legend")).to_contain_text("short", timeout=UI_S)
    expect(chart.locator(".jxc-legend")).to_contain_text("long")
    expect(compare.locator(".jpe-chart")).to_have_count(3)  # train_loss, val_acc, val_loss
    for series in (1, 2):
        wait_for(lambda s=series: _ink(page, chart, s)["series"] > 30, timeout=30,
                 what=f"run {series}'s curve")  # fmt: skip
    assert_healthy(lab)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, 3))
        self.example_input_array = torch.randn(4, 13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def lab_workspace(lab_server: LabServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process uses the lab's workspace (what its server extension reads)."""
    from jupyter_ext.config import ToolkitConfig

    monkeypatch.setenv("JUPYTER_EXT_HOME", str(lab_server.workspace))
    ToolkitConfig.clear_instance()
    yield lab_server.workspace
    ToolkitConfig.clear_instance()


def test_sidebar_lists_a_live_deployment_and_undeploy_stops_it(lab, lab_workspace):
    import httpx

    import jupyter_ext

    _require_extensions(lab.server)
    name = f"mlp-{secrets.token_hex(3)}"
    dep = jupyter_ext.deploy(MLP(), name=name, format="onnx", verbose=False)
    try:
        assert httpx.get(f"{dep.url}/v2/health/ready", timeout=10).status_code == 200
        page = open_lab(lab, lab.name)
        sidebar = show_sidebar(page)
        row = sidebar.locator(f'.jpe-deployment[data-name="{name}"]')
        expect(row.locator(".jpe-run-status")).to_have_text("running", timeout=UI_S)
        expect(row.locator(".jpe-deployment-url a")).to_have_text(dep.url)
        expect(row.locator(".jpe-deployment-details")).to_contain_text("onnx")
        expect(row.locator(".jpe-copy")).to_be_visible()

        row.locator(".jpe-undeploy").click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text(f"Undeploy {name}?")
        dialog.locator(".jp-mod-accept").click()
        expect(row.locator(".jpe-run-status")).to_have_text("stopped", timeout=UI_S)
        expect(row.locator(".jpe-undeploy")).to_have_count(0)

        def refused() -> bool:
            try:
                httpx.get(f"{dep.url}/v2/health/ready", timeout=2)
            except httpx.HTTPError:
                return True
            return False

        wait_for(refused, timeout=30, what="the server to stop answering")
        assert jupyter_ext.get_deployment(name).status == "stopped"
        assert_healthy(lab)
    finally:
        dep.stop()


def test_sidebar_says_once_when_the_server_extension_is_missing(lab):
    # What a lab without the server half answers under /jupyter-ext/api: its HTML 404.
    lab.page = lab.context.new_page()
    lab.page.on("console", lab._on_console)
    lab.page.route(
        "**/jupyter-ext/api/**",
        lambda route: route.fulfill(
            status=404, content_type="text/html", body="<html><body>404 : Not Found</body></html>"
        ),
    )
    page = open_lab(lab, lab.name)
    sidebar = show_sidebar(page)
    missing = sidebar.locator(".jpe-missing")
    expect(missing).to_be_visible(timeout=UI_S)
    expect(missing).to_contain_text("jupyter server extension enable jupyter_ext.server")
    expect(missing).to_contain_text("restart JupyterLab")
    expect(page.locator(".jpe-missing:visible")).to_have_count(1)
    expect(sidebar.locator(".jpe-runs")).to_be_hidden()
    lab.assert_no_widget_errors()
    # The browser logs each refused request (404) as a console error: expected here.
    assert all("404" in e for e in lab.console_errors), lab.console_errors
