"""LiveChart, kernel side: what it holds, what it sends to views, and its static rendering."""

from __future__ import annotations

import base64
import shutil
import subprocess

import numpy as np
import pytest

from jupyter_ext.widgets.chart import PALETTE, LiveChart


def _view_starts(chart: LiveChart) -> None:
    # What a browser view does when it renders: ask the kernel for a snapshot.
    chart._handle_custom_msg({"type": "snapshot"}, [])


def test_series_get_panels_and_distinct_colours_per_panel():
    chart = LiveChart(x_label="epoch")
    chart.set_series("a/loss", panel="loss", label="a")
    chart.set_series("b/loss", panel="loss", label="b")
    chart.set_series("a/acc", panel="acc", label="a", color="#123456")
    assert chart.panels == ["loss", "acc"]
    colours = {m["id"]: m["color"] for m in chart.series}
    assert colours == {"a/loss": PALETTE[0], "b/loss": PALETTE[1], "a/acc": "#123456"}
    chart.set_series("b/loss", panel="loss", label="b (renamed)")
    assert [m["label"] for m in chart.series if m["id"] == "b/loss"] == ["b (renamed)"]
    assert len(chart.series) == 3


def test_data_holds_every_point_including_non_finite():
    chart = LiveChart()
    chart.set_series("s", panel="p", label="run")
    chart.append({"s": ([0, 1, 2], [1.0, np.nan, np.inf])})
    chart.append({"s": (np.array([3]), np.array([0.5]))})
    df = chart.data
    assert df.columns.tolist() == ["series", "panel", "label", "x", "y"]
    assert df.x.tolist() == [0, 1, 2, 3]
    assert np.isnan(df.y[1]) and np.isinf(df.y[2])
    assert chart.series[0]["nonfinite"] == 2  # the views show a note about them
    assert chart.points == 4


def test_views_get_a_downsampled_snapshot_then_only_new_points():
    chart = LiveChart()
    chart.set_series("big", panel="loss", label="big")
    chart.set_series("small", panel="loss", label="small")
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=100_000))
    chart.append({"big": (np.arange(len(y)), y), "small": ([0, 1], [3.0, 2.0])})
    assert not chart.sent, "nothing is sent before a view asks"

    _view_starts(chart)
    snap = chart.sent[-1]
    assert snap["type"] == "snapshot"
    assert snap["points"]["small"] == 2
    assert snap["points"]["big"] <= chart.snapshot_points + 2

    chart.append({"big": ([100_000, 100_001], [0.0, 1.0]), "small": ([2], [1.0])})
    msg = chart.sent[-1]
    assert msg["type"] == "append" and msg["points"] == {"big": 2, "small": 1}
    assert msg["seq"] > snap["seq"]
    assert chart.points == 100_005


def test_snapshot_keeps_each_series_extremes():
    # Check the buffers that go over the wire by building the same snapshot arrays.
    from jupyter_ext.downsample import minmax_indices

    chart = LiveChart()
    chart.set_series("s", panel="p", label="s")
    y = np.sin(np.linspace(0, 60, 300_000))
    y[77_777] = 5.0
    chart.append({"s": (np.arange(len(y)), y)})
    idx = minmax_indices(np.arange(len(y)), y, chart.snapshot_points)
    assert y[idx].max() == 5.0 and y[idx].min() == y.min()


def test_replace_remove_clear_are_sent_and_applied():
    chart = LiveChart()
    chart.set_series("s", panel="p", label="s")
    chart.set_series("t", panel="q", label="t")
    chart.append({"s": ([0, 1], [1.0, 2.0])})
    _view_starts(chart)
    chart.replace("s", [10, 20, 30], [3.0, 2.0, 1.0])
    assert chart.data.x.tolist() == [10, 20, 30]
    assert chart.sent[-1]["type"] == "replace" and chart.sent[-1]["points"] == {"s": 3}
    chart.replace_many({"s": ([0], [1.0]), "t": ([5, 6], [1.0, 1.0])})
    assert chart.sent[-1]["type"] == "snapshot"
    assert sorted(chart.data.series) == ["s", "t", "t"]
    chart.remove_series("t")
    assert chart.sent[-1]["type"] == "remove" and [m["id"] for m in chart.series] == ["s"]
    chart.clear()
    assert chart.sent[-1]["type"] == "clear"
    assert chart.data.empty and chart.series == [] and chart.panels == []


