"""The Ray backend: a run's worker is a Ray job on the selected cluster.

``launch`` writes ``record.json`` beside the payload and submits the run directory as the
job's ``working_dir`` over the Jobs API (the dashboard's HTTP address, what ``ray job
submit --address`` takes): Ray uploads it to the cluster's package store, so the payload
reaches the cluster through Ray and the cluster needs no view of the workspace. The
entrypoint, :mod:`.entry`, runs the ordinary worker with the run's channel in the store's
place; :mod:`.sync` brings what it writes back into the store.

The toolkit travels with the job (``py_modules``), so the cluster runs the kernel's version
of it; torch, Lightning and what the model imports must be installed on the cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..training.launchers.base import Launched, Launcher, LaunchFailed, LaunchOutcome
from .channel import channel_name

if TYPE_CHECKING:
    from ..store import RunRecord

RECORD = "record.json"
STORAGE_ENV = "JUPYTER_EXT_RAY_STORAGE"  # Ray Train's storage for runs over several nodes
AGENT_WAIT_S = 30.0  # how long a fresh head may take to accept jobs


def job_id(run_id: str) -> str:
    """The Ray job's submission id for a run.

    Example::

        >>> job_id("a1b2c3")
        'jupyter_ext-a1b2c3'
    """
    return f"jupyter_ext-{run_id}"


def _loopback(url: str) -> bool:
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def workers_of(run: RunRecord) -> tuple[int, bool]:
    """``(ranks, on GPUs)``: one rank per device on each node (Trainer's devices x
    num_nodes).

    Example::

        >>> workers_of(run)  # devices=2, num_nodes=2, accelerator="gpu"  # doctest: +SKIP
        (4, True)
    """
    devices = run.devices
    count = (
        devices if isinstance(devices, int) else len(devices) if isinstance(devices, list) else 1
    )
    nodes = (run.trainer_args or {}).get("num_nodes", 1)
    nodes = nodes if isinstance(nodes, int) and nodes > 0 else 1
    gpu = (run.accelerator or "cpu").lower() in ("gpu", "cuda")
    return max(1, count) * nodes, gpu


def _resources(run: RunRecord) -> dict[str, Any]:
    """What the job's entrypoint needs from the node it is placed on: the worker's device
    for one rank; nothing for several (Ray Train places the ranks, each with its own)."""
    workers, gpu = workers_of(run)
    if workers > 1:
        return {"entrypoint_num_cpus": 0}
    if gpu:
        return {"entrypoint_num_cpus": 1, "entrypoint_num_gpus": 1}
    return {"entrypoint_num_cpus": 1}


class RayLauncher(Launcher):
    """Runs go to the Ray cluster at ``dashboard`` (its Jobs API), drained through
    ``client`` (a Ray address for the channel: ``ray://HOST:10001`` or a GCS address).

    Example::

        >>> RayLauncher("http://127.0.0.1:8265", "ray://127.0.0.1:10001")  # doctest: +SKIP
    """

    name = "ray"

    def __init__(
        self, dashboard: str, client: str, runtime_env: dict[str, Any] | None = None
    ) -> None:
        self.dashboard = dashboard
        self.client = client
        self.runtime_env = runtime_env or {}

    def _jobs(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)

    def cluster_fields(self, run_id: str) -> dict[str, Any]:
        """What the store records of where the run lives (``RunRecord.cluster``)."""
        return {
            "dashboard": self.dashboard,
            "client": self.client,
            "job_id": job_id(run_id),
            "channel": channel_name(run_id),
            "acked": 0,
        }

    def launch(self, run: RunRecord, home: Path, *, heartbeat_s: float) -> LaunchOutcome:
        import jupyter_ext

        run_dir = Path(run.run_dir or "")
        (run_dir / RECORD).write_text(json.dumps(run.to_dict(), default=str))
        # a python from this venv when the cluster runs on this machine (tests, make
        # cluster); on a real cluster, the nodes' own python
        python = sys.executable if _loopback(self.dashboard) else "python"
        entrypoint = (
            f"{python} -m jupyter_ext.cluster.entry --run-id {run.id} --heartbeat {heartbeat_s}"
        )
        workers, gpu = workers_of(run)
        if workers > 1:
            entrypoint += f" --workers {workers}" + (" --use-gpu" if gpu else "")
            storage = os.environ.get(STORAGE_ENV)
            if storage:
                entrypoint += f" --storage {shlex.quote(storage)}"
        toolkit = str(Path(jupyter_ext.__file__).parent)
        runtime_env = {
            **self.runtime_env,  # what the person asked the nodes to have (pip, env_vars...)
            "working_dir": str(run_dir),
            "excludes": ["checkpoints", "*.log"],
            "py_modules": [*self.runtime_env.get("py_modules", []), toolkit],
        }
        with _quiet_ray():
            return self._submit(run, entrypoint, runtime_env)

    def _submit(self, run: RunRecord, entrypoint: str, runtime_env: dict) -> LaunchOutcome:
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                self._jobs().submit_job(
                    entrypoint=entrypoint,
                    submission_id=job_id(run.id),
                    runtime_env=runtime_env,
                    metadata={"jupyter_ext_run": run.id, "name": run.name[:100]},
                    **_resources(run),
                )
                break
            except Exception as exc:
                text = " ".join(str(exc).split())
                # a head that just started has no job agent yet: Ray says to try again
                if "No available agent" in text and time.monotonic() < deadline:
                    time.sleep(0.5)  # polling interval of that retry
                    continue
                return LaunchFailed(
                    f"the Ray cluster at {self.dashboard} refused the job: {text[:500]}"
                )
        return Launched(pid=0, pid_started=None, host=f"ray {self.dashboard}", warm=False)

    def terminate(self, run: RunRecord, *, kill: bool = False) -> bool:
        """Stop the run's Ray job (Ray sends SIGTERM, which the entrypoint turns into a
        graceful stop, then SIGKILL after its own grace period)."""
        fields = run.cluster or {}
        try:
            return bool(self._jobs().stop_job(fields.get("job_id") or job_id(run.id)))
        except Exception:
            return False


def launcher_for_fields(fields: dict[str, Any]) -> RayLauncher:
    """The launcher of a run recorded with these ``RunRecord.cluster`` fields.

    Example::

        >>> launcher_for_fields(run.cluster).terminate(run)  # doctest: +SKIP
    """
    return RayLauncher(fields["dashboard"], fields["client"])


@contextlib.contextmanager
def _quiet_ray() -> Iterator[None]:
    """Keep Ray's upload progress ("Uploading package gcs://...") out of the cell's output."""
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
