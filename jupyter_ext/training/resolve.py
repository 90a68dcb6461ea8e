"""From what a person types (an id, a name, an experiment) to the runs it means.

One resolver for ``get_run``, ``%monitor``, ``%stop``, ``compare`` and ``--from-run``, so
every entry point accepts the same references and refuses an unknown one the same way:
naming the closest runs (or experiments) there are.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from ..store import RunRecord, Store


class RunNotFound(LookupError):
    """No run matches; the message lists the closest names."""


def resolve_run(ref: Any, store: Store, *, experiments: bool = False) -> list[RunRecord]:
    """The runs ``ref`` means: an id; a name (a name used by several runs means the newest,
    with a warning); with ``experiments``, an experiment name (all its runs, oldest first).

    Example::

        >>> [r.name for r in resolve_run("baseline", open_store())]  # doctest: +SKIP
        ['baseline']
    """
    key = str(getattr(ref, "id", ref)).strip()
    record = store.get_run(key)
    if record is not None:
        return [record]
    named = store.runs_named(key)
    if named:
        if len(named) > 1:
            others = ", ".join(r.id for r in named[1:4]) + (" ..." if len(named) > 4 else "")
            warnings.warn(
                f"{len(named)} runs are named {key!r}; using the newest ({named[0].id}). "
                f"Others: {others}. Use an id to pick another.",
                stacklevel=3,
            )
        return [named[0]]
    if experiments:
        in_experiment = store.list_runs(experiment=key)
        if in_experiment:
            return in_experiment
    raise RunNotFound(_not_found(key, store, experiments))


def _not_found(key: str, store: Store, experiments: bool) -> str:
    names = store.run_names()
    candidates = names + (store.experiments() if experiments else []) + store.run_ids()
    close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.4)
    what = "run, run name or experiment" if experiments else "run named or with id"
    if close:
        hint = f"Did you mean: {', '.join(close)}?"
    elif names:
        hint = f"Runs here: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''} (`%runs`)."
    else:
        hint = "The workspace has no runs yet."
    return f"no {what} {key!r} in this workspace ({store.path.parent}). {hint}"
