"""Training runs in real worker processes, driven in-process and through the magics."""

from __future__ import annotations

import inspect
import os
import re
import signal
import threading

import pytest
import tiny_models
from helpers import wait_for
from tiny_models import Locked, Tiny, loaders

import jupyter_ext
from jupyter_ext.store import Store, open_store
from jupyter_ext.training.payload import PayloadError
from jupyter_ext.training.trainer_args import TrainerArgError

pytestmark = pytest.mark.timeout(240)

# What a notebook cell defines: the same tiny models, but defined in the kernel's
# __main__, so they travel to the worker by value as notebook classes do.
MODEL_CELL = (
    inspect.getsource(tiny_models)
    + "\nNet = Tiny\ntrain_dataloaders, val_dataloaders = loaders()\n"
)


def test_run_succeeds_with_metrics_checkpoints_and_hparams(workspace):
    train_dl, val_dl = loaders()
    run = jupyter_ext.train(
        Tiny(lr=0.05), train_dataloaders=train_dl, val_dataloaders=val_dl,
        max_epochs=2, log_every_n_steps=1, name="ok", experiment="unit",
    )  # fmt: skip
    run.wait(timeout=180, raise_on_failure=True)
    assert run.status == "succeeded"
    m = run.metrics
    assert list(m.columns) == ["key", "step", "epoch", "time", "value"]
    assert (m.key == "train_loss").sum() == 16  # 8 steps x 2 epochs, logged every step
    assert (m.key == "val_loss").sum() == 2
    assert sorted(m[m.key == "train_loss"].step) == list(range(16))
    assert run.progress == {
        "epoch": 1,
        "step": 16,
        "total_steps": 16,
        "fraction": 1.0,
        "eta_s": None,
    }
    assert run.hparams == {
        "lr": 0.05,
        "step_delay": 0.0,
        "fail_at": None,
        "hold_at": None,
        "hold_file": None,
    }
    assert "val_loss=" in os.path.basename(run.best_checkpoint)
    assert os.path.exists(run.last_checkpoint)
    model = run.load_model()
    assert isinstance(model, Tiny) and not model.training
    df = jupyter_ext.runs(experiment="unit")
    assert df.loc[0, "status"] == "succeeded" and df.loc[0, "name"] == "ok"
    assert set(df.loc[0, "metrics"]) == {"train_loss", "val_loss", "val_acc"}
    assert "Trainer.fit" in run.logs() or "max_epochs=2" in run.logs()


def test_failing_training_step_gives_failed_with_traceback(workspace):
    train_dl, _ = loaders()
    run = jupyter_ext.train(
        Tiny(fail_at=3), train_dataloaders=train_dl, max_epochs=1, log_every_n_steps=1
    )
    assert run.wait(timeout=180).status == "failed"
    assert "Traceback" in run.error and "ValueError: boom at step 3" in run.error
    assert "training_step" in run.error
    # metrics logged before the failure are kept
    assert (run.metrics.key == "train_loss").sum() == 3
    with pytest.raises(jupyter_ext.training.run.RunFailed, match="boom"):
        run.wait(raise_on_failure=True)


def test_refusals_launch_nothing(workspace):
    train_dl, _ = loaders()
    with pytest.raises(TrainerArgError, match="Did you mean `max_epochs`"):
        jupyter_ext.train(Tiny(), train_dataloaders=train_dl, max_epoch=1)
    with pytest.raises(PayloadError, match=r"`model\.cache\['guard'\]`.*_thread\.lock"):
        jupyter_ext.train(Locked(), train_dataloaders=train_dl, max_epochs=1)
    with pytest.raises(TypeError, match="must be a lightning LightningModule"):
        jupyter_ext.train(object(), train_dataloaders=train_dl)
    with pytest.raises(ValueError, match="no training data"):
        jupyter_ext.train(Tiny())
    with pytest.raises(FileNotFoundError, match="is not a file"):
        jupyter_ext.train(Tiny(), train_dataloaders=train_dl, ckpt_path="nowhere.ckpt")
    assert open_store().list_runs() == []


def test_stop_is_graceful_and_keeps_a_checkpoint(workspace):
    train_dl, _ = loaders()
    run = jupyter_ext.train(
        Tiny(step_delay=0.05), train_dataloaders=train_dl, max_epochs=1000, log_every_n_steps=1
    )
    wait_for(lambda: (run.progress["step"] or 0) >= 3, timeout=120, what="a few steps")
    assert run.stop(timeout=60) == "stopped"
    assert run.error is None
    assert os.path.exists(run.last_checkpoint)
    assert run.load_model() is not None
    assert 3 <= run.progress["step"] < 8000

    # and goes on from where it stopped, as a new run in the same experiment
    stopped_at = run.progress["step"]
    more = run.resume(max_steps=stopped_at + 3)
    assert more.wait(timeout=180).status == "succeeded", more.error
    assert more.name == f"{run.name}-resumed" and more.experiment == run.experiment
    assert more.progress["step"] == stopped_at + 3
    assert more.metrics.step.min() >= stopped_at


