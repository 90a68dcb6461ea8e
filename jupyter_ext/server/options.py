"""The server extension's options and URL prefix (a module of its own, so the handlers
and the extension's entry point both import it without importing each other)."""

from __future__ import annotations

from traitlets import Float, Unicode
from traitlets.config import Configurable

API_PREFIX = "jupyter-ext/api"


class JupyterExtServer(Configurable):
    """Server-side options of the jupyter_ext server extension.

    Example (``jupyter_server_config.py``, or ``--JupyterExtServer.home=...``)::

        c.JupyterExtServer.home = "/data/experiments"
        c.JupyterExtServer.since_overlap_s = 2.0
    """

    home = Unicode(
        "",
        help=(
            "Workspace the server reads (store.sqlite, runs/, deployments). Empty: the "
            "toolkit's own default ($JUPYTER_EXT_HOME, else the per-user data dir). When set, "
            "it is also exported as $JUPYTER_EXT_HOME, so kernels this server starts share it."
        ),
    ).tag(config=True)

    since_overlap_s = Float(
        2.0,
        help=(
            "GET runs?since=T also returns runs changed up to this many seconds before T: "
            "a write stamped just before the server's clock read may commit just after the "
            "listing, and would otherwise never be seen. Clients merge items by id."
        ),
    ).tag(config=True)

    cluster_check_s = Float(
        2.0,
        help=(
            "How often (seconds) the server looks for cluster runs with something left to "
            "bring into the workspace; while there are, it drains them as a kernel would "
            "(metrics, status, checkpoints; stop requests out), so they stay current with "
            "no kernel open. Needs Ray in the server's environment. 0: never (kernels only)."
        ),
    ).tag(config=True)
