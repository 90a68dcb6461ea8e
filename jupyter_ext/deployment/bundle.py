"""Target ``bundle``: a self-contained directory that serves the model anywhere.

Layout::

    server.py            python server.py [--host H] [--port P]: the same protocol as local
    serving/             this toolkit's serving modules, copied (no jupyter_ext needed)
    model/               the artifact and its manifest
    requirements.txt     pinned to the versions the parity check ran with
    Dockerfile           non-root user, HEALTHCHECK on /v2/health/ready
    kserve/              InferenceService manifests for Kubernetes (see :mod:`.kserve`)
    README.md, example.json

The serving modules are copied rather than imported from jupyter_ext: a bundle must run
where only its requirements are installed.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from . import kserve
from .export import DeployError, ExportResult
from .kserve import Resources

PORTABLE = (
    "spec.py",
    "protocol.py",
    "v2_infer.py",
    "batching.py",
    "runtime.py",
    "app.py",
    "server.py",
    "litserve_engine.py",
)
MARKER = ".jupyter-ext-bundle"
PORT = 8080

_SHIM = '''"""Serve this bundle's model: python server.py [--host H] [--port {port}] [--help]."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serving.server import main  # noqa: E402

if __name__ == "__main__":
    # pickled models are loaded only from this bundle's own directory
    main(trusted_root=HERE, default_dir=str(HERE / "model"), default_engine="{engine}")
