"""Importing Lightning CSVLogger and TensorBoard logs written by real (tiny) fits."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tiny_models import Tiny, loaders

import jupyter_ext
from jupyter_ext.importers import LogImportError, read_csv_logs
from jupyter_ext.store import open_store


def _fit(logger, lr: float) -> None:
    train, val = loaders()
    trainer = L.Trainer(
        max_epochs=2,
        logger=logger,
        log_every_n_steps=2,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(lr=lr), train, val)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """Two CSVLogger versions (lr 0.1 and 0.01) and one TensorBoard run, fitted once."""
    root = tmp_path_factory.mktemp("logs")
    _fit(CSVLogger(root / "csv", name="mnist"), lr=0.1)
    _fit(CSVLogger(root / "csv", name="mnist"), lr=0.01)
    _fit(TensorBoardLogger(root / "tb", name="tbexp"), lr=0.05)
    return root


def test_csv_logger_runs_import_with_values_hparams_and_epochs(workspace, logs):
    found = jupyter_ext.import_logs(logs / "csv")
    assert found.columns.tolist() == [
        "id", "name", "experiment", "source", "path", "points", "imported"
    ]  # fmt: skip
    assert found.name.tolist() == ["mnist/version_0", "mnist/version_1"]
    assert set(found.experiment) == {"mnist"} and found.imported.all()

    raw = pd.read_csv(logs / "csv" / "mnist" / "version_0" / "metrics.csv")
    run = jupyter_ext.get_run(found.id[0])
    assert run.status == "succeeded" and run.hparams["lr"] == 0.1
    m = run.metrics
    for key in ("train_loss", "val_loss", "val_acc"):
        expect = raw.dropna(subset=[key])
        got = m[m.key == key]
        assert got.value.tolist() == pytest.approx(expect[key].tolist())
        assert got.step.tolist() == expect.step.astype(int).tolist()
        assert got.epoch.tolist() == expect.epoch.astype(int).tolist()
    assert m.time.isna().all()  # CSVLogger records no wall-clock time

    summary = jupyter_ext.summary(found)
    assert "lr" in summary.columns  # the differing hparam of the two versions
    assert summary.lr.tolist() == [0.1, 0.01]


def test_import_is_idempotent(workspace, logs, tmp_path):
    first = jupyter_ext.import_logs(logs / "csv")
    again = jupyter_ext.import_logs(logs / "csv")
    assert again.id.tolist() == first.id.tolist() and not again.imported.any()
    copy = tmp_path / "copy"
    shutil.copytree(logs / "csv", copy)  # the same logs elsewhere are the same runs
    assert jupyter_ext.import_logs(copy).id.tolist() == first.id.tolist()
    store = open_store()
    assert len(store.list_runs()) == 2
    for run_id, points in zip(first.id, first.points, strict=True):
        series, _ = store.read_metrics(run_id)  # each point stored once, not twice
        assert sum(len(s) for s in series.values()) == points > 0


def test_tensorboard_runs_import_with_times_and_epochs(workspace, logs):
    found = jupyter_ext.import_logs(logs / "tb", experiment="from-tb")
    assert found.source.tolist() == ["tensorboard"]
    assert found.name.tolist() == ["tbexp/version_0"]
    run = jupyter_ext.get_run(found.id[0])
    assert run.experiment == "from-tb" and run.hparams["lr"] == 0.05
    m = run.metrics
    assert set(m.key) == {"train_loss", "val_loss", "val_acc"}  # no epoch, no hp_metric
    assert m.time.notna().all() and (m.time > 1e9).all()
    val = m[m.key == "val_loss"]
    assert val.epoch.tolist() == [0, 1] and val.step.tolist() == [7, 15]
    assert jupyter_ext.import_logs(logs / "tb").imported.tolist() == [False]


def test_everything_below_a_directory_imports_and_compares_together(workspace, logs):
    found = jupyter_ext.import_logs(logs)
    assert sorted(found.source) == ["csv", "csv", "tensorboard"]
    view = jupyter_ext.compare(found, metrics=["val_loss"], x="epoch")
    try:
        assert set(view.data.run) == set(found.id)
        assert len(view.chart.series) == 3 and not view.live
    finally:
        view.close()


def _copy_version(logs: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mnist" / "version_0"
    shutil.copytree(logs / "csv" / "mnist" / "version_0", target)
    return target / "metrics.csv"


def test_truncated_csv_is_refused_naming_file_and_line(workspace, logs, tmp_path):
    path = _copy_version(logs, tmp_path)
    lines = path.read_text().splitlines()
    cut = lines[5][: lines[5].index(",") + 1]  # a line cut off after its first field
    path.write_text("\n".join([*lines[:5], cut]) + "\n")
    with pytest.raises(LogImportError, match=rf"{path}, line 6: expected 5 fields.*found 2"):
        jupyter_ext.import_logs(tmp_path)
    assert open_store().list_runs() == []  # nothing of a refused import is recorded


def test_corrupt_value_is_refused_naming_file_line_and_column(workspace, logs, tmp_path):
    path = _copy_version(logs, tmp_path)
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[2] = "0.4x1"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogImportError, match=r"line 4: train_loss value '0.4x1' is not a number"):
        read_csv_logs(path)


def test_non_finite_values_in_csv_are_kept(workspace, tmp_path):
    path = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text("epoch,step,loss\n0,0,1.0\n0,1,nan\n0,2,inf\n1,3,0.5\n")
    found = jupyter_ext.import_logs(path)
    values = jupyter_ext.metrics(found).value.to_numpy()
    assert values[0] == 1.0 and np.isnan(values[1]) and np.isinf(values[2])


def test_paths_that_hold_no_logs_are_refused(workspace, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        jupyter_ext.import_logs(tmp_path / "missing")
    with pytest.raises(LogImportError, match=r"no logs under .*metrics\.csv"):
        jupyter_ext.import_logs(tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(LogImportError, match=r"not a CSVLogger metrics\.csv"):
        jupyter_ext.import_logs(other)
    bad = tmp_path / "x" / "metrics.csv"
    bad.parent.mkdir()
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LogImportError, match="line 1: no 'step' column"):
        jupyter_ext.import_logs(bad)
    hp = tmp_path / "y" / "version_0"
    hp.mkdir(parents=True)
    (hp / "metrics.csv").write_text("epoch,step,loss\n0,0,1.0\n")
    (hp / "hparams.yaml").write_text("lr: [0.1\n")
    with pytest.raises(LogImportError, match=r"hparams\.yaml, line \d+: not valid YAML"):
        jupyter_ext.import_logs(hp)


def test_hparams_with_python_tags_are_read_as_plain_data(workspace, tmp_path):
    version = tmp_path / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    (version / "metrics.csv").write_text("epoch,step,loss\n0,0,1.0\n")
    (version / "hparams.yaml").write_text(
        "lr: 0.1\nbetas: !!python/tuple\n- 0.9\n- 0.99\n"
        "args: !!python/object:argparse.Namespace\n  depth: 3\n"
    )
    run = jupyter_ext.get_run(jupyter_ext.import_logs(version).id[0])
    assert run.hparams == {"lr": 0.1, "betas": [0.9, 0.99], "args": {"depth": 3}}
