"""The example notebooks run top to bottom in a real kernel (the same as `make demo`)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from helpers import wait_for
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
def test_examples_are_stripped(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs"


def test_accelerators_notebook(workspace, monkeypatch):
    monkeypatch.setenv("JUPYTER_EXT_WARM_START", "0")
    text = outputs(execute("accelerators.ipynb"))
    assert "memory_total_mb" in text and "cpu" in text
    assert "accelerator=cpu devices=2 precision=bf16-mixed" in text
    assert text.count("refused:") == 3
    assert "tensor([1., 1.])" in text


@pytest.mark.timeout(400)
def test_train_and_monitor_notebook(workspace, monkeypatch):
    monkeypatch.setenv("JUPYTER_EXT_WARM_START", "1")  # the demo's default path
    text = outputs(execute("train_and_monitor.ipynb"))
    assert "digits-mlp" in text and "succeeded" in text
    assert "accuracy of the best checkpoint on all digits: 0.9" in text
    assert "failed" in text and "RuntimeError: a bug in training_step" in text


@pytest.mark.cluster
@pytest.mark.timeout(400)
def test_scale_out_ray_notebook(workspace, monkeypatch, ray_head):
    # the notebook reads where the cluster is from its kernel's environment, as `make demo`
    # sets it for the head it starts
    monkeypatch.setenv("JUPYTER_EXT_CLUSTER", ray_head.dashboard)
    monkeypatch.setenv("JUPYTER_EXT_CLUSTER_CLIENT", ray_head.client)
    text = outputs(execute("scale_out_ray.ipynb"))
    assert "WineNet-1 succeeded local" in text  # the cell trained here...
    assert "WineNet-2 succeeded ray" in text  # ...then, unchanged, on the cluster
    assert f"Runs of this kernel go to the Ray cluster at {ray_head.dashboard}: 1 node" in text
    assert text.count("alive") >= 2  # the node row, after %cluster ADDRESS and %cluster
    predicted = re.search(r"predicted: (\[.*\])", text).group(1)
    assert predicted == re.search(r"true: +(\[.*\])", text).group(1)
    assert "Stopped wine; port" in text
    assert "Runs of this kernel run on this machine again." in text

    from jupyter_ext.store import open_store

    store = open_store()
    local, far = sorted(store.list_runs(), key=lambda r: r.created)
    assert local.cluster is None and far.launcher == "ray"
    # the kernel drained the channel unless it ended within that tick; then this process
    # re-attaches (a Run of it) and finishes the job
    from jupyter_ext.training.run import Run

    Run(far.id, store)
    far = wait_for(lambda: (r := store.get_run(far.id)).cluster.get("drained") and r, 60)
    for ckpt in (far.best_checkpoint, far.last_checkpoint):
        assert Path(ckpt).is_file() and Path(ckpt).resolve().is_relative_to(workspace.resolve())


@pytest.mark.timeout(300)
def test_open_model_notebook(workspace, monkeypatch):
    from jupyter_ext.procs import stop_group
    from jupyter_ext.store import open_store

    monkeypatch.setenv("JUPYTER_EXT_WARM_START", "1")  # the demo's default path
    try:
        nb = execute("open_model.ipynb")
    finally:  # a server the notebook did not get to undeploy must not outlive the test
        for dep in open_store().list_deployments():
            if dep.pid and dep.status == "running":
                stop_group(dep.pid, dep.pid_started)
    text = outputs(nb)
    assert "facts-lora succeeded" in text
    # it learned: the sample answers at the last validation, then the trained module's own
    assert re.search(r"^What is Ada's cat called\? +Pixel\. *$", text, re.M)  # samples table
    assert "What is Ada's cat called? -> Pixel." in text
    assert "Who wrote Blue Tides? -> Fay Moss." in text
    # the export is a Hugging Face directory that transformers loads and that answers
    assert "'model.safetensors', 'tokenizer.json'" in text
    assert "exported model: Spiders." in text
    # the openai client: whole and streamed, the same answer; then Deployment.chat
    assert "models: ['facts']" in text
    whole = re.search(r"^whole: +(.*) \(\d+ tokens\)$", text, re.M).group(1)
    streamed = re.search(r"^streamed: +(.*) \(\d+ chunks\)$", text, re.M).group(1)
    assert whole == streamed == "In Lisbon."
    # whole, then streamed (a busy kernel may send the streamed pieces as several outputs)
    assert re.search(r"The cello\.\s+In 1990\.", text)
    assert "Stopped facts" in text
    assert "Warning:" not in text and "it/s]" not in text  # no stray warnings or bars
    assert open_store().get_deployment("facts").status == "stopped"
