"""Deployment: real servers on 127.0.0.1, real HTTP, real processes (stopped by group)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from helpers import wait_for
from torch import nn

import jupyter_ext
from jupyter_ext.config import ToolkitConfig
from jupyter_ext.deployment import targets
from jupyter_ext.deployment.export import DeployError, ExportError
from jupyter_ext.deployment.local import PortInUseError
from jupyter_ext.deployment.runtime import ArtifactError, load_predictor
from jupyter_ext.deployment.targets import DeployOutcome, DeployTarget, Outcome
from jupyter_ext.procs import group_members, stop_group
from jupyter_ext.store import open_store

pytestmark = pytest.mark.timeout(240)


class MLP(nn.Module):
    def __init__(self, n_in: int = 13, n_out: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, n_out))
        self.example_input_array = torch.randn(4, n_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def eager(model: nn.Module, x) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()


def stop_all(home: Path) -> None:
    """Stop every server the workspace knows of and check its process group is gone."""
    store = open_store(home)
    for r in store.list_deployments():
        if r.pid:
            stop_group(r.pid, r.pid_started)
            assert group_members(r.pid) == [], f"{r.name} left processes behind"


@pytest.fixture
def ws(workspace):
    yield workspace
    stop_all(workspace)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One default deployment (auto format, FastAPI engine) shared by the protocol tests."""
    home = tmp_path_factory.mktemp("deploy") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_EXT_HOME", str(home))
        # a pickled MLP is imported by reference from this module in the server
        mp.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
        ToolkitConfig.clear_instance()
        model = MLP()
        dep = jupyter_ext.deploy(model, name="mlp", max_body_mb=1, verbose=False)
        try:
            yield dep, model
        finally:
            stop_all(home)
            ToolkitConfig.clear_instance()


def test_auto_deploy_serves_with_parity(served):
    dep, model = served
    assert dep.status == "running" and dep.target == "local" and dep.engine == "fastapi"
    assert dep.url.startswith("http://127.0.0.1:")
    # auto measured the formats that passed and says why it took this one
    assert dep.format in ("onnx", "pickle", "pt2")
    assert dep.reason.startswith(f"auto: {dep.format} is the fastest format passing parity")
    # pt2 is tried only when pickle is not usable: it never beat eager torch here
    assert set(dep.info["timings_us"]) == {"onnx", "pickle"} and "pt2" in dep.info["skipped"]
    assert dep.max_abs_diff < 1e-5 and dep.info["healthy_s"] > 0
    x = np.random.default_rng(1).standard_normal((5, 13)).astype(np.float32)
    out_t = dep.predict(torch.from_numpy(x))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (5, 3)
    np.testing.assert_allclose(out_t.numpy(), eager(model, x), atol=1e-5)
    out_a = dep.predict(x)
    assert isinstance(out_a, np.ndarray)
    np.testing.assert_allclose(dep.predict(x.tolist()), out_a)
    # one example without the batch dimension is answered unbatched
    r = httpx.post(f"{dep.url}/predict", json={"inputs": x[0].tolist()})
    np.testing.assert_allclose(r.json()["outputs"], eager(model, x[:1])[0], atol=1e-5)
    df = jupyter_ext.deployments()
    row = df[df.name == "mlp"].iloc[0]
    assert (row.status, row.url, row.format, row.target) == (
        "running",
        dep.url,
        dep.format,
        "local",
    )
    assert "mlp" in dep.logs() and "serving" in dep.logs()


