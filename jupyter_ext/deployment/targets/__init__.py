"""Deploy targets: where an exported model goes, behind one interface.

``deploy()`` checks what is common (format, engine, port, ...), exports the model, and hands
the artifact to a :class:`DeployTarget`, which makes it available and says how that went as
a :class:`DeployOutcome` value (started, built, exited, timed out, failed) rather than one
exception for every failure. Each target is one module of this package defining ``Target``
(:mod:`.local`: a server on this machine; :mod:`.bundle`: a directory that serves anywhere),
so a new one (a Ray Serve deployment, a KServe manifest) is one new module; a target from
elsewhere can be added with :func:`register_target`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ...store import DeploymentRecord, Store
    from ..export import DeployError, ExportResult

DEFAULT = "local"


@dataclass(frozen=True)
class ServeOptions:
    """How the model is to be served: the options of ``deploy()`` past the model itself.

    Targets read what applies to them and refuse the rest in :meth:`DeployTarget.check`.
    """

    engine: str = "fastapi"
    host: str = "127.0.0.1"
    port: int | None = None
    out: Path | None = None
    api_key: str | None = None
    workers: int = 1
    max_batch_size: int = 1
    batch_timeout_ms: float = 0.0
    threads: int | None = None
    device: str = "cpu"
    max_body_mb: float = 16.0
    timeout: float = 120.0

    def server_args(self) -> list[str]:
        """The serving process's options for these settings (``python -m ...server``).

        Example::

            >>> ServeOptions(threads=2).server_args()
            ['--max-body-mb', '16.0', '--threads', '2']
        """
        args = ["--max-body-mb", str(self.max_body_mb)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.device != "cpu":
            args += ["--device", self.device]
        if self.engine == "litserve":
            args += ["--workers", str(self.workers)]
        if self.max_batch_size > 1:
            args += ["--max-batch-size", str(self.max_batch_size)]
            args += ["--batch-timeout-ms", str(self.batch_timeout_ms)]
        return args


@dataclass(frozen=True)
class DeployJob:
    """One deployment in the making: what a target is given besides the exported artifact.

    ``model`` is in eval mode on the CPU and ``example`` a CPU batch (what the export was
    checked on); ``api_key`` is the key to require (``generated_key``: made up by deploy
    because the host is not loopback, and to be shown once). ``started`` is when
    ``deploy()`` was called (``time.perf_counter()``) and ``timings`` the seconds of the
    steps so far, which the target adds its own to (see :func:`step_timings`).
    """

    name: str
    options: ServeOptions
    store: Store
    home: Path
    model: Any
    example: Any
    run_id: str | None = None
    api_key: str | None = None
    generated_key: bool = False
    tolerance: float = 1e-4
    verbose: bool = True
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)

    def say(self, text: str) -> None:
        """Print a progress line unless the deploy is quiet.

        Example::

            >>> job.say("Exported mlp as onnx")  # doctest: +SKIP
        """
        if self.verbose:
            print(text, flush=True)


class Outcome(str, Enum):
    """How handing an artifact to a target ended."""

    STARTED = "started"  # a server answers, and its answer on the example matched
    BUILT = "built"  # something that serves when run elsewhere was written
    EXITED = "exited"  # the server process ended before it was healthy
    TIMED_OUT = "timed_out"  # the server was not healthy within the timeout
    FAILED = "failed"  # anything else: could not start, parity failed, ...


@dataclass(frozen=True)
class DeployOutcome:
    """The result of :meth:`DeployTarget.deploy`: a value, for callers to branch on.

    ``record`` is the store's record after the attempt (None if none was written);
    ``message`` says what happened, ``log_tail`` what the server printed last.

    Example::

        >>> outcome = DeployOutcome(Outcome.EXITED, "m", message="the server exited (code 1)")
        >>> outcome.ok
        False
    """

    state: Outcome
    name: str
    record: DeploymentRecord | None = None
    message: str = ""
    log_tail: str = ""
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.state in (Outcome.STARTED, Outcome.BUILT)

    def describe(self) -> str:
        """The message, with the server's last log lines when there are any.

        Example::

            >>> DeployOutcome(Outcome.FAILED, "m", message="no", log_tail="boom").describe()
            'no; its log ends with:\\nboom'
        """
        if self.log_tail:
            return f"{self.message}; its log ends with:\n{self.log_tail}"
        return self.message

    def error(self) -> DeployError:
        """The exception ``deploy()`` raises for a failed outcome.

        Example::

            >>> raise outcome.error()  # doctest: +SKIP
        """
        from ..export import DeployError

        return DeployError(f"deployment {self.name!r} failed: {self.describe()}")


def record_info(result: ExportResult, example: Any) -> dict[str, Any]:
    """What a deployment's record keeps about its export (``Deployment.info``).

    Example::

        >>> record_info(result, torch.randn(4, 13))["example_shape"]  # doctest: +SKIP
        [4, 13]
    """
    info = {
        "reason": result.reason,
        "timings_us": result.timings_us,
        "failures": result.failures,
        "skipped": result.skipped,
        "export_s": round(result.export_s, 3),
        "export_max_abs_diff": result.max_abs_diff,
        "example_shape": list(example.shape),
        "spec": result.spec.to_json(),
    }
    if result.content_key is not None:
        info["content_key"] = result.content_key
    if result.reused_from is not None:
        info["reused_from"] = result.reused_from
    return info


def step_timings(job: DeployJob, **more: float) -> dict[str, float]:
    """The deploy's seconds per step, rounded, with ``total`` since ``deploy()`` was called
    (``Deployment.info["timings"]``). The export's steps come first (``prepare``,
    ``export``, ``parity``, ``choose``, ``cache``), then the target's (``local``:
    ``retire``, ``start``, ``healthy``, ``http_parity``); ``other`` is what none of them
    covers (the store's writes, ...).

    Example::

        >>> step_timings(job, healthy=0.41)["total"]  # doctest: +SKIP
        0.93
    """
    steps = {**job.timings, **more}
    total = time.perf_counter() - job.started
    steps["other"] = max(total - sum(steps.values()), 0.0)
    steps["total"] = total
    return {k: round(v, 3) for k, v in steps.items()}


class DeployTarget(ABC):
    """What a deploy target implements.

    A target receives the exported artifact (:class:`~..export.ExportResult`) and the
    :class:`DeployJob`; it records the deployment in ``job.store`` itself (its states are
    its own: ``starting`` then ``running``, or ``built``), and it can stop what it started
    from any kernel, knowing only the record.
    """

    name: ClassVar[str] = "abstract"

    def check(self, options: ServeOptions) -> None:  # noqa: B027  (most accept everything)
        """Refuse options this target cannot honour: ValueError saying what to change."""

    def api_key(self, options: ServeOptions) -> tuple[str | None, bool]:
        """The key the deployment will require, and whether it was generated here."""
        return options.api_key, False

    def prepare(self, job: DeployJob) -> None:  # noqa: B027  (optional: most have nothing)
        """Refuse, before the (slow) export, what would make the deploy fail after it."""

    @abstractmethod
    def artifact_dir(self, job: DeployJob) -> Path:
        """Where the export writes the artifact for this deployment."""

    @abstractmethod
    def deploy(self, job: DeployJob, result: ExportResult) -> DeployOutcome:
        """Make the exported model available and record it; an expected failure (the
        server does not come up, parity) is an outcome, not an exception."""

    @abstractmethod
    def stop(self, store: Store, record: DeploymentRecord) -> DeploymentRecord:
        """Stop what serves the deployment; return its record as it is now."""

    def discard(self, home: Path, record: DeploymentRecord) -> None:  # noqa: B027
        """Delete what the workspace holds for a removed deployment (default: nothing)."""

    def observe(self, record: DeploymentRecord) -> DeploymentRecord:
        """The record as the deployment really is (e.g. ``lost`` when its server died).

        Reads only: :func:`~..records.current` writes what this finds.
        """
        return record


_registered: dict[str, type[DeployTarget]] = {}
_instances: dict[str, DeployTarget] = {}
_lock = threading.Lock()


def register_target(cls: type[DeployTarget]) -> type[DeployTarget]:
    """Add a target defined outside this package (usable as a class decorator).

    Example::

        >>> @register_target  # doctest: +SKIP
        ... class RayServe(DeployTarget):
        ...     name = "ray"
    """
    with _lock:
        _registered[cls.name] = cls
        _instances.pop(cls.name, None)
    return cls


def target_names() -> tuple[str, ...]:
    """Every target's name, the default first.

    Example::

        >>> target_names()[:2]
        ('local', 'bundle')
    """
    found = set(_modules()) | set(_registered)
    return (DEFAULT, *sorted(found - {DEFAULT}))


@functools.cache
def _modules() -> tuple[str, ...]:
    """The targets defined in this package: one module each (read once per process)."""
    return tuple(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_target(name: str) -> DeployTarget:
    """The target called ``name`` (ValueError listing the targets for an unknown one).

    Example::

        >>> get_target("bundle").name
        'bundle'
    """
    names = target_names()
    if name not in names:
        raise ValueError(f"target must be one of {', '.join(names)}; got {name!r}")
    with _lock:
        if name not in _instances:
            cls = _registered.get(name)
            if cls is None:
                cls = importlib.import_module(f"{__name__}.{name}").Target
            _instances[name] = cls()
        return _instances[name]
