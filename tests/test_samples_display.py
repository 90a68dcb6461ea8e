"""A fine-tune's sample generations: in the monitor (newest and previous per prompt, live),
in ``compare`` (side by side), and in ``jupyter_ext.comparison.samples``.

Runs are written straight into a real workspace store (what the fine-tune worker writes
at each validation: ``runs.samples``), so each case is exact and fast.
"""

from __future__ import annotations

import html
import re
import time

import pytest
from helpers import wait_for

import jupyter_ext
from jupyter_ext.comparison import Comparison, prompt_outputs, samples
from jupyter_ext.store import open_store
from jupyter_ext.widgets.compare import CompareView, samples_table_html
from jupyter_ext.widgets.monitor import RunMonitor, samples_html

pytestmark = pytest.mark.timeout(60)

PROMPTS = ["What colour is the sky on Zorn?", "Who founded Vell?"]
EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def validation(step: int, epoch: int, outputs: list[str], prompts=PROMPTS) -> dict:
    """One validation's samples, as the fine-tune worker writes them."""
    return {
        "step": step,
        "epoch": epoch,
        "samples": [{"prompt": p, "output": o} for p, o in zip(prompts, outputs, strict=True)],
    }


def text_of(markup: str) -> str:
    """What a person reads: the tags taken out, entities left as they are."""
    return re.sub(r"<[^>]+>", "", markup)


def make_run(store, name, status="succeeded", samples=None, experiment="ft"):
    t0 = time.time()
    row = store.create_run(name=name, experiment=experiment, status=status, started=t0)
    store.add_metrics(row.id, [("val_loss", s, 0, t0 + s, 3.0 - s / 10) for s in range(3)])
    if samples is not None:
        store.update_run(row.id, samples=samples)
    return row.id


# -- the pure pieces ----------------------------------------------------------------------
def test_prompt_outputs_keeps_the_newest_per_prompt_and_skips_malformed_entries():
    entries = [
        validation(10, 0, ["grey", "nobody"]),
        "not a validation",  # a worker of another version: skipped, not an error
        {"step": 15, "samples": [{"output": "no prompt"}]},
        validation(20, 1, ["green", "Orla"]),
        validation(30, 2, ["green"], prompts=PROMPTS[:1]),
    ]
    hist = prompt_outputs(entries, keep=2)
    assert list(hist) == PROMPTS  # the newest validation's order, then older prompts
    assert [(o["step"], o["output"]) for o in hist[PROMPTS[0]]] == [(30, "green"), (20, "green")]
    assert [(o["step"], o["output"]) for o in hist[PROMPTS[1]]] == [(20, "Orla"), (10, "nobody")]
    assert prompt_outputs(None) == {} and prompt_outputs([]) == {}


def test_samples_html_shows_newest_and_previous_escaped_and_nothing_without_samples():
    out = samples_html([validation(10, 0, ["grey", "nobody"]), validation(20, 1, ["green", EVIL])])
    assert "<script" not in out and "<img" not in out  # model text is never markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in out
    shown = text_of(out)
    assert "latest at step 20 · epoch 2" in shown  # epochs counted from one, as the progress
    latest = re.findall(r"class='jx-sample-latest'[^>]*>(.*?)</div>", out)
    previous = re.findall(r"class='jx-sample-previous'[^>]*>(.*?)</div>", out)
    assert [text_of(x) for x in latest] == [
        "green (step 20 · epoch 2)",
        f"{html.escape(EVIL)} (step 20 · epoch 2)",
    ]
    assert [text_of(x) for x in previous] == ["step 10 · epoch 1: grey",
                                              "step 10 · epoch 1: nobody"]  # fmt: skip
    assert "color:#999" in out  # the previous one greyed
    # the same answer twice says so rather than repeating it in grey
    same = samples_html([validation(1, 0, ["a", "b"]), validation(2, 0, ["a", "c"])])
    assert "<i>unchanged</i>" in same and "step 1 · epoch 1: b" in text_of(same)
    # a first validation has nothing previous; an empty output is said, a long one cut
    first = samples_html([validation(5, 0, ["", "x" * 5000])])
    assert "jx-sample-previous" not in first and "<i>(empty)</i>" in first
    assert "&hellip;" in first and len(first) < 5000 + 2000  # the whole text only on hover
    assert samples_html(None) == "" and samples_html([]) == ""
    assert samples_html([{"step": 1, "samples": []}]) == ""


