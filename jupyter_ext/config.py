"""Configuration: one traitlets Configurable for the whole toolkit.

Set it like any Jupyter/IPython option::

    %config ToolkitConfig.home = "/data/experiments"      # in a notebook
    c.ToolkitConfig.warm_start = False                     # in ipython_config.py

Outside IPython, :func:`get_config` returns a standalone instance that still reads the
``JUPYTER_EXT_HOME`` environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from traitlets import Bool, Float, Int, Unicode, Union, default, validate
from traitlets.config import SingletonConfigurable

HOME_ENV = "JUPYTER_EXT_HOME"
WARM_ENV = "JUPYTER_EXT_WARM_START"


class ToolkitConfig(SingletonConfigurable):
    """Settings shared by the magics, the Python API and the workers they start."""

    home = Unicode(
        help=(
            "Workspace directory holding the run store (store.sqlite), run directories and "
            "deployments. Default: $JUPYTER_EXT_HOME, else a per-user data directory."
        ),
    ).tag(config=True)

    accelerator = Unicode(
        "auto", help="Default accelerator for new runs (cpu, cuda, mps, tpu, auto, ...)."
    ).tag(config=True)
    devices = Union(
        [Int(), Unicode()],
        default_value="auto",
        help="Default devices for new runs: a count, a list like '0,1', or 'auto'.",
    ).tag(config=True)
    precision = Unicode(
        None, allow_none=True, help="Default precision for new runs (None: Lightning's default)."
    ).tag(config=True)
    strategy = Unicode("auto", help="Default strategy for new runs (auto, ddp, fsdp, ...).").tag(
        config=True
    )

    panel_refresh_s = Float(
        1.0, help="Seconds between refreshes of the accelerators panel's device table."
    ).tag(config=True)
    monitor_refresh_s = Float(
        0.5, help="Seconds between store polls of a run monitor or comparison (at most 2 Hz)."
    ).tag(config=True)
    heartbeat_s = Float(1.0, help="Seconds between a worker's heartbeats.").tag(config=True)
    lost_after_s = Float(
        10.0, help="A running run whose heartbeat is older than this is marked lost."
    ).tag(config=True)
    term_timeout_s = Float(
        10.0,
        help=(
            "Seconds a worker or server is given to exit after SIGTERM (a forced stop) "
            "before its process group is killed."
        ),
    ).tag(config=True)
    kill_timeout_s = Float(
        5.0, help="Seconds to wait for a process group to be gone after SIGKILL."
    ).tag(config=True)
    warm_start = Bool(
        True,
        help=(
            "Keep one warm spare worker per kernel (torch and Lightning imported, CUDA "
            "untouched) so the next run starts at once."
        ),
    ).tag(config=True)

    @default("home")
    def _default_home(self) -> str:
        env = os.environ.get(HOME_ENV)
        if env:
            return env
        return platformdirs.user_data_dir("jupyter_ext", appauthor=False)

    @default("warm_start")
    def _default_warm_start(self) -> bool:
        # An environment switch too, so tests and CI can turn it off before %load_ext.
        return os.environ.get(WARM_ENV, "1").lower() not in ("0", "false", "no", "off")

    @validate("monitor_refresh_s")
    def _validate_refresh(self, proposal):
        value = proposal["value"]
        if value < 0.5:
            raise ValueError(f"monitor_refresh_s must be >= 0.5 (at most 2 Hz), got {value}")
        return value

    @validate("panel_refresh_s", "heartbeat_s", "lost_after_s", "term_timeout_s", "kill_timeout_s")
    def _validate_positive(self, proposal):
        if proposal["value"] <= 0:
            raise ValueError(f"{proposal['trait'].name} must be positive, got {proposal['value']}")
        return proposal["value"]

    @property
    def home_path(self) -> Path:
        """The workspace directory as a Path (created on first use by the store)."""
        return Path(self.home).expanduser()


def get_config() -> ToolkitConfig:
    """Return the toolkit's configuration (the IPython-configured one inside a kernel).

    Example::

        >>> from jupyter_ext.config import get_config
        >>> get_config().home_path.name  # doctest: +SKIP
        'jupyter_ext'
    """
    return ToolkitConfig.instance()
