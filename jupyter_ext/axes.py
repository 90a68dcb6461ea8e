"""The x axes a chart of metrics can use (monitor and comparison alike).

A module of its own, importing nothing, so the monitor and the comparison share it without
importing each other.

Example::

    >>> X_AXES["elapsed"], X_FORMAT["elapsed"]
    ('time since start', 'duration')
"""

from __future__ import annotations

X_AXES = {
    "step": "step",
    "epoch": "epoch",
    "time": "wall time",
    "elapsed": "time since start",
}
"""x axes a chart can use: key -> label."""

X_FORMAT = {"step": "number", "epoch": "number", "time": "time", "elapsed": "duration"}
"""How each x axis reads in a chart: plain numbers, clock time, or a duration."""
