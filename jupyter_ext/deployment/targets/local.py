"""Target ``local``: a server process on this machine, health-checked and parity-checked.

The server runs in its own process group (see :mod:`..local`), outlives the kernel, and is
found again from the store by any kernel. Redeploying a name stops the old server first and
keeps its port when none is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...procs import process_alive, process_started
from .. import local
from ..export import DeployError, within
from ..server import LITSERVE_HOSTS, is_loopback
from . import (
    DeployJob,
    DeployOutcome,
    DeployTarget,
    Outcome,
    ServeOptions,
    get_target,
    record_info,
    step_timings,
)

if TYPE_CHECKING:
    import subprocess

    from ...store import DeploymentRecord, Store
    from ..export import ExportResult

LIVE = ("running", "starting")
LOST = "the server process ended without being stopped (killed, crashed, or reboot)"


class Target(DeployTarget):
    """A server on this machine: ``deploy`` returns once it is healthy and its answer on
    the example over HTTP matches the in-kernel model's."""

    name = "local"

    def check(self, options: ServeOptions) -> None:
        if options.out is not None:
            raise ValueError("out applies to target='bundle' (the bundle directory)")
        if options.engine == "litserve" and options.host not in (*LITSERVE_HOSTS, "localhost"):
            raise ValueError(
                f"the litserve engine binds only {', '.join(LITSERVE_HOSTS)}; "
                f"got host {options.host!r}"
            )

    def api_key(self, options: ServeOptions) -> tuple[str | None, bool]:
        # never serve a network unauthenticated: a host that is not loopback gets a key
        if options.api_key is None and not is_loopback(options.host):
            return secrets.token_urlsafe(24), True
        return options.api_key, False

    def prepare(self, job: DeployJob) -> None:
        """Refuse a taken port before exporting, unless this name's old server holds it."""
        port = job.options.port
        if port is None:
            return
        old = job.store.get_deployment(job.name)
        if (
            old is not None
            and old.target == self.name
            and old.port == port
            and process_alive(old.pid, old.pid_started)
        ):
            return  # the redeploy stops it first
        local.reserve_port(job.options.host, port).close()

    def artifact_dir(self, job: DeployJob) -> Path:
        return job.home / "deployments" / f"{job.name}-{uuid.uuid4().hex[:6]}"

    def deploy(self, job: DeployJob, result: ExportResult) -> DeployOutcome:
        expected = result.reference if result.reference is not None else _reference_output(job)
        previous = job.store.get_deployment(job.name)
        t0 = time.perf_counter()
        keep_port = self._retire(job, previous)
        job.timings["retire"] = time.perf_counter() - t0
        sock, port = _claim_port(job.options, keep_port)
        try:
            record = _record_starting(job, result, port)
            if previous is not None and previous.path != record.path:
                get_target(previous.target).discard(job.home, previous)
            t0 = time.perf_counter()
            try:
                proc = _spawn(job, record, sock)
            except OSError as exc:
                return _failed(job, None, Outcome.FAILED, f"cannot start the server: {exc}")
            job.timings["start"] = time.perf_counter() - t0
        finally:
            if sock is not None:
                sock.close()  # the server holds its own copy now
        job.store.update_deployment(job.name, pid=proc.pid, pid_started=process_started(proc.pid))
        record = job.store.get_deployment(job.name) or record
        try:
            outcome = _check_served(job, record, proc, expected)
        except BaseException:  # e.g. the cell was interrupted: leave nothing serving
            _failed(job, proc, Outcome.FAILED, "interrupted before it was checked")
            raise
        if outcome.ok:
            _announce(job, outcome.record)
        return outcome

    def stop(self, store: Store, record: DeploymentRecord) -> DeploymentRecord:
        local.stop_server(record.pid, record.pid_started)
        if record.status in (*LIVE, "lost"):
            store.update_deployment(record.name, status="stopped", ended=time.time())
        return store.get_deployment(record.name) or dataclasses.replace(record, status="stopped")

    def discard(self, home: Path, record: DeploymentRecord) -> None:
        """Delete the artifact directory, only ever inside the workspace's deployments."""
        if not record.path:
            return
        import shutil

        path = Path(record.path)
        root = (home / "deployments").resolve()
        if path.resolve().parent == root and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

    def observe(self, record: DeploymentRecord) -> DeploymentRecord:
        if record.status not in LIVE or (record.status == "starting" and not record.pid):
            return record  # not spawned yet: the deploying kernel owns this state
        if process_alive(record.pid, record.pid_started):
            return record
        return dataclasses.replace(record, status="lost", ended=time.time(), error=LOST)

    def _retire(self, job: DeployJob, previous: DeploymentRecord | None) -> int | None:
        """Stop the deployment this one replaces; the port to keep, if it was a server."""
        if previous is None:
            return None
        if previous.target != self.name:
            get_target(previous.target).stop(job.store, previous)
            return None
        if local.stop_server(previous.pid, previous.pid_started):
            job.say(f"Stopped the previous {job.name} (pid {previous.pid}).")
        return previous.port


