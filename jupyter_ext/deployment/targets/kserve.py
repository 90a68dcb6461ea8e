"""Target ``kserve``: a bundle whose KServe manifests are the point (see :mod:`..kserve`).

The same directory as ``target="bundle"`` (which writes the manifests too); this target
records the deployment as ``kserve`` and says what to apply. Nothing is sent to a cluster:
applying the manifests is ``kubectl``'s, with the platform's credentials, not the notebook's.
"""

from __future__ import annotations

from pathlib import Path

from ..kserve import DIRNAME, secret_name
from . import DeployJob
from .bundle import Target as BundleTarget


class Target(BundleTarget):
    """A bundle plus its ``InferenceService``: ``kserve/inferenceservice.yaml`` (and, for
    ONNX, the Triton model repository and its manifest)."""

    name = "kserve"

    def announce(self, job: DeployJob, out: Path) -> None:
        manifests = out / DIRNAME
        job.say(f"KServe manifest written to {manifests / 'inferenceservice.yaml'}")
        if (manifests / "inferenceservice-triton.yaml").is_file():
            job.say(
                f"  and for KServe's Triton runtime: {manifests / 'inferenceservice-triton.yaml'}"
                f" (model repository {manifests / 'triton'})"
            )
        job.say(
            f"  build and push the image from {out} (docker build), set its address in the "
            f"manifest, create the Secret {secret_name(job.name)} (kubectl create secret "
            "generic ... --from-literal=api-key=...), then kubectl apply -f it; see README.md."
        )