def test_tritonclient_health_metadata_and_infer(served):
    dep, model = served
    client = triton.InferenceServerClient(dep.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mlp")
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 13]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    x = np.random.default_rng(2).standard_normal((3, 13)).astype(np.float32)
    for binary in (True, False):  # Triton's binary tensor extension, and plain JSON
        inp = triton.InferInput("input", [3, 13], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = triton.InferRequestedOutput("output", binary_data=binary)
        result = client.infer("mlp", [inp], outputs=[out], request_id="req-7")
        np.testing.assert_allclose(result.as_numpy("output"), eager(model, x), atol=1e-5)
        assert result.get_response()["id"] == "req-7"
    # a large tensor as binary both ways, and each mix of binary and JSON
    big = np.random.default_rng(4).standard_normal((4096, 13)).astype(np.float32)
    for binary_in, binary_out in ((True, True), (True, False), (False, True)):
        big_in = triton.InferInput("input", list(big.shape), "FP32")
        big_in.set_data_from_numpy(big, binary_data=binary_in)
        big_out = triton.InferRequestedOutput("output", binary_data=binary_out)
        result = client.infer("mlp", [big_in], outputs=[big_out])
        np.testing.assert_allclose(result.as_numpy("output"), eager(model, big), atol=1e-5)
        sent_binary = "binary_data_size" in str(result.get_response().get("outputs"))
        assert sent_binary == binary_out
    # compressed request and response, and the versioned path
    result = client.infer(
        "mlp",
        [inp],
        model_version="1",
        request_compression_algorithm="gzip",
        response_compression_algorithm="gzip",
    )
    np.testing.assert_allclose(result.as_numpy("output"), eager(model, x), atol=1e-5)
    client.close()


def test_bad_requests_get_4xx_json_errors_and_the_server_keeps_serving(served):
    dep, model = served
    url = dep.url
    infer = f"{url}/v2/models/mlp/infer"
    row = [0.5] * 13

    def v2(**tensor):
        return {"inputs": [{"name": "input", "shape": [1, 13], "datatype": "FP32", **tensor}]}

    head = json.dumps(v2(parameters={"binary_data_size": 52})).encode()

    def chunks():
        for _ in range(20):
            yield b"0" * 100_000  # 2 MB without a Content-Length

    cases = [
        ("POST", "/predict", {"content": b"{not json"}, 400, "not valid JSON"),
        ("POST", "/predict", {"content": b""}, 400, "body is empty"),
        ("POST", "/predict", {"json": [row]}, 400, "must be a JSON object"),
        ("POST", "/predict", {"json": {"instances": [row]}}, 400, 'missing field "inputs"'),
        ("POST", "/predict", {"json": {"inputs": [[1.0] * 12]}}, 422, "expects [N, 13]"),
        ("POST", "/predict", {"json": {"inputs": [row, row[:5]]}}, 422, "ragged"),
        ("POST", "/predict", {"json": {"inputs": [["a"] * 13]}}, 422, "expects numbers (FP32)"),
        ("POST", "/predict", {"json": {"inputs": [[None] * 13]}}, 422, "expects numbers"),
        ("POST", "/predict", {"json": {"inputs": [[True] * 13]}}, 422, "booleans"),
        ("POST", "/predict", {"json": {"inputs": "1,2,3"}}, 422, "nested list of numbers"),
        ("POST", "/predict", {"json": {"inputs": []}}, 422, "empty batch"),
        ("POST", "/predict", {"content": b"[" * 2_000_000}, 413, "exceeds the limit"),
        ("POST", "/predict", {"content": chunks()}, 413, "exceeds the limit"),
        (
            "POST",
            "/predict",
            {"content": b"xx", "headers": {"content-encoding": "gzip"}},
            400,
            "not valid gzip",
        ),
        (
            "POST",
            "/predict",
            {"content": gzip.compress(b"[" * 3_000_000), "headers": {"content-encoding": "gzip"}},
            413,
            "decompressed body exceeds",
        ),
        ("POST", infer, {"json": v2(datatype="FP64", data=row)}, 422, "expects 'FP32'"),
        ("POST", infer, {"json": v2(name="x", data=row)}, 400, "one input named 'input'"),
        ("POST", infer, {"json": v2(data=row[:7])}, 422, "has 7 values"),
        ("POST", infer, {"json": v2()}, 400, 'has no "data"'),
        ("POST", infer, {"json": v2(shape="13", data=row)}, 400, 'needs "shape"'),
        ("POST", infer, {"json": {"inputs": []}}, 400, "one input tensor"),
        ("POST", infer, {"json": {**v2(data=row), "outputs": [{"name": "y"}]}}, 400, "output"),
        (
            "POST",
            infer,
            {
                "content": head + b"\0",
                "headers": {"inference-header-content-length": str(len(head))},
            },
            400,
            "must be 52 bytes",
        ),
        (
            "POST",
            infer,
            {"content": b"{}", "headers": {"inference-header-content-length": "99"}},
            400,
            "Inference-Header-Content-Length",
        ),
        ("POST", "/v2/models/other/infer", {"json": v2(data=row)}, 404, "unknown model 'other'"),
        ("GET", "/v2/models/mlp/versions/2", {}, 404, "unknown version '2'"),
        ("GET", "/nowhere", {}, 404, "no route /nowhere"),
        ("GET", "/predict", {}, 405, "GET is not allowed"),
    ]
    with httpx.Client(trust_env=False, timeout=30) as client:
        for method, path, kwargs, status, phrase in cases:
            target = path if path.startswith("http") else url + path
            r = client.request(method, target, **kwargs)
            assert r.status_code == status, (path, kwargs.get("json"), r.text)
            assert phrase in r.json()["error"], (phrase, r.json())
        x = np.random.default_rng(3).standard_normal((2, 13)).astype(np.float32)
        r = client.post(f"{url}/predict", json={"inputs": x.tolist()})
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["outputs"], eager(model, x), atol=1e-5)
    assert dep.status == "running"
    assert "422 POST /predict" in dep.logs()  # refusals are logged for whoever debugs a client


