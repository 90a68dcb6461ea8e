"""Shared fixtures: a temporary workspace and a real Jupyter kernel driven by nbclient."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from helpers import wait_for  # noqa: F401  (re-exported for fixtures)
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["ray_cluster"]  # the session's local Ray head (fixture ray_head)


def pytest_collection_modifyitems(config, items):
    import torch

    # Browser tests last: Playwright's sync API leaves an asyncio loop marked as running
    # on the main thread, which in-process servers (jupyter_server's tests) cannot share.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh workspace for this test, in-process and for every kernel/worker it starts."""
    from jupyter_ext import selector as selection
    from jupyter_ext.config import ToolkitConfig

    home = tmp_path / "ws"
    monkeypatch.setenv("JUPYTER_EXT_HOME", str(home))
    # In-process tests start cold workers; the warm path has tests of its own.
    monkeypatch.setenv("JUPYTER_EXT_WARM_START", "0")
    ToolkitConfig.clear_instance()
    selection.reset()
    yield home
    ToolkitConfig.clear_instance()
    selection.reset()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Cell:
    """What one executed cell produced."""

    def __init__(self, node) -> None:
        self.node = node
        self.stdout = "".join(o.get("text", "") for o in node.outputs if o.get("name") == "stdout")
        self.stderr = "".join(o.get("text", "") for o in node.outputs if o.get("name") == "stderr")
        self.errors = [o for o in node.outputs if o.output_type == "error"]
        self.data = [
            o["data"] for o in node.outputs if o.output_type in ("execute_result", "display_data")
        ]

    @property
    def text(self) -> str:
        """Everything a text front end would show: streams, text/plain results, errors."""
        parts = [self.stdout, self.stderr]
        parts += [d.get("text/plain", "") for d in self.data]
        parts += [f"{e['ename']}: {e['evalue']}" for e in self.errors]
        return "\n".join(p for p in parts if p)

    def ok(self) -> Cell:
        if self.errors:
            tb = "\n".join(self.errors[0].get("traceback", []))
            raise AssertionError(f"cell raised: {self.text}\n{_ANSI.sub('', tb)[-3000:]}")
        return self


class Kernel:
    """A real ipykernel, run cell by cell through nbclient (as a notebook is)."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        self.client = NotebookClient(
            self.nb,
            timeout=240,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(cwd)}},
        )
        self._env = env
        self._ctx = None

    def start(self) -> Kernel:
        self._ctx = self.client.setup_kernel(env=self._env)
        self._ctx.__enter__()
        return self

    def run(self, source: str, timeout: float | None = None) -> Cell:
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        if timeout is not None:
            self.client.timeout = timeout
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return Cell(cell)

    def shutdown(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


@pytest.fixture
def start_kernel(workspace: Path, tmp_path: Path) -> Iterator[Callable[..., Kernel]]:
    """Start real kernels sharing this test's workspace; all are shut down afterwards."""
    kernels: list[Kernel] = []

    def start(
        load: bool = True, warm_start: bool = False, extra_env: dict[str, str] | None = None
    ) -> Kernel:
        env = dict(os.environ)
        env["JUPYTER_EXT_HOME"] = str(workspace)
        env["JUPYTER_EXT_WARM_START"] = "1" if warm_start else "0"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
        )
        env.update(extra_env or {})
        k = Kernel(tmp_path, env).start()
        kernels.append(k)
        if load:
            k.run("%load_ext jupyter_ext").ok()
        return k

    yield start
    for k in kernels:
        k.shutdown()


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers started by in-process tests import tests/tiny_models.py by path."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    )
