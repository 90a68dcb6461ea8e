"""Browser fixtures: one JupyterLab server and one headless Chromium per session.

``lab`` gives each test a new page and a driver (:class:`labdriver.Lab`)::

    def test_something(lab):
        lab.open_notebook(["print('hi')"])
        lab.run_all()
        lab.wait_text("hi", cell=0)

A screenshot of every test's page is saved at teardown into the session's ``screenshots``
folder (its path is printed in the summary); a failing test's report also carries the
browser's console errors and the tail of the JupyterLab log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import wait_for
from labdriver import CHROMIUM, CHROMIUM_ARGS, Lab, LabServer, Notebook7
from playwright.sync_api import Browser, BrowserContext, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
_LAB = pytest.StashKey[Lab]()
_SHOTS = pytest.StashKey[Path]()


def _venv_bin() -> Path:
    """The bin dir holding ``jupyter``: the running interpreter's venv, else ./.venv."""
    for candidate in (Path(sys.executable).parent, ROOT / ".venv" / "bin"):
        if (candidate / "jupyter").exists():
            return candidate
    pytest.fail("no `jupyter` next to this Python nor in .venv/bin: run `make install`")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A JupyterLab server for the session (its own workspace, config and kernels)."""
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"), _venv_bin()).start()
    yield server
    server.stop()


def _browser_processes() -> list[psutil.Process]:
    # Chromium and Playwright's driver (node) are children of this process while a browser
    # is up; matched by name exactly enough that other children (a Ray head's
    # "ray-dashboard-NodeHead-0") are not taken for them
    def browser(name: str) -> bool:
        name = name.lower()
        return name == "node" or name.startswith("chrom") or "headless_shell" in name

    return [
        p
        for p in psutil.Process().children(recursive=True)
        if browser(p.name()) and p.status() != psutil.STATUS_ZOMBIE
    ]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make install` apt-installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    wait_for(lambda: not _browser_processes(), timeout=30, what="Chromium to exit")


@pytest.fixture(scope="session")
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """One context for the session, so JupyterLab's scripts load from the HTTP cache after
    the first test; each test still gets its own page and lab workspace."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    yield context
    context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Where each browser test's final screenshot goes (kept with pytest's temp dirs)."""
    path = tmp_path_factory.mktemp("screenshots")
    request.config.stash[_SHOTS] = path
    return path


def driver_for(
    cls: type[Lab],
    lab_server: LabServer,
    browser_context: BrowserContext,
    screenshots: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Lab]:
    """A driver of class ``cls`` on a new page; screenshot at the end, then page and
    kernel closed. Fixtures for other front ends (Notebook 7) reuse it."""
    driver = cls(lab_server, browser_context, request.node.name)
    request.node.stash[_LAB] = driver
    try:
        yield driver
    finally:
        try:
            if driver.page is not None:
                driver.screenshot(screenshots / f"{driver.name}.png")
        finally:
            driver.close()


@pytest.fixture
def lab(
    lab_server: LabServer,
    browser_context: BrowserContext,
    screenshots: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Lab]:
    """A JupyterLab driver on a new page; the page and its notebook's kernel end with it."""
    yield from driver_for(Lab, lab_server, browser_context, screenshots, request)


@pytest.fixture
def nb7(
    lab_server: LabServer,
    browser_context: BrowserContext,
    screenshots: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Lab]:
    """The same, in Notebook 7's one-notebook page (same server, same browser)."""
    yield from driver_for(Notebook7, lab_server, browser_context, screenshots, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    driver = item.stash.get(_LAB, None)
    if driver is not None and report.when == "call" and report.failed:
        shots = item.config.stash.get(_SHOTS, None)
        if shots is not None:
            report.sections.append(("screenshot", str(shots / f"{driver.name}.png")))
        errors = "\n".join(driver.console_errors) or "none"
        report.sections.append(("browser console errors", errors))
        report.sections.append(("jupyter lab log (tail)", driver.server.log_tail()))
    return report


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    shots = config.stash.get(_SHOTS, None)
    if shots is not None:
        terminalreporter.write_line(f"browser screenshots: {shots}")