# -- the monitor ----------------------------------------------------------------------------
def test_monitor_shows_samples_and_refreshes_when_a_validation_writes_new_ones(workspace):
    store = open_store()
    run_id = make_run(store, "ft-live", status="running", samples=[validation(10, 0, ["grey",
                                                                                      EVIL])])  # fmt: skip
    store.update_run(run_id, heartbeat=time.time(), pid=None)
    mon = RunMonitor(jupyter_ext.get_run(run_id), refresh_s=0.1)
    try:
        assert mon.polling
        assert mon.samples.layout.display is None  # shown
        assert mon.children.index(mon.samples) == mon.children.index(mon.chart) + 1
        assert "grey" in mon.samples.value and "(step 10 · epoch 1)" in text_of(mon.samples.value)
        assert "<script" not in mon.samples.value and "&lt;script&gt;" in mon.samples.value
        assert "jx-sample-previous" not in mon.samples.value

        # the next validation: the new answers lead, the previous ones greyed below them
        before = mon.updates
        store.update_run(
            run_id,
            heartbeat=time.time(),
            samples=[validation(10, 0, ["grey", EVIL]), validation(20, 1, ["green", "Orla"])],
        )
        wait_for(lambda: "green" in mon.samples.value, timeout=10, what="the new samples shown")
        assert mon.updates > before
        shown = text_of(mon.samples.value)
        assert "green (step 20 · epoch 2)" in shown and "step 10 · epoch 1: grey" in shown
        assert "Orla (step 20 · epoch 2)" in shown
        assert "&lt;script&gt;" in mon.samples.value  # the older, greyed output: escaped too
        text = mon._repr_mimebundle_()["text/plain"]
        assert f"sample (step 20): {PROMPTS[0]} -> green" in text

        store.update_run(run_id, status="succeeded", ended=time.time())
        wait_for(lambda: not mon.polling, timeout=10, what="the monitor to see the end")
        assert "green" in mon.samples.value  # an ended run keeps its last samples shown
    finally:
        mon.close()


def test_monitor_of_a_run_without_samples_has_no_samples_section(workspace):
    store = open_store()
    run_id = make_run(store, "plain")
    mon = RunMonitor(jupyter_ext.get_run(run_id))
    try:
        assert mon.samples.value == "" and mon.samples.layout.display == "none"
        assert "sample" not in mon._repr_mimebundle_()["text/plain"]
    finally:
        mon.close()


# -- compare --------------------------------------------------------------------------------
@pytest.fixture
def finetunes(workspace):
    store = open_store()
    ids = {
        "a": make_run(store, "ft-a", samples=[validation(10, 0, ["grey", "nobody"]),
                                              validation(20, 1, ["green", "Orla"])]),
        "b": make_run(store, "ft-b", samples=[validation(20, 1, ["blue", EVIL])]),
        "plain": make_run(store, "plain", experiment="other"),
    }  # fmt: skip
    return ids


def test_samples_frame_is_long_and_runs_without_samples_have_no_rows(finetunes):
    df = jupyter_ext.samples(["ft-a", "ft-b", "plain"])
    assert df.columns.tolist() == ["run", "name", "step", "epoch", "prompt", "output"]
    assert len(df) == 6 and set(df.name) == {"ft-a", "ft-b"}
    newest = df[df.step == df.groupby("run").step.transform("max")]
    wide = newest.pivot(index="prompt", columns="name", values="output")
    assert wide.loc[PROMPTS[0]].tolist() == ["green", "blue"]
    empty = samples("plain")
    assert empty.empty and empty.columns.tolist() == df.columns.tolist()
    assert Comparison(["ft-a"]).samples().step.tolist() == [10, 10, 20, 20]


def test_compare_shows_each_runs_newest_answer_side_by_side(finetunes):
    view = jupyter_ext.compare(["ft-a", "ft-b", "plain"])
    try:
        assert view.samples_table.layout.display is None
        assert view.samples.to_dict() == {
            "ft-a": {PROMPTS[0]: "green", PROMPTS[1]: "Orla"},
            "ft-b": {PROMPTS[0]: "blue", PROMPTS[1]: EVIL},
        }
        table = view.samples_table.value
        assert "<script" not in table and "&lt;script&gt;" in table
        header = [text_of(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
        # one column per run with samples, marked in its curves' colour; none for "plain"
        assert header == ["prompt", "&#9679; ft-a", "&#9679; ft-b"]
        body = re.findall(r"<tr style='border-top[^>]*>(.*?)</tr>", table)
        assert len(body) == 2  # one row per prompt
        cells = [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", body[0])]
        assert cells == [PROMPTS[0], "green (step 20 · epoch 2)", "blue (step 20 · epoch 2)"]
        assert "grey" not in table  # only the newest answer of each run
        assert "sample answers" in repr(view) and "Orla" in repr(view)

        # a run without samples alone: no section at all
        view.run_picker.value = (finetunes["plain"],)
        assert view.samples_table.value == "" and view.samples_table.layout.display == "none"
        assert view.samples.empty and "sample answers" not in repr(view)
    finally:
        view.close()


def test_compare_refreshes_the_answers_when_a_running_finetune_validates(workspace):
    store = open_store()
    run_id = make_run(store, "ft-going", status="running",
                      samples=[validation(10, 0, ["grey", "nobody"])])  # fmt: skip
    store.update_run(run_id, heartbeat=time.time(), pid=None)
    view = CompareView("ft-going", refresh_s=0.5)
    try:
        assert view.live and "nobody" in view.samples_table.value
        store.update_run(run_id, heartbeat=time.time(), samples=[
            validation(10, 0, ["grey", "nobody"]), validation(20, 1, ["green", "Orla"])])  # fmt: skip
        wait_for(lambda: "Orla" in view.samples_table.value, timeout=10,
                 what="the new answers in the comparison")  # fmt: skip
        assert "nobody" not in view.samples_table.value
    finally:
        view.close()


def test_samples_table_html_is_empty_without_samples(finetunes):
    assert samples_table_html(Comparison("plain")) == ""


def test_the_servers_run_detail_carries_the_samples(finetunes):
    from jupyter_ext.server.views import run_detail

    detail = run_detail(finetunes["b"])
    assert detail["samples"] == [validation(20, 1, ["blue", EVIL])]  # raw: the panel escapes
    assert run_detail(finetunes["plain"])["samples"] is None
