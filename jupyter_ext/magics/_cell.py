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
        source, number = as_in_notebook(self.shell, cell)
        count = getattr(self.shell, "execution_count", None)
        if number is None or not isinstance(count, int) or number >= count:
            return bool(self.shell.run_cell(source).success)
        # IPython counts a cell before it runs it, so a cell run inside it would be named
        # In[N+1] in errors and tracebacks: name it after the cell the notebook shows.
        self.shell.execution_count = number
        try:
            return bool(self.shell.run_cell(source).success)
        finally:
            self.shell.execution_count = count

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


def as_in_notebook(shell: Any, cell: str) -> tuple[str, int | None]:
    """The body of a cell magic as the notebook shows it: its source numbered from the
    cell's first line, and the cell's number (``In[N]``); ``(cell, None)`` when ``cell``
    is not the body of the cell being run (the magic was called from code).

    A cell magic gets its cell without the ``%%train ...`` line, so an error in the
    body would say "line 3" for what the notebook shows as line 4. Keeping that line as
    a comment makes every line number (a syntax error, a traceback, and code that runs
    later in a worker) match the cell on screen. A body that starts with a cell magic
    of its own is left alone (that line must stay first).

    Example::

        >>> class Shell:  # what IPython records of the cells run so far
        ...     class history_manager:
        ...         input_hist_raw = ["", "%load_ext jupyter_ext", "%%train\\nx = 1\\ny = (\\n"]
        >>> source, number = as_in_notebook(Shell(), "x = 1\\ny = (\\n")
        >>> source.splitlines(), number
        (['# %%train', 'x = 1', 'y = ('], 2)
    """
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    raw = history[-1] if history else ""
    if not isinstance(raw, str) or cell.lstrip().startswith("%%"):
        return cell, None
    lines = raw.split("\n")
    blank = 0  # IPython drops blank lines above a cell magic; the notebook still shows them
    while blank < len(lines) and not lines[blank].strip():
        blank += 1
    if blank == len(lines) or not lines[blank].startswith("%%"):
        return cell, None
    if "\n".join(lines[blank + 1 :]).rstrip() != cell.rstrip():
        return cell, None
    return "#\n" * blank + f"# {lines[blank]}\n{cell}", len(history) - 1
