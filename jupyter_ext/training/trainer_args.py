"""Trainer arguments: parsed from ``%%train --max-epochs 3``, validated against Trainer.

Names are checked against ``lightning.Trainer.__init__``'s signature, so every Trainer
argument works and a typo is refused with the closest valid name before anything runs.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from typing import Any

# Set by the toolkit itself: the user's logger/callbacks are added beside ours.
_MANAGED = {"default_root_dir"}
# Arguments of Trainer.fit() that %%train passes through too (--ckpt-path to resume).
FIT_ARGS = ("ckpt_path",)


class TrainerArgError(ValueError):
    """An argument Trainer does not take, or a value that cannot be read."""


def trainer_parameters() -> dict[str, inspect.Parameter]:
    from lightning.pytorch import Trainer

    params = inspect.signature(Trainer.__init__).parameters
    return {k: p for k, p in params.items() if k != "self"}


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" Did you mean `{close[0]}`?" if close else ""


def validate(kwargs: dict[str, Any], *, flag_style: bool = False) -> dict[str, Any]:
    """Check Trainer keyword arguments by name; raise TrainerArgError with a suggestion.

    Example::

        >>> validate({"max_epoch": 3})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        TrainerArgError: Trainer has no argument `max_epoch`. Did you mean `max_epochs`?
    """
    valid = sorted([*trainer_parameters(), *FIT_ARGS])
    for name in kwargs:
        if name in _MANAGED:
            raise TrainerArgError(
                f"`{name}` is set by the toolkit (each run has its own directory in the workspace)"
            )
        if name not in valid:
            shown = "--" + name.replace("_", "-") if flag_style else name
            hint = _suggest(name, valid)
            if flag_style and hint:
                hint = " Did you mean `--" + hint[len(" Did you mean `") :].replace("_", "-")
            raise TrainerArgError(
                f"Trainer has no argument `{shown}`.{hint} "
                "Valid arguments are those of lightning.Trainer(...)."
            )
    return kwargs


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return text


def parse_flags(tokens: list[str]) -> dict[str, Any]:
    """Turn ``--max-epochs 3 --fast-dev-run`` into ``{'max_epochs': 3, 'fast_dev_run': True}``.

    Values are Python literals where they parse as one (``0.1``, ``[0, 1]``, ``None``),
    strings otherwise; a flag without a value is ``True``; ``--name=value`` works too.

    Example::

        >>> parse_flags(["--max-epochs", "3", "--limit-train-batches=0.1"])
        {'max_epochs': 3, 'limit_train_batches': 0.1}
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise TrainerArgError(
                f"unexpected `{tok}`: Trainer arguments are written `--name value` "
                "(e.g. --max-epochs 3)"
            )
        name, eq, val = tok[2:].partition("=")
        key = name.replace("-", "_")
        if eq:
            out[key] = _value(val)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[key] = _value(tokens[i + 1])
            i += 2
        else:
            out[key] = True
            i += 1
    return validate(out, flag_style=True)
