"""Tables for reading (jupyter_ext.tables): runs, deployments and comparison summaries,
built from a real SQLite store; the frames the API returns keep their data unchanged."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest

import jupyter_ext
from jupyter_ext import tables
from jupyter_ext.comparison import Comparison
from jupyter_ext.store import open_store


def _cells(html: str) -> list[list[str]]:
    """The body rows of a rendered table, each cell's text with the tags removed."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
        for r in rows
    ]


def _header_rows(html: str) -> list[list[str]]:
    """The header rows: the first spans groups, the second names the grouped columns."""
    head = html.split("<thead>", 1)[1].split("</thead>", 1)[0]
    return [
        [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", head, flags=re.S)
    ]


def _headers(html: str) -> list[str]:
    return [h for row in _header_rows(html) for h in row]


def _best_titles(html: str) -> list[str]:
    return re.findall(r'title="(best [^"]*)"', html)


def test_values_read_as_a_person_reads_them():
    assert tables.number(0.035864870995283) == "0.03586"
    assert tables.number(3.670400474220514e-05) == "3.67e-05"
    assert tables.number(0.9561) == "0.9561"
    assert tables.number(np.float32(0.1)) == "0.1"
    assert (tables.number(64), tables.number(np.int64(3)), tables.number(12345.6)) == (
        "64",
        "3",
        "12346",
    )
    assert tables.number(2.5e7) == "2.5e+07"
    assert (tables.number(float("nan")), tables.number(float("-inf"))) == ("—", "-inf")
    assert (tables.number(None), tables.number(False)) == ("", "False")

    now = 1_800_000_000.0
    assert tables.ago(now - 3, now) == "just now"
    assert tables.ago(now - 42, now) == "42 s ago"
    assert tables.ago(now - 190, now) == "3 min ago"
    assert tables.ago(now - 2 * 3600 - 5, now) == "2 h ago"
    assert tables.ago(now - 30 * 3600, now) == "yesterday"
    assert tables.ago(now - 5 * 86400, now) == "5 days ago"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", tables.ago(now - 90 * 86400, now))
    assert tables.ago(now + 600, now) == "in 10 min"  # a clock ahead of ours
    # a naive Timestamp is UTC, as pd.Timestamp(t, unit="s") makes it
    assert tables.ago(pd.Timestamp(now - 190, unit="s"), now) == "3 min ago"
    assert (tables.ago(None), tables.ago(pd.NaT)) == ("", "")

    assert [tables.duration(s) for s in (0.2, 4.4, 59.6, 750, 3723, 90061)] == [
        "0:00",
        "0:04",
        "1:00",
        "12:30",
        "1:02:03",
        "1 d 1:01:01",
    ]
    assert (tables.duration(None), tables.duration(float("nan"))) == ("", "")

    assert tables.short_id("20261202-071503-482-k7q2m9xa") == "k7q2m9xa"
    assert tables.short_id("20261124-112744-d232") == "d232"
    assert tables.short_id("0123456789abcdef") == "89abcdef"


@pytest.fixture
def three_runs(workspace):
    """Three finished runs in a real store: two lr values, one shared hidden size."""
    store = open_store()
    now = time.time()
    made = {}
    specs = [
        ("bc-1", "succeeded", {"lr": 0.001, "hidden": 64}, (0.0358648709, 0.9561), 240),
        ("bc-2", "failed", {"lr": 0.01, "hidden": 64}, (0.0041824812, 0.9474), 120),
        ("bc-long-name-with_many_parts", "stopped", {"lr": 0.003, "hidden": 64}, (3.67e-5, 0.97), 4),
    ]  # fmt: skip
    for name, status, hp, (loss, acc), age in specs:
        r = store.create_run(
            name=name, experiment="bc", status=status, hparams=hp, created=now - age,
            started=now - age, ended=now - age + 4.2, accelerator="cpu", devices="1",
        )  # fmt: skip
        points = [("train_loss", 0, 0, now, loss * 2), ("train_loss", 1, 0, now, loss)]
        store.add_metrics(r.id, [*points, ("val_acc", 1, 0, now, acc)])
        made[name] = r
    return made


def test_runs_table_reads_name_first_id_last_and_marks_the_best(three_runs):
    df = jupyter_ext.runs()
    # the data are unchanged: plain columns, dicts, full precision
    assert list(df.columns) == [
        "id", "name", "experiment", "status", "progress", "accelerator", "devices",
        "hparams", "metrics", "created", "duration_s",
    ]  # fmt: skip
    assert isinstance(df, pd.DataFrame) and isinstance(df, tables.RunsFrame)
    row = df.set_index("name").loc["bc-1"]
    assert row.metrics["train_loss"] == 0.0358648709 and row.hparams == {"lr": 0.001, "hidden": 64}
    # anything derived from it is a plain frame again
    assert type(df[df.status == "failed"]) is pd.DataFrame and type(df.head(1)) is pd.DataFrame

    html = df._repr_html_()
    top, sub = _header_rows(html)
    # column groups span the first header row; metrics of one quantity stand together
    assert top == [
        "name", "status", "progress", "hparams", "latest metrics", "created", "duration", "id",
    ]  # fmt: skip
    assert sub == ["lr", "val_acc", "train_loss"]
    rows = {r[0]: r for r in _cells(html)}
    one = rows["bc-1"]
    # name, status, progress, lr, val_acc, train_loss, created, duration, id
    assert one[1] == "succeeded" and one[2].endswith("100%")
    assert one[3:6] == ["0.001", "0.9561", "0.03586"]
    assert one[6:] == ["4 min ago", "0:04", tables.short_id(three_runs["bc-1"].id)]
    assert f'title="{three_runs["bc-1"].id}"' in html  # the full id in a tooltip
    assert rows["bc-long-name-with_many_parts"][5] == "3.67e-05"
    # what every run shares is said once below the table, not as columns of equal values
    assert "every run here: experiment=bc, device=cpu, hidden=64" in html
    # best per metric by its direction: the smallest loss, the largest accuracy
    best = _best_titles(html)
    assert best == ["best val_acc (max): 0.97", "best train_loss (min): 3.67e-05"]
    # badges and wrapping: nothing clipped, long names break, the table scrolls in its box
    assert "overflow-x:auto" in html and "table-layout:auto" in html
    assert "bc-<wbr>long-<wbr>name-<wbr>with_<wbr>many_<wbr>parts" in html
    assert "#cf222e" in html  # the failed run's red badge


def test_runs_magic_displays_the_table(three_runs, start_kernel):
    k = start_kernel()
    cell = k.run("%runs --experiment bc").ok()
    html = cell.data[0]["text/html"]
    assert "latest metrics" in html and "every run here: experiment=bc" in html
    assert "bc-long" in cell.data[0]["text/plain"]  # the plain text is the DataFrame's


def test_a_single_run_shows_all_its_hparams_and_no_best(workspace):
    store = open_store()
    r = store.create_run(name="solo", status="succeeded", hparams={"opt": {"name": "adam"}})
    store.add_metrics(r.id, [("val_loss", 0, 0, time.time(), 0.5)])
    store.create_run(name="other", experiment="elsewhere", status="queued")
    html = tables.runs_html(jupyter_ext.runs(experiment="default"))
    assert "opt.name" in _headers(html) and _best_titles(html) == []
    assert _header_rows(tables.runs_html(jupyter_ext.runs()))[0][:2] == ["name", "experiment"]
    assert tables.runs_html(jupyter_ext.runs(status="running")).endswith("no runs</div>")


def test_names_are_escaped():
    df = pd.DataFrame({"id": ["x-abcd"], "name": ["<script>alert(1)</script>"]})
    html = tables.runs_html(df)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_summary_html_follows_the_comparisons_columns(three_runs):
    cmp = Comparison(list(three_runs))
    df = cmp.summary()
    html = tables.summary_html(df)
    top, sub = _header_rows(html)
    assert top == ["name", "status", "hparams", "train_loss", "val_acc", "id"]
    assert "every run here: experiment=bc" in html
    # one heading per metric over its last and best
    assert sub == ["lr", "last", "best", "last", "best"]
    assert _best_titles(html) == [
        "best train_loss.last (min): 3.67e-05",
        "best train_loss.best (min): 3.67e-05",
        "best val_acc.last (max): 0.97",
        "best val_acc.best (max): 0.97",
    ]
    rows = _cells(html)
    assert [r[0] for r in rows] == list(df["name"])  # the order given is kept
    assert rows[0][-1] == tables.short_id(df["run"].iloc[0])
    # an override of the direction, as Comparison.summary(best=...) takes it
    flipped = tables.summary_html(df, best={"val_acc": "min"})
    assert "best val_acc.last (min): 0.9474" in flipped
    # a run that never logged a metric shows a dash, and is not the best
    df.loc[0, "val_acc.last"] = np.nan
    assert "—" in tables.summary_html(df)
    frame = tables.shown(df, "summary")
    frame.attrs["best"] = {"val_acc": "min"}
    assert "best val_acc.best (min)" in frame._repr_html_()


def test_deployments_table(workspace):
    store = open_store()
    store.upsert_deployment(
        "digits", target="local", status="stopped", url="http://127.0.0.1:40291",
        format="onnx", engine="fastapi", path="/ws/deployments/digits-1a2b3c",
    )  # fmt: skip
    store.upsert_deployment(
        "broken", target="local", status="failed", format="pt2", engine="fastapi",
        error="parity check failed: differs by 0.3\nits log ends with:\nboom",
    )  # fmt: skip
    df = jupyter_ext.deployments()
    assert isinstance(df, tables.DeploymentsFrame) and df["created"].dtype.kind == "M"
    html = df._repr_html_()
    heads = _headers(html)
    assert heads[:3] == ["name", "status", "url"] and heads[-1] == "error"
    rows = {r[0]: r for r in _cells(html)}
    assert rows["digits"][1] == "stopped" and rows["digits"][2] == "http://127.0.0.1:40291"
    assert rows["broken"][-1] == "parity check failed: differs by 0.3"
    assert "just now" in rows["digits"]
    assert 'title="parity check failed: differs by 0.3\nits log ends with:\nboom"' in html


def test_frame_html_for_any_results_frame():
    df = pd.DataFrame(
        {
            "value": [0.31, 0.12, np.nan],
            "run_id": ["20261202-071503-482-k7q2m9xa", "20261202-071503-483-aaaabbbb", "x"],
            "name": ["t0", "t1", "t2"],
            "state": ["COMPLETE", "COMPLETE", "FAIL"],
            "params": [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.5}],
            "datetime_start": pd.to_datetime([time.time() - 300] * 3, unit="s"),
            "duration": pd.to_timedelta([4, 64, 1], unit="s"),
        }
    )
    html = tables.frame_html(df, best={"value": "min"})
    top, sub = _header_rows(html)
    assert top == ["name", "value", "state", "params", "datetime_start", "duration", "run_id"]
    assert sub == ["lr"]
    rows = _cells(html)
    assert rows[1][0] == "t1" and "1:04" in rows[1] and "5 min ago" in rows[1]
    assert rows[0][-1] == "k7q2m9xa" and rows[2][rows[2].index("—")] == "—"
    assert _best_titles(html) == ["best value (min): 0.12"]
    with pytest.raises(ValueError, match="kind must be one of runs, deployments, summary"):
        tables.shown(df, "sweeps")