def test_sigkilled_worker_becomes_lost_and_keeps_flushed_metrics(workspace):
    train_dl, _ = loaders()
    run = jupyter_ext.train(
        Tiny(step_delay=0.02), train_dataloaders=train_dl, max_epochs=1000, log_every_n_steps=1
    )
    # wait until some metrics are flushed to the store
    wait_for(lambda: len(run.metrics) >= 5, timeout=120, what="flushed metrics")
    flushed = len(run.metrics)
    os.kill(run.row.pid, signal.SIGKILL)
    wait_for(lambda: run.status == "lost", timeout=10, what="lost status")
    assert "ended without a word" in run.error
    assert len(run.metrics) >= flushed


def test_concurrent_runs_and_reader_never_see_lock_errors(workspace):
    train_dl, val_dl = loaders(n=512)
    runs = [
        jupyter_ext.train(
            Tiny(lr=lr),
            train_dataloaders=train_dl,
            val_dataloaders=val_dl,
            max_epochs=3,
            log_every_n_steps=1,
        )
        for lr in (0.1, 0.01)
    ]
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        store = Store(open_store().path)  # its own connection, as another kernel has
        after: dict[str, int] = {}
        while not stop.is_set():
            try:
                jupyter_ext.runs()
                for r in runs:
                    _, after[r.id] = store.read_metrics(r.id, after=after.get(r.id, 0))
            except BaseException as exc:  # any error is the failure
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        for r in runs:
            r.wait(timeout=200, raise_on_failure=True)
    finally:
        stop.set()
        t.join()
    assert errors == []
    for r in runs:
        assert (r.metrics.key == "train_loss").sum() == 48


def test_ddp_on_two_cpu_processes_records_metrics_once(workspace):
    train_dl, val_dl = loaders(n=256)
    run = jupyter_ext.train(
        Tiny(), train_dataloaders=train_dl, val_dataloaders=val_dl,
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, log_every_n_steps=1,
    )  # fmt: skip
    run.wait(timeout=200, raise_on_failure=True)
    m = run.metrics
    # 256 samples / 32 per batch / 2 ranks = 4 steps, each logged once (rank zero only)
    assert sorted(m[m.key == "train_loss"].step) == [0, 1, 2, 3]
    assert (m.key == "val_loss").sum() == 1
    assert run.row.devices == 2 and run.row.strategy == "ddp"


def test_train_magic_in_a_kernel_and_refusals(start_kernel):
    k = start_kernel()
    cell = k.run("%%train --max-epoch 1\nraise RuntimeError('the cell must not run')")
    assert "UsageError" in cell.text and "Did you mean `--max-epochs`?" in cell.text
    assert "the cell must not run" not in cell.text
    cell = k.run("%%train --max-epochs 1\nx = 1")
    assert "UsageError" in cell.text and "the cell defines no `model`" in cell.text
    cell = k.run(
        "%%train --max-epochs 1\n" + MODEL_CELL + "\nmodel = Net()\nmodel.lock = threading.Lock()"
    )
    assert "UsageError" in cell.text and "`model.lock`" in cell.text
    k.run("import jupyter_ext; assert len(jupyter_ext.runs()) == 0").ok()

    cell = k.run(
        "%%train --name magic --experiment kx --max-epochs 2 --log-every-n-steps 1\n"
        + MODEL_CELL
        + "\nmodel = Net(lr=0.2)"
    ).ok()
    bundle = cell.data[0]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "<Run magic" in bundle["text/plain"]
    k.run("run = jupyter_ext.get_run('magic'); run.wait(180, raise_on_failure=True)").ok()
    cell = k.run("df = %runs --experiment kx\nprint(df.status.tolist(), df.hparams[0]['lr'])").ok()
    assert cell.stdout.strip() == "['succeeded'] 0.2"
    cell = k.run("%runs --status nonsense")
    assert "UsageError" in cell.text and "unknown status" in cell.text
    cell = k.run("%monitor magix")
    assert "UsageError" in cell.text and "Did you mean: magic" in cell.text


