"""The launcher interface: what every backend (local, a cluster) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...store import RunRecord


@dataclass(frozen=True)
class Launched:
    """The worker started: its pid (on ``host``) and whether a warm spare took it."""

    pid: int
    pid_started: float | None
    host: str
    warm: bool


@dataclass(frozen=True)
class LaunchFailed:
    """The worker could not be started: why, in words a person can act on."""

    message: str


LaunchOutcome = Launched | LaunchFailed


class Launcher(ABC):
    """The interface every backend implements.

    ``launch`` must return quickly (the worker loads the payload and imports on its own
    time) and the worker must be independent of the kernel: it survives a kernel restart.
    """

    name: str = "abstract"

    @abstractmethod
    def launch(self, run: RunRecord, home: Path, *, heartbeat_s: float) -> LaunchOutcome:
        """Start the worker for ``run``: where it runs, or why it could not start."""

    @abstractmethod
    def terminate(self, run: RunRecord, *, kill: bool = False) -> bool:
        """Signal the worker (SIGTERM, or SIGKILL with ``kill``); True if one was signalled."""

    def shutdown(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release what the launcher holds (idle spares); running workers are left alone."""