def test_formats_round_trip_redeploy_replaces_and_undeploy_frees_the_port(ws):
    model = MLP()
    # a batch of one as the example: pt2 must still take any batch size
    pt2 = jupyter_ext.deploy(model, name="m", example=torch.randn(1, 13), format="pt2")
    assert pt2.format == "pt2" and pt2.reason == "pt2: as requested"
    x = np.random.default_rng(4).standard_normal((6, 13)).astype(np.float32)
    np.testing.assert_allclose(pt2.predict(x), eager(model, x), atol=1e-5)
    old_pid, old_path = pt2.pid, pt2.path

    pkl = jupyter_ext.deploy(model, name="m", format="pickle", verbose=False)
    assert pkl.format == "pickle" and pkl.max_abs_diff == 0.0
    assert pkl.url == pt2.url  # the name keeps its port
    assert group_members(old_pid) == [] and not old_path.exists()
    assert pt2.status == "replaced" and pkl.status == "running"
    np.testing.assert_allclose(pkl.predict(x), eager(model, x), atol=1e-6)
    assert len(jupyter_ext.deployments()) == 1

    port, pid = int(pkl.url.rsplit(":", 1)[1]), pkl.pid
    jupyter_ext.get_deployment("m").stop()
    assert pkl.status == "stopped" and group_members(pid) == []
    with socket.socket() as s:  # free again: a new server can listen on it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT)
        s.bind(("127.0.0.1", port))
        s.listen()
    with pytest.raises(DeployError, match="cannot reach 'm'"):
        pkl.predict(x)


def test_killed_server_shows_as_lost(ws):
    dep = jupyter_ext.deploy(MLP(), name="k", format="onnx", verbose=False)
    os.killpg(dep.pid, signal.SIGKILL)
    wait_for(lambda: not group_members(dep.pid), 10, what="the killed group to exit")
    df = jupyter_ext.deployments()
    assert df.loc[0, "status"] == "lost" and "without being stopped" in df.loc[0, "error"]
    assert dep.status == "lost"


def test_non_loopback_host_requires_a_generated_key(ws, capsys):
    dep = jupyter_ext.deploy(MLP(), name="open", format="onnx", host="0.0.0.0")
    assert dep.api_key and dep.api_key in capsys.readouterr().out  # shown once
    meta = f"{dep.url}/v2/models/open"
    assert httpx.get(meta).status_code == 401
    assert "X-API-Key" in httpx.get(meta).json()["error"]
    assert httpx.get(meta, headers={"x-api-key": "wrong"}).status_code == 403
    assert httpx.get(meta, headers={"x-api-key": dep.api_key}).status_code == 200
    bearer = {"authorization": f"Bearer {dep.api_key}"}
    assert httpx.post(
        f"{dep.url}/predict", json={"inputs": [[0.0] * 13]}, headers=bearer
    ).is_success
    assert httpx.get(f"{dep.url}/v2/health/ready").status_code == 200  # probes need no key
    assert dep.predict(np.zeros((1, 13), np.float32)).shape == (1, 3)
    other = jupyter_ext.get_deployment("open")  # another kernel does not know the key
    with pytest.raises(DeployError, match=r"answered 401.*api_key=\.\.\."):
        other.predict(np.zeros((1, 13), np.float32))
    client = triton.InferenceServerClient(dep.url.removeprefix("http://"))
    assert client.get_model_metadata("open", headers={"X-API-Key": dep.api_key})["name"] == "open"


