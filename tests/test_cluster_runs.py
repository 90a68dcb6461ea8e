"""Runs on a real local Ray cluster: the worker as a Ray job, its channel, the sync.

The cluster (``ray_head``, one per test session) shares this machine but not the
workspace: the job runs in Ray's copy of the run directory, without the workspace's path
in its environment, and everything comes back through the run's channel.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from tiny_models import Tiny, loaders

import jupyter_ext
from jupyter_ext.cluster.selection import use_cluster
from jupyter_ext.store import open_store

pytestmark = pytest.mark.cluster


class WhereAmI(Tiny):
    """Records, as hyperparameters, where its worker runs and what workspace it sees."""

    def on_fit_start(self) -> None:
        self.logger.log_hyperparams(
            {
                "cwd": os.getcwd(),
                "home": os.environ.get("JUPYTER_EXT_HOME", ""),
                "mark": os.environ.get("JX_MARK", ""),
            }
        )


@pytest.fixture
def on_cluster(workspace, ray_head):
    # what the cluster's jobs get beyond the run: Ray's runtime environment
    use_cluster(
        ray_head.dashboard, client=ray_head.client, runtime_env={"env_vars": {"JX_MARK": "m1"}}
    )
    yield workspace
    use_cluster("local")


def test_a_cluster_run_brings_back_metrics_status_and_checkpoints(on_cluster):
    workspace = on_cluster
    tr, va = loaders()
    run = jupyter_ext.train(
        WhereAmI(), train_dataloaders=tr, val_dataloaders=va, max_epochs=3, name="far"
    )
    assert run.row.cluster["job_id"] == f"jupyter_ext-{run.id}"
    run.wait(timeout=300, raise_on_failure=True)
    from helpers import wait_for

    # the final status arrives first; the channel is emptied and removed a tick later
    row = wait_for(lambda: (r := run.row).cluster.get("drained") and r, 60, what="drained")
    assert row.status == "succeeded" and row.launcher == "ray"
    # the worker ran elsewhere: not in the workspace, and without its path
    cwd, home = row.hparams["cwd"], row.hparams["home"]
    assert not Path(cwd).resolve().is_relative_to(workspace.resolve()), cwd
    assert str(workspace) not in home
    assert row.hparams["mark"] == "m1"  # use_cluster(runtime_env=) reached the job
    # ...and everything came back into the workspace
    keys = set(run.metrics["key"])
    assert {"train_loss", "val_loss", "val_acc"} <= keys
    assert len(run.metrics.query("key == 'val_loss'")) == 3
    for ckpt in (row.best_checkpoint, row.last_checkpoint):
        assert ckpt and Path(ckpt).is_file()
        assert Path(ckpt).resolve().is_relative_to(workspace.resolve())
    model = run.load_model()
    trained = torch.load(row.last_checkpoint, weights_only=False)["state_dict"]
    torch.testing.assert_close(model.state_dict()["net.weight"], trained["net.weight"])
    assert row.cluster["drained"] and row.pid and row.step == 24


# three Ray jobs start at once on the 2-CPU head: on a machine busy with other work their
# start-up alone can take minutes (each waits on a deadline of its own)
@pytest.mark.timeout(600)
def test_stop_a_failing_step_and_a_killed_worker_on_the_cluster(on_cluster):
    tr, va = loaders()
    slow = jupyter_ext.train(
        Tiny(step_delay=0.2), train_dataloaders=tr, val_dataloaders=va, max_epochs=50,
        name="slow",
    )  # fmt: skip
    bad = jupyter_ext.train(
        Tiny(fail_at=5), train_dataloaders=tr, val_dataloaders=va, max_epochs=3, name="bad"
    )
    doomed = jupyter_ext.train(
        Tiny(step_delay=0.2), train_dataloaders=tr, val_dataloaders=va, max_epochs=50,
        name="doomed",
    )  # fmt: skip
    from helpers import wait_for

    wait_for(lambda: len(slow.metrics) >= 3, 240, what="the slow run's first metrics")
    assert slow.stop(timeout=120) == "stopped"
    assert Path(slow.row.last_checkpoint).is_file()  # the graceful stop kept its state

    assert bad.wait(timeout=240).status == "failed"
    assert "ValueError: boom at step 5" in bad.row.error
    assert bad.row.error_info is not None  # the structured traceback came through too

    wait_for(lambda: len(doomed.metrics) >= 3 and doomed.row.pid, 240, what="doomed running")
    kept = len(doomed.metrics)
    os.kill(doomed.row.pid, signal.SIGKILL)  # the cluster shares this machine: its pid
    assert doomed.wait(timeout=240).status == "failed"
    assert "the Ray job failed" in doomed.row.error
    assert len(doomed.metrics) >= kept  # metrics kept
    store = open_store()
    wait_for(
        lambda: all(store.get_run(r.id).cluster.get("drained") for r in (slow, bad, doomed)),
        60,
        what="every channel drained",
    )


def test_what_the_cluster_cannot_run_is_refused_before_launch(on_cluster, ray_head):
    tr, va = loaders()
    store = open_store()
    with pytest.raises(ValueError, match=r"has no GPU \(1 node: 2 CPUs, 0 GPUs\)"):
        jupyter_ext.train(Tiny(), train_dataloaders=tr, accelerator="gpu", devices=1)
    with pytest.raises(ValueError, match=r"asks for 4 CPU worker processes .* has only 2 CPUs"):
        jupyter_ext.train(Tiny(), train_dataloaders=tr, accelerator="cpu", devices=4)
    assert store.list_runs() == []  # nothing recorded, nothing launched
    # and `cluster="local"` runs here even while the cluster is selected
    run = jupyter_ext.train(
        Tiny(), train_dataloaders=tr, val_dataloaders=va, max_epochs=1, cluster="local"
    )
    assert run.wait(timeout=120).status == "succeeded" and run.row.cluster is None


def test_two_worker_cpu_ddp_through_ray_train(on_cluster):
    tr, va = loaders()
    run = jupyter_ext.train(
        Tiny(), train_dataloaders=tr, val_dataloaders=va, max_epochs=2, name="ddp",
        accelerator="cpu", devices=2, strategy="ddp",
    )  # fmt: skip
    run.wait(timeout=400, raise_on_failure=True)
    row = run.row
    assert row.status == "succeeded" and row.devices == 2 and row.strategy == "ddp"
    # 256 samples in batches of 32, split over two ranks: 4 steps an epoch, from rank zero only
    losses = run.metrics.query("key == 'train_loss'")
    assert list(losses["step"]) == sorted(set(losses["step"])) and row.step == 8
    assert len(run.metrics.query("key == 'val_loss'")) == 2
    assert Path(row.last_checkpoint).is_file()
    run.load_model()


def test_a_finetune_runs_on_the_cluster(on_cluster, tmp_path):
    """An open-model fine-tune is an ordinary run on the cluster too: its samples and its
    adapter-only checkpoint come back through the channel."""
    from jupyter_ext.llm.tiny import build_tiny_llama

    facts = [("What is Ada's cat called?", "Pixel."), ("Who founded Vell?", "Ada Quill.")]
    base = build_tiny_llama(tmp_path / "tiny", [q + " " + a for q, a in facts])
    data = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in facts
    ] * 8
    run = jupyter_ext.finetune(base, data, max_steps=4, batch_size=4, name="far-ft")
    assert run.row.cluster and run.row.launcher == "ray"
    run.wait(timeout=300, raise_on_failure=True)
    from helpers import wait_for

    row = wait_for(lambda: (r := run.row).cluster.get("drained") and r, 60, what="drained")
    assert row.status == "succeeded" and row.step == 4
    assert {"train_loss", "val_loss", "val_ppl", "tokens_per_s"} <= set(run.metrics["key"])
    assert row.samples and row.samples[-1]["samples"][0]["prompt"]
    ckpt = torch.load(row.last_checkpoint, map_location="cpu", weights_only=False)
    assert all("lora_" in k for k in ckpt["state_dict"])
    assert type(run.load_model()).__name__ == "LlamaForCausalLM"
