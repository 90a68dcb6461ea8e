"""Drive a real JupyterLab server from headless Chromium (Playwright's sync API).

``LabServer`` starts ``jupyter lab`` as a subprocess in its own process group, isolated from
the user's Jupyter config, data and runtime dirs but still finding the venv's kernel and lab
extensions. ``Lab`` opens notebooks in a browser page, runs cells and waits on what the page
shows: every wait is a locator or a polled condition with a deadline, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import psutil
from helpers import wait_for
from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, expect

CHROMIUM = "/usr/bin/chromium"
# Without these flags Chromium keeps dialing Google services, which on an offline machine
# floods the log with refused connections and steals CPU from the page under test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Deadlines are generous: two shared cores, and a kernel that imports torch and Lightning.
SERVER_START_S = 120.0
KERNEL_IDLE_S = 120.0
CELL_S = 180.0
CELL_START_S = 30.0
OUTPUT_S = 60.0

_PROMPT_DONE = re.compile(r"\[\d+\]")
_PROMPT_STARTED = re.compile(r"\[(\d+|\*)\]")
_KERNEL_IDLE = re.compile(r"^(?!No Kernel).+ \| Idle$")
# What a raised exception looks like in a cell's stderr: IPython's traceback header, or the
# one-line "UsageError: ..." a magic prints (warnings, also on stderr, match neither).
_FONT_403 = re.compile(r"status of 403 .*/static/[\w/-]+\.woff2?\)$")
_RAISED = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception): ", re.M)


# Counts a canvas's drawn pixels, and those in a series' colour, read from a legend element
# (``prop``: the CSS colour property that carries it), so tests follow the palette.
# Antialiased edges keep their colour in getImageData (un-premultiplied): hence a tolerance.
_INK = """([canvas, swatch, prop]) => {
  const want = getComputedStyle(swatch)[prop].match(/\\d+/g).map(Number);
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let inked = 0, series = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] === 0) continue;
    inked++;
    if ([0, 1, 2].every((c) => Math.abs(data[i + c] - want[c]) < 40)) series++;
  }
  return { inked, series };
}"""


def count_ink(page: Page, canvas: Locator, swatch: Locator, prop: str) -> dict[str, int]:
    """``{"inked": n, "series": m}``: pixels drawn on ``canvas``, and those in the colour
    that ``swatch`` shows in its CSS property ``prop`` (e.g. ``backgroundColor``)."""
    return page.evaluate(_INK, [canvas.element_handle(), swatch.element_handle(), prop])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


class LabServer:
    """One ``jupyter lab`` process bound to 127.0.0.1, with a random token.

    Everything it writes lives under ``base``: the notebooks (``root``), Jupyter's config,
    data and runtime dirs, the IPython dir, and the toolkit workspace (``workspace``).
    """

    def __init__(self, base: Path, venv_bin: Path) -> None:
        self.base = base
        self.root = base / "notebooks"
        self.workspace = base / "jupyter_ext_home"
        self.log_path = base / "jupyter-lab.log"
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self._venv_bin = venv_bin
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        config = self.base / "jupyter_config"
        # News and update checks would fetch from the internet; the notebook renders every
        # cell (no virtual windowing) so locators find outputs scrolled out of view.
        _write_json(
            config / "jupyter_server_config.json",
            {
                "LabApp": {
                    "news_url": None,
                    "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                    "extension_manager": "readonly",
                }
            },
        )
        _write_json(
            config
            / "lab"
            / "user-settings"
            / "@jupyterlab"
            / "notebook-extension"
            / "tracker.jupyterlab-settings",
            {"windowingMode": "none"},
        )
        _write_json(
            config
            / "lab"
            / "user-settings"
            / "@jupyterlab"
            / "apputils-extension"
            / "notification.jupyterlab-settings",
            {"fetchNews": "false"},
        )
        env = dict(os.environ)
        env.update(
            {
                # The user's dirs are replaced; the venv's (sys.prefix) paths stay, so the
                # venv's python3 kernel and ipywidgets/anywidget lab extensions are found.
                "JUPYTER_CONFIG_DIR": str(config),
                "JUPYTER_DATA_DIR": str(self.base / "jupyter_data"),
                "JUPYTER_RUNTIME_DIR": str(self.base / "jupyter_runtime"),
                "IPYTHONDIR": str(self.base / "ipython"),
                "JUPYTER_EXT_HOME": str(self.workspace),
                "JUPYTER_EXT_WARM_START": "0",
                # The kernelspec says "python": make it the venv's.
                "PATH": os.pathsep.join([str(self._venv_bin), env.get("PATH", "")]),
            }
        )
        env.pop("JUPYTER_PATH", None)
        return env

    def start(self) -> LabServer:
        self.root.mkdir(parents=True)
        cmd = [
            str(self._venv_bin / "jupyter"),
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        if os.geteuid() == 0:  # containers and CI often run tests as root
            cmd.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=self._env(),
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, killed as one at teardown
            )
        try:
            wait_for(
                self._ready, timeout=SERVER_START_S, interval=0.2, what="jupyter lab /api/status"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        try:
            self.api("GET", "/api/status", timeout=5)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def api(self, method: str, path: str, timeout: float = 30) -> Any:
        """Call the server's REST API with the token; return the decoded JSON (or None)."""
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request(f"{self.url}{path}{sep}token={self.token}", method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel through the API (kernels run in their own sessions)."""
        for kernel in self.api("GET", "/api/kernels"):
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # already gone
                    raise

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut down kernels and the server; fail if a process started here lives on."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.shutdown_kernels()
            except (OSError, urllib.error.URLError):
                pass  # the server is unwell; the group kill and the check below still apply
            os.killpg(self.proc.pid, signal.SIGTERM)  # jupyter shuts its kernels down on TERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None
        # Kernels run in sessions of their own, out of reach of the group kill.
        try:
            wait_for(lambda: not self.leftovers(), timeout=30, what="kernels to exit")
        except AssertionError:
            left = self.leftovers()
            for proc in left:
                proc.kill()
            raise AssertionError(
                "processes outlived jupyter lab (now killed): "
                + "; ".join(" ".join(p.info["cmdline"] or []) for p in left)
            ) from None

    def leftovers(self) -> list[psutil.Process]:
        """Processes whose command line mentions this server's temp dir (kernels, server)."""
        found = []
        needle = str(self.base)
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.pid != os.getpid() and any(needle in part for part in cmdline):
                found.append(proc)
        return found


class Lab:
    """One test's view of JupyterLab: open a notebook, run cells, wait for what shows."""

    def __init__(self, server: LabServer, context: BrowserContext, name: str) -> None:
        self.server = server
        self.context = context
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:80]
        self.console_errors: list[str] = []
        self.page: Page | None = None
        self.path: str | None = None

    # -- opening ----------------------------------------------------------------------
    def open_notebook(self, cells: list[str], name: str | None = None) -> Page:
        """Write a notebook of code ``cells`` into the server's root dir and open it.

        Returns the page once the notebook's kernel is idle. The URL names a fresh lab
        workspace with ``reset``, so tabs left open by earlier tests are not restored.
        Opening another notebook closes the previous one (page and kernel).
        """
        self.close()
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        self.path = f"{name or self.name}.ipynb"
        nbformat.write(nb, self.server.root / self.path)

        page = self.context.new_page()
        self.page = page
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))
        page.goto(self.notebook_url())
        self.wait_kernel_idle()
        return page

    def notebook_url(self) -> str:
        """Where the opened notebook is shown: a fresh lab workspace (``reset``)."""
        return (
            f"{self.server.url}/lab/workspaces/{self.name}/tree/{self.path}"
            f"?reset&token={self.server.token}"
        )

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def wait_kernel_idle(self, timeout: float = KERNEL_IDLE_S) -> None:
        """Wait until the notebook's kernel is connected and idle.

        The status bar reads "<kernel> | Idle" only once the session's kernel connection is
        up. (The toolbar's indicator is no use here: it reads "idle" before a kernel is
        attached, and a cell run then is silently dropped.)
        """
        status = self._page().locator("#jp-main-statusbar").get_by_role("button", name=_KERNEL_IDLE)
        expect(status).to_be_visible(timeout=timeout * 1000)

    # -- cells ------------------------------------------------------------------------
    def _panel(self) -> Locator:
        # The notebook this test opened is the one visible tab in the main area.
        return self._page().locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    @property
    def notebook(self) -> Locator:
        return self._panel().locator(".jp-Notebook")

    def cell(self, index: int) -> Locator:
        return self.notebook.locator(".jp-Cell").nth(index)

    def output(self, index: int) -> Locator:
        """The output area of code cell ``index``."""
        return self.cell(index).locator(".jp-OutputArea")

    def run_cell(self, index: int, timeout: float = CELL_S, allow_errors: bool = False) -> Locator:
        """Run cell ``index`` (Ctrl+Enter, as a user would) and wait until it finished."""
        cell = self.cell(index)
        prompt = cell.locator(".jp-InputArea-prompt")
        before = prompt.inner_text().strip()
        # Select the cell by its prompt, enter its editor, and run it without advancing
        # (Shift+Enter on the last cell would add a cell to the notebook).
        prompt.click()
        expect(cell).to_have_class(re.compile(r"\bjp-mod-selected\b"))
        self._page().keyboard.press("Enter")
        expect(self.notebook).to_have_class(re.compile(r"\bjp-mod-editMode\b"))
        self._page().keyboard.press("Control+Enter")
        self._wait_started(index, before)
        self._wait_done(index, before, timeout)
        if not allow_errors:
            self.assert_no_error(index)
        return cell

    def run_all(self, timeout: float = CELL_S, allow_errors: bool = False) -> None:
        """Run every cell from the Run menu and wait until each one has finished."""
        page = self._page()
        runs = []  # (index, prompt before): code cells with code (empty ones never run)
        for i, cell in enumerate(self.notebook.locator(".jp-Cell").all()):
            is_code = "jp-CodeCell" in (cell.get_attribute("class") or "")
            if is_code and cell.locator(".cm-content").inner_text().strip():
                runs.append((i, cell.locator(".jp-InputArea-prompt").inner_text().strip()))
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        if runs:
            self._wait_started(*runs[0])
        for i, before in runs:
            self._wait_done(i, before, timeout)
            if not allow_errors:
                self.assert_no_error(i)

    def _wait_started(self, index: int, before: str) -> None:
        # The front end marks a cell "[*]" as soon as it sends it; if that does not happen
        # the run was dropped, and waiting for the cell to finish would only time out.
        prompt = self.cell(index).locator(".jp-InputArea-prompt")

        def started() -> bool:
            text = prompt.inner_text().strip()
            return bool(_PROMPT_STARTED.search(text)) and text != before

        wait_for(started, timeout=CELL_START_S, interval=0.05, what=f"cell {index} to start")

    def _wait_done(self, index: int, before: str, timeout: float) -> None:
        # A finished cell shows "[n]:" with a new n (a queued or running one shows "[*]:").
        prompt = self.cell(index).locator(".jp-InputArea-prompt")

        def done() -> bool:
            text = prompt.inner_text().strip()
            return bool(_PROMPT_DONE.search(text)) and text != before

        wait_for(done, timeout=timeout, interval=0.1, what=f"cell {index} to finish")

    def assert_no_error(self, index: int) -> None:
        """Fail with the cell's output if it raised (tracebacks render as stderr text)."""
        stderr = self.output(index).locator('[data-mime-type="application/vnd.jupyter.stderr"]')
        for text in stderr.all_inner_texts():
            assert not _RAISED.search(text), f"cell {index} raised:\n{text}"

    # -- waiting on what shows --------------------------------------------------------
    def wait_text(
        self, text: str | re.Pattern[str], cell: int | None = None, timeout: float = OUTPUT_S
    ) -> Locator:
        """Wait until an output (of ``cell``, or of any cell) contains ``text``."""
        scope = self.output(cell) if cell is not None else self.notebook
        found = scope.locator(".jp-OutputArea-output", has_text=text).first
        expect(found).to_be_visible(timeout=timeout * 1000)
        return found

    def assert_no_widget_errors(self) -> None:
        """No widget failed to render (ipywidgets shows an error widget in its place)."""
        expect(self._page().locator(".jupyter-widgets-error-widget")).to_have_count(0)

    def assert_no_console_errors(self) -> None:
        """Nothing logged an error to the browser console (widget code that failed does).

        A web font of JupyterLab's own bundle (``/static/.../*.woff2``) is now and then
        answered 403 on a loaded machine: the page still renders (the font falls back),
        and no code of ours fetches fonts, so that one message is not counted."""
        errors = [e for e in self.console_errors if not _FONT_403.search(e)]
        assert not errors, "browser console errors:\n" + "\n".join(errors)

    def screenshot(self, path: Path) -> Path:
        self._page().screenshot(path=path, full_page=True)
        return path

    def close(self) -> None:
        """Close the page and shut down the kernel of the notebook it opened."""
        if self.page is not None:
            self.page.close()
            self.page = None
        if self.path is not None:
            for session in self.server.api("GET", "/api/sessions"):
                if session.get("path") == self.path:
                    self.server.api("DELETE", f"/api/sessions/{session['id']}", timeout=60)
            self.path = None

    def _page(self) -> Page:
        if self.page is None:
            raise RuntimeError("open a notebook first: lab.open_notebook([...])")
        return self.page


class Notebook7(Lab):
    """The lab driver, pointed at Notebook 7's one-notebook page (same cells, same DOM
    classes for cells and outputs; the kernel's state shows in the notebook's toolbar)."""

    def notebook_url(self) -> str:
        return f"{self.server.url}/notebooks/{self.path}?token={self.server.token}"

    def run_cell(self, index: int, timeout: float = CELL_S, allow_errors: bool = False):
        # Notebook 7 can drop the very first execute request while its kernel connection
        # settles (the indicator already reads idle): a run that never started is sent
        # again, once. What the cell then shows is asserted as usual.
        try:
            return super().run_cell(index, timeout, allow_errors)
        except AssertionError as exc:
            if "to start" not in str(exc):
                raise
        return super().run_cell(index, timeout, allow_errors)

    def wait_kernel_idle(self, timeout: float = KERNEL_IDLE_S) -> None:
        # The toolbar's execution indicator says "connecting", then "idle" once connected.
        status = self._page().locator(".jp-Notebook-ExecutionIndicator")
        expect(status).to_have_attribute("data-status", re.compile("idle"), timeout=timeout * 1000)