def test_kernel_restart_then_monitor_reattaches(start_kernel):
    k1 = start_kernel()
    k1.run(
        "%%train --name long --max-epochs 1000 --log-every-n-steps 1\n"
        + MODEL_CELL
        + "\nmodel = Net(step_delay=0.05)"
    ).ok()
    k1.run("import jupyter_ext; r = jupyter_ext.get_run('long')").ok()
    k1.run(
        "from helpers import wait_for; wait_for(lambda: (r.progress['step'] or 0) >= 2, 120)"
    ).ok()
    k1.shutdown()  # the kernel dies; the run goes on in its own session

    k2 = start_kernel(load=False)
    loaded = k2.run("%load_ext jupyter_ext").ok()  # says in one line what is still going
    assert "1 run still going: long (running, step " in loaded.stdout
    assert "`%monitor NAME` re-attaches." in loaded.stdout
    cell = k2.run("df = %runs --status running\nprint(df.name.tolist())").ok()
    assert cell.stdout.strip() == "['long']"
    cell = k2.run("mon = %monitor long\nmon").ok()
    assert "application/vnd.jupyter.widget-view+json" in cell.data[0]
    k2.run(
        "m = mon.monitor(); from helpers import wait_for\n"
        "s0 = len(m.chart.data)\n"
        "wait_for(lambda: len(m.chart.data) > s0, 30, what='new points after re-attach')\n"
        "assert m.polling"
    ).ok()
    cell = k2.run("%stop long").ok()
    assert "long" in cell.stdout and "stopped" in cell.stdout
    k2.run("m.refresh(); assert not m.polling or m.run.status == 'stopped'").ok()


def test_name_used_twice_resolves_to_newest_and_says_so(workspace):
    store = open_store()
    old = store.create_run(name="twice", created=1.0, status="succeeded")
    new = store.create_run(name="twice", created=2.0, status="succeeded")
    with pytest.warns(
        UserWarning, match=rf"2 runs are named 'twice'; using the newest \({new.id}\)"
    ):
        assert jupyter_ext.get_run("twice").id == new.id
    assert jupyter_ext.get_run(old.id).id == old.id
    with pytest.raises(jupyter_ext.training.run.RunNotFound, match="Did you mean: twice"):
        jupyter_ext.get_run("twise")


@pytest.mark.gpu
def test_ddp_on_gpus_records_metrics_once(workspace):
    import torch

    n = min(torch.cuda.device_count(), 2)
    train_dl, _ = loaders(n=512)
    run = jupyter_ext.train(
        Tiny(), train_dataloaders=train_dl, accelerator="cuda", devices=n,
        strategy="ddp" if n > 1 else "auto", max_epochs=1, log_every_n_steps=1,
    )  # fmt: skip
    run.wait(timeout=300, raise_on_failure=True)
    steps = sorted(run.metrics.query("key == 'train_loss'").step)
    assert steps == list(range(512 // 32 // n))
    assert run.row.gpu_mem_mb is not None


def test_worker_elsewhere_is_lost_by_stale_heartbeat(workspace):
    import time

    store = open_store()
    far = store.create_run(
        name="far", status="running", host="another-host", pid=1, heartbeat=time.time() - 60
    )
    fresh = store.create_run(
        name="near", status="running", host="another-host", pid=1, heartbeat=time.time()
    )
    df = jupyter_ext.runs()
    status = dict(zip(df.name, df.status, strict=True))
    assert status == {"far": "lost", "near": "running"}
    assert re.search(r"no heartbeat for 6\d s", jupyter_ext.get_run(far.id).error)
    assert jupyter_ext.get_run(fresh.id).error is None


def test_users_own_logger_and_callbacks_work_beside_ours(workspace, tmp_path):
    from lightning.pytorch.loggers import CSVLogger
    from tiny_models import Marker

    train_dl, val_dl = loaders()
    marker = tmp_path / "marker.txt"
    run = jupyter_ext.train(
        Tiny(), train_dataloaders=train_dl, val_dataloaders=val_dl, max_epochs=1,
        log_every_n_steps=1, logger=CSVLogger(tmp_path / "csv", name="mine"),
        callbacks=[Marker(str(marker))],
    )  # fmt: skip
    run.wait(timeout=180, raise_on_failure=True)
    assert marker.read_text() == "8"
    csv = (tmp_path / "csv" / "mine" / "version_0" / "metrics.csv").read_text()
    assert "train_loss" in csv and "val_loss" in csv
    assert (run.metrics.key == "train_loss").sum() == 8  # ours recorded too


def test_ckpt_path_flag_passes_through_to_fit():
    from jupyter_ext.training.trainer_args import parse_flags

    assert parse_flags(["--ckpt-path", "last.ckpt", "--max-epochs", "2"]) == {
        "ckpt_path": "last.ckpt",
        "max_epochs": 2,
    }