'''

_DOCKERFILE = """# {name}: POST /predict and the KServe v2 REST API on port {port}
FROM python:{py}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
RUN useradd --create-home --uid 10001 serve
# the files stay root-owned: the serving user can read the model, not change it
COPY . .
USER serve
EXPOSE {port}
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 CMD \\
  python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/v2/health/ready')"
# Not loopback: without DEPLOY_API_KEY the server generates a key and prints it in the log.
CMD ["python", "server.py", "--host", "0.0.0.0", "--port", "{port}"]
"""

_README = """# {name}

A model deployed from a notebook with jupyter-ext: `{model_class}` exported as **{fmt}**
({reason}), served by the **{engine}** engine.

Input `{in_name}`: {in_dtype} of shape {in_shape}; output `{out_name}`: {out_dtype} of shape
{out_shape} (N is the batch size). Parity at export: the served artifact's output on the example
differs from the in-notebook model's by at most {diff:.3g}.

## Run it

```bash
pip install -r requirements.txt
python server.py --port {port}              # 127.0.0.1 only; --host 0.0.0.0 to expose it
```

or in a container (non-root, with a health check):

```bash
docker build -t {name} .
docker run -p {port}:{port} -e DEPLOY_API_KEY=change-me {name}
```

## Query it

```bash
curl -s -X POST http://127.0.0.1:{port}/predict -H 'content-type: application/json' -d @example.json
```

`POST /predict` takes `{{"inputs": <nested list>}}` (a batch, or one example) and answers
`{{"outputs": <nested list>}}`. The Open Inference Protocol (KServe v2) endpoints work with KServe
and Triton clients unchanged: `GET /v2/health/live`, `GET /v2/health/ready`,
`GET /v2/models/{name}`, `GET /v2/models/{name}/ready`, `POST /v2/models/{name}/infer`:

```python
import numpy as np, tritonclient.http as httpclient
client = httpclient.InferenceServerClient("127.0.0.1:{port}")
x = httpclient.InferInput("{in_name}", [1, {row}], "{in_dtype}")
x.set_data_from_numpy(np.zeros((1, {row}), dtype=np.{np_dtype}))
print(client.infer("{name}", [x]).as_numpy("{out_name}"))
```

Bad requests get a 4xx with `{{"error": "..."}}` saying what was expected.

## Security

The server binds 127.0.0.1 unless `--host` says otherwise. {key_text} On any other address
without a key, the server generates one and prints it, so it never serves a network
unauthenticated. Send the key as `X-API-Key: KEY` (or `Authorization: Bearer KEY`); the health
endpoints need none. The model is loaded only from this directory, and only if it matches the
sha256 in `model/manifest.json`.

Options: `python server.py --help` (engine, dynamic batching, LitServe workers, body size
limit and timeout).

## Kubernetes (KServe)

`kserve/inferenceservice.yaml` runs this bundle's image as a KServe `InferenceService`
(Open Inference Protocol v2 declared with `PROTOCOL=v2`, probes on `/v2/health/ready` and
`/v2/health/live`, {resources}). It names the image `{name}:latest`: build and push it
where the cluster pulls from, and put its address in the manifest (or rewrite the manifests
with `python -m jupyter_ext.deployment.kserve . --image REGISTRY/{name}:TAG [-n NAMESPACE]`).
The API key comes from the Secret `{secret}`; create it without writing the key to a file:

```bash
docker build -t REGISTRY/{name}:TAG . && docker push REGISTRY/{name}:TAG
kubectl create secret generic {secret} --from-literal=api-key="$(openssl rand -base64 32)"
kubectl apply -f kserve/inferenceservice.yaml
kubectl get inferenceservice {k8s_name}      # READY True, and its URL
```

(`kserve/secret.yaml` is the same Secret as a template: replace its placeholder first.)
{gpu_text}{triton_text}"""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist).split("+")[0]  # a local tag (+cpu) is not on PyPI
    except md.PackageNotFoundError:
        return None


def requirements(fmt: str, engine: str, model: Any) -> list[str]:
    """Pinned requirements for serving ``model`` as ``fmt`` with ``engine``.

    Example::

        >>> requirements("onnx", "fastapi", model)  # doctest: +SKIP
        ['numpy==2.4.6', 'orjson==3.13.0', 'fastapi==0.165.0', 'uvicorn[standard]==0.54.0',
         'onnxruntime==1.32.0']
    """
    dists = ["numpy", "orjson", "fastapi", "uvicorn"]
    if engine == "litserve":
        dists.append("litserve")
    if fmt == "onnx":
        dists.append("onnxruntime")
    else:
        dists.append("torch")
    if fmt == "pickle":
        dists.append("cloudpickle")
        # classes the pickle refers to by reference (a LightningModule's base classes, ...)
        owners = md.packages_distributions()
        for module in model.modules():
            for cls in type(module).__mro__:
                top = cls.__module__.split(".")[0]
                if top in ("builtins", "__main__", "torch") or top not in owners:
                    continue
                dists += [d for d in owners[top] if d not in dists]
    lines = []
    if "torch" in dists:
        lines.append("--extra-index-url https://download.pytorch.org/whl/cpu")
    for d in dists:
        v = _version(d)
        name = "uvicorn[standard]" if d == "uvicorn" else d
        lines.append(f"{name}=={v}" if v else name)
    return lines


def write_bundle(
    out: Path,
    result: ExportResult,
    *,
    engine: str,
    model: Any,
    example: Any,
    api_key_required: bool,
    resources: Resources | None = None,
) -> Path:
    """Write the bundle for an exported model into ``out`` (replacing an earlier bundle),
    with its KServe manifests asking for ``resources`` (default: one CPU, 512 MiB).

    Example::

        >>> write_bundle(Path("mlp_bundle"), result, engine="fastapi", model=model,
        ...              example=x, api_key_required=False)  # doctest: +SKIP
    """
    resources = resources or kserve.Resources()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise DeployError(
            f"{out} exists and is not a bundle written by jupyter-ext; choose an empty or new "
            "directory (--out DIR)"
        )
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by jupyter-ext; deploy may replace this directory\n")
    shutil.copytree(result.directory, out / "model")
    serving = out / "serving"
    serving.mkdir()
    here = Path(__file__).parent
    for name in PORTABLE:
        shutil.copy2(here / name, serving / name)
    (serving / "__init__.py").write_text('"""Serving modules copied from jupyter-ext."""\n')
    (out / "server.py").write_text(_SHIM.format(port=PORT, engine=engine))
    (out / "requirements.txt").write_text(
        "\n".join(requirements(result.format, engine, model)) + "\n"
    )
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    (out / "Dockerfile").write_text(_DOCKERFILE.format(name=result.spec.name, port=PORT, py=py))
    # kserve/ is for kubectl, and its Triton repository would copy the weights into the image
    (out / ".dockerignore").write_text("__pycache__/\n*.pyc\nkserve/\n")
    (out / "example.json").write_text(json.dumps({"inputs": example.tolist()}) + "\n")
    spec = result.spec
    key_text = (
        "It requires the API key given at deploy time (only its hash is stored here); "
        "`DEPLOY_API_KEY` replaces it."
        if api_key_required
        else "Set `DEPLOY_API_KEY` to require a key."
    )
    (out / "README.md").write_text(
        _README.format(
            name=spec.name,
            model_class=type(model).__qualname__,
            fmt=result.format,
            reason=result.reason,
            engine=engine,
            in_name=spec.input.name,
            in_dtype=spec.input.datatype,
            in_shape=spec.input.shape_text(),
            out_name=spec.output.name,
            out_dtype=spec.output.datatype,
            out_shape=spec.output.shape_text(),
            diff=result.max_abs_diff,
            port=PORT,
            row=", ".join(str(d) for d in spec.input.shape[1:]),
            np_dtype=spec.input.dtype.name,
            key_text=key_text,
            resources=_resources_text(resources),
            secret=kserve.secret_name(spec.name),
            k8s_name=kserve.k8s_name(spec.name),
            gpu_text=_GPU_TEXT if resources.gpus else "",
            triton_text=_TRITON_TEXT.format(name=spec.name) if result.format == "onnx" else "",
        )
    )
    kserve.write_manifests(out, resources=resources)
    return out


_GPU_TEXT = """
The manifest asks for a GPU and starts the server with `--device cuda`: build the image with
CUDA builds (in `requirements.txt`, drop the `download.pytorch.org/whl/cpu` index line, and
use `onnxruntime-gpu` in place of `onnxruntime`), or the server cannot use it.
"""

_TRITON_TEXT = """
An ONNX model can also run on KServe's Triton runtime, without this bundle's image:
`kserve/triton/` is a Triton model repository (`{name}/config.pbtxt`, `{name}/1/model.onnx`).
Upload it (e.g. `aws s3 cp --recursive kserve/triton s3://BUCKET/PATH`), set `storageUri` in
`kserve/inferenceservice-triton.yaml` to that address, and `kubectl apply` it. Triton serves
the same v2 routes and model name, but checks no API key: keep it behind the cluster's
authentication.
"""


def _resources_text(resources: Resources) -> str:
    text = f"{resources.cpu} CPU and {resources.memory_mib} MiB requested, twice that the limit"
    if resources.gpus:
        text += f", {resources.gpus} GPU{'s' if resources.gpus > 1 else ''} (`nvidia.com/gpu`)"
    return text
