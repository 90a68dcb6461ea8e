"""The run monitor widget and the warm spare worker, against real workers."""

from __future__ import annotations

import psutil
import pytest
from helpers import wait_for
from test_training import MODEL_CELL
from tiny_models import Tiny, loaders

import jupyter_ext
from jupyter_ext.poller import POLLER
from jupyter_ext.widgets.monitor import RunMonitor, panel_of

pytestmark = pytest.mark.timeout(240)


def test_panel_grouping():
    assert panel_of("train_loss") == panel_of("val_loss") == panel_of("train_loss_epoch") == "loss"
    assert panel_of("val_acc") == "acc"
    assert panel_of("lr") == "lr"


def test_monitor_follows_a_run_and_stops_polling_when_it_ends(workspace):
    train_dl, val_dl = loaders()
    run = jupyter_ext.train(
        Tiny(step_delay=0.03), train_dataloaders=train_dl, val_dataloaders=val_dl,
        max_epochs=4, log_every_n_steps=1,
    )  # fmt: skip
    mon = RunMonitor(run, refresh_s=0.5)
    try:
        assert mon.polling
        # points arrive while the run trains, without anyone calling refresh()
        wait_for(lambda: len(mon.chart.data) >= 3, timeout=120, what="first points")
        first = len(mon.chart.data)
        wait_for(lambda: len(mon.chart.data) > first, timeout=60, what="more points")
        run.wait(timeout=180, raise_on_failure=True)
        wait_for(lambda: not mon.polling, timeout=10, what="polling to stop")
        wait_for(lambda: "succeeded" in mon.header.value, timeout=10, what="final status")
        data = mon.chart.data
        assert set(data.series) == {"train_loss", "val_loss", "val_acc"}
        assert set(data.panel) == {"loss", "acc"}
        # exactly what the store has: nothing lost, nothing doubled
        assert (
            len(data[data.series == "train_loss"]) == (run.metrics.key == "train_loss").sum() == 32
        )
        assert mon.bar.value == 1.0 and "step 32/32" in mon.bar_label.value
        assert "train_loss" in mon.table.value
        assert "Trainer.fit" in mon.log_view.value or "max_epochs" in mon.log_view.value
        assert mon.stop_button.disabled
        # a refresh with nothing new changes nothing
        updates = mon.updates
        mon.refresh()
        assert mon.updates == updates
    finally:
        mon.close()
    assert not mon.polling


def test_monitor_shows_failure_traceback_and_closing_stops_the_timer(workspace):
    train_dl, _ = loaders()
    run = jupyter_ext.train(Tiny(fail_at=2), train_dataloaders=train_dl, max_epochs=1)
    mon = RunMonitor(run, refresh_s=0.5)
    wait_for(lambda: "boom at step 2" in mon.error.value, timeout=120, what="traceback shown")
    assert "failed" in mon.header.value and mon.bar.bar_style == "danger"
    mon.close()

    run2 = jupyter_ext.train(Tiny(step_delay=0.05), train_dataloaders=train_dl, max_epochs=100)
    mon2 = RunMonitor(run2, refresh_s=0.5)
    active = POLLER.active()
    mon2.close()
    assert POLLER.active() == active - 1 and not mon2.polling
    # the Stop button asks the worker to stop; the run ends as stopped
    mon3 = RunMonitor(run2, refresh_s=0.5)
    mon3.stop_button.click()
    assert run2.wait(timeout=120).status == "stopped"
    wait_for(lambda: "stopped" in mon3.header.value, timeout=10, what="stopped shown")
    mon3.close()


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kernel_with_spare(start_kernel):
    """A kernel with warm start on, once its spare worker is up; returns (kernel, spare pid)."""
    k = start_kernel(warm_start=True)
    cell = k.run(
        "from jupyter_ext.training.launchers import get_launcher\nfrom helpers import wait_for\n"
        "launcher = get_launcher()\nspare = wait_for(lambda: launcher.spares.pid, 30)\nprint(spare)"
    ).ok()
    return k, int(cell.stdout)


def test_warm_spare_takes_the_run_is_replaced_and_exits_with_its_kernel(start_kernel):
    k, spare = kernel_with_spare(start_kernel)
    k.run(
        "%%train --name warm --max-epochs 1000 --log-every-n-steps 1\n"
        + MODEL_CELL
        + "\nmodel = Net(step_delay=0.05)"
    ).ok()
    cell = k.run(
        "import jupyter_ext\nr = jupyter_ext.get_run('warm')\n"
        "assert r.row.launcher == 'local (warm)', r.row.launcher\nassert r.row.pid == spare\n"
        "new = wait_for(lambda: launcher.spares.pid not in (None, spare) and launcher.spares.pid, 30)\n"
        "wait_for(lambda: (r.progress['step'] or 0) >= 2, 60)\nprint(new)"
    ).ok()
    replacement = int(cell.stdout)
    assert psutil.pid_exists(replacement)
    k.shutdown()

    # the idle spare exits with its kernel; the run it took goes on
    wait_for(lambda: gone(replacement), timeout=30, what="idle spare to exit")
    run = jupyter_ext.get_run("warm")
    assert run.status == "running" and not gone(spare)
    assert run.stop(timeout=60) == "stopped"
    assert (run.metrics.key == "train_loss").sum() >= 2


def test_config_turns_the_warm_spare_off_and_on(start_kernel):
    k, spare = kernel_with_spare(start_kernel)
    k.run("%config ToolkitConfig.warm_start = False\nassert get_launcher().spares is None").ok()
    wait_for(lambda: gone(spare), timeout=30, what="the dropped spare to exit")
    k.run(
        "%config ToolkitConfig.warm_start = True\n"
        "new = wait_for(lambda: get_launcher().spares.pid, 30)\n"
        f"assert new != {spare}"
    ).ok()
