"""The gaps a new user hit: short runs with no training curve, a stale `model` trained by a
cell that did not define it, colliding run ids, and workers that all look alike in `ps`."""

from __future__ import annotations

import re
import socket

import psutil
import pytest
from helpers import wait_for
from test_training import MODEL_CELL
from tiny_models import Tiny, loaders

import jupyter_ext
from jupyter_ext.config import get_config
from jupyter_ext.store import new_id, open_store
from jupyter_ext.training.launchers import get_launcher
from jupyter_ext.widgets.monitor import RunMonitor

pytestmark = pytest.mark.timeout(300)


# -- 1. every self.log metric appears, for runs of any length ------------------------------
def test_short_run_logs_every_step_and_the_monitor_says_the_interval_was_chosen(workspace):
    train_dl, val_dl = loaders()  # 8 steps an epoch: 32 steps, fewer than Lightning's 50
    auto = jupyter_ext.train(
        Tiny(), train_dataloaders=train_dl, val_dataloaders=val_dl, max_epochs=4, name="auto"
    )
    own = jupyter_ext.train(
        Tiny(), train_dataloaders=train_dl, val_dataloaders=val_dl, max_epochs=4,
        log_every_n_steps=4, name="own",
    )  # fmt: skip
    auto.wait(timeout=180, raise_on_failure=True)
    own.wait(timeout=180, raise_on_failure=True)

    m = auto.metrics
    assert sorted(m[m.key == "train_loss"].step) == list(range(32))
    assert (auto.row.log_every_n_steps, auto.row.log_every_chosen) == (1, 1)
    # the user's interval is kept, and said to be theirs
    assert (own.metrics.key == "train_loss").sum() == 8
    assert (own.row.log_every_n_steps, own.row.log_every_chosen) == (4, 0)
    # no "fewer batches than the logging interval" advice in a run whose interval we chose
    assert "log_every_n_steps" not in auto.logs(tail=None)

    mon, mon_own = RunMonitor(auto), RunMonitor(own)
    try:
        assert "on-step metrics every 1 step (chosen for this 32-step run" in mon.header.value
        assert "&lt;" not in mon.header.value  # markup, not escaped markup
        assert "on-step metrics every 4 steps (log_every_n_steps)" in mon_own.header.value
        assert "train_loss" in mon.table.value
    finally:
        mon.close()
        mon_own.close()


# -- 2. the model comes from the cell, or is named on purpose ------------------------------
def test_train_cell_that_assigns_no_model_launches_nothing_and_says_how(start_kernel):
    k = start_kernel()
    k.run(MODEL_CELL + "\nmodel = Net()").ok()  # an earlier cell's model and loaders

    stale = k.run("%%train --max-epochs 1\nx = 1")
    assert "UsageError" in stale.text
    assert "the cell does not assign `model`" in stale.text
    assert "pass --model model to use that one on purpose" in stale.text
    assert jupyter_ext.runs().empty  # nothing launched, nothing recorded

    missing = k.run("%%train --max-epochs 1 --model nosuch\nx = 2")
    assert "--model nosuch: no variable `nosuch`" in missing.text
    assert jupyter_ext.runs().empty

    # Named on purpose: the model is used; loaders left from the earlier cell are not,
    # and the magic says so before Lightning's refusal of a model without data.
    no_data = k.run("%%train --max-epochs 1 --model model\n# the model of the cell above")
    assert "note: `train_dataloaders` from an earlier cell is not used" in no_data.text
    assert "no training data" in no_data.text
    assert jupyter_ext.runs().empty

    k.run(
        "%%train --name reused --max-epochs 1 --model model "
        "--train-dataloaders train_dataloaders --val-dataloaders val_dataloaders\n# as above"
    ).ok()
    # a cell that assigns its own model needs no flag
    k.run("%%train --name fresh --max-epochs 1\nmodel = Net(lr=0.2)\n"
          "train_dataloaders, val_dataloaders = loaders()").ok()  # fmt: skip
    for name in ("reused", "fresh"):
        assert jupyter_ext.get_run(name).wait(timeout=180).status == "succeeded"
    assert jupyter_ext.get_run("fresh").hparams["lr"] == 0.2


