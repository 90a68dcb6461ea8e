"""Serving-side artifacts: the manifest next to a model file, and loading it as a predictor.

A deployment directory holds one artifact (``model.onnx``, ``model.pt2`` or ``model.pkl``)
and ``manifest.json`` (format, sha256 of the artifact, the model's input/output spec, the
sha256 of the API key if one is required). Servers and bundles load it with
:func:`load_predictor`, which the deploying kernel also uses to check parity, so what is
checked is exactly what is served.

Pickles run code when loaded, so a pickled model is loaded only from inside a trusted root
(the toolkit's workspace, or the bundle's own directory) and only if its sha256 matches the
manifest. Like the protocol, this module imports only the standard library and numpy at
import time (torch or onnxruntime load with the format that needs them).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import ModelSpec

MANIFEST = "manifest.json"
FORMATS = ("onnx", "pt2", "pickle")
ARTIFACTS = {"onnx": "model.onnx", "pt2": "model.pt2", "pickle": "model.pkl"}
PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "pt2": "pytorch_torch_export",
    "pickle": "pytorch_cloudpickle",
}


class ArtifactError(RuntimeError):
    """An artifact directory that cannot be served (missing, tampered, untrusted)."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks.

    Example::

        >>> sha256_file(Path("model.onnx"))  # doctest: +SKIP
        '33213e80...'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    """What ``manifest.json`` records about an artifact directory."""

    format: str
    artifact: str
    sha256: str
    spec: ModelSpec
    api_key_sha256: str | None = None
    created: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST
        doc = {
            "format": self.format,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "spec": self.spec.to_json(),
            "api_key_sha256": self.api_key_sha256,
            "created": self.created,
            "extra": self.extra,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(
                f"{directory} is not a model directory: {MANIFEST} is missing"
            ) from None
        except ValueError as exc:
            raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
        return cls(
            format=doc["format"],
            artifact=doc["artifact"],
            sha256=doc["sha256"],
            spec=ModelSpec.from_json(doc["spec"]),
            api_key_sha256=doc.get("api_key_sha256"),
            created=doc.get("created", 0.0),
            extra=doc.get("extra", {}),
        )


@dataclass
class Predictor:
    """A loaded model: ``predictor(x)`` maps a batched numpy input to a numpy output."""

    spec: ModelSpec
    format: str
    run: Callable[[np.ndarray], np.ndarray]
    device: str = "cpu"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _torch_runner(module: Any, device: str) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            # frombuffer arrays (binary requests) are read-only; torch wants writable memory
            t = torch.from_numpy(x if x.flags.writeable else x.copy())
            if device != "cpu":
                t = t.to(device)
            return module(t).detach().cpu().numpy()

    return run


def _onnx_runner(path: Path, spec: ModelSpec, device: str, threads: int | None, spin: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not spin:
        # idle onnxruntime threads spin-wait for the next run, stealing the cores that the
        # event loop and other requests need: serving 4 concurrent clients on 2 cores was
        # measured 25-35% slower with spinning, and torch beside it in a kernel up to 400x
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.split(":")[1]) if ":" in device else 0
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


def load_predictor(
    directory: str | os.PathLike[str],
    *,
    trusted_root: str | os.PathLike[str] | None,
    device: str = "cpu",
    threads: int | None = None,
    spin: bool = False,
) -> Predictor:
    """Load the artifact in ``directory`` (checked against its manifest) as a predictor.

    ``trusted_root``: pickled artifacts are refused unless ``directory`` lies inside it.
    ``threads``: intra-op threads (default: for onnx, what the export measured as faster and
    recorded in the manifest, else the runtime's default). ``spin``: let onnxruntime's idle
    threads spin-wait (a little lower latency for one client at a time, much lower
    throughput when requests run concurrently).

    Example::

        >>> p = load_predictor("ws/deployments/mlp-1a2b", trusted_root="ws")  # doctest: +SKIP
        >>> p(np.zeros((2, 13), np.float32)).shape  # doctest: +SKIP
        (2, 3)
    """
    directory = Path(directory)
    manifest = Manifest.read(directory)
    if manifest.format not in FORMATS:
        raise ArtifactError(f"unknown artifact format {manifest.format!r} in {directory}")
    path = directory / manifest.artifact
    if not path.is_file() or path.parent.resolve() != directory.resolve():
        raise ArtifactError(f"the artifact {manifest.artifact!r} is missing from {directory}")
    if manifest.format == "pickle" and (
        trusted_root is None or not _inside(directory, Path(trusted_root))
    ):
        raise ArtifactError(
            f"refusing to load the pickled model in {directory}: pickles are only loaded from "
            f"the toolkit's workspace or the bundle's own directory ({trusted_root})"
        )
    digest = sha256_file(path)
    if digest != manifest.sha256:
        raise ArtifactError(
            f"{path} does not match its manifest (sha256 {digest[:12]}... != "
            f"{manifest.sha256[:12]}...): the artifact was changed after export"
        )
    if manifest.format == "onnx":
        if threads is None and device == "cpu":
            threads = manifest.extra.get("threads")  # what the export measured as faster
        run = _onnx_runner(path, manifest.spec, device, threads, spin)
    elif manifest.format == "pt2":
        import torch

        if threads:
            torch.set_num_threads(threads)
        program = torch.export.load(str(path))
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        # an exported program is already in eval mode; its module refuses .eval()
        run = _torch_runner(program.module(), device)
    else:
        import pickle

        import torch

        if threads:
            torch.set_num_threads(threads)
        with open(path, "rb") as fh:
            module = pickle.load(fh)  # trusted: inside the root and matching the manifest
        run = _torch_runner(module.to(device).eval(), device)
    return Predictor(manifest.spec, manifest.format, run, device)
