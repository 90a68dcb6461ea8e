"""Target ``bundle``: a directory that serves the model anywhere (see :mod:`..bundle`).

Nothing runs here: the deployment is ``built`` once the directory is written, KServe
manifests included (their resources from the kernel's accelerator selection). Stopping a
bundle forgets it (its record leaves the list); its files stay where they were written.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle import MARKER, write_bundle
from ..export import DeployError
from ..kserve import Resources, resources_for
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
    from ...store import DeploymentRecord, Store
    from ..export import ExportResult


class Target(DeployTarget):
    """A self-contained directory: ``server.py``, the artifact, pinned requirements, a
    Dockerfile."""

    name = "bundle"

    def check(self, options: ServeOptions) -> None:
        if options.port is not None:
            raise ValueError(
                "port applies to target='local'; a bundle's port is chosen when it runs "
                "(python server.py --port P)"
            )

    def prepare(self, job: DeployJob) -> None:
        """Refuse a directory this toolkit did not write, before the export."""
        out = _out(job)
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
            raise DeployError(
                f"{out} exists and is not a bundle written by jupyter-ext; choose an empty or "
                "new directory (--out DIR)"
            )

    def artifact_dir(self, job: DeployJob) -> Path:
        # exported beside the bundle, then copied in by write_bundle (and removed)
        out = _out(job)
        return out.parent / f".{out.name}.model-{uuid.uuid4().hex[:6]}"

    def deploy(self, job: DeployJob, result: ExportResult) -> DeployOutcome:
        out = _out(job)
        t0 = time.perf_counter()
        try:
            write_bundle(
                out, result, engine=job.options.engine, model=job.model, example=job.example,
                api_key_required=job.api_key is not None, resources=pod_resources(job, result),
            )  # fmt: skip
        except (DeployError, OSError) as exc:
            return DeployOutcome(Outcome.FAILED, job.name, message=str(exc))
        finally:
            shutil.rmtree(result.directory, ignore_errors=True)
        job.timings["bundle"] = time.perf_counter() - t0
        previous = job.store.get_deployment(job.name)
        if previous is not None and previous.target != self.name:
            # the name now means the bundle: what served it before stops
            old = get_target(previous.target)
            old.stop(job.store, previous)
            old.discard(job.home, previous)
        record = job.store.upsert_deployment(
            job.name,
            target=self.name,
            engine=job.options.engine,
            format=result.format,
            status="built",
            path=str(out.resolve()),
            run_id=job.run_id,
            # the card's request examples send the key header when one is required
            info={
                **record_info(result, job.example),
                "api_key_required": job.api_key is not None,
                "timings": step_timings(job),
            },
        )
        self.announce(job, out)
        return DeployOutcome(Outcome.BUILT, job.name, record)

    def announce(self, job: DeployJob, out: Path) -> None:
        """Say where the bundle went (a subclass says what it foregrounds)."""
        job.say(f"Bundle written to {out} (python server.py, or docker build).")

    def stop(self, store: Store, record: DeploymentRecord) -> DeploymentRecord:
        store.delete_deployment(record.name)
        return dataclasses.replace(record, status="removed")


def pod_resources(job: DeployJob, result: ExportResult) -> Resources:
    """What the bundle's KServe pod asks for: the kernel's accelerator selection (a GPU
    selection gets ``nvidia.com/gpu``), the deploy's device and threads, the artifact's size.

    Example::

        >>> pod_resources(job, result)  # doctest: +SKIP
        Resources(cpu=1, memory_mib=512, gpus=0)
    """
    from ...selector import selection

    size = sum(p.stat().st_size for p in Path(result.directory).rglob("*") if p.is_file())
    return resources_for(
        selection(), device=job.options.device, threads=job.options.threads, model_bytes=size
    )


def _out(job: DeployJob) -> Path:
    out = job.options.out
    return Path(out) if out is not None else Path.cwd() / f"{job.name}_bundle"
