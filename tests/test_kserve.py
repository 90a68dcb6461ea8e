"""KServe manifests written with every bundle: validated offline against KServe's own SDK
models, and the bundle's server answering on the manifest's probe paths.

KServe's SDK (``kserve`` 0.21) is a test-only dependency installed *beside* the venv by
``make install`` (``.venv/kserve-sdk``, ``pip install --no-deps --target``): its
requirements (psutil<6, protobuf<7, python-dateutil<3, ...) would move the venv's versions.
Only its generated model classes are loaded (``kserve/__init__.py`` starts the model
server's imports, so it is not run); the Kubernetes core types they refer to (V1Container,
V1Probe, ...) come from the ``kubernetes`` package of the dev extras.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import yaml
from helpers import wait_for
from torch import nn

import jupyter_ext
from jupyter_ext import selector
from jupyter_ext.deployment import kserve
from jupyter_ext.procs import stop_group
from jupyter_ext.selector import Selection

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
SDK = Path(os.environ.get("KSERVE_SDK", ROOT / ".venv" / "kserve-sdk"))
_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, 3))
        self.example_input_array = torch.randn(4, 13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def schema() -> types.SimpleNamespace:
    """KServe's generated models and Kubernetes' (the types KServe's refer to)."""
    if not (SDK / "kserve" / "models").is_dir():
        pytest.skip(f"KServe's SDK is not at {SDK}: `make install` puts it there")
    if "kserve" not in sys.modules:
        # a bare package over the SDK's directory: its submodules import, its __init__ (the
        # model server, grpc, ...) does not run
        pkg = types.ModuleType("kserve")
        pkg.__path__ = [str(SDK / "kserve")]
        sys.modules["kserve"] = pkg
    ks = importlib.import_module("kserve.models")
    k8s = importlib.import_module("kubernetes.client")
    return types.SimpleNamespace(kserve=ks, k8s=k8s)


def build(schema: types.SimpleNamespace, data: Any, type_name: str, where: str = "") -> Any:
    """``data`` as the generated model ``type_name``, refusing what it does not know.

    The generated classes silently drop unknown keys when deserializing, so every key is
    checked against the class's ``attribute_map`` here; their setters check the rest
    (required fields, enums) when the object is built.
    """
    # KServe's generator writes list[X] and dict(str, X); Kubernetes' (pydantic) List[X]
    # and Dict[str, X]
    if m := re.fullmatch(r"(?:list|List)\[(.*)\]", type_name):
        assert isinstance(data, list), f"{where}: expected a list, got {data!r}"
        return [build(schema, x, m.group(1), f"{where}[{i}]") for i, x in enumerate(data)]
    if m := re.fullmatch(r"(?:dict\(str, (.*)\)|Dict\[str, (.*)\])", type_name):
        assert isinstance(data, dict), f"{where}: expected a mapping, got {data!r}"
        inner = m.group(1) or m.group(2)
        return {k: build(schema, v, inner, f"{where}.{k}") for k, v in data.items()}
    if type_name == "object":  # IntOrString, Quantity, ...
        return data
    if type_name in _PRIMITIVES:
        assert isinstance(data, _PRIMITIVES[type_name]), f"{where}: {data!r} is not {type_name}"
        return data
    cls = getattr(schema.kserve, type_name, None) or getattr(schema.k8s, type_name)
    assert isinstance(data, dict), f"{where}: {type_name} needs a mapping, got {data!r}"
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = set(data) - set(by_key)
    assert not unknown, f"{where}: {type_name} has no field {sorted(unknown)}"
    kwargs = {
        by_key[k]: build(schema, v, cls.openapi_types[by_key[k]], f"{where}.{k}")
        for k, v in data.items()
    }
    return cls(**kwargs)


def validate(schema: types.SimpleNamespace, path: Path, type_name: str) -> dict[str, Any]:
    """Load one manifest (one YAML document), build it as ``type_name``, and check that
    serializing the object gives the document back: nothing dropped, nothing renamed."""
    docs = list(yaml.safe_load_all(path.read_text()))
    assert len(docs) == 1, f"{path} holds {len(docs)} documents"
    doc = docs[0]
    obj = build(schema, doc, type_name, type_name)
    assert serialize(obj) == doc
    return doc


def serialize(obj: Any) -> Any:
    """A built model back to its JSON form, through the models' own attributes and names
    (what KServe's and Kubernetes' API clients send; theirs differ between generators)."""
    if isinstance(obj, list):
        return [serialize(x) for x in obj]
    if isinstance(obj, dict):
        return {k: serialize(v) for k, v in obj.items()}
    if hasattr(obj, "attribute_map"):
        values = ((key, getattr(obj, attr)) for attr, key in obj.attribute_map.items())
        return {key: serialize(v) for key, v in values if v is not None}
    return obj


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    (container,) = doc["spec"]["predictor"]["containers"]
    return container


def test_the_validator_refuses_what_kserve_does_not_know(schema):
    isvc = kserve.inference_service("m", image="m:latest", resources=kserve.Resources())
    build(schema, isvc, "V1beta1InferenceService")
    _container(isvc)["readinesProbe"] = _container(isvc).pop("readinessProbe")
    with pytest.raises(AssertionError, match=r"V1Container has no field \['readinesProbe'\]"):
        build(schema, isvc, "V1beta1InferenceService")
    # KServe's own checks run too: a model spec without its format, a port not an int
    with pytest.raises(ValueError, match="model_format"):
        build(schema, {"runtime": "kserve-tritonserver"}, "V1beta1ModelSpec")
    with pytest.raises(ValueError):
        schema.k8s.V1ContainerPort(container_port="8080")


def test_kserve_target_writes_manifests_kserve_accepts_and_the_bundle_answers_its_probes(
    workspace, tmp_path, schema, monkeypatch
):
    monkeypatch.setattr(selector, "_current", Selection("cpu", devices=1))
    model = MLP()
    x = model.example_input_array
    dep = jupyter_ext.deploy(
        model, "kserve", name="wine_v2", out=tmp_path / "b", format="onnx", api_key="deploy-key",
        verbose=False,
    )  # fmt: skip
    assert (dep.target, dep.status, dep.format) == ("kserve", "built", "onnx")
    out = dep.path / "kserve"

    isvc = validate(schema, out / "inferenceservice.yaml", "V1beta1InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["name"] == "wine-v2"  # a DNS-1035 name for wine_v2
    c = _container(isvc)
    assert c["name"] == "kserve-container" and c["image"] == "wine_v2:latest"
    env = {e["name"]: e for e in c["env"]}
    assert env["PROTOCOL"]["value"] == "v2"
    assert env["DEPLOY_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "wine-v2-api-key",
        "key": "api-key",
    }
    assert c["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"]["requests"]["cpu"] == "1" and "nvidia.com/gpu" not in str(c)
    assert "--device" not in c["args"]

    sec = validate(schema, out / "secret.yaml", "V1Secret")
    assert sec["metadata"]["name"] == "wine-v2-api-key"
    assert sec["stringData"] == {"api-key": kserve.PLACEHOLDER}
    # the key given at deploy time is in no file of the bundle (only its hash)
    assert not [p for p in dep.path.rglob("*") if p.is_file() and b"deploy-key" in p.read_bytes()]

    triton = validate(schema, out / "inferenceservice-triton.yaml", "V1beta1InferenceService")
    spec = triton["spec"]["predictor"]["model"]
    assert spec["modelFormat"] == {"name": "onnx"} and spec["runtime"] == "kserve-tritonserver"
    assert spec["protocolVersion"] == "v2" and spec["storageUri"] == kserve.STORAGE_PLACEHOLDER
    config = (out / "triton" / "wine_v2" / "config.pbtxt").read_text()
    assert 'name: "wine_v2"' in config and 'platform: "onnxruntime_onnx"' in config
    assert re.search(r'name: "input"\s+data_type: TYPE_FP32\s+dims: \[ -1, 13 \]', config)
    assert re.search(r'name: "output"\s+data_type: TYPE_FP32\s+dims: \[ -1, 3 \]', config)
    assert "KIND_CPU" in config
    onnx = (out / "triton" / "wine_v2" / "1" / "model.onnx").read_bytes()
    assert onnx == (dep.path / "model" / "model.onnx").read_bytes()
    readme = (dep.path / "README.md").read_text()
    assert "kubectl apply -f kserve/inferenceservice.yaml" in readme
    assert "kubectl create secret generic wine-v2-api-key" in readme
    assert "kserve/" in (dep.path / ".dockerignore").read_text()

    # the bundle as the pod runs it: the key from the environment (the Secret's value)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    env = {**os.environ, "DEPLOY_API_KEY": "from-the-secret"}
    proc = subprocess.Popen(
        [sys.executable, "server.py", "--fd", str(sock.fileno())],
        cwd=dep.path, env=env, pass_fds=(sock.fileno(),), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    try:
        live = c["livenessProbe"]["httpGet"]["path"]
        ready = c["readinessProbe"]["httpGet"]["path"]

        def answers() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                return httpx.get(url + ready).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, 60, what="the bundle's readiness probe")
        assert httpx.get(url + live).status_code == 200  # probes send no key
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [4, 13],
                    "datatype": "FP32",
                    "data": x.flatten().tolist(),
                }
            ]
        }
        infer = f"{url}/v2/models/wine_v2/infer"
        assert httpx.post(infer, json=body).status_code == 401
        # the deploy-time key is replaced by the Secret's (DEPLOY_API_KEY wins)
        assert httpx.post(infer, json=body, headers={"x-api-key": "deploy-key"}).status_code == 403
        r = httpx.post(infer, json=body, headers={"Authorization": "Bearer from-the-secret"})
        assert r.status_code == 200, r.text
        got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(4, 3)
        with torch.no_grad():
            np.testing.assert_allclose(got, model.eval()(x).numpy(), atol=1e-5)
    finally:
        stop_group(proc.pid)
        proc.wait(10)


