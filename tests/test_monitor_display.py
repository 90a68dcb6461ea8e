"""What the monitor says: progress and final state, pace and ETA, notices, colours, log tail."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import pytest
from helpers import wait_for
from tiny_models import Tiny, loaders

import jupyter_ext
from jupyter_ext.metric_names import metric_color, role_of
from jupyter_ext.store import RunRecord, Store
from jupyter_ext.training.frames import (
    Pace,
    fmt_duration,
    notice_for,
    position_text,
    progress_text,
    without_ads,
)
from jupyter_ext.widgets.monitor import RunMonitor, notices_html

pytestmark = pytest.mark.timeout(300)


def record(status: str = "running", **kw) -> RunRecord:
    return RunRecord("r1", "bc-1", "bc", status, created=0.0, **kw)


# -- the progress line --------------------------------------------------------------------
def test_progress_line_counts_epochs_from_one_and_says_how_a_run_ended():
    done = record(
        "succeeded", started=100.0, ended=126.4, epoch=14, step=225, total_steps=225,
        total_epochs=15, steps_per_s=8.61, samples_per_s=275.5,
    )  # fmt: skip
    assert progress_text(done) == (
        "succeeded in 0:26 · epoch 15/15 · step 225/225 · 8.61 steps/s · 276 samples/s"
    )
    going = record(
        started=100.0, epoch=2, step=40, total_steps=225, total_epochs=15, eta_s=21.6,
        steps_per_s=8.6,
    )  # fmt: skip
    assert progress_text(going, now=105.0) == (
        "epoch 3/15 · step 40/225 · 8.60 steps/s · ETA 0:21 · elapsed 0:05"
    )
    stopped = record(
        "stopped", started=100.0, ended=105.0, epoch=2, step=40, total_steps=225,
        total_epochs=15, last_checkpoint="/ws/runs/r1/checkpoints/last.ckpt",
    )  # fmt: skip
    assert progress_text(stopped).endswith("checkpoint kept · `run.resume()`")
    assert "no checkpoint kept" in progress_text(
        record("stopped", started=100.0, ended=101.0, epoch=0, step=0)
    )
    failed = record("failed", started=100.0, ended=103.0, epoch=0, step=3, total_steps=225)
    assert progress_text(failed) == "failed after 0:03 · epoch 1 · step 3/225"
    assert progress_text(record("queued")) == "queued"
    assert progress_text(record()) == "starting..."
    # an epoch past the end (Lightning's counter after the last one) is still the last
    assert position_text(record(epoch=15, total_epochs=15)) == "epoch 15/15"
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "?"


# -- pace and ETA -------------------------------------------------------------------------
def simulate(epochs: int, steps: int, step_s: float, val_s: float, first_step_s: float = 0.0,
             jitter: float = 0.3, seed: int = 0):  # fmt: skip
    """A made-up run on a made-up clock: the steps and validations Lightning would make.
    Returns [(t, step, eta)] sampled at every step, and the time training ended."""
    rng = random.Random(seed)
    pace = Pace(total_steps=epochs * steps, steps_between=steps)  # a validation per epoch
    # the sanity check: 2 batches of validation, at validation's speed per batch
    pace.guess_validation(sanity_s=2 * val_s / steps, sanity_batches=2, val_batches=steps)
    t, step, samples = 0.0, 0, []
    for _epoch in range(epochs):
        for _ in range(steps):
            t += step_s * (1 + rng.uniform(-jitter, jitter)) + (first_step_s if step == 0 else 0)
            step += 1
            pace.step(step, samples=32, t=t)
            samples.append((t, step, pace.eta_s(t)))
        pace.validation_started(t)
        t += sum(val_s / steps * (1 + rng.uniform(-jitter, jitter)) for _ in range(steps))
        pace.validation_ended(t)
    return samples, t, pace


@pytest.mark.parametrize(
    ("epochs", "val_s", "first_step_s"),
    [(15, 0.6, 0.0), (3, 0.6, 0.0), (15, 0.1, 2.0), (40, 1.5, 0.5)],
)
def test_eta_is_right_within_a_fifth_after_the_first_tenth_and_steady(epochs, val_s, first_step_s):
    steps = 15
    samples, end, pace = simulate(epochs, steps, step_s=0.1, val_s=val_s,
                                  first_step_s=first_step_s)  # fmt: skip
    total = epochs * steps
    later = [(t, s, eta) for t, s, eta in samples if s >= total / 10]
    for t, s, eta in later:
        actual = end - t
        assert eta is not None and abs(eta - actual) <= 0.2 * actual + 0.05, (s, eta, actual)
    # steady: from one step to the next the ETA moves with the clock, not in jumps
    for (t0, _, e0), (t1, _, e1) in itertools.pairwise(later):
        assert abs((e0 - e1) - (t1 - t0)) <= 0.1 * e0 + 0.3, (e0, e1, t1 - t0)
    assert pace.steps_per_s == pytest.approx(10.0, rel=0.1)
    assert pace.samples_per_s == pytest.approx(320.0, rel=0.1)


def test_pace_before_the_first_step_knows_nothing():
    pace = Pace(total_steps=100)
    assert pace.eta_s(5.0) is None and pace.steps_per_s is None and pace.samples_per_s is None
    pace.step(1, samples=8, t=1.0)  # the first step: its one-time costs are left out
    assert pace.eta_s(1.0) is None
    assert Pace(total_steps=None).eta_s(1.0) is None  # an endless run has no ETA


# -- notices and the log tail ---------------------------------------------------------------
LIGHTNING = "/venv/lib/python3.11/site-packages/lightning/pytorch/trainer/connectors/x.py"


def test_lightnings_warnings_become_short_notices():
    workers = notice_for(
        "The 'train_dataloader' does not have many workers which may be a bottleneck. Consider"
        " increasing the value of the `num_workers` argument` to `num_workers=15` in the "
        "`DataLoader` to improve performance.",
        UserWarning, LIGHTNING,
    )  # fmt: skip
    assert workers["kind"] == "dataloader"
    assert workers["text"] == (
        "the train_dataloader has fewer than 2 workers and may hold training back: "
        "try DataLoader(num_workers=15)"
    )
    precision = notice_for(
        "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not "
        "supported on CPU. Using `precision='bf16-mixed'` instead.",
        UserWarning, LIGHTNING,
    )  # fmt: skip
    assert (
        precision["text"] == "precision 16-mixed is not supported on CPU: this run uses bf16-mixed"
    )
    other = notice_for("`training_step` returned `None`. If this was on purpose, ignore this "
                       "warning...", UserWarning, LIGHTNING)  # fmt: skip
    assert other["kind"] == "lightning" and other["text"].startswith("`training_step` returned")
    # a library's own deprecations and the toolkit's own doing are no notices
    assert notice_for("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning,
                      "/venv/lib/python3.11/site-packages/torch/utils/_pytree.py") is None  # fmt: skip
    assert notice_for("Checkpoint directory /ws/runs/x/checkpoints exists and is not empty.",
                      UserWarning, LIGHTNING) is None  # fmt: skip
    assert notice_for("Precision bf16-mixed is not supported by the model summary.  Estimated"
                      " model size in MB will not be accurate.", UserWarning, LIGHTNING) is None  # fmt: skip
    # the person's own deprecation warnings are theirs to see
    assert notice_for("old API", DeprecationWarning, "/home/me/model.py")["kind"] == "warning"
    html = notices_html([{**workers, "count": 2}])
    assert "DataLoader(num_workers=15)" in html and "&times;2" in html
    assert "does not have many workers" in html  # the full warning, on hover
    assert notices_html(None) == ""


def test_the_log_tail_hides_lightnings_tips():
    log = (
        "GPU available: False, used: False\n"
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing "
        "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs "
        "metrics and artifacts automatically to the Lightning Experiments platform.\n"
        "💡 Tip: For seamless cloud uploads and versioning, try installing "
        "[litmodels](https://pypi.org/project/litmodels/) to enable LitModelCheckpoint\n"
        "`Trainer.fit` stopped: `max_epochs=3` reached."
    )
    assert without_ads(log) == (
        "GPU available: False, used: False\n`Trainer.fit` stopped: `max_epochs=3` reached."
    )


# -- colours --------------------------------------------------------------------------------
def test_colours_are_stable_per_metric_and_share_a_hue_per_quantity():
    def hue(color: str) -> float:
        import colorsys

        r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
        return colorsys.rgb_to_hls(r, g, b)[0]

    loss = [metric_color(k) for k in ("train_loss", "train_loss_epoch", "val_loss", "test_loss")]
    assert len(set(loss)) == 4  # a shade per split
    assert max(map(hue, loss)) - min(map(hue, loss)) < 0.02  # one hue family
    assert hue(metric_color("val_acc")) != pytest.approx(hue(metric_color("val_loss")), abs=0.05)
    assert role_of("val/acc") == "val" and role_of("loss") == "train"
    # the same in another process (no per-process hash seed involved)
    keys = ["val_loss", "train_perplexity", "val_dice_score"]
    other = subprocess.run(
        [sys.executable, "-c", "from jupyter_ext.metric_names import metric_color as c; "
         f"print(' '.join(c(k) for k in {keys!r}))"],
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"},
    ).stdout.split()  # fmt: skip
    assert other == [metric_color(k) for k in keys]


# -- the monitor on real runs -----------------------------------------------------------------
def test_a_finished_run_shows_its_final_state_pace_and_a_steady_eta(workspace):
    train_dl, val_dl = loaders()  # 8 batches of 32 per epoch
    run = jupyter_ext.train(
        Tiny(step_delay=0.08), train_dataloaders=train_dl, val_dataloaders=val_dl,
        max_epochs=12, name="eta",
    )  # fmt: skip
    mon = RunMonitor(run, refresh_s=0.2)
    samples: list[tuple[float, int, float]] = []

    def sample() -> bool:
        row = run.row
        if row.status == "running" and row.step and row.eta_s is not None and row.heartbeat:
            samples.append((row.heartbeat, row.step, row.eta_s))
        return row.status not in ("queued", "running")

    try:
        wait_for(sample, timeout=240, interval=0.25, what="the run to end")
        row = run.row
        assert row.status == "succeeded", row.error
        wait_for(lambda: not mon.polling, timeout=10, what="the monitor to see the end")
        label = mon.bar_label.value
        assert "succeeded in 0:" in label and "epoch 12/12 · step 96/96" in label
        assert "steps/s" in label and "samples/s" in label and "ETA" not in label
        assert mon.stop_button.layout.display == "none"  # nothing left to stop
        assert row.total_epochs == 12 and 3 < row.steps_per_s < 13
        assert row.samples_per_s == pytest.approx(row.steps_per_s * 32, rel=0.05)
        colors = {s["id"]: s["color"] for s in mon.chart.series}
        assert colors == {k: metric_color(k) for k in ("train_loss", "val_loss", "val_acc")}
        assert "Tip:" not in mon.log_view.value and "litlogger" not in mon.log_view.value
        assert "Tip:" in run.logs(None)  # the log itself is untouched
        text = mon._repr_mimebundle_()["text/plain"]
        assert "succeeded in" in text and "epoch 12/12" in text

        # ETA after the first tenth: right within a fifth (the median of what was shown:
        # on a machine others load, the pace itself changes while the run goes). Training
        # ends with the last validation's metrics; the worker's teardown is not training.
        end = run._store.last_metric_time(run.id)
        errors = sorted(abs(eta - (end - t)) / (end - t) for t, s, eta in samples
                        if s >= 96 / 10 and end - t > 1.0)  # fmt: skip
        assert len(errors) >= 5, samples
        assert errors[len(errors) // 2] <= 0.2, (errors, samples, end)
    finally:
        mon.close()


def test_a_stopped_run_says_its_checkpoint_is_kept_and_shows_lightnings_notices(workspace):
    train_dl, val_dl = loaders()
    run = jupyter_ext.train(
        Tiny(step_delay=0.05), train_dataloaders=train_dl, val_dataloaders=val_dl,
        max_epochs=100, log_every_n_steps=50, precision="16-mixed", name="noticed",
    )  # fmt: skip
    mon = RunMonitor(run, refresh_s=0.2)
    try:
        wait_for(lambda: len(run.notices) >= 2, timeout=180, what="notices while it runs")
        # Both notices, as the monitor's next refresh shows them (not just the first).
        wait_for(
            lambda: (
                "log_every_n_steps=50 is more" in mon.notices.value
                and "precision 16-mixed" in mon.notices.value
            ),
            timeout=30,
            what="both notices shown",
        )
        texts = [n["text"] for n in run.notices]
        assert any(t.startswith("log_every_n_steps=50 is more than the 8 batches") for t in texts)
        assert "precision 16-mixed is not supported on CPU: this run uses bf16-mixed" in texts
        assert "log_every_n_steps=50 is more than the 8 batches" in mon.notices.value
        assert mon.stop_button.layout.display != "none"
        assert run.stop(timeout=120) == "stopped"
        wait_for(lambda: not mon.polling, timeout=10, what="the monitor to see the stop")
        label = mon.bar_label.value
        assert "stopped after" in label and "checkpoint kept · <code>run.resume()</code>" in label
        assert mon.stop_button.layout.display == "none" and mon.error.value == ""
    finally:
        mon.close()


def test_an_old_workspace_gains_the_new_columns(tmp_path):
    """A store made by the previous schema (v2) opens, keeps its runs, and reads the new
    columns as empty."""
    import sqlite3

    path = tmp_path / "store.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as c:  # take the v3 columns away again: a v2 store
        for col in (
            "total_epochs",
            "steps_per_s",
            "samples_per_s",
            "error_info",
            "notices",
            "cluster",
            "samples",
        ):
            c.execute(f"ALTER TABLE runs DROP COLUMN {col}")
        c.execute("INSERT INTO runs (id, name, status, created) VALUES ('a', 'old', 'failed', 1)")
        c.execute("PRAGMA user_version=2")
    store = Store(path)
    row = store.get_run("a")
    assert row.name == "old" and row.notices is None and row.error_info is None
    store.update_run("a", notices=[{"kind": "lightning", "text": "x"}], steps_per_s=1.5)
    assert store.get_run("a").notices == [{"kind": "lightning", "text": "x"}]
    store.close()
    assert Store(path).get_run("a").steps_per_s == 1.5  # and it opens again as v5
    assert Store(path).get_run("a").cluster is None
    assert Store(path).get_run("a").samples is None


def test_monitor_x_axis_follows_the_charts_toolbar(workspace):
    """The chart's x-axis choice rebuilds the monitor's curves on that axis."""
    import time as _time

    import jupyter_ext
    from jupyter_ext.store import open_store
    from jupyter_ext.widgets.monitor import RunMonitor

    st = open_store()
    t0 = _time.time() - 100
    row = st.create_run(name="x-axes", status="succeeded", started=t0, ended=t0 + 30)
    st.add_metrics(row.id, [("train_loss", s, s // 10, t0 + s, 1.0 / (s + 1)) for s in range(30)])
    mon = RunMonitor(jupyter_ext.get_run(row.id))
    try:
        assert mon.chart.x_axis == "step" and mon.chart.data.x.max() == 29
        assert dict(mon.chart.x_choices)["time"] == "wall time"
        mon.chart.x_axis = "epoch"
        assert mon.chart.x_label == "epoch" and mon.chart.data.x.max() == 2
        mon.chart.x_axis = "elapsed"
        assert mon.chart.x_format == "duration"
        assert mon.chart.data.x.min() == 0.0 and mon.chart.data.x.max() == 29.0
        assert len(mon.chart.data) == 30  # every point once, not appended again
        mon.chart.x_axis = "nonsense"
        assert mon.chart.x_axis == "elapsed"
    finally:
        mon.close()
