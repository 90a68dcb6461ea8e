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
    try:
        return func.parser.parse_args(split_known(line))  # type: ignore[attr-defined]
    except UsageError:
        raise
    except SystemExit as exc:  # argparse exits on --help or bad input
        raise UsageError(f"could not parse {line!r}; see {func.__name__}? for usage") from exc


def split_known(line: str) -> list[str]:
    """Split a magic line like a shell would, with a clear error on unbalanced quotes."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"could not parse {line!r}: {exc}") from None
