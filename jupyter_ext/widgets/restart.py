"""What a view shows once its kernel is gone (restarted or shut down).

ipywidgets keeps a dead kernel's views on screen and marks every one of them
``jupyter-widgets-disconnected`` (a broken-link icon each), while buttons still look live.
A view made with :func:`mark_view` instead shows its last state as it was, drops the
controls that need a kernel (``LIVE_ONLY``), and says in one line how to get it back. Pure
CSS, shipped inside the view itself: it works with or without our JupyterLab extension.
"""

from __future__ import annotations

import html

import ipywidgets as W

VIEW = "jupyter-ext-view"
LIVE_ONLY = "jupyter-ext-live-only"
HINT = "jupyter-ext-restart-hint"

_CSS = f"""<style>
.{VIEW}.jupyter-widgets-disconnected::before,
.{VIEW} .jupyter-widgets-disconnected::before {{
  content: none !important; display: none !important; }}
.{VIEW} .{HINT} {{ display: none; }}
.{VIEW}.jupyter-widgets-disconnected .{HINT} {{ display: block; margin: 2px 0 6px;
  padding: 3px 8px; border-left: 3px solid var(--jp-warn-color1, #f57c00);
  background: var(--jp-layout-color2, #f3f3f3); color: var(--jp-ui-font-color1, #222); }}
.{VIEW}.jupyter-widgets-disconnected .{LIVE_ONLY},
.{VIEW}.jupyter-widgets-disconnected .jxc-x {{ display: none !important; }}
</style>"""


def restart_hint(reattach: str) -> W.HTML:
    """The line a view shows once its kernel is gone (hidden until then), with the CSS
    that keeps the rest of the view as it was; ``reattach`` is the code that brings the
    view back. Put it at the top of a view marked with :func:`mark_view`.

    Example::

        >>> "%monitor baseline" in restart_hint("%monitor baseline").value
        True
    """
    code = html.escape(reattach)
    return W.HTML(
        _CSS + f'<div class="{HINT}">kernel restarted: this is the last state shown; '
        f"<code>{code}</code> re-attaches</div>"
    )


def mark_view(root: W.Box, *live_only: W.DOMWidget) -> None:
    """Make ``root`` read well after a kernel restart: no broken-link icons, and the
    controls that only work with a kernel (``live_only``) hidden once it is gone.

    Example::

        >>> import ipywidgets as W
        >>> stop = W.Button(description="Stop")
        >>> box = W.VBox([restart_hint("%monitor baseline"), stop])
        >>> mark_view(box, stop)
        >>> "jupyter-ext-view" in box._dom_classes, "jupyter-ext-live-only" in stop._dom_classes
        (True, True)
    """
    root.add_class(VIEW)
    for widget in live_only:
        widget.add_class(LIVE_ONLY)