# -- 3. ids are unique at any rate ---------------------------------------------------------
def test_ids_made_in_a_burst_are_unique_and_time_ordered(workspace):
    store = open_store()
    made = [store.create_run(name="burst", status="succeeded").id for _ in range(3000)]
    assert len(set(made)) == len(made)
    # time-ordered to the millisecond: the date-time-ms prefix never goes back
    prefixes = [i[:19] for i in made]
    assert prefixes == sorted(prefixes)
    assert re.fullmatch(r"\d{8}-\d{6}-\d{3}-[0-9a-hjkmnp-tv-z]{8}", made[0])
    assert len({new_id(when=0.0) for _ in range(10_000)}) == 10_000  # same ms, no collision


def test_import_of_thousands_of_csv_logs_succeeds(workspace, tmp_path):
    root = tmp_path / "logs" / "many"
    n = 2000
    for v in range(n):
        d = root / f"version_{v}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(f"epoch,step,train_loss\n0,0,{1 / (v + 1)}\n0,1,0.5\n")
        (d / "hparams.yaml").write_text(f"lr: {v}\n")
    found = jupyter_ext.import_logs(root.parent)
    assert len(found) == n and found.imported.all()
    assert found.id.nunique() == n
    assert len(jupyter_ext.runs(experiment="many")) == n
    again = jupyter_ext.import_logs(root.parent)  # idempotent: nothing new
    assert not again.imported.any() and len(jupyter_ext.runs()) == n


# -- 4. a worker shows its run in ps/top, warm or cold -------------------------------------
def _title(pid: int) -> str:
    return " ".join(psutil.Process(pid).cmdline()).strip()  # the title pads argv's area


def test_workers_show_run_name_and_id_in_ps_warm_and_cold(workspace):
    train_dl, _ = loaders()
    cold = jupyter_ext.train(Tiny(step_delay=0.05), train_dataloaders=train_dl,
                             max_epochs=100, name="cold-one")  # fmt: skip
    cfg = get_config()
    cfg.warm_start = True  # the launcher follows the configuration at every launch
    launcher = get_launcher()
    warm = None
    try:
        wait_for(launcher.spares.ready, timeout=120, what="the warm spare to be ready")
        spare = launcher.spares.pid
        warm = jupyter_ext.train(Tiny(step_delay=0.05), train_dataloaders=train_dl,
                                 max_epochs=100, name="warm-one")  # fmt: skip
        assert warm.pid == spare and warm.row.launcher == "local (warm)"
        for run in (cold, warm):
            wait_for(lambda r=run: r.status == "running" and f"({r.id})" in _title(r.pid),
                     timeout=120, what=f"{run.name}'s process title")  # fmt: skip
            assert _title(run.pid) == f"jupyter_ext worker: {run.name} ({run.id})"
            assert run.host == socket.gethostname()
        assert "--spare" not in _title(warm.pid)
    finally:
        cfg.warm_start = False
        get_launcher()  # drops the spare
        for run in (cold, warm):
            if run is not None:
                run.stop(timeout=60)


# -- launch outcomes are values --------------------------------------------------------------
def test_a_worker_that_cannot_start_is_a_failed_outcome_and_a_failed_run(workspace, monkeypatch):
    from jupyter_ext.training.launchers import LaunchFailed, set_launcher
    from jupyter_ext.training.launchers import local as local_launcher
    from jupyter_ext.training.run import LaunchError

    monkeypatch.setattr(local_launcher, "WORKER", [str(workspace / "no-such-python")])
    previous = set_launcher(local_launcher.LocalLauncher(warm_start=False))
    try:
        train_dl, _ = loaders()
        with pytest.raises(LaunchError, match="did not start: could not start the worker"):
            jupyter_ext.train(Tiny(), train_dataloaders=train_dl, max_epochs=1, name="nope")
        (row,) = open_store().list_runs()
        assert row.status == "failed" and row.error.startswith("launch failed: ")
        outcome = local_launcher.LocalLauncher(warm_start=False).launch(
            row, workspace, heartbeat_s=1.0
        )
        assert isinstance(outcome, LaunchFailed) and "no-such-python" in outcome.message
    finally:
        set_launcher(previous)
