"""Deploying to Ray Serve on a real local Ray head (the session's ``ray_head``, and one head
with Ray's token authentication started here): deploy, HTTP and tritonclient parity,
replicas, a SIGKILLed replica, neighbours left alone, a redeploy under load, re-attaching
from a fresh process, teardown.

Serve's HTTP proxy gets a free port (not 8000: another head on this machine may hold it),
and each replica a quarter CPU: the session head has 2.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from helpers import wait_for
from torch import nn

import jupyter_ext
from jupyter_ext.cluster.address import ClusterUnreachable
from jupyter_ext.cluster.head import free_port, start_head, stop_head
from jupyter_ext.deployment.export import DeployError
from jupyter_ext.deployment.targets import ray as ray_target
from jupyter_ext.procs import group_members

pytestmark = pytest.mark.timeout(300)

CPU = 0.25  # per replica
OUTSIDE = "outside"  # an application made with Ray's REST API, not with the toolkit
_OUTSIDE_CODE = b"""
from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Hello:
    async def __call__(self, request):
        return "hello from outside"


app = Hello.bind()
"""


class MLP(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        self.example_input_array = torch.randn(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.as_tensor(x, dtype=torch.float32)).numpy()


def serve_state(dashboard: str) -> dict:
    return httpx.get(
        f"{dashboard}/api/serve/applications/", headers=ray_target.auth_headers()
    ).json()


def replica_ids(dashboard: str, app: str) -> set[str]:
    deployments = serve_state(dashboard)["applications"][app]["deployments"].values()
    return {r["replica_id"] for d in deployments for r in d["replicas"]}


def put_outside_app(dashboard: str, port: int) -> None:
    """Add an application the way someone else would: upload its code and write the
    config through Ray's REST API (keeping what is there)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("outside_app.py", _OUTSIDE_CODE)
    package = f"_ray_pkg_{secrets.token_hex(16)}.zip"
    assert httpx.put(f"{dashboard}/api/packages/gcs/{package}", content=buf.getvalue()).is_success
    state = serve_state(dashboard)
    apps = [a["deployed_app_config"] for a in state["applications"].values()]
    apps.append(
        {
            "name": OUTSIDE,
            "route_prefix": f"/{OUTSIDE}",
            "import_path": "outside_app:app",
            "runtime_env": {"working_dir": f"gcs://{package}"},
        }
    )
    body = {
        "applications": apps,
        "http_options": state.get("http_options") or {"host": "127.0.0.1", "port": port},
    }
    r = httpx.put(f"{dashboard}/api/serve/applications/", json=body, timeout=30)
    assert r.status_code == 200, r.text