def test_port_in_use_is_refused_before_anything_starts(ws):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"port {port} on 127.0.0.1 is in use.*--port"):
            jupyter_ext.deploy(MLP(), name="p", port=port, format="onnx")
    assert open_store(ws).list_deployments() == []
    assert not (ws / "deployments").exists()


def test_refusals_say_what_would_be_right(ws):
    with pytest.raises(TypeError, match=r"needs a torch.nn.Module.*got int"):
        jupyter_ext.deploy(42)
    bare = nn.Linear(3, 1)
    with pytest.raises(ValueError, match=r"example=torch.randn\(4, 13\).*example_input_array"):
        jupyter_ext.deploy(bare)
    with pytest.raises(ValueError, match="target must be one of local, bundle"):
        jupyter_ext.deploy(bare, target="cloud", example=torch.randn(2, 3))
    with pytest.raises(ValueError, match="format must be one of auto, onnx, pt2, pickle"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 3), format="tflite")
    with pytest.raises(ValueError, match="must be 1-63 letters"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 3), name="a b/c")
    with pytest.raises(ValueError, match="port applies to target='local'"):
        jupyter_ext.deploy(bare, "bundle", example=torch.randn(2, 3), port=9000)
    with pytest.raises(ValueError, match="workers is a LitServe option: add engine='litserve'"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 3), workers=2)
    with pytest.raises(ValueError, match=r"give max_batch_size > 1 too"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 3), batch_timeout_ms=5)
    with pytest.raises(ValueError, match=r"batch_timeout_ms must be from 0 to 1000"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 3), max_batch_size=8, batch_timeout_ms=-1)
    with pytest.raises(ValueError, match="litserve engine binds only"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 3), engine="litserve", host="10.1.2.3")
    with pytest.raises(ValueError, match="one tensor input"):
        jupyter_ext.deploy(bare, example={"x": torch.randn(2, 3)})
    with pytest.raises(DeployError, match=r"fails on the example of shape \[2, 4\]"):
        jupyter_ext.deploy(bare, example=torch.randn(2, 4))
    with pytest.raises(DeployError, match="returns tuple, not a tensor"):
        jupyter_ext.deploy(TwoOutputs(), example=torch.randn(2, 3))
    with pytest.raises(LookupError, match=r"no deployment named 'nope' in this workspace"):
        jupyter_ext.get_deployment("nope")
    assert open_store(ws).list_deployments() == []


class Manifests(DeployTarget):
    """A stand-in for a new target (a KServe manifest): it keeps the artifact it is given."""

    name = "manifest"

    def artifact_dir(self, job):
        return job.home / "manifests" / job.name

    def deploy(self, job, result):
        if job.name == "refused":
            return DeployOutcome(
                Outcome.FAILED, job.name, message="the cluster said no", log_tail="quota exceeded"
            )
        record = job.store.upsert_deployment(
            job.name, target=self.name, status="built", format=result.format,
            path=str(result.directory),
        )  # fmt: skip
        return DeployOutcome(Outcome.BUILT, job.name, record)

    def stop(self, store, record):
        store.delete_deployment(record.name)
        return replace(record, status="removed")


