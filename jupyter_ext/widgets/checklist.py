"""CheckList: a list of checkboxes that reads and writes like ``SelectMultiple``.

A comparison picks runs and metrics with it: one click per item, full labels, no Ctrl-click.
``options`` are ``(label, value)`` pairs (or plain strings) and ``value`` is the tuple of
checked values in option order, so code written for ``SelectMultiple`` keeps working.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
from traitlets import List, Tuple, observe, validate


class CheckList(W.VBox):
    """Checkboxes for ``options``; ``value`` is the tuple of checked values.

    Example::

        >>> picker = CheckList(options=[("run a · succeeded", "id-a"), ("run b", "id-b")])
        >>> picker.value = ("id-b",)
        >>> [box.value for box in picker.boxes]
        [False, True]
    """

    options = List(help="(label, value) pairs, or strings (label and value alike).")
    value = Tuple(help="The checked values, in option order.")

    def __init__(self, options: Any = (), value: Any = (), max_height: str = "150px", **kw: Any):
        self.boxes: list[W.Checkbox] = []
        self._pairs: list[tuple[str, Any]] = []
        self._muted = False
        kw.setdefault(
            "layout",
            # As wide as the longest label: a run's name is never cut or overlapped.
            W.Layout(max_height=max_height, overflow_y="auto", width="max-content"),
        )
        super().__init__(**kw)
        self.add_class("jupyter-ext-checklist")
        self.options = list(options)
        self.value = tuple(value)

    @validate("value")
    def _known_values(self, proposal: Any) -> tuple:
        values = tuple(proposal["value"])
        known = [v for _, v in self._pairs]
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(
                f"not among the options: {', '.join(map(str, unknown))} "
                f"(options: {', '.join(map(str, known)) or 'none'})"
            )
        return tuple(v for v in known if v in values)  # option order, no duplicates

    @observe("options")
    def _rebuild(self, change: Any) -> None:
        pairs = [(o, o) if isinstance(o, str) else (str(o[0]), o[1]) for o in change["new"]]
        checked = set(self.value)
        self._pairs = pairs
        self.boxes = []
        for label, val in pairs:
            box = W.Checkbox(
                value=val in checked,
                description=label,
                indent=False,
                description_tooltip=label,
                layout=W.Layout(width="max-content", margin="0"),
                style={"description_width": "initial"},
            )
            box.observe(self._on_box, "value")
            self.boxes.append(box)
        self.children = self.boxes
        self._muted = True
        try:
            self.value = tuple(v for _, v in pairs if v in checked)
        finally:
            self._muted = False

    @observe("value")
    def _check(self, change: Any) -> None:
        chosen = set(change["new"])
        self._muted = True
        try:
            for box, (_label, val) in zip(self.boxes, self._pairs, strict=True):
                box.value = val in chosen
        finally:
            self._muted = False

    def _on_box(self, _change: Any) -> None:
        if self._muted:
            return
        self.value = tuple(
            v for box, (_, v) in zip(self.boxes, self._pairs, strict=True) if box.value
        )
