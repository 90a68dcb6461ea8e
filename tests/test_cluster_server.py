"""The Jupyter server keeps cluster runs current when no kernel holds them.

Runs are launched on the session's local Ray head (``ray_head``) by a separate Python
process that exits right after launching (a kernel that went away). Only the Jupyter
server (pytest-jupyter's, in this process, with the extension enabled) is left for the
workspace: its cluster watch starts the sync, which brings metrics, status and
checkpoints in, and forwards the sidebar's Stop. The test reads the store and the REST
API only: it makes no ``Run`` object, which would start a sync of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_jupyter.jupyter_server as _jupyter_server_plugin
import test_server_ext
from helpers import wait_for

from jupyter_ext.cluster import sync as cluster_sync
from jupyter_ext.store import open_store

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

# pytest-jupyter's fixtures for this module only (see test_server_ext.py for why not
# `pytest_plugins`)
globals().update(
    {
        name: value
        for name, value in vars(_jupyter_server_plugin).items()
        if name.startswith(("jp_", "http_server", "echo_kernel"))
    }
)

api = test_server_ext.api  # the fixture: api(path, method=...) -> (status, JSON)

# A kernel that launches and goes away: it selects the cluster, starts the runs, prints
# their ids and exits without waiting for them (its own sync thread dies with it).
LAUNCH_AND_LEAVE = """
import sys
import jupyter_ext
from jupyter_ext.cluster.selection import use_cluster
from tiny_models import Tiny, loaders

use_cluster(sys.argv[1], client=sys.argv[2])
tr, va = loaders()
for name, delay, epochs in (("done", 0.1, 4), ("halted", 0.2, 50)):
    run = jupyter_ext.train(
        Tiny(step_delay=delay), train_dataloaders=tr, val_dataloaders=va,
        max_epochs=epochs, name=name,
    )
    print(run.id, flush=True)
"""


@pytest.fixture
def jp_asyncio_loop():
    """A fresh event loop for each test (as in test_server_ext.py)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture
def jp_server_config(workspace: Path):
    # the watch looks often, so the test does not wait on its interval
    return test_server_ext.server_config(JupyterExtServer={"cluster_check_s": 0.5})


def metric_count(api: Any, run_id: str) -> int:
    """How many metric points the server's API has for the run (what the sidebar sees)."""
    code, body = api(f"runs/{run_id}/metrics")
    assert code == 200, body
    return sum(series["n"] for series in body["metrics"].values())


def test_the_server_alone_keeps_cluster_runs_current_and_stops_them(
    api, jp_web_app, workspace, ray_head
):
    watch = jp_web_app.settings["jupyter_ext_cluster_watch"]
    assert watch.is_alive() and watch.check() is None  # nothing to bring in yet

    launched = subprocess.run(
        [sys.executable, "-c", LAUNCH_AND_LEAVE, ray_head.dashboard, ray_head.client],
        env={**os.environ, "JUPYTER_EXT_HOME": str(workspace)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    done_id, halted_id = launched.stdout.split()
    store = open_store()
    assert {r.id for r in cluster_sync.pending_runs(store)} == {done_id, halted_id}

    # the launching process is gone; the server's watch starts the sync that drains them
    sync = wait_for(lambda: watch.sync, timeout=30, what="the server's cluster sync")
    assert sync.is_alive() and cluster_sync._sync is sync

    # metrics keep arriving while only the server is there
    first = wait_for(lambda: metric_count(api, halted_id) >= 3 and metric_count(api, halted_id),
                     timeout=240, what="the halted run's first metrics")  # fmt: skip
    wait_for(lambda: metric_count(api, halted_id) > first, timeout=60, what="more metrics")
    code, detail = api(f"runs/{halted_id}")
    assert code == 200 and detail["status"] == "running", detail

    # the sidebar's Stop: stop_requested in the store, which the sync forwards to the worker
    code, body = api(f"runs/{halted_id}/stop", method="POST")
    assert code == 202 and body["stop_requested"], body
    wait_for(lambda: store.get_run(halted_id).status == "stopped", timeout=120,
             what="the halted run to stop gracefully")  # fmt: skip

    wait_for(lambda: store.get_run(done_id).status not in ("queued", "running"), timeout=240,
             what="the first run to end")  # fmt: skip
    for run_id, status in ((done_id, "succeeded"), (halted_id, "stopped")):
        row = wait_for(lambda rid=run_id: store.get_run(rid).cluster.get("drained")
                       and store.get_run(rid), timeout=60, what="the channel drained")  # fmt: skip
        assert row.status == status, (row.status, row.error)
        assert row.launcher == "ray" and row.error is None
        checkpoints = [row.last_checkpoint] + (
            [row.best_checkpoint] if status == "succeeded" else []
        )
        for ckpt in checkpoints:
            assert ckpt and Path(ckpt).is_file(), ckpt
            assert Path(ckpt).resolve().is_relative_to(workspace.resolve())
    done = store.get_run(done_id)
    assert done.step == done.total_steps == 32
    code, m = api(f"runs/{done_id}/metrics")
    assert len(m["metrics"]["val_loss"]["step"]) == 4  # every epoch's validation came in
    code, detail = api(f"runs/{halted_id}")
    assert detail["stop_requested"] is True and detail["status"] == "stopped"
    assert store.get_run(halted_id).step < 50 * 8  # stopped well before its end

    # nothing left to bring in: the watch leaves the sync be, and the channels are removed
    assert cluster_sync.pending_runs(store) == [] and watch.check() is None


def test_without_ray_the_server_answers_as_before(api, jp_web_app, workspace, monkeypatch):
    # a cluster run recorded (as a kernel with Ray would), in a server that cannot import Ray
    store = open_store()
    fields = {"dashboard": "http://127.0.0.1:1", "client": "ray://127.0.0.1:2",
              "job_id": "jupyter_ext-x", "channel": "jupyter_ext-run-x", "acked": 0}  # fmt: skip
    row = store.create_run(name="far", status="running", cluster=fields)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without Ray
    watch = jp_web_app.settings["jupyter_ext_cluster_watch"]
    assert watch.check() is None and watch.sync is None
    code, page = api("runs")
    assert code == 200 and [r["name"] for r in page["runs"]] == ["far"]
    assert api(f"runs/{row.id}")[1]["status"] == "running"
