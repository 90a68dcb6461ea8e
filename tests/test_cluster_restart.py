"""A kernel restart in the middle of a cluster run: the new kernel re-attaches.

Only a process that made a ``Run`` of a cluster run drains its channel into the store (the
sync thread, :mod:`jupyter_ext.cluster.sync`). The kernel that launched the run dies in
the restart, so until the new kernel looks at the run again (``%monitor``) the run's
channel on the cluster keeps what the worker sends; then everything, checkpoints included,
reaches the store. This test process reads the store only through ``Store``: a ``Run``
here would start a sync of its own and re-attach in the kernel's place.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import tiny_models
from helpers import wait_for
from jupyter_core.utils import run_sync

from jupyter_ext.store import open_store

pytestmark = pytest.mark.cluster

# the model is defined in the cell, as in a notebook: it travels to the cluster by value
MODEL_CELL = inspect.getsource(tiny_models) + "\ntrain_dataloaders, val_dataloaders = loaders()\n"


def _points(store, run_id: str) -> int:
    series, _ = store.read_metrics(run_id)
    return sum(len(s.step) for s in series.values())


@pytest.mark.timeout(420)
def test_a_kernel_restart_mid_run_reattaches_and_the_run_completes(
    start_kernel, ray_head, workspace
):
    k = start_kernel()
    k.run(f"%cluster {ray_head.dashboard} --client {ray_head.client}").ok()
    # 8 steps an epoch, 10 epochs; held at step 40 until the test has restarted the kernel
    # and re-attached, however long that takes on a busy machine
    go = workspace.parent / "go"
    k.run(
        "%%train --name far --max-epochs 10 --log-every-n-steps 1\n"
        + MODEL_CELL
        + f"model = Tiny(step_delay=0.05, hold_at=40, hold_file={str(go)!r})"
    ).ok()
    store = open_store()
    (row,) = store.list_runs()
    assert row.cluster and row.launcher == "ray"
    wait_for(lambda: _points(store, row.id) >= 3, 240, what="the run's first metrics")

    km = k.client.km
    old_pid = km.provisioner.process.pid
    # nbclient's manager and client are the async ones
    run_sync(km.restart_kernel)(now=True)  # the kernel process is killed, a new one started
    run_sync(k.client.kc.wait_for_ready)(timeout=120)
    assert km.provisioner.process.pid != old_pid
    # nothing drains the channel now: the store stays as the old kernel left it
    before = store.get_run(row.id)
    assert before.status == "running", before.status
    seen = _points(store, row.id)

    loaded = k.run("%load_ext jupyter_ext").ok()
    assert "1 run still going: far (running" in loaded.stdout
    cell = k.run("mon = %monitor far\nmon").ok()
    assert "application/vnd.jupyter.widget-view+json" in cell.data[0]

    go.touch()  # the run goes on
    # the new kernel's sync drains the channel: what the worker sent meanwhile, then the rest
    wait_for(lambda: _points(store, row.id) > seen, 60, what="metrics drained by the new kernel")
    # the end: the final status, then the channel emptied and removed (a tick later)
    wait_for(
        lambda: (r := store.get_run(row.id)).status not in ("queued", "running")
        and (r.cluster or {}).get("drained"),
        240, what="the run to end and its channel to be drained",
    )  # fmt: skip
    done = store.get_run(row.id)
    assert done.status == "succeeded", done.error
    assert done.step == 80 and done.cluster["drained"]
    series, _ = store.read_metrics(row.id, keys=["train_loss", "val_loss"])
    assert len(series["train_loss"].step) == 80  # every step, none twice
    assert len(series["val_loss"].step) == 10
    for ckpt in (done.best_checkpoint, done.last_checkpoint):
        assert ckpt and Path(ckpt).is_file()
        assert Path(ckpt).resolve().is_relative_to(workspace.resolve())
    # the new kernel's Run sees it as the store does, and its best weights load there
    cell = k.run(
        "import jupyter_ext\n"
        "r = jupyter_ext.get_run('far')\n"
        "print(r.status, type(r.load_model()).__name__)"
    ).ok()
    assert cell.stdout.strip() == "succeeded Tiny"
