"""Comparison: run resolution, long frames, summary, and the view's controls and export.

Runs here are written straight into a real workspace store (what a worker or an import
writes), so each case is exact and fast; tests/test_compare_live.py uses real workers.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest
from helpers import wait_for

import jupyter_ext
from jupyter_ext.comparison import Comparison, best_mode, resolve_runs, run_labels
from jupyter_ext.store import RunRecord, open_store
from jupyter_ext.training.resolve import RunNotFound
from jupyter_ext.widgets.compare import CompareView


def make_run(store, name, experiment="sweep", status="succeeded", hparams=None, metrics=None):
    """A run with ``metrics = {key: [values]}`` logged at steps 0, 1, 2, ..."""
    t0 = time.time()
    row = store.create_run(
        name=name, experiment=experiment, status=status, hparams=hparams or {}, started=t0
    )
    rows = [
        (key, step, step // 5, t0 + step, value)
        for key, values in (metrics or {}).items()
        for step, value in enumerate(values)
    ]
    store.add_metrics(row.id, rows)
    return row.id


@pytest.fixture
def sweep(workspace):
    store = open_store()
    ids = {}
    for lr in (0.1, 0.01):
        ids[lr] = make_run(
            store,
            f"lr-{lr}",
            hparams={"lr": lr, "batch_size": 32, "model": {"width": 8}},
            metrics={
                "train_loss": list(np.linspace(1.0, 0.2 if lr == 0.1 else 0.5, 20)),
                "val_acc": [0.5, 0.7, 0.9 if lr == 0.1 else 0.6, 0.8],
            },
        )
    ids["other"] = make_run(store, "baseline", experiment="old", metrics={"val_acc": [0.4]})
    return ids


def test_runs_resolve_by_id_name_experiment_run_and_dataframe(sweep):
    store = open_store()
    by_id = resolve_runs(sweep[0.1])
    assert [r.id for r in by_id] == [sweep[0.1]]
    assert [r.id for r in resolve_runs("lr-0.01")] == [sweep[0.01]]
    assert [r.id for r in resolve_runs("sweep")] == [sweep[0.1], sweep[0.01]]
    both = resolve_runs(["baseline", "sweep", "lr-0.1"])  # duplicates dropped, order kept
    assert [r.id for r in both] == [sweep["other"], sweep[0.1], sweep[0.01]]
    frame = pd.DataFrame({"id": [sweep[0.01], sweep["other"]], "name": ["x", "y"]})
    assert [r.id for r in resolve_runs(frame)] == [sweep[0.01], sweep["other"]]
    # a name used twice means the newest run of that name
    newer = make_run(store, "lr-0.1", experiment="rerun")
    assert [r.id for r in resolve_runs("lr-0.1")] == [newer]


def test_unknown_run_is_refused_with_the_closest_names(sweep):
    with pytest.raises(RunNotFound, match=r"'lr-0.001'.*Did you mean: .*lr-0\.01"):
        resolve_runs(["lr-0.1", "lr-0.001"])
    with pytest.raises(RunNotFound, match=r"Runs here: baseline, lr-0\.01, lr-0\.1"):
        resolve_runs("zzzzzz")
    with pytest.raises(ValueError, match="'id' column"):
        resolve_runs(pd.DataFrame({"name": ["lr-0.1"]}))
    with pytest.raises(ValueError, match="no runs to compare"):
        resolve_runs([])
    with pytest.raises(TypeError, match="cannot compare 'float'"):
        resolve_runs(3.5)


def test_metrics_frame_is_long_and_a_partial_metric_is_absent_not_an_error(sweep):
    df = jupyter_ext.metrics(["lr-0.1", "baseline"], keys=["train_loss", "val_acc"])
    assert df.columns.tolist() == ["run", "name", "key", "step", "epoch", "time", "value"]
    counts = df.groupby(["name", "key"]).size().to_dict()
    assert counts == {("baseline", "val_acc"): 1, ("lr-0.1", "train_loss"): 20,
                      ("lr-0.1", "val_acc"): 4}  # fmt: skip
    one = jupyter_ext.metrics("sweep", keys="val_acc")
    assert set(one.key) == {"val_acc"} and len(one) == 8
    with pytest.raises(ValueError, match=r"'val_ac'.*Did you mean: val_acc"):
        jupyter_ext.metrics("sweep", keys=["val_ac"])


def test_summary_has_differing_hparams_and_last_and_best(sweep):
    s = jupyter_ext.summary("sweep")
    # batch_size and model.width are equal in both runs: not shown
    hparams = ["lr"]
    metrics = ["train_loss.last", "train_loss.best", "val_acc.last", "val_acc.best"]
    assert s.columns.tolist() == ["run", "name", "experiment", "status", *hparams, *metrics]
    row = s.set_index("name").loc["lr-0.1"]
    assert row["train_loss.best"] == pytest.approx(0.2)  # loss-like: the minimum
    assert row["val_acc.best"] == pytest.approx(0.9)  # accuracy-like: the maximum
    assert row["val_acc.last"] == pytest.approx(0.8)
    flipped = jupyter_ext.summary("sweep", best={"val_acc": "min"})
    assert flipped.set_index("name").loc["lr-0.1", "val_acc.best"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'min' or 'max'"):
        jupyter_ext.summary("sweep", best={"val_acc": "highest"})
    mixed = jupyter_ext.summary(["lr-0.1", "baseline"])
    assert np.isnan(mixed.set_index("name").loc["baseline", "train_loss.last"])
    assert best_mode("val/accuracy") == "max" and best_mode("val_mse") == "min"
    assert best_mode("top5") == "max" and best_mode("lr") == "min"


def test_labels_name_runs_with_the_hparams_that_differ():
    def record(id_, **hparams):
        return RunRecord(id=id_, name="net", experiment="e", status="succeeded", created=0.0,
                         hparams=hparams)  # fmt: skip

    rows = [
        record("1", lr=0.1, opt={"name": "sgd"}),
        record("2", lr=0.01, opt={"name": "adam"}),
        record("3", lr=0.01, opt={"name": "adam"}),
    ]
    labels = run_labels(rows)
    assert labels["1"] == "net (lr=0.1, opt.name=sgd)"
    assert labels["2"] == labels["3"] == "net (lr=0.01, opt.name=adam)"
    assert run_labels(rows[1:]) == {"2": "net [2]", "3": "net [3]"}


def test_non_finite_values_are_kept_in_data_and_noted_in_the_chart(workspace):
    store = open_store()
    make_run(store, "nan-run", metrics={"loss": [1.0, float("nan"), float("inf"), 0.5]})
    view = jupyter_ext.compare("nan-run")
    try:
        values = view.data.value.tolist()
        assert values[0] == 1.0 and np.isnan(values[1]) and np.isinf(values[2])
        assert view.chart.series[0]["nonfinite"] == 2
        assert "2 non-finite values not drawn" in "".join(
            t.get_text() for t in view.chart.figure().axes[0].texts
        )
        assert view.summary.loc[0, "loss.best"] == 0.5  # never NaN or inf
    finally:
        view.close()


def test_view_controls_change_axis_metrics_and_runs(sweep, tmp_path):
    view = jupyter_ext.compare(["lr-0.1", "lr-0.01"], x="epoch")
    try:
        assert view.metrics == ["train_loss", "val_acc"]
        assert view.chart.panels == ["train_loss", "val_acc"]
        labels = {m["label"] for m in view.chart.series}
        assert labels == {"lr-0.1 (lr=0.1)", "lr-0.01 (lr=0.01)"}
        assert view.chart.data.x.max() == 3  # epochs (step // 5)
        assert not view.live  # every run has ended: no polling

        # The chart's toolbar offers the x axes; a choice made there (x_axis) rebuilds.
        assert dict(view.chart.x_choices)["elapsed"] == "time since start"
        view.chart.x_axis = "elapsed"
        assert view.chart.x_format == "duration" and view.chart.data.x.min() == 0.0
        view.chart.x_axis = "step"
        assert view.chart.data.x.max() == 19
        view.chart.x_axis = "bogus"
        assert "unknown x axis" in view.message.value and view.chart.x_axis == "step"

        view.metric_picker.value = ("val_acc",)
        assert view.chart.panels == ["val_acc"]
        assert set(view.data.key) == {"val_acc"}
        assert [c for c in view.summary.columns if "." in c] == ["val_acc.last", "val_acc.best"]

        # The runs came from one experiment: it is preselected, and filters the picker.
        assert view.experiment.value == "sweep"
        assert sweep["other"] not in dict(view.run_picker.options).values()
        view.experiment.value = "(all experiments)"
        view.run_picker.value = (sweep[0.1], sweep["other"])
        assert set(view.data.name) == {"lr-0.1", "baseline"}
        assert view.chart.notes == {}
        view.metric_picker.value = ("train_loss", "val_acc")
        assert view.chart.notes["train_loss"] == "no data from: baseline"

        view.sort_by.value = "val_acc.best"
        view.ascending.value = False
        shown = re.sub(r"<[^>]+>", "", view.table.value)  # the text a person reads
        assert shown.index("lr-0.1") < shown.index("baseline")

        # Log y and smoothing live in the chart's toolbar; the view keeps no copy.
        view.chart.smoothing = 0.5
        view.chart.log_y = True
        assert view.chart.figure().axes[0].get_yscale() == "log"

        png, svg = view.save(tmp_path / "c.png"), view.save(tmp_path / "c.svg")
        assert png.stat().st_size > 1000 and b"<svg" in svg.read_bytes()[:500]
        csv = pd.read_csv(view.save_summary(tmp_path / "s.csv"))
        assert csv.name.tolist() == view.summary.name.tolist()
        view.export_name.value = str(tmp_path / "exported")
        view.csv_button.click()
        assert (tmp_path / "exported.csv").exists() and "Saved" in view.message.value
    finally:
        view.close()


def test_view_follows_a_run_while_it_logs_and_stops_when_it_ends(workspace):
    store = open_store()
    run_id = make_run(store, "going", status="running", metrics={"loss": [1.0, 0.9]})
    store.update_run(run_id, heartbeat=time.time(), pid=None)
    view = jupyter_ext.compare("going", refresh_s=0.5)
    try:
        assert view.live and len(view.chart.data) == 2
        t0 = time.time()
        store.add_metrics(run_id, [("loss", 2, 0, t0, 0.8), ("acc", 2, 0, t0, 0.3)])
        store.update_run(run_id, heartbeat=time.time())
        # a new metric appears as a new panel; new points are appended
        wait_for(lambda: len(view.chart.data) == 4, timeout=20, what="new points in the chart")
        assert view.chart.panels == ["acc", "loss"]
        store.update_run(run_id, heartbeat=time.time())
        store.add_metrics(run_id, [("loss", 3, 0, t0 + 1, 0.7)])
        store.update_run(run_id, status="succeeded", ended=time.time())
        wait_for(lambda: not view.live, timeout=20, what="polling to stop after the run ended")
        assert view.data.query("key == 'loss'").value.tolist() == [1.0, 0.9, 0.8, 0.7]
        assert "all shown runs ended: going succeeded" in view.status.value
        assert "succeeded" in view.table.value and "running" not in view.table.value
    finally:
        view.close()


def test_closing_the_view_stops_its_polling(workspace):
    store = open_store()
    run_id = make_run(store, "going", status="running", metrics={"loss": [1.0]})
    store.update_run(run_id, heartbeat=time.time())
    view = CompareView("going", refresh_s=0.5)
    assert view.live
    task = view._task
    view.close()
    assert task.cancelled and not view.live


def test_comparison_reads_only_new_chunks(workspace):
    store = open_store()
    run_id = make_run(store, "r", status="running", metrics={"loss": [1.0, 2.0]})
    store.update_run(run_id, heartbeat=time.time())
    cmp = Comparison("r")
    assert cmp.poll() == {}  # nothing new since the first read
    store.add_metrics(run_id, [("loss", 2, 0, time.time(), 3.0)])
    new = cmp.poll()
    assert new[run_id]["loss"].value.tolist() == [3.0]
    assert cmp.series(run_id, "loss").value.tolist() == [1.0, 2.0, 3.0]


def test_bad_arguments_are_refused(sweep):
    with pytest.raises(ValueError, match="at most twice a second"):
        jupyter_ext.compare("sweep", refresh_s=0.1)
    with pytest.raises(ValueError, match="unknown x axis 'iterations'"):
        jupyter_ext.compare("sweep", x="iterations")
    with pytest.raises(RunNotFound, match="Did you mean"):
        jupyter_ext.compare(["lr-0.1", "lr-0.5"])
    with pytest.raises(ValueError, match="no shown run logged 'accuracy'"):
        jupyter_ext.compare("sweep", metrics=["accuracy"])


def test_reload_lists_runs_created_after_the_view(workspace):
    store = open_store()
    first = store.create_run(name="first", status="succeeded", experiment="e1")
    store.add_metrics(first.id, [("val_loss", 0, 0, 1.0, 0.5)])
    view = CompareView(["first"])
    try:
        later = store.create_run(name="later", status="succeeded", experiment="e2")
        assert later.id not in dict(view.run_picker.options).values()
        view.reload_button.click()
        assert later.id in dict(view.run_picker.options).values()
        assert "e2" in view.experiment.options
        assert view.run_picker.value == (first.id,)  # the choice is kept
    finally:
        view.close()
