"""KServe manifests for a bundle: what a platform team applies to run it on Kubernetes.

Written into a bundle's ``kserve/`` directory (by :func:`write_manifests`)::

    inferenceservice.yaml          the bundle's own image as a custom predictor container
    secret.yaml                    a template of the Secret holding the API key (placeholder)
    triton/<name>/config.pbtxt     ONNX only: a Triton model repository ...
    triton/<name>/1/model.onnx
    inferenceservice-triton.yaml   ... and the InferenceService of KServe's Triton runtime

The custom container speaks the Open Inference Protocol (v2) on port 8080, which it
declares with ``PROTOCOL=v2`` (KServe reads a custom container's protocol from that
variable, v1 when absent); its probes are the protocol's health routes, which need no key.
The key comes from a Kubernetes Secret, never from a file here: a server bound to 0.0.0.0
without one would generate a key and print it in the pod's log.

Only this module knows KServe; the bundle calls it, and the text it writes is plain YAML
(PyYAML), one document per file.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .runtime import ARTIFACTS, Manifest
from .spec import TensorSpec

API_VERSION = "serving.kserve.io/v1beta1"
#: where a bundle's server listens in its container: ``bundle.PORT`` (not imported: the
#: bundle imports this module; tests/test_kserve.py checks the two agree)
PORT = 8080
#: KServe requires this name for the predictor's custom container
CONTAINER = "kserve-container"
#: the key inside the Secret that holds the API key
SECRET_KEY = "api-key"
PLACEHOLDER = "REPLACE-WITH-A-LONG-RANDOM-KEY"
#: the ServingRuntime KServe installs for Triton (ClusterServingRuntime kserve-tritonserver)
TRITON_RUNTIME = "kserve-tritonserver"
STORAGE_PLACEHOLDER = "s3://YOUR-BUCKET/PATH/TO/triton"
DIRNAME = "kserve"
_TRITON_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}
_MIB = 1 << 20


@dataclass(frozen=True)
class Resources:
    """What one serving pod asks Kubernetes for: CPU and memory requests and limits, GPUs.

    Example::

        >>> Resources(cpu=1, memory_mib=512, gpus=1).to_k8s()["limits"]["nvidia.com/gpu"]
        '1'
    """

    cpu: int = 1
    memory_mib: int = 512
    gpus: int = 0

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """The container's ``resources``: limits at twice the requests (bursts of a busy
        batch), GPUs as a limit only (an extended resource's request defaults to it)."""
        requests = {"cpu": str(self.cpu), "memory": f"{self.memory_mib}Mi"}
        limits = {"cpu": str(2 * self.cpu), "memory": f"{2 * self.memory_mib}Mi"}
        if self.gpus:
            limits["nvidia.com/gpu"] = str(self.gpus)
        return {"requests": requests, "limits": limits}


def gpu_count(accelerator: str, devices: Any, device: str = "cpu", cuda_here: bool = False) -> int:
    """GPUs a serving pod needs for a selection (``accelerator``, ``devices``) and the
    deploy's ``device``: a CUDA device always means one; ``gpu``/``cuda`` means the selected
    count (``auto`` or ``-1``: one); ``auto`` means what Lightning would pick here (a GPU
    when ``cuda_here``).

    Example::

        >>> gpu_count("gpu", 2), gpu_count("cpu", 4), gpu_count("cpu", 1, device="cuda:0")
        (2, 0, 1)
    """
    accelerator = accelerator.lower()
    if accelerator == "auto":
        accelerator = "gpu" if cuda_here else "cpu"
    if accelerator in ("gpu", "cuda"):
        if isinstance(devices, (list, tuple)):
            return max(len(devices), 1)
        if isinstance(devices, int) and devices > 0:
            return devices
        return 1  # "auto" / -1: at least the one the server runs on
    return 1 if device.startswith("cuda") else 0


def resources_for(
    selection: Any, *, device: str = "cpu", threads: int | None = None, model_bytes: int = 0
) -> Resources:
    """The pod's resources from the kernel's selection (:mod:`jupyter_ext.selector`), the
    deploy's device and threads, and the artifact's size: memory is room for the Python
    runtime plus a few copies of the weights (loading, the runtime's own copy, a batch).

    Example::

        >>> from jupyter_ext.selector import Selection
        >>> resources_for(Selection("gpu", devices=1), model_bytes=100 << 20)
        Resources(cpu=1, memory_mib=1536, gpus=1)
    """
    import torch

    cuda_here = selection.accelerator == "auto" and torch.cuda.is_available()
    gpus = gpu_count(selection.accelerator, selection.devices, device, cuda_here)
    base = 1024 if gpus else 512  # a CUDA context alone takes a few hundred MiB of host memory
    memory = base + 3 * math.ceil(model_bytes / _MIB)
    memory = 256 * math.ceil(memory / 256)  # round numbers read better in a manifest
    return Resources(cpu=max(threads or 1, 1), memory_mib=memory, gpus=gpus)


def k8s_name(name: str) -> str:
    """A Kubernetes (DNS-1035) name for a deployment name: lower case, ``-`` for ``_``
    and ``.``, starting with a letter, at most 45 characters (KServe adds suffixes to
    its routes' names, which DNS caps at 63).

    Example::

        >>> k8s_name("Wine_v2.1")
        'wine-v2-1'
    """
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not text or not text[0].isalpha():
        text = f"m-{text}".rstrip("-")
    return text[:45].rstrip("-")


def secret_name(name: str) -> str:
    """The Secret that holds a deployment's API key.

    Example::

        >>> secret_name("wine_v2")
        'wine-v2-api-key'
    """
    return f"{k8s_name(name)}-api-key"


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "jupyter-ext"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def inference_service(
    name: str,
    *,
    image: str,
    resources: Resources,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The ``InferenceService`` running a bundle's image as a custom predictor container.

    Example::

        >>> isvc = inference_service("wine", image="wine:latest", resources=Resources())
        >>> isvc["spec"]["predictor"]["containers"][0]["env"][0]
        {'name': 'PROTOCOL', 'value': 'v2'}
    """
    args = ["--host", "0.0.0.0", "--port", str(PORT)]
    if resources.gpus:
        args += ["--device", "cuda"]  # the bundle's server runs on the CPU unless told

    def probe(path: str, period: int) -> dict[str, Any]:
        # port named explicitly: KServe's raw deployment mode needs it, Knative accepts
        # it when it is the container port
        return {
            "httpGet": {"path": path, "port": PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }

    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["python", "server.py"],
        "args": args,
        "env": [
            {"name": "PROTOCOL", "value": "v2"},
            {
                "name": "DEPLOY_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": secret_name(name), "key": SECRET_KEY}},
            },
        ],
        "ports": [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": probe("/v2/health/ready", 10),
        "livenessProbe": probe("/v2/health/live", 15),
        "resources": resources.to_k8s(),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": _metadata(k8s_name(name), namespace),
        "spec": {"predictor": {"containers": [container]}},
    }


def secret(name: str, namespace: str | None = None) -> dict[str, Any]:
    """A template of the Secret holding the API key: the value is a placeholder to replace
    (the real key is never written to a file by this toolkit).

    Example::

        >>> secret("wine")["stringData"]
        {'api-key': 'REPLACE-WITH-A-LONG-RANDOM-KEY'}
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(secret_name(name), namespace),
        "type": "Opaque",
        "stringData": {SECRET_KEY: PLACEHOLDER},
    }


def triton_inference_service(
    name: str,
    *,
    resources: Resources,
    storage_uri: str = STORAGE_PLACEHOLDER,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The ``InferenceService`` serving the ONNX model with KServe's Triton runtime from a
    model repository uploaded to ``storage_uri`` (the ``triton/`` directory).

    Example::

        >>> isvc = triton_inference_service("wine", resources=Resources())
        >>> isvc["spec"]["predictor"]["model"]["runtime"]
        'kserve-tritonserver'
    """
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": _metadata(f"{k8s_name(name)}-triton", namespace),
        "spec": {
            "predictor": {
                "model": {
                    # the name KServe gives the model's container anyway (the field is the
                    # embedded container's, which the SDK otherwise sends as "")
                    "name": CONTAINER,
                    "modelFormat": {"name": "onnx"},
                    "runtime": TRITON_RUNTIME,
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": resources.to_k8s(),
                }
            }
        },
    }


def triton_config(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], gpus: int) -> str:
    """Triton's ``config.pbtxt`` for an ONNX model (protobuf text format).

    ``max_batch_size: 0``: the dims are the full shapes, batch dimension (-1) included, so
    any batch size the ONNX graph takes is accepted, as by the bundle's own server.

    Example::

        >>> print(triton_config("wine", [TensorSpec("input", "FP32", (-1, 13))],
        ...                     [TensorSpec("output", "FP32", (-1, 3))], gpus=0))  # doctest: +SKIP
    """

    def tensors(kind: str, specs: list[TensorSpec]) -> str:
        items = ",\n".join(
            f'  {{\n    name: "{t.name}"\n    data_type: {_TRITON_TYPES[t.datatype]}\n'
            f"    dims: [ {', '.join(str(d) for d in t.shape)} ]\n  }}"
            for t in specs
        )
        return f"{kind} [\n{items}\n]\n"

    kind = "KIND_GPU" if gpus else "KIND_CPU"
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        + tensors("input", inputs)
        + tensors("output", outputs)
        + f"instance_group [\n  {{\n    kind: {kind}\n    count: 1\n  }}\n]\n"
    )


def _dump(path: Path, doc: dict[str, Any], header: str) -> Path:
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return path


def write_manifests(
    bundle: Path,
    *,
    resources: Resources,
    image: str | None = None,
    namespace: str | None = None,
    storage_uri: str = STORAGE_PLACEHOLDER,
) -> list[Path]:
    """Write (or rewrite) ``kserve/`` in a bundle directory; return the files written.

    ``image`` defaults to ``<name>:latest``, the tag of ``docker build -t <name> .`` in the
    bundle: push it to a registry the cluster pulls from and pass its address here (or
    edit the manifest). Reads the model's name, format and spec from the bundle's
    ``model/manifest.json``.

    Example::

        >>> write_manifests(Path("wine_bundle"), resources=Resources(),
        ...                 image="registry.example.com/wine:1")  # doctest: +SKIP
        [PosixPath('wine_bundle/kserve/inferenceservice.yaml'), ...]
    """
    bundle = Path(bundle)
    manifest = Manifest.read(bundle / "model")
    name = manifest.spec.name
    image = image or f"{name}:latest"
    out = bundle / DIRNAME
    if out.exists():
        shutil.rmtree(out)  # a rewrite never leaves files of an earlier format behind
    out.mkdir()
    apply_ns = f" -n {namespace}" if namespace else ""
    written = [
        _dump(
            out / "inferenceservice.yaml",
            inference_service(name, image=image, resources=resources, namespace=namespace),
            f"KServe InferenceService for {name}: the bundle's image ({image}) as the predictor.\n"
            f"Build and push it first (docker build -t REGISTRY/{name}:TAG . && docker push ...)\n"
            "and set `image` below to it; create the API key Secret (secret.yaml), then:\n"
            f"  kubectl apply{apply_ns} -f kserve/inferenceservice.yaml",
        ),
        _dump(
            out / "secret.yaml",
            secret(name, namespace),
            "The API key the predictor requires (X-API-Key or Authorization: Bearer).\n"
            f"Replace {PLACEHOLDER} before applying, or skip this file and run:\n"
            f"  kubectl create secret generic {secret_name(name)}{apply_ns} \\\n"
            f'    --from-literal={SECRET_KEY}="$(openssl rand -base64 32)"',
        ),
    ]
    if manifest.format == "onnx":
        model_dir = out / "triton" / name
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(
            triton_config(name, [manifest.spec.input], [manifest.spec.output], resources.gpus)
        )
        shutil.copy2(bundle / "model" / ARTIFACTS["onnx"], model_dir / "1" / "model.onnx")
        written += [model_dir / "config.pbtxt", model_dir / "1" / "model.onnx"]
        written.append(
            _dump(
                out / "inferenceservice-triton.yaml",
                triton_inference_service(
                    name, resources=resources, storage_uri=storage_uri, namespace=namespace
                ),
                f"KServe InferenceService for {name} on KServe's Triton runtime (ONNX).\n"
                "Upload kserve/triton/ (the model repository) and set storageUri to it, e.g.\n"
                f"  aws s3 cp --recursive kserve/triton {storage_uri}\n"
                "Triton serves the same v2 routes; it does not check an API key (put the\n"
                "cluster's ingress authentication in front of it).",
            )
        )
    return written


def main(argv: list[str] | None = None) -> None:
    """Rewrite a bundle's manifests for another image or namespace.

    Example::

        $ python -m jupyter_ext.deployment.kserve wine_bundle --image reg.io/wine:1 -n ml
    """
    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])  # type: ignore[union-attr]
    p.add_argument("bundle", type=Path, help="a bundle directory written by deploy()")
    p.add_argument("--image", help="the pushed image (default: NAME:latest)")
    p.add_argument("-n", "--namespace", help="Kubernetes namespace (default: kubectl's)")
    p.add_argument("--storage-uri", default=STORAGE_PLACEHOLDER, help="Triton repository URI")
    p.add_argument("--cpu", type=int, default=1, help="CPU request (limit: twice)")
    p.add_argument("--memory-mib", type=int, default=512, help="memory request (limit: twice)")
    p.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu limit")
    a = p.parse_args(argv)
    written = write_manifests(
        a.bundle,
        resources=Resources(a.cpu, a.memory_mib, a.gpus),
        image=a.image,
        namespace=a.namespace,
        storage_uri=a.storage_uri,
    )
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