def _reference_output(job: DeployJob) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return job.model(job.example).numpy()


def _claim_port(options: ServeOptions, keep: int | None) -> tuple[socket.socket | None, int]:
    """The port to serve on, and the socket holding it for the FastAPI engine (LitServe
    binds the port itself, so for it the socket is closed and None)."""
    sock = None
    if options.port is not None:
        sock = local.reserve_port(options.host, options.port)
    elif keep and local.port_free(options.host, keep):
        with contextlib.suppress(DeployError):
            sock = local.reserve_port(options.host, keep)
    if sock is None:
        sock = local.reserve_port(options.host, None)
    port = sock.getsockname()[1]
    if options.engine == "litserve":
        sock.close()
        sock = None
    return sock, port


def _record_starting(job: DeployJob, result: ExportResult, port: int) -> DeploymentRecord:
    info = record_info(result, job.example)
    info["api_key_required"] = job.api_key is not None
    return job.store.upsert_deployment(
        job.name,
        target="local",
        engine=job.options.engine,
        format=result.format,
        status="starting",
        url=local.server_url(job.options.host, port),
        host=job.options.host,
        port=port,
        path=str(result.directory),
        log_path=str(result.directory / "server.log"),
        run_id=job.run_id,
        info=info,
    )


def _spawn(
    job: DeployJob, record: DeploymentRecord, sock: socket.socket | None
) -> subprocess.Popen:
    return local.spawn(
        Path(record.path),
        host=job.options.host,
        engine=job.options.engine,
        log_path=Path(record.log_path or Path(record.path) / "server.log"),
        sock=sock,
        port=record.port,
        api_key=job.api_key,
        options=job.options.server_args(),
    )


def _check_served(
    job: DeployJob, record: DeploymentRecord, proc: subprocess.Popen, expected: np.ndarray
) -> DeployOutcome:
    """Wait for the server to be healthy, then compare its answer on the example."""
    health = local.wait_healthy(
        record.url or "", proc, Path(record.log_path or ""), timeout=job.options.timeout
    )
    if not health.healthy:
        state = Outcome.TIMED_OUT if health.timed_out else Outcome.EXITED
        return _failed(
            job, proc, state, health.describe(), log_tail=health.log_tail,
            exit_code=health.exit_code,
        )  # fmt: skip
    job.timings["healthy"] = health.seconds
    t0 = time.perf_counter()
    served = _served_output(job, record)
    job.timings["http_parity"] = time.perf_counter() - t0
    if isinstance(served, str):
        return _failed(job, proc, Outcome.FAILED, served)
    diff = float(np.max(np.abs(served.astype(np.float64) - expected.astype(np.float64))))
    if not within(served, expected, job.tolerance):
        return _failed(
            job, proc, Outcome.FAILED,
            f"parity check failed: the server's output on the example differs from the "
            f"in-kernel model's by up to {diff:.3g} (tolerance {job.tolerance:g}); it was stopped",
        )  # fmt: skip
    info = dict(record.info or {})
    info.update(
        parity_max_abs_diff=diff, healthy_s=round(health.seconds, 3), timings=step_timings(job)
    )
    job.store.update_deployment(job.name, status="running", info=info)
    record = job.store.get_deployment(job.name) or record
    return DeployOutcome(Outcome.STARTED, job.name, record)


def _served_output(job: DeployJob, record: DeploymentRecord) -> Any:
    """The server's answer on the example, or a message saying why there is none."""
    from ..client import Deployment

    try:
        return Deployment(record, api_key=job.api_key, home=job.home).predict(job.example.numpy())
    except DeployError as exc:
        return str(exc)


def _failed(
    job: DeployJob,
    proc: subprocess.Popen | None,
    state: Outcome,
    message: str,
    *,
    log_tail: str = "",
    exit_code: int | None = None,
) -> DeployOutcome:
    """Stop what was started and record the failure; the outcome says what happened."""
    if proc is not None:
        local.stop_server(proc.pid, process_started(proc.pid))
    outcome = DeployOutcome(
        state, job.name, None, message=message, log_tail=log_tail, exit_code=exit_code
    )
    job.store.update_deployment(
        job.name, status="failed", ended=time.time(), error=outcome.describe()
    )
    return dataclasses.replace(outcome, record=job.store.get_deployment(job.name))


def _announce(job: DeployJob, record: DeploymentRecord | None) -> None:
    if record is None:
        return
    info = record.info or {}
    # one short line while deploying; the returned Deployment's card has the details
    job.say(
        f"Serving {job.name} at {record.url}: healthy {info.get('healthy_s', 0):.1f} s after start."
    )
    if job.generated_key:
        job.say(
            f"{job.options.host} is not loopback, so an API key is required; it is shown once: "
            f"{job.api_key}\nSend it as the X-API-Key header (dep.predict does)."
        )
