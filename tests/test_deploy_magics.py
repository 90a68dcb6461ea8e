"""%%deploy, %deployments, %undeploy in a real kernel; the example notebook; --from-run."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from test_deploy import stop_all

import jupyter_ext
from jupyter_ext.procs import group_members
from jupyter_ext.store import open_store

pytestmark = pytest.mark.timeout(300)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deploy_model.ipynb"


def test_deploy_magics_in_a_kernel(start_kernel, workspace):
    k = start_kernel()
    try:
        cell = k.run(
            "%%deploy --name tiny --example 'torch.randn(2, 4)' --format onnx\n"
            "import torch\n"
            "torch.manual_seed(0)\n"
            "model = torch.nn.Sequential(torch.nn.Linear(4, 3))\n"
        ).ok()
        assert "Serving tiny at http://127.0.0.1:" in cell.text
        assert "Deployment tiny: running at http://127.0.0.1:" in cell.text
        assert "format: onnx: as requested" in cell.text and "curl -s -X POST" in cell.text
        cell = k.run(
            "import jupyter_ext\n"
            "dep = jupyter_ext.get_deployment('tiny')\n"
            "x = torch.randn(3, 4)\n"
            "print(torch.allclose(dep.predict(x), model(x), atol=1e-5))"
        ).ok()
        assert cell.stdout.strip() == "True"
        listing = k.run("%deployments").ok().text
        assert "tiny" in listing and "running" in listing

        refusals = {
            "%%deploy --name bad\nmodel = 5": "UsageError: deploy needs a torch.nn.Module",
            "%%deploy --example nope_var\nmodel = torch.nn.Linear(4, 3)": (
                "UsageError: --example 'nope_var' failed: NameError"
            ),
            "%%deploy --model missing_var\npass": "UsageError: no variable `missing_var`",
            "%%deploy --frobnicate\npass": "UsageError: unrecognized arguments: --frobnicate",
            "%%deploy --format tflite\npass": "invalid choice: 'tflite'",
            "%%deploy --name lin\nmodel = torch.nn.Linear(4, 3)": "example_input_array",
            "%undeploy nope": "UsageError: no deployment named 'nope'",
        }
        for source, expected in refusals.items():
            assert expected in k.run(source).text, source
        broken = k.run("%%deploy --name broken\nraise RuntimeError('the cell broke')")
        assert "RuntimeError: the cell broke" in broken.text and "Serving" not in broken.text
        assert [r.name for r in open_store(workspace).list_deployments()] == ["tiny"]

        row = open_store(workspace).get_deployment("tiny")
        cell = k.run("%undeploy tiny").ok()
        assert cell.stdout.strip() == f"Stopped tiny; port {row.port} is free."
        assert open_store(workspace).get_deployment("tiny").status == "stopped"
        assert group_members(row.pid) == []
        assert k.run("1 + 1").ok().data[0]["text/plain"] == "2"  # the kernel lives on
    finally:
        stop_all(workspace)


def test_deploy_takes_the_model_the_cell_assigns_or_the_one_named(start_kernel, workspace):
    k = start_kernel()
    try:
        k.run("import torch\nimport jupyter_ext\nmodel = torch.nn.Linear(4, 3)").ok()
        options = "--example 'torch.randn(2, 4)' --format onnx"
        # a model left from an earlier cell is not deployed silently
        stale = k.run(f"%%deploy --name stale {options}\nunrelated = 1")
        assert "UsageError: the cell does not assign `model`" in stale.text
        assert "earlier cell" in stale.text and "--model model" in stale.text
        line = k.run(f"%deploy --name stale {options}")
        assert "UsageError: %deploy without a cell needs the model named: --model VAR" in line.text
        both = k.run("%deploy --model model --from-run r")
        assert "UsageError: --from-run deploys the run's model; leave out --model" in both.text
        assert "Serving" not in stale.text + line.text + both.text
        assert open_store(workspace).list_deployments() == []
        assert k.run("print(len(jupyter_ext.deployments()))").ok().stdout.strip() == "0"

        cell = k.run(f"%%deploy --name chosen --model model {options}\n# on purpose").ok()
        assert "Serving chosen at http://127.0.0.1:" in cell.text
        bundle = k.run(f"%deploy --model model --target bundle --name kept {options}").ok()
        assert "Bundle written to" in bundle.text
        records = {r.name: r.status for r in open_store(workspace).list_deployments()}
        assert records == {"chosen": "running", "kept": "built"}
        running = k.run("%deployments --status running").ok().text
        assert "chosen" in running and "kept" not in running
        bad = k.run("%deployments --colour red")
        assert "UsageError: unrecognized arguments: --colour red" in bad.text
    finally:
        stop_all(workspace)


def test_deploy_example_notebook_runs(workspace, tmp_path):
    nb = nbformat.read(EXAMPLE, as_version=4)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        stop_all(workspace)
    text = "\n".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        for o in c.get("outputs", [])
    )
    accuracy = float(text.split("training accuracy: ")[1].split()[0])
    assert accuracy > 0.9
    assert "Serving digits at http://127.0.0.1:" in text
    assert re.search(r"parity: max \|diff\| \S+ over HTTP", text)
    predicted = text.split("predicted: ")[1].splitlines()[0]
    true = text.split("true:      ")[1].splitlines()[0]
    hits = sum(a == b for a, b in zip(eval(predicted), eval(true), strict=True))
    assert hits >= 7  # the served model is the trained one
    assert "422 " in text and "expects [N, 64]" in text
    assert "Dockerfile" in text and "requirements.txt" in text
    assert "Stopped digits; port" in text
    rows = {r.name: r for r in open_store(workspace).list_deployments()}
    assert rows["digits"].status == "stopped" and "digits-bundle" not in rows
    assert group_members(rows["digits"].pid) == []


class Scorer(L.LightningModule):
    """A linear classifier with a forward, trained by a real run in a worker."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_deploy_from_a_runs_best_checkpoint(workspace):
    from tiny_models import loaders

    train_dl, _ = loaders()
    run = jupyter_ext.train(Scorer(), train_dataloaders=train_dl, max_epochs=1, name="scorer")
    run.wait(timeout=180, raise_on_failure=True)
    try:
        dep = jupyter_ext.deploy(from_run="scorer", example=torch.randn(2, 4), format="onnx")
        assert dep.name == "scorer" and dep.status == "running"
        assert open_store(workspace).get_deployment("scorer").run_id == run.id
        trained = run.load_model()
        x = torch.randn(5, 4)
        with torch.no_grad():
            np.testing.assert_allclose(dep.predict(x).numpy(), trained(x).numpy(), atol=1e-5)
        with pytest.raises(ValueError, match="not both"):
            jupyter_ext.deploy(Scorer(), from_run="scorer")
        with pytest.raises(LookupError, match="no run named or with id 'nosuch'"):
            jupyter_ext.deploy(from_run="nosuch")
    finally:
        stop_all(workspace)