def test_bad_input_is_refused_and_the_chart_stays_usable():
    chart = LiveChart()
    chart.set_series("s", panel="p", label="s")
    with pytest.raises(KeyError, match=r"'nope' is not declared.*declared: s"):
        chart.append({"nope": ([1], [1.0])})
    with pytest.raises(ValueError, match="same number of points"):
        chart.append({"s": ([1, 2], [1.0])})
    with pytest.raises(ValueError, match="CSS colour"):
        chart.set_series("t", panel="p", label="t", color="not a colour!")
    with pytest.raises(Exception, match=r"between 0 and 0\.99"):
        chart.smoothing = 1.5
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        chart.save("chart.jpg")
    chart.append({"s": ([1], [1.0])})
    assert chart.points == 1


def test_figure_has_a_panel_per_metric_legends_and_notes(tmp_path):
    chart = LiveChart(x_label="step", smoothing=0.6)
    for i, run in enumerate(["a", "b"]):
        for panel in ("train_loss", "val_loss", "val_acc"):
            chart.set_series(f"{run}/{panel}", panel=panel, label=f"run {run}")
            y = np.linspace(1, 0.1, 50) + i
            chart.append({f"{run}/{panel}": (np.arange(50), y)})
    chart.append({"a/val_acc": ([50, 51], [np.nan, np.inf])})
    chart.notes = {"val_loss": "no data from: run c"}
    fig = chart.figure(width=12)
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == ["train_loss", "val_loss", "val_acc"]
    # a colour per run in every panel: one legend under all panels
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["run a", "run b"]
    assert axes[0].get_legend() is None
    # smoothing: a faint raw curve behind each smoothed one
    assert len(axes[0].lines) == 4 and axes[0].lines[0].get_alpha() == 0.25
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert any("2 non-finite values not drawn" in t for t in texts)
    assert any("no data from: run c" in t for t in texts)
    chart.log_y = True
    assert chart.figure().axes[0].get_yscale() == "log"

    png, svg = chart.save(tmp_path / "c.png"), chart.save(tmp_path / "c.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]
    chart.save(tmp_path / "noext", format="svg")
    assert b"<svg" in (tmp_path / "noext").read_bytes()[:500]


def test_panels_whose_colours_mean_different_things_get_their_own_legends():
    chart = LiveChart()  # a run monitor: colours restart in every panel
    for key, panel in [("train_loss", "loss"), ("val_loss", "loss"), ("val_acc", "acc")]:
        chart.set_series(key, panel=panel, label=key)
        chart.append({key: ([0, 1], [1.0, 0.5])})
    fig = chart.figure()
    assert not fig.legends
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["train_loss", "val_loss"], ["val_acc"]]


def test_static_figure_of_a_million_points_is_downsampled():
    chart = LiveChart()
    chart.set_series("s", panel="p", label="s")
    y = np.random.default_rng(1).normal(size=1_000_000)
    chart.append({"s": (np.arange(len(y)), y)})
    line = chart.figure().axes[0].lines[0]
    drawn = line.get_ydata()
    assert len(drawn) < 5000
    assert drawn.max() == y.max() and drawn.min() == y.min()


def test_mimebundle_has_widget_text_and_png_fallback():
    chart = LiveChart()
    data, _meta = chart._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "image/png" not in data  # nothing to draw yet
    chart.set_series("s", panel="loss", label="s")
    chart.append({"s": ([0, 1], [1.0, 0.5])})
    data, _meta = chart._repr_mimebundle_()
    assert data["text/plain"] == "LiveChart: 1 panel (loss), 1 series, 2 points"
    assert base64.b64decode(data["image/png"])[:4] == b"\x89PNG"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to parse the ES module")
def test_front_end_is_the_built_uplot_module(tmp_path):
    """The widget loads the chart module bundled with uPlot (no network, no hand-drawn canvas)."""
    from jupyter_ext.widgets import chart as chart_module

    built = chart_module._ESM_FILE
    assert built.is_file(), "make install builds jupyter_ext/widgets/static/chart.js"
    text = built.read_text()
    assert "jupyter-ext-chart" in text and "uplot" in text and "snapshot" in text
    assert LiveChart._esm.endswith(text) and "\n" in LiveChart._esm[:200]
    copy = tmp_path / "chart.mjs"
    copy.write_text(LiveChart._esm)
    result = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