class Load:
    """Requests in a loop from a thread until stopped: how many, how many failed, and the
    distinct answers seen (to tell old weights from new)."""

    def __init__(self, url: str, x: np.ndarray) -> None:
        self.url, self.body = url, {"inputs": x.tolist()}
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.last: np.ndarray | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(f"{self.url}/predict", json=self.body)
                    if r.status_code == 200:
                        self.ok += 1
                        self.last = np.asarray(r.json()["outputs"], dtype=np.float32)
                        continue
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                self.failed += 1

    def __enter__(self) -> Load:
        self._thread.start()
        wait_for(lambda: self.ok > 0 or self.failed > 3, timeout=30, what="the first answer")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_package_config_status_and_options_offline(tmp_path, monkeypatch):
    """What needs no cluster: the package, the application config, Ray's status read
    back, the token's places, and the magic's options."""
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text("{}")
    (art / "model.onnx").write_bytes(b"weights")
    (art / "server.log").write_text("not shipped")
    name, data = ray_target.build_package(art, {"threads": 1})
    assert ray_target.build_package(art, {"threads": 1}) == (name, data)  # same files, same hash
    assert name.startswith("_ray_pkg_") and name.endswith(".zip")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {"jx_serving/ray_app.py", "jx_serving/app.py", "model/model.onnx"} <= set(names)
    assert "model/server.log" not in names and "serve_options.json" in names

    opts = ray_target.RayServeOptions(autoscaling={"min_replicas": 1, "max_replicas": 3})
    config = ray_target.app_config("m", name, opts)
    assert config["route_prefix"] == "/m" and config["import_path"] == ray_target.IMPORT_PATH
    assert config["runtime_env"] == {"working_dir": f"gcs://{name}"}
    assert config["deployments"][0]["autoscaling_config"]["max_replicas"] == 3
    with pytest.raises(ValueError, match="min_replicas <= max_replicas"):
        ray_target.check_autoscaling({"min_replicas": 3, "max_replicas": 1})

    state = {"applications": {"m": {"status": "DEPLOYING", "message": "", "deployments": {
        "model": {"target_num_replicas": 2, "message": "1 replica cannot be scheduled",
                  "replicas": [{"state": "RUNNING", "pid": 7}, {"state": "PENDING_ALLOCATION"}]}
    }}}}  # fmt: skip
    st = ray_target.AppStatus.of(state, "m")
    assert st.replicas_text() == "1/2 running, 1 pending_allocation" and st.pids == (7,)
    assert st.message == "1 replica cannot be scheduled"

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    (tmp_path / "tok").write_text("abc\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert ray_target.auth_headers() == {"Authorization": "Bearer abc"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "xyz")
    assert ray_target.auth_headers() == {"Authorization": "Bearer xyz"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert ray_target.auth_headers() == {}

    from types import SimpleNamespace

    from IPython.core.error import UsageError

    from jupyter_ext.magics.deploy import _ray_options

    args = SimpleNamespace(replicas=1, min_replicas=1, max_replicas=4, cluster=None, num_cpus=0.5)
    assert _ray_options(args) == {
        "autoscaling": {"min_replicas": 1, "max_replicas": 4}, "num_cpus": 0.5,
    }  # fmt: skip
    with pytest.raises(UsageError, match="both --min-replicas and --max-replicas"):
        _ray_options(SimpleNamespace(replicas=1, min_replicas=1, max_replicas=None))


@pytest.fixture
def serve_port(ray_head) -> int:
    """The port of the session head's Serve proxy: the one it has, or a free one."""
    port = (serve_state(ray_head.dashboard).get("http_options") or {}).get("port")
    return int(port) if port else free_port()


@pytest.mark.cluster
def test_ray_serve_replicas_kill_neighbours_redeploy_teardown(ray_head, workspace, serve_port):
    dash = ray_head.dashboard
    t0 = time.perf_counter()
    put_outside_app(dash, serve_port)
    wait_for(
        lambda: serve_state(dash)["applications"][OUTSIDE]["status"] == "RUNNING",
        timeout=60, what="the outside application",
    )  # fmt: skip
    outside_replicas = replica_ids(dash, OUTSIDE)
    model = MLP()
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)

    # nothing selected: refused, saying how to choose a cluster
    with pytest.raises(ValueError, match="select one first"):
        jupyter_ext.deploy(model, "ray", verbose=False)
    with pytest.raises(ValueError, match="apply to target='ray'"):
        jupyter_ext.deploy(model, "local", replicas=2, verbose=False)
    # a name another application holds is refused before anything is written
    with pytest.raises(DeployError, match="did not deploy"):
        jupyter_ext.deploy(model, "ray", name=OUTSIDE, cluster=dash, port=serve_port)
    # an artifact over the dashboard's upload limit: refused, saying what to do
    limit = ray_target.UPLOAD_LIMIT
    ray_target.UPLOAD_LIMIT = 1000
    try:
        with pytest.raises(DeployError, match="at most 0 MiB: try format='onnx'"):
            jupyter_ext.deploy(model, "ray", name="big", cluster=dash, port=serve_port)
    finally:
        ray_target.UPLOAD_LIMIT = limit

    jupyter_ext.use_cluster(dash)
    try:
        a = jupyter_ext.deploy(model, "ray", name="a", replicas=2, num_cpus=CPU, port=serve_port)
    finally:
        jupyter_ext.use_cluster("local")
    first_deploy = time.perf_counter() - t0
    assert a.status == "running" and a.url == f"http://127.0.0.1:{serve_port}/a"
    assert a.max_abs_diff is not None and a.max_abs_diff <= 1e-4
    np.testing.assert_allclose(a.predict(x), eager(model, x), atol=1e-5)
    # tritonclient, unchanged, against http://HOST:PORT/a: JSON and binary tensors
    client = triton.InferenceServerClient(f"127.0.0.1:{serve_port}/a")
    assert client.is_server_ready() and client.is_model_ready("a")
    for binary in (False, True):
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = triton.InferRequestedOutput("output", binary_data=binary)
        got = client.infer("a", [inp], outputs=[out]).as_numpy("output")
        np.testing.assert_allclose(got, eager(model, x), atol=1e-5)
    client.close()
    listed = jupyter_ext.deployments(target="ray").set_index("name")
    assert listed.loc["a", "status"] == "running" and listed.loc["a", "replicas"] == "2/2 running"
    assert "Serve application 'a'" in a._repr_mimebundle_()["text/plain"]

    # SIGKILL one of the two replicas under a request loop: at most one request fails
    record = jupyter_ext.get_deployment("a")._record
    pids = ray_target.app_status(record).pids
    assert len(pids) == 2
    with Load(a.url, x) as load:
        os.kill(pids[0], signal.SIGKILL)
        killed = time.perf_counter()

        def recovered() -> bool:
            st = ray_target.app_status(record)
            return st.replicas == {"RUNNING": 2} and pids[0] not in st.pids

        wait_for(recovered, timeout=60, interval=0.2, what="Ray to replace the killed replica")
        recovery = time.perf_counter() - killed
        n_before = load.ok
        wait_for(lambda: load.ok > n_before + 5, timeout=30, what="answers after the recovery")
    assert load.failed <= 1, load.errors

    # a second deployment, then removing the first leaves it and the outside app serving
    b = jupyter_ext.deploy(MLP(seed=1), "ray", name="b", num_cpus=CPU, cluster=dash, verbose=False)
    a.stop()
    assert a.status == "stopped"
    apps = serve_state(dash)["applications"]
    assert set(apps) == {"b", OUTSIDE} and apps[OUTSIDE]["status"] == "RUNNING"
    assert httpx.get(f"http://127.0.0.1:{serve_port}/{OUTSIDE}").text == "hello from outside"
    np.testing.assert_allclose(b.predict(x), eager(MLP(seed=1), x), atol=1e-5)

    # scale 1 -> 2, then a redeploy with new weights under load: no request fails
    t_scale = time.perf_counter()
    b.scale(2)
    scale_s = time.perf_counter() - t_scale
    assert b.serve_status["replicas"] == "2/2 running"
    new = MLP(seed=2)
    with Load(b.url, x) as load:
        t_re = time.perf_counter()
        b2 = jupyter_ext.deploy(new, "ray", name="b", num_cpus=CPU, cluster=dash, verbose=False)
        redeploy = time.perf_counter() - t_re
        wait_for(lambda: load.last is not None and np.allclose(load.last, eager(new, x), atol=1e-5),
                 timeout=30, what="the new weights' answers")  # fmt: skip
    assert load.failed == 0, load.errors
    assert load.ok > 10
    assert b.status == "replaced" and b2.status == "running"

    # a fresh process (a restarted kernel) finds it from the store alone
    probe = (
        "import json, jupyter_ext; d = jupyter_ext.get_deployment('b'); "
        f"print(json.dumps([d.status, d.url, d.predict({x.tolist()!r}).tolist()]))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    status, url, answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert (status, url) == ("running", b2.url)
    np.testing.assert_allclose(np.asarray(answer), eager(new, x), atol=1e-5)

    # teardown: %undeploy removes only ours; nothing of ours is left
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_ext.magics.deploy import DeployMagics

    DeployMagics(shell=InteractiveShell.instance()).undeploy("b")
    assert b2.status == "stopped"
    apps = serve_state(dash)["applications"]
    assert set(apps) == {OUTSIDE}
    assert httpx.get(f"http://127.0.0.1:{serve_port}/{OUTSIDE}").text == "hello from outside"
    # written back as Ray reported it each time, so Serve never replaced its replica
    assert replica_ids(dash, OUTSIDE) == outside_replicas
    print(
        f"\nfirst deploy (cold Serve, with the outside app) {first_deploy:.1f} s; recovery "
        f"{recovery:.1f} s ({load.failed} failed); scale 1->2 {scale_s:.1f} s; redeploy under "
        f"load {redeploy:.1f} s"
    )
    # the outside app is the test's: take it away the way it came (read, change, write)
    ray_target.change_apps(ray_target.api_for(dash), lambda apps: apps.pop(OUTSIDE))


@pytest.fixture
def token_head(monkeypatch) -> Iterator[tuple[str, str]]:
    """A second head, with Ray's token authentication on: (dashboard, token)."""
    token = secrets.token_hex(32)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    temp = tempfile.mkdtemp(prefix="rk", dir="/tmp")
    head = start_head(
        temp, dashboard_port=free_port(), client_port=free_port(), num_cpus=1,
        object_store_memory=80_000_000, wait_s=None,
    )  # fmt: skip
    try:
        headers = {"Authorization": f"Bearer {token}"}

        def ready() -> bool:
            assert head.running(), "the token head exited while starting"
            try:
                r = httpx.get(f"{head.dashboard}/nodes?view=summary", headers=headers, timeout=2)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and bool(r.json().get("data", {}).get("summary"))

        wait_for(ready, timeout=120, interval=0.25, what="the token head")
        yield head.dashboard, token
    finally:
        stop_head(head.pid, head.started)
        assert not group_members(head.pid)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.cluster
def test_ray_serve_with_token_authentication(token_head, workspace, monkeypatch):
    dash, token = token_head
    model, port = MLP(), free_port()
    # without the token the cluster refuses, and the message says where it goes
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/nonexistent")
    with pytest.raises(ClusterUnreachable, match="RAY_AUTH_TOKEN"):
        jupyter_ext.deploy(model, "ray", name="t", cluster=dash, port=port, verbose=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    dep = jupyter_ext.deploy(
        model, "ray", name="t", cluster=dash, port=port, num_cpus=CPU, api_key="s3cret"
    )
    x = model.example_input_array.numpy()
    np.testing.assert_allclose(dep.predict(x), eager(model, x), atol=1e-5)
    # the deployment's own API key holds on Serve too (Ray's token is the dashboard's)
    r = httpx.post(f"{dep.url}/predict", json={"inputs": x.tolist()}, timeout=30)
    assert r.status_code == 401, r.text
    assert jupyter_ext.deployments().set_index("name").loc["t", "status"] == "running"
    dep.stop()
    assert dep.status == "stopped" and serve_state(dash)["applications"] == {}
