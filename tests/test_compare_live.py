"""A comparison of real runs in real worker processes, in-process and through %compare."""

from __future__ import annotations

import pytest
from helpers import wait_for
from tiny_models import Tiny, loaders

import jupyter_ext

pytestmark = pytest.mark.timeout(240)


def test_comparison_follows_a_running_run_and_stops_when_it_ends(workspace):
    train, val = loaders()
    done = jupyter_ext.train(
        Tiny(lr=0.1), train_dataloaders=train, val_dataloaders=val, max_epochs=1,
        log_every_n_steps=1, name="fast", experiment="live",
    ).wait(timeout=180, raise_on_failure=True)  # fmt: skip
    slow = jupyter_ext.train(
        Tiny(lr=0.01, step_delay=0.15), train_dataloaders=train, val_dataloaders=val,
        max_epochs=3, log_every_n_steps=1, name="slow", experiment="live",
    )  # fmt: skip
    # Start comparing once the slow run has logged something, while it still runs.
    wait_for(lambda: len(slow.metrics) > 0, timeout=120, what="the slow run's first metrics")
    view = jupyter_ext.compare("live", metrics=["train_loss", "val_loss"])
    try:
        assert slow.status == "running" and view.live
        labels = {m["label"] for m in view.chart.series}
        assert labels == {"fast (lr=0.1, step_delay=0)", "slow (lr=0.01, step_delay=0.15)"}

        def slow_steps():
            d = view.chart.data
            return d[d.series == f"{slow.id}/train_loss"].x

        first = slow_steps().max()
        wait_for(
            lambda: slow_steps().max() >= first + 3, timeout=60, what="later steps in the chart"
        )
        slow.wait(timeout=180, raise_on_failure=True)
        wait_for(lambda: not view.live, timeout=30, what="polling to stop once all ended")
        # the chart ends up holding exactly what the run logged
        logged = slow.metrics.query("key == 'train_loss'").sort_values("step")
        assert sorted(slow_steps()) == logged.step.tolist()
        assert view.updates >= 1
        summary = view.summary.set_index("name")
        assert summary.loc["slow", "status"] == "succeeded"
        assert summary.loc["fast", "val_loss.last"] == pytest.approx(
            done.metrics.query("key == 'val_loss'").value.iloc[-1]
        )
    finally:
        view.close()


def test_compare_and_import_magics_in_a_kernel(start_kernel, tmp_path):
    k = start_kernel()
    k.run(
        "import lightning as L, sys\n"
        "from lightning.pytorch.loggers import CSVLogger\n"
        "from tiny_models import Tiny, loaders\n"
        "tr, va = loaders()\n"
        f"L.Trainer(max_epochs=1, logger=CSVLogger({str(tmp_path)!r}, name='old'),"
        " enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,"
        " log_every_n_steps=1).fit(Tiny(), tr, va)"
    ).ok()
    out = k.run(f"found = %import_logs {tmp_path} --experiment imported\nfound").ok()
    assert "Imported 1 run" in out.stdout
    again = k.run(f"%import_logs {tmp_path}").ok()
    assert "Imported 0 runs (1 already in the workspace)" in again.stdout

    shown = k.run("view = %compare imported --metric val_loss --x epoch\nview").ok()
    bundle = shown.data[0]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "image/png" in bundle  # static fallback for front ends without widgets
    assert "Comparison of 1 runs (static); metrics: val_loss" in bundle["text/plain"]
    k.run("assert set(view.data.key) == {'val_loss'} and view.chart.x_label == 'epoch'").ok()

    bad = k.run("%compare old/version_O")
    assert "UsageError" in bad.text and "Did you mean: old/version_0" in bad.text
    bad = k.run("%compare imported --metric val_los")
    assert "UsageError" in bad.text and "Did you mean: val_loss" in bad.text
    bad = k.run("%compare imported --x iterations")
    assert "UsageError" in bad.text and "iterations" in bad.text
    bad = k.run(f"%import_logs {tmp_path / 'nowhere'}")
    assert "UsageError" in bad.text and "no such file" in bad.text
    k.run("print('kernel alive')").ok()
