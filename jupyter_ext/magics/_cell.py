"""Objects a magic's cell defines: the cell must assign them, or the user names them.

``%%train`` and ``%%deploy`` run their cell, then take ``model`` (and data) from the
notebook's namespace. A name the cell did not assign is left from an earlier cell, and
taking it silently trains or deploys something the person did not mean; so a default
name counts only if this cell bound it, and ``--model VAR`` names an existing variable
on purpose.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError


class CellNamespace:
    """Run a cell and tell which names it (re)bound.

    Example::

        >>> cell = CellNamespace(shell)  # doctest: +SKIP
        >>> if cell.run("model = Net()"):  # doctest: +SKIP
        ...     model = cell.required("model", None, "LightningModule", "--model")
    """

    def __init__(self, shell: Any, action: str = "launched") -> None:
        self.shell = shell
        self.action = action  # what a refusal did not do: "launched", "deployed"
        self.ns = shell.user_ns
        self._before: dict[str, Any] = {}
        self.notes: list[str] = []

    def run(self, cell: str | None) -> bool:
        """Run ``cell`` in the notebook's namespace; False if it raised (already shown)."""
        # Strong references, not ids: an id can be reused by an object the cell makes.
        self._before = dict(self.ns)
        if cell is None or not cell.strip():
            return True
        return bool(self.shell.run_cell(cell).success)

    def bound(self, name: str) -> bool:
        """Whether this cell assigned ``name`` (a new object, not the one it had before)."""
        return name in self.ns and (
            name not in self._before or self.ns[name] is not self._before[name]
        )

    def required(self, default: str, explicit: str | None, what: str, option: str) -> Any:
        """The object under ``explicit`` (any existing variable), else under ``default``
        if this cell assigned it; otherwise a UsageError that says how to fix it."""
        if explicit is not None:
            return self._named(explicit, what, option)
        if self.bound(default):
            return self.ns[default]
        if default in self.ns:
            raise UsageError(
                f"the cell does not assign `{default}`: the `{default}` in the notebook comes "
                f"from an earlier cell, so nothing was {self.action}. Assign your {what} to "
                f"`{default}` in this cell, or pass {option} {default} to use that one on purpose."
            )
        raise UsageError(
            f"the cell defines no `{default}`: assign your {what} to `{default}`, "
            f"or name its variable with {option} VAR"
        )

    def optional(self, default: str, explicit: str | None, what: str, option: str) -> Any:
        """Like :meth:`required`, but None when the cell did not assign ``default`` (a
        variable left from an earlier cell is not used; a note says how to use it)."""
        if explicit is not None:
            return self._named(explicit, what, option)
        if self.bound(default):
            return self.ns[default]
        if default in self.ns:
            self.notes.append(
                f"note: `{default}` from an earlier cell is not used "
                f"(pass {option} {default} to use it)"
            )
        return None

    def _named(self, var: str, what: str, option: str) -> Any:
        if var not in self.ns:
            raise UsageError(f"{option} {var}: no variable `{var}` in the notebook ({what})")
        return self.ns[var]
