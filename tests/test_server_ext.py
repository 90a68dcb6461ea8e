"""The Jupyter server extension: its REST API over real runs from real workers.

A real jupyter_server (pytest-jupyter's fixtures) with the extension enabled and
``allow_unauthenticated_access=False``; runs are tiny Lightning runs in worker processes,
a deployment is a real local server. The tests are synchronous: each request runs the
server's event loop until it is answered, so waiting on a worker (``wait_for``) never
needs the loop.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_jupyter.jupyter_server as _jupyter_server_plugin
import torch
from helpers import wait_for
from tiny_models import Tiny, loaders
from torch import nn
from traitlets.config import Config

import jupyter_ext
from jupyter_ext.config import get_config
from jupyter_ext.procs import group_members, stop_group
from jupyter_ext.server.handlers import routes
from jupyter_ext.store import Store, open_store

pytestmark = pytest.mark.timeout(240)

# pytest-jupyter's fixtures (jp_fetch, jp_serverapp, ... and their autouse event loop and
# server cleanup), for this module only. `pytest_plugins = [...]` here would register the
# plugin for the whole session: its autouse fixtures and its test-call hook would then
# apply to every test collected after this one.
globals().update(
    {
        name: value
        for name, value in vars(_jupyter_server_plugin).items()
        if name.startswith(("jp_", "http_server", "echo_kernel"))
    }
)


@pytest.fixture
def jp_asyncio_loop():
    """A fresh event loop for each test (pytest-jupyter's would reuse the thread's current
    loop, which the browser tests' Playwright leaves marked as running)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(asyncio.new_event_loop())  # later tests find a usable loop


ENDPOINTS = [
    ("GET", "info"),
    ("GET", "runs"),
    ("GET", "runs/RUN"),
    ("GET", "runs/RUN/metrics"),
    ("GET", "runs/RUN/logs"),
    ("POST", "runs/RUN/stop"),
    ("GET", "deployments"),
    ("DELETE", "deployments/NAME"),
    ("GET", "accelerators"),
]


def server_config(**sections: dict[str, Any]) -> Config:
    """The extension enabled, every request authenticated, plus ``sections``."""
    config = {
        "ServerApp": {
            # terminals off: pytest-jupyter adds them otherwise, and they warn on load
            "jpserver_extensions": {"jupyter_ext.server": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        # exact `since` answers here; the overlap has a test of its own
        "JupyterExtServer": {"since_overlap_s": 0.0},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return Config(config)


@pytest.fixture
def jp_server_config(workspace: Path) -> Config:
    # Depends on `workspace`, so the server starts with JUPYTER_EXT_HOME already set.
    return server_config()


def _strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"answer is not valid JSON: it contains {name}")

    return json.loads(body, parse_constant=refuse)


Api = Callable[..., tuple[int, Any]]


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop) -> Api:
    """``api("runs", params=..., method=..., headers=...)`` -> (status code, parsed JSON)."""

    def call(
        path: str,
        *,
        method: str = "GET",
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        full: bool = False,
    ) -> Any:
        body = "" if method in ("POST", "PUT", "PATCH") else None
        response = jp_asyncio_loop.run_until_complete(
            jp_fetch(
                "jupyter-ext", "api", *path.split("/"),
                method=method, params=params, headers=headers, body=body, raise_error=False,
            )
        )  # fmt: skip
        assert response.headers["Content-Type"].startswith("application/json"), response.body
        parsed = _strict_json(response.body)
        return (response.code, parsed, response) if full else (response.code, parsed)

    return call


def names(page: dict[str, Any]) -> list[str]:
    return [r["name"] for r in page["runs"]]


def assert_400(api: Api, path: str, parameter: str, **params: Any) -> str:
    code, body = api(path, params=params)
    assert code == 400, body
    assert parameter in body["error"] and body["parameter"] == parameter, body
    return body["error"]


def test_every_endpoint_needs_the_token_and_posts_need_xsrf(api, jp_serverapp, jp_base_url):
    app = jp_serverapp.web_app
    assert jp_serverapp.extension_manager.extensions["jupyter_ext.server"].enabled
    for pattern, handler in routes(jp_base_url):
        assert app._check_handler_auth(pattern, handler) == [], handler  # all authenticated

    # with the token every endpoint answers JSON (unknown ids: 404, never 403)
    expected = {"info": 200, "runs": 200, "deployments": 200, "accelerators": 200}
    for method, path in ENDPOINTS:
        code, body = api(path.replace("RUN", "nope").replace("NAME", "nope"), method=method)
        assert code == expected.get(path, 404), (method, path, body)
        assert code == 200 or "'nope'" in body["error"], body
    code, body = api("nothing/here")
    assert code == 404 and "there are: GET runs" in body["error"]

    # without it, every endpoint is refused, as JSON
    anonymous = {"Authorization": ""}
    for method, path in ENDPOINTS:
        code, body = api(path, method=method, headers=anonymous)
        assert code == 403, (method, path, body)
        # GETs: not authenticated; POST/DELETE are stopped even earlier, by the XSRF check
        assert body["error"] in ("Forbidden", "'_xsrf' argument missing from POST"), body

    # a login cookie authenticates, but a POST with it alone lacks the XSRF token
    _, _, response = api("info", full=True)
    (cookie,) = [
        c.split(";")[0]
        for c in response.headers.get_list("Set-Cookie")
        if c.startswith("username-")
    ]
    code, body = api("info", headers={**anonymous, "Cookie": cookie})
    assert code == 200, body
    code, body = api("runs/nope/stop", method="POST", headers={**anonymous, "Cookie": cookie})
    assert code == 403 and "_xsrf" in body["error"], body
    with_xsrf = {**anonymous, "Cookie": f"{cookie}; _xsrf=c0ffee", "X-XSRFToken": "c0ffee"}
    code, body = api("runs/nope/stop", method="POST", headers=with_xsrf)
    assert code == 404, body  # past the XSRF check: the run is unknown


def test_accelerators_and_info(api, workspace):
    code, body = api("accelerators")
    assert code == 200
    (cpu,) = [row for row in body["accelerators"] if row["accelerator"] == "cpu"]
    assert cpu["available"] is True and cpu["index"] == 0
    assert cpu["memory_total_mb"] > cpu["memory_used_mb"] > 0
    assert set(cpu) == {"accelerator", "index", "name", "available", "memory_total_mb",
                        "memory_used_mb", "utilization_pct", "note"}  # fmt: skip
    code, body = api("info")
    assert code == 200 and body["version"] == jupyter_ext.__version__
    assert Path(body["home"]) == workspace


def test_runs_listing_filters_pages_changes_and_details(api, workspace):
    train_dl, val_dl = loaders()
    a = jupyter_ext.train(
        Tiny(lr=0.05), train_dataloaders=train_dl, val_dataloaders=val_dl,
        max_epochs=2, log_every_n_steps=1, name="a", experiment="e1",
    )  # fmt: skip
    b = jupyter_ext.train(
        Tiny(fail_at=3), train_dataloaders=train_dl, max_epochs=1, log_every_n_steps=1,
        name="b", experiment="e2",
    )  # fmt: skip
    assert a.wait(timeout=180).status == "succeeded", a.error
    assert b.wait(timeout=180).status == "failed"

    code, page = api("runs")
    assert code == 200 and names(page) == ["b", "a"] and page["next"] is None
    item_b, item_a = page["runs"]
    assert set(item_a) == {
        "id", "name", "experiment", "status", "progress", "created", "started", "ended",
        "updated", "duration_s", "accelerator", "devices", "hparams", "launcher", "pid",
        "host", "metrics", "error_line", "position", "colors",
    }  # fmt: skip
    assert item_a["colors"]["val_loss"] == "#1f77b4"  # the monitor's colours, one per metric
    assert item_a["position"] == "epoch 2/2 · step 16/16"  # epochs from 1, as people count
    assert item_a["id"] == a.id and item_a["status"] == "succeeded"
    assert item_a["progress"] == {"epoch": 1, "step": 16, "total_steps": 16, "fraction": 1.0,
                                  "eta_s": None}  # fmt: skip
    assert set(item_a["metrics"]) == {"train_loss", "val_loss", "val_acc"}
    assert item_a["hparams"] == {
        "lr": 0.05,
        "step_delay": 0.0,
        "fail_at": None,
        "hold_at": None,
        "hold_file": None,
    }
    assert item_a["accelerator"] == "cpu" and item_a["error_line"] is None
    assert item_a["created"] < item_a["started"] < item_a["ended"] and item_a["duration_s"] > 0
    assert item_b["status"] == "failed" and item_b["error_line"] == "ValueError: boom at step 3"

    # filters
    assert names(api("runs", params={"experiment": "e1"})[1]) == ["a"]
    assert names(api("runs", params={"status": "failed"})[1]) == ["b"]
    assert names(api("runs", params={"status": "succeeded,failed"})[1]) == ["b", "a"]
    assert names(api("runs", params={"status": "running"})[1]) == []
    message = assert_400(api, "runs", "status", status="bogus")
    assert "queued, running, succeeded, failed, stopped, lost" in message

    # pages: newest first, `next` is the `before` of the next page
    code, first = api("runs", params={"limit": 1})
    assert names(first) == ["b"] and first["next"] == b.id
    code, second = api("runs", params={"limit": 1, "before": first["next"]})
    assert names(second) == ["a"] and second["next"] is None
    assert "from 1 to 1000" in assert_400(api, "runs", "limit", limit=0)
    assert_400(api, "runs", "limit", limit=1001)
    assert_400(api, "runs", "limit", limit="ten")
    assert "`next`" in assert_400(api, "runs", "before", before="no-such-run")
    assert "Unix time" in assert_400(api, "runs", "since", since="yesterday")
    assert "limit" in assert_400(api, "runs", "limt", limt=5)  # a typo is named, not ignored
    # JupyterLab's ServerConnection appends a bare timestamp to every GET to bust caches
    assert api("runs", params={"1764660000000": ""})[0] == 200

    # `since`: only runs changed after an earlier answer's `now`
    assert names(api("runs", params={"since": page["now"]})[1]) == []
    c = jupyter_ext.train(
        Tiny(), train_dataloaders=train_dl, max_epochs=1, name="c", experiment="e1"
    )
    assert c.wait(timeout=180).status == "succeeded", c.error
    assert names(api("runs", params={"since": page["now"]})[1]) == ["c"]
    assert names(api("runs", params={"experiment": "e1", "limit": 5})[1]) == ["c", "a"]

    # one run in detail
    code, detail = api(f"runs/{a.id}")
    assert code == 200 and {k: detail[k] for k in item_a if k != "duration_s"} == {
        k: v for k, v in item_a.items() if k != "duration_s"
    }
    assert detail["metric_keys"] == ["train_loss", "val_acc", "val_loss"]
    assert detail["log_every_n_steps"] == 1 and detail["log_every_chosen"] is False
    assert os.path.exists(detail["best_checkpoint"]) and os.path.exists(detail["last_checkpoint"])
    assert detail["error"] is None and detail["stop_requested"] is False
    code, detail = api(f"runs/{b.id}")
    assert detail["error"].startswith("Traceback")
    assert "ValueError: boom at step 3" in detail["error"]

    # metrics: everything, then nothing new after `last`
    code, m = api(f"runs/{a.id}/metrics")
    assert code == 200 and m["status"] == "succeeded" and m["after"] == 0 and m["last"] > 0
    assert set(m["metrics"]) == {"train_loss", "val_loss", "val_acc"}
    loss = m["metrics"]["train_loss"]
    assert loss["step"] == list(range(16)) and loss["n"] == 16 and not loss["downsampled"]
    assert len(loss["epoch"]) == len(loss["time"]) == len(loss["value"]) == 16
    assert m["metrics"]["val_loss"]["epoch"] == [0, 1]
    code, again = api(f"runs/{a.id}/metrics", params={"after": m["last"]})
    assert again["last"] == m["last"] and again["metrics"] == {}
    # at most max_points per key, the extremes kept
    code, few = api(f"runs/{a.id}/metrics", params={"keys": "train_loss", "max_points": 4})
    small = few["metrics"]["train_loss"]
    assert small["downsampled"] and small["n"] == 16 and len(small["value"]) <= 4
    assert max(small["value"]) == max(loss["value"]) and min(small["value"]) == min(loss["value"])
    # NaN and inf (e.g. from imported logs) stay valid JSON: null, and counted
    t = detail["ended"]
    open_store().add_metrics(a.id, [("odd", 16, 1, t, math.nan), ("odd", 17, 1, t, -math.inf),
                                     ("odd", 18, 1, t, 0.5)])  # fmt: skip
    code, odd = api(f"runs/{a.id}/metrics", params={"keys": "odd,absent", "after": m["last"]})
    assert odd["metrics"]["odd"]["value"] == [None, None, 0.5]
    assert odd["metrics"]["odd"]["nonfinite"] == 2 and odd["metrics"]["odd"]["step"] == [16, 17, 18]
    assert odd["metrics"]["absent"] == {"step": [], "epoch": [], "time": [], "value": [], "n": 0,
                                        "nonfinite": 0, "downsampled": False}  # fmt: skip
    code, page = api("runs", params={"limit": 1, "before": b.id})
    assert page["runs"][0]["metrics"]["odd"] == 0.5
    assert_400(api, f"runs/{a.id}/metrics", "after", after=-1)
    assert "`last`" in assert_400(api, f"runs/{a.id}/metrics", "after", after="x")
    assert ">= 4" in assert_400(api, f"runs/{a.id}/metrics", "max_points", max_points=3)
    assert_400(api, f"runs/{a.id}/metrics", "keys", keys=",")

    # logs
    code, logs = api(f"runs/{b.id}/logs", params={"tail": 3})
    assert code == 200 and logs["status"] == "failed" and logs["tail"] == 3
    assert 0 < len(logs["text"].splitlines()) <= 3
    code, logs = api(f"runs/{b.id}/logs", params={"tail": 10_000})
    assert "ValueError: boom at step 3" in logs["text"]
    # Lightning's promotional tips are left out, as in the monitor (the file keeps them).
    assert "Tip:" in (Path(b.row.run_dir) / "worker.log").read_text()
    assert "GPU available" in logs["text"] and "Tip:" not in logs["text"]
    assert_400(api, f"runs/{b.id}/logs", "tail", tail=-1)

    # a finished run cannot be stopped
    code, body = api(f"runs/{a.id}/stop", method="POST")
    assert code == 409 and body["status"] == "succeeded" and "already ended" in body["error"]


def test_metrics_paging_logs_and_stop_of_a_running_run(api, workspace):
    train_dl, _ = loaders()
    run = jupyter_ext.train(
        Tiny(step_delay=0.05), train_dataloaders=train_dl, max_epochs=1000, log_every_n_steps=1,
        name="long",
    )  # fmt: skip
    try:
        wait_for(lambda: (run.progress["step"] or 0) >= 10, timeout=120, what="ten steps")
        path = f"runs/{run.id}/metrics"
        code, first = api(path, params={"keys": "train_loss"})
        assert code == 200 and first["status"] == "running"
        seen = first["metrics"]["train_loss"]["step"]
        assert len(seen) >= 5

        # `after` returns only points newer than the last answer's
        def newer() -> dict[str, Any] | None:
            _, m = api(path, params={"keys": "train_loss", "after": first["last"]})
            return m if m["metrics"]["train_loss"]["step"] else None

        second = wait_for(newer, timeout=60, what="new metric points")
        assert second["last"] > first["last"]
        assert min(second["metrics"]["train_loss"]["step"]) > max(seen)

        code, logs = api(f"runs/{run.id}/logs")
        assert code == 200 and logs["status"] == "running" and logs["tail"] == 100

        code, detail = api(f"runs/{run.id}")
        assert detail["status"] == "running" and detail["pid"] == run.pid
        assert detail["progress"]["total_steps"] and detail["heartbeat"] is not None

        # a graceful stop: 202 at once, then the worker ends the run as stopped
        code, body = api(f"runs/{run.id}/stop", method="POST")
        assert code == 202, body
        assert body["id"] == run.id and body["name"] == "long" and body["stop_requested"]
        assert body["status"] in ("running", "stopped")  # the worker sees it within a second
        wait_for(lambda: run.status == "stopped", timeout=120, what="the run to stop")
        code, detail = api(f"runs/{run.id}")
        assert detail["status"] == "stopped" and detail["stop_requested"] is True
        assert os.path.exists(detail["last_checkpoint"]) and detail["error"] is None
        code, body = api(f"runs/{run.id}/stop", method="POST")
        assert code == 409 and body["status"] == "stopped" and body["id"] == run.id
        code, page = api("runs", params={"status": "stopped"})
        assert [r["id"] for r in page["runs"]] == [run.id]
    finally:
        if not run.done:
            run.stop(timeout=30)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
        self.example_input_array = torch.randn(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_deployments_listed_and_stopped(api, workspace):
    dep = jupyter_ext.deploy(MLP(), name="mlp", format="onnx", verbose=False)
    try:
        code, body = api("deployments")
        assert code == 200
        (item,) = body["deployments"]
        assert item["name"] == "mlp" and item["status"] == "running" and item["url"] == dep.url
        assert item["format"] == "onnx" and item["target"] == "local" and item["pid"] == dep.pid
        assert item["api_key_required"] is False and "info" not in item

        code, body = api("deployments/mlp", method="DELETE")
        assert code == 200 and body["name"] == "mlp" and body["status"] == "stopped", body
        assert group_members(dep.pid) == []  # the server's whole process group is gone
        assert [d["status"] for d in api("deployments")[1]["deployments"]] == ["stopped"]

        code, body = api("deployments/nope", method="DELETE")
        assert code == 404 and "'nope'" in body["error"] and "mlp" in body["error"]
    finally:
        for record in open_store().list_deployments():
            if record.pid:
                stop_group(record.pid, record.pid_started)


class TestServerConfiguration:
    """Options from the server's own configuration (jupyter_server_config.py, CLI)."""

    @pytest.fixture
    def jp_server_config(self, workspace: Path, tmp_path: Path) -> Config:
        return server_config(
            JupyterExtServer={"home": str(tmp_path / "elsewhere"), "since_overlap_s": 5.0},
            ToolkitConfig={"lost_after_s": 3.0},
        )

    def test_home_overlap_and_toolkit_options(self, api, tmp_path):
        home = tmp_path / "elsewhere"
        # the server reads that workspace, and the kernels it starts inherit it
        assert get_config().home_path == home and os.environ["JUPYTER_EXT_HOME"] == str(home)
        assert get_config().lost_after_s == 3.0
        store = Store(home / "store.sqlite")
        record = store.create_run(name="there", status="succeeded", ended=1.0)
        code, page = api("runs")
        assert code == 200 and names(page) == ["there"]
        assert Path(api("info")[1]["home"]) == home
        # `since` overlaps by since_overlap_s: a write stamped just before it still shows
        assert names(api("runs", params={"since": record.updated + 4.0})[1]) == ["there"]
        assert names(api("runs", params={"since": record.updated + 6.0})[1]) == []
        store.close()