def test_a_new_target_plugs_in_and_its_failures_are_outcomes(ws, monkeypatch):
    monkeypatch.setitem(targets._registered, "manifest", Manifests)
    names = targets.target_names()  # the built-in targets first, then the plugged-in one
    assert names[:2] == ("local", "bundle") and "manifest" in names and "kserve" in names
    dep = jupyter_ext.deploy(MLP(), "manifest", name="m1", format="pickle", verbose=False)
    assert (dep.target, dep.status, dep.format) == ("manifest", "built", "pickle")
    assert (dep.path / "manifest.json").is_file() and dep.path.parent.name == "manifests"
    with pytest.raises(DeployError, match="'refused' failed: the cluster said no; its log ends"):
        jupyter_ext.deploy(MLP(), "manifest", name="refused", format="pickle", verbose=False)
    assert list(jupyter_ext.deployments(target="manifest").name) == ["m1"]
    dep.stop()
    assert dep.status == "removed" and open_store(ws).list_deployments() == []
    with pytest.raises(ValueError, match=r"target must be one of local, bundle, .*manifest"):
        jupyter_ext.deploy(MLP(), "cloud")


class TwoOutputs(nn.Module):
    def forward(self, x):
        return x, x


class Hopeless(nn.Module):
    """Data-dependent control flow (no torch.export, so no pt2/onnx) and a lock (no pickle)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.guard = threading.Lock()

    def forward(self, x):
        if x.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x) + torch.rand(x.shape[0], 2)


def test_a_model_no_format_can_export_gets_every_reason(ws):
    with pytest.raises(ExportError) as info:
        jupyter_ext.deploy(Hopeless(), example=torch.randn(2, 3))
    message = str(info.value)
    assert message.startswith("could not export Hopeless in any format:")
    assert set(info.value.failures) == {"onnx", "pt2", "pickle"}
    for fmt in ("onnx", "pt2", "pickle"):
        assert f"  - {fmt}: " in message
    assert "torch.export failed" in info.value.failures["pt2"]
    assert "cannot pickle `model.guard`" in info.value.failures["pickle"]
    with pytest.raises(ExportError, match=r"pickle: parity failed: max \|diff\|"):
        jupyter_ext.deploy(Noisy(), example=torch.randn(2, 3), format="pickle")
    assert open_store(ws).list_deployments() == []


def test_pickles_load_only_from_a_trusted_root_and_unchanged(ws, tmp_path):
    dep = jupyter_ext.deploy(MLP(), "bundle", out=tmp_path / "b", format="pickle", verbose=False)
    model_dir = dep.path / "model"
    with pytest.raises(ArtifactError, match="pickles are only loaded from"):
        load_predictor(model_dir, trusted_root=tmp_path / "elsewhere")
    assert load_predictor(model_dir, trusted_root=dep.path)(np.zeros((1, 13), np.float32)).shape
    with open(model_dir / "model.pkl", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        load_predictor(model_dir, trusted_root=dep.path)


def _serve_bundle(directory: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start ``python server.py`` in a bundle directory on a socket bound here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    proc = subprocess.Popen(
        [sys.executable, "server.py", "--fd", str(sock.fileno())],
        cwd=directory,
        env=env,
        pass_fds=(sock.fileno(),),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    return proc, url


def test_bundle_serves_from_a_fresh_process_in_its_directory_alone(ws, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(13, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(4, 13)
    dep = jupyter_ext.deploy(
        model, "bundle", name="tiny", example=x, out=tmp_path / "made", format="pickle",
        api_key="s3cret", verbose=False,
    )  # fmt: skip
    assert dep.status == "built" and dep.url is None
    files = {p.name for p in dep.path.iterdir()}
    assert {"server.py", "serving", "model", "requirements.txt", "Dockerfile", "README.md"} <= files
    docker = (dep.path / "Dockerfile").read_text()
    assert "USER serve" in docker and "HEALTHCHECK" in docker and "/v2/health/ready" in docker
    reqs = (dep.path / "requirements.txt").read_text()
    assert "torch==" in reqs and "cloudpickle==" in reqs and "fastapi==" in reqs
    assert "s3cret" not in "".join(p.read_text() for p in dep.path.rglob("*.json"))

    # moved elsewhere, started with jupyter_ext made unimportable: the bundle is all it needs
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(dep.path, moved)
    shutil.rmtree(dep.path)
    shadow = tmp_path / "shadow" / "jupyter_ext"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('a bundle must not need jupyter_ext')")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    env.pop("DEPLOY_API_KEY", None)
    proc, url = _serve_bundle(moved, env)
    try:

        def ready():
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                return httpx.get(f"{url}/v2/health/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, what="the bundle server to be healthy")
        body = json.loads((moved / "example.json").read_text())
        assert httpx.post(f"{url}/predict", json=body).status_code == 401
        r = httpx.post(f"{url}/predict", json=body, headers={"x-api-key": "s3cret"})
        np.testing.assert_allclose(r.json()["outputs"], eager(model, x), atol=1e-6)
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        inp = triton.InferInput("input", [4, 13], "FP32")
        inp.set_data_from_numpy(x.numpy())
        result = client.infer("tiny", [inp], headers={"X-API-Key": "s3cret"})
        np.testing.assert_allclose(result.as_numpy("output"), eager(model, x), atol=1e-6)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert group_members(proc.pid) == []


def test_litserve_engine_serves_the_same_protocol_and_stops_by_group(ws):
    model = MLP()
    dep = jupyter_ext.deploy(
        model, name="lit", format="onnx", engine="litserve", max_batch_size=4,
        batch_timeout_ms=10, api_key="k2", verbose=False,
    )  # fmt: skip
    assert dep.engine == "litserve" and dep.status == "running"
    assert httpx.post(f"{dep.url}/predict", json={"inputs": [[0.0] * 13]}).status_code == 401
    assert httpx.get(f"{dep.url}/v2/models/lit", headers={"x-api-key": "no"}).status_code == 403
    assert httpx.get(f"{dep.url}/v2/health/ready").status_code == 200
    assert len(group_members(dep.pid)) > 1  # LitServe runs children: the group is the unit
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal((n, 13)).astype(np.float32) for n in (1, 3, 2, 5, 1, 4)]
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = dep.predict(batches[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, b in enumerate(batches):  # batched together, each answer is its own request's
        np.testing.assert_allclose(results[i], eager(model, b), atol=1e-5)
    key = {"X-API-Key": "k2"}
    r = httpx.post(f"{dep.url}/predict", json={"inputs": [[1, 2]]}, headers=key)
    assert r.status_code == 422 and "expects [N, 13]" in r.json()["error"]
    client = triton.InferenceServerClient(dep.url.removeprefix("http://"))
    assert client.is_model_ready("lit", headers=key)
    inp = triton.InferInput("input", [2, 13], "FP32")
    inp.set_data_from_numpy(batches[2])
    result = client.infer("lit", [inp], headers=key)  # binary tensors in and out
    np.testing.assert_allclose(result.as_numpy("output"), eager(model, batches[2]), atol=1e-5)
    pid = dep.pid
    dep.stop()
    assert group_members(pid) == [] and dep.status == "stopped"


def test_a_server_that_cannot_start_fails_the_deploy_with_its_log(ws, tmp_path, monkeypatch):
    # a class importable here but not in the server: pickled by reference, it cannot load there
    (tmp_path / "only_here.py").write_text(
        "import torch\n\nclass Net(torch.nn.Linear):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from only_here import Net

    with pytest.raises(DeployError, match=r"exited \(code 1\) before it was healthy") as info:
        jupyter_ext.deploy(Net(3, 2), name="broken", example=torch.randn(2, 3), format="pickle")
    assert "No module named 'only_here'" in str(info.value)
    row = open_store(ws).get_deployment("broken")
    assert row.status == "failed" and "only_here" in row.error
    assert group_members(row.pid) == []


@pytest.mark.gpu
def test_serving_on_a_gpu_keeps_parity(ws):
    model = MLP()
    for engine in ("fastapi", "litserve"):
        dep = jupyter_ext.deploy(
            model, name=f"gpu-{engine}", format="pt2", device="cuda", engine=engine,
            tolerance=1e-3, verbose=False,
        )  # fmt: skip
        x = np.random.default_rng(6).standard_normal((8, 13)).astype(np.float32)
        np.testing.assert_allclose(dep.predict(x), eager(model, x), atol=1e-3)
        dep.stop()
