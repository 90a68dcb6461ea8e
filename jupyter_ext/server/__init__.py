"""The Jupyter server extension: a REST API over the workspace store.

Enabled on install (``jupyter-config/server-config/jupyter_ext.json`` lands in
``etc/jupyter/jupyter_server_config.d``); by hand::

    jupyter server extension enable jupyter_ext.server

Endpoints live under ``{base_url}/jupyter-ext/api/`` (see :mod:`jupyter_ext.server.handlers`).
The server reads the same workspace as the kernels: ``$JUPYTER_EXT_HOME``, else the
per-user default, unless the server configuration names one::

    c.JupyterExtServer.home = "/data/experiments"     # jupyter_server_config.py

While the server runs, cluster runs of that workspace stay current in its store even with
no kernel open (:mod:`jupyter_ext.server.clusters`; ``c.JupyterExtServer.cluster_check_s``).

Importing this module is cheap (traitlets only): the handlers, numpy and the store load
when the server loads the extension, pandas and the rest of the toolkit on first request.
"""

from __future__ import annotations

import os
from typing import Any

from .._version import __version__
from .options import API_PREFIX, JupyterExtServer

__all__ = ["API_PREFIX", "JupyterExtServer", "__version__"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Where jupyter_server finds the extension: this module.

    Example::

        >>> _jupyter_server_extension_points()
        [{'module': 'jupyter_ext.server'}]
    """
    return [{"module": "jupyter_ext.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Point this process at the workspace, register the REST handlers and start the
    watch that keeps its cluster runs current.

    Example::

        >>> _load_jupyter_server_extension(serverapp)  # doctest: +SKIP
    """
    from ..config import HOME_ENV, get_config
    from .clusters import start_watch
    from .handlers import setup_handlers

    options = JupyterExtServer(parent=serverapp)
    toolkit = get_config()
    # c.ToolkitConfig.* in the server's configuration (lost_after_s, term_timeout_s, ...)
    # apply to this process as they would in a kernel.
    toolkit.update_config(serverapp.config)
    if options.home:
        toolkit.home = options.home
        os.environ[HOME_ENV] = options.home  # inherited by the kernels this server starts
    setup_handlers(serverapp.web_app, options)
    serverapp.web_app.settings["jupyter_ext_cluster_watch"] = start_watch(
        serverapp, toolkit.home_path, options.cluster_check_s
    )
    serverapp.log.info(
        "jupyter_ext.server: REST API at %s%s/ over the workspace %s",
        serverapp.base_url,
        API_PREFIX,
        toolkit.home_path,
    )
