"""A fine-tune's sample generations (the ``runs.samples`` column) read for the views.

Pure functions, no torch and no store: the monitor, ``compare`` and the server read the
column through them. The column is written by the fine-tune worker; anything malformed in
it (a worker of another version) is skipped rather than breaking every view that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def sample_records(entries: Any) -> list[dict[str, Any]]:
    """A run's ``samples`` column flattened: step, epoch, prompt, output per generation.

    The column is written by the fine-tune worker; anything malformed in it (a worker of
    another version) is skipped rather than breaking every view that reads it.
    """
    out = []
    for entry in entries or ():
        if not isinstance(entry, Mapping):
            continue
        step, epoch = _as_int(entry.get("step")), _as_int(entry.get("epoch"))
        for sample in entry.get("samples") or ():
            if isinstance(sample, Mapping) and "prompt" in sample:
                out.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "prompt": str(sample["prompt"]),
                        "output": str(sample.get("output", "")),
                    }
                )
    return out


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # unknown: still a valid int64 column


def prompt_outputs(entries: Any, keep: int = 2) -> dict[str, list[dict[str, Any]]]:
    """Per prompt, its ``keep`` most recent outputs, newest first (``step``, ``epoch``,
    ``output`` each), from a run's ``samples`` column (a list of validations, newest last).

    Prompts come in the order of the newest validation, then any only older ones had.

    Example::

        >>> hist = prompt_outputs([
        ...     {"step": 10, "epoch": 0, "samples": [{"prompt": "2+2?", "output": "5"}]},
        ...     {"step": 20, "epoch": 1, "samples": [{"prompt": "2+2?", "output": "4"}]},
        ... ])
        >>> [(o["step"], o["output"]) for o in hist["2+2?"]]
        [(20, '4'), (10, '5')]
    """
    out: dict[str, list[dict[str, Any]]] = {}
    # Newest validation first, so each prompt's list is newest first; one entry at a time
    # (not the flat records) so a prompt's order within a validation is kept.
    for entry in reversed(list(entries or ())):
        for rec in sample_records([entry]):
            seen = out.setdefault(rec["prompt"], [])
            if len(seen) < keep:
                seen.append({k: rec[k] for k in ("step", "epoch", "output")})
    return out