def test_a_gpu_selection_asks_for_gpus(workspace, tmp_path, schema, monkeypatch):
    # the selection is set as select("gpu", devices=2) would on a GPU machine (Lightning
    # refuses it on one without): only the manifest is at stake, nothing runs on a GPU
    monkeypatch.setattr(selector, "_current", Selection("gpu", devices=2))
    dep = jupyter_ext.deploy(MLP(), "bundle", name="g", out=tmp_path / "g", format="pickle",
                             verbose=False)  # fmt: skip
    isvc = validate(
        schema, dep.path / "kserve" / "inferenceservice.yaml", "V1beta1InferenceService"
    )
    c = _container(isvc)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in c["resources"]["requests"]
    assert c["args"][-2:] == ["--device", "cuda"]  # the server uses the GPU it is given
    assert not (dep.path / "kserve" / "triton").exists()  # Triton's runtime is for ONNX
    assert "onnxruntime-gpu" in (dep.path / "README.md").read_text()


def test_resources_from_a_selection():
    assert kserve.gpu_count("gpu", [0, 3]) == 2
    assert kserve.gpu_count("cuda", "auto") == 1
    assert kserve.gpu_count("auto", "auto", cuda_here=True) == 1
    assert kserve.gpu_count("auto", "auto", cuda_here=False) == 0
    assert kserve.gpu_count("cpu", 4, device="cuda:1") == 1
    r = kserve.resources_for(Selection("cpu", devices=1), threads=4, model_bytes=300 << 20)
    assert r == kserve.Resources(cpu=4, memory_mib=1536, gpus=0)
    assert r.to_k8s() == {
        "requests": {"cpu": "4", "memory": "1536Mi"},
        "limits": {"cpu": "8", "memory": "3072Mi"},
    }
    config = kserve.triton_config("m", [], [], gpus=1)
    assert "KIND_GPU" in config
    assert kserve.k8s_name("9Lives__x.") == "m-9lives-x"


def test_manifests_can_be_rewritten_for_a_pushed_image(workspace, tmp_path, schema, monkeypatch):
    monkeypatch.setattr(selector, "_current", Selection("cpu", devices=1))
    dep = jupyter_ext.deploy(MLP(), "bundle", name="m", out=tmp_path / "m", format="pickle",
                             verbose=False)  # fmt: skip
    kserve.main([str(dep.path), "--image", "reg.example.com/m:3", "-n", "ml", "--gpus", "1"])
    isvc = validate(
        schema, dep.path / "kserve" / "inferenceservice.yaml", "V1beta1InferenceService"
    )
    assert isvc["metadata"]["namespace"] == "ml"
    assert _container(isvc)["image"] == "reg.example.com/m:3"
    assert _container(isvc)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert json.loads((dep.path / "example.json").read_text())["inputs"]


def test_the_manifests_port_is_the_bundles():
    from jupyter_ext.deployment import bundle, kserve

    assert kserve.PORT == bundle.PORT
