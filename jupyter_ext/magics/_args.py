"""Helpers shared by the magics: argument parsing that raises UsageError, never exits."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError


def parse(func: Callable[..., Any], line: str) -> Any:
    """Parse a magic's line with its @magic_arguments parser; errors become UsageError.

    The line is split like a shell would (IPython's own splitting keeps the quotes of
    ``--example 'torch.randn(4, 13)'`` in the value).
    """
    tokens = split_known(line)
    try:
        return func.parser.parse_args(tokens)  # type: ignore[attr-defined]
    except SystemExit:
        # Bad input already raised UsageError (IPython's parser); only --help gets here,
        # after printing the usage: stop the magic without running anything.
        raise UsageError(f"usage of %{func.__name__} shown above; nothing was run") from None


def split_known(line: str) -> list[str]:
    """Split a magic line like a shell would, with a clear error on unbalanced quotes."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"could not parse {line!r}: {exc}") from None


def parse_with_trainer_args(func: Callable[..., Any], line: str) -> tuple[Any, dict[str, Any]]:
    """The Trainer pass-through shared by every magic that launches runs: the magic's own
    options, plus every other ``--flag VALUE`` checked against ``Trainer``'s signature
    (unknown ones refused with the closest name) and returned as keyword arguments.

    Example::

        >>> args, kw = parse_with_trainer_args(magic, "--name a --max-epochs 3")  # doctest: +SKIP
        >>> kw
        {'max_epochs': 3}
    """
    from ..training.trainer_args import TrainerArgError, parse_flags

    try:
        args, rest = func.parser.parse_known_args(split_known(line))  # type: ignore[attr-defined]
    except SystemExit:
        raise UsageError(f"usage of %{func.__name__} shown above; nothing was run") from None
    try:
        return args, parse_flags(rest)
    except TrainerArgError as exc:
        raise UsageError(str(exc)) from None
