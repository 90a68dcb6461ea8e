"""Accelerator discovery and selection, in-process and through the magics in a real kernel."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import jupyter_ext
from jupyter_ext.selector import SelectionError


def test_accelerators_lists_cpu_with_memory(workspace):
    df = jupyter_ext.accelerators()
    assert list(df.columns) == [
        "accelerator",
        "index",
        "name",
        "available",
        "memory_total_mb",
        "memory_used_mb",
        "utilization_pct",
        "note",
    ]
    cpu = df[df.accelerator == "cpu"].iloc[0]
    assert bool(cpu.available)
    assert cpu.memory_total_mb > 100
    assert 0 < cpu.memory_used_mb <= cpu.memory_total_mb
    # every kind Lightning registers is listed, available or not, with a reason when not
    assert {"cpu", "cuda", "mps", "tpu"} <= set(df.accelerator)
    for _, row in df[~df.available].iterrows():
        assert row.note


def test_select_validates_with_lightning(workspace):
    sel = jupyter_ext.select("cpu", devices=2, precision="bf16-mixed")
    assert jupyter_ext.selection() == sel
    assert sel.trainer_kwargs() == {
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "auto",
        "precision": "bf16-mixed",
    }
    # ddp is refused by Lightning inside an interactive session, but runs go to a worker script
    assert jupyter_ext.select("cpu", devices="2", strategy="ddp").strategy == "ddp"
    assert jupyter_ext.device() == torch.device("cpu")


def test_select_refusals_keep_previous_selection(workspace):
    before = jupyter_ext.select("cpu", devices=1)
    with pytest.raises(SelectionError, match=r"Valid precision values: .*bf16-mixed"):
        jupyter_ext.select("cpu", precision="fp42")
    with pytest.raises(SelectionError, match="requires a GPU accelerator"):
        jupyter_ext.select("cpu", strategy="fsdp")
    with pytest.raises(SelectionError, match="devices='two' is not understood"):
        jupyter_ext.select("cpu", devices="two")
    assert jupyter_ext.selection() == before


def test_refusing_missing_hardware_says_why_without_install_advice(workspace):
    pytest.importorskip("torch")
    import importlib.util

    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("this machine has torch_xla")
    before = jupyter_ext.selection()
    with pytest.raises(SelectionError) as refused:
        jupyter_ext.select("tpu")
    text = str(refused.value)
    assert text.startswith("tpu is not available here: no TPU here")
    assert "Available accelerators here: cpu" in text
    assert "pip install" not in text and "HINT" not in text
    assert jupyter_ext.selection() == before
    notes = jupyter_ext.accelerators().set_index("accelerator").note
    assert "torch_xla" in notes["tpu"] and "pip" not in notes["tpu"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_select_unavailable_cuda_names_cpu(workspace):
    with pytest.raises(SelectionError, match=r"Available accelerators here: cpu"):
        jupyter_ext.select("cuda")


def test_config_default_selection_and_home(workspace, tmp_path):
    cfg = jupyter_ext.get_config()
    assert cfg.home_path == workspace
    cfg.accelerator = "cpu"
    cfg.devices = "1"
    assert jupyter_ext.selection().devices == 1
    with pytest.raises(Exception, match="at most 2 Hz"):
        cfg.monitor_refresh_s = 0.1


def test_panel_controls_change_selection(workspace):
    from helpers import wait_for

    from jupyter_ext.poller import POLLER
    from jupyter_ext.widgets.accelerators import AcceleratorsPanel

    panel = AcceleratorsPanel(refresh_s=0.05)
    try:
        assert "cpu" in panel.table.value and "GiB" in panel.table.value
        panel.accelerator.value = "cpu"
        panel.devices.value = "2"
        panel.precision.value = "bf16-mixed"
        panel.apply.click()
        assert jupyter_ext.selection().devices == 2
        assert jupyter_ext.selection().precision == "bf16-mixed"
        assert "bf16-mixed" in panel.message.value
        # Lightning's refusal is shown inline and the selection stays as it was
        panel.strategy.value = "fsdp"
        panel.apply.click()
        assert "Refused" in panel.message.value and "GPU" in panel.message.value
        assert jupyter_ext.selection().strategy == "auto"
        # the table keeps refreshing on the poller thread
        calls = panel._task.calls
        wait_for(lambda: panel._task.calls >= calls + 2, timeout=10, what="panel refreshes")
    finally:
        active = POLLER.active()
        panel.close()
    assert not panel.refreshing
    assert POLLER.active() == active - 1


def test_magics_in_a_real_kernel(start_kernel):
    k = start_kernel()
    cell = k.run("df = %accelerators --list\ndf").ok()
    assert "cpu" in cell.text and "memory_total_mb" in cell.text
    k.run("assert df.loc[df.accelerator == 'cpu', 'memory_total_mb'].item() > 100").ok()

    cell = k.run("%accelerator cpu --devices 2 --precision bf16-mixed").ok()
    assert "accelerator=cpu devices=2 precision=bf16-mixed" in cell.text
    k.run("import jupyter_ext; assert jupyter_ext.selection().devices == 2").ok()

    if not torch.cuda.is_available():
        cell = k.run("%accelerator cuda")
        assert "UsageError" in cell.text and "Available accelerators here: cpu" in cell.text

    cell = k.run("%accelerator cpu --precision fp42")
    assert "UsageError" in cell.text and "Valid precision values" in cell.text
    assert "bf16-mixed" in cell.text
    # the refusal lost nothing: the earlier selection holds, the kernel is alive
    k.run("assert jupyter_ext.selection().precision == 'bf16-mixed'").ok()
    cell = k.run("%accelerator").ok()
    assert "devices=2" in cell.text


def test_panel_displays_in_kernel_with_text_fallback(start_kernel):
    k = start_kernel()
    cell = k.run("%accelerators").ok()
    bundle = cell.data[0]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "cpu" in bundle["text/plain"]
    # drive the widget objects in the kernel: the controls set the selection
    k.run(
        "from jupyter_ext.widgets.accelerators import AcceleratorsPanel\n"
        "p = AcceleratorsPanel()\n"
        "p.accelerator.value = 'cpu'; p.devices.value = '2'; p.apply.click()\n"
        "import jupyter_ext; assert jupyter_ext.selection().devices == 2\n"
        "p.close(); assert not p.refreshing"
    ).ok()


def test_config_magic_and_env(start_kernel, workspace):
    k = start_kernel()
    k.run("%config ToolkitConfig.panel_refresh_s = 2.5").ok()
    cell = k.run(
        "import jupyter_ext; cfg = jupyter_ext.get_config(); print(cfg.panel_refresh_s, cfg.home)"
    ).ok()
    assert cell.stdout.split() == ["2.5", str(workspace)]


def test_public_api_all_is_complete_and_sorted():
    names = jupyter_ext.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(jupyter_ext, name) is not None
    assert set(jupyter_ext._LAZY) <= set(names)


def test_accelerators_frame_types(workspace):
    df = jupyter_ext.accelerators()
    assert isinstance(df, pd.DataFrame)
    assert df["available"].dtype == bool


@pytest.mark.gpu
def test_each_cuda_device_listed_with_nvml_memory(workspace):
    import pynvml

    pynvml.nvmlInit()
    try:
        expected = [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total
                    for i in range(pynvml.nvmlDeviceGetCount())]  # fmt: skip
    finally:
        pynvml.nvmlShutdown()
    cuda = jupyter_ext.accelerators().query("accelerator == 'cuda'")
    assert list(cuda["index"]) == list(range(torch.cuda.device_count()))
    assert cuda["available"].all()
    for (_, row), total in zip(cuda.iterrows(), expected, strict=True):
        assert row.memory_total_mb == pytest.approx(total / 2**20)
        assert 0 <= row.memory_used_mb <= row.memory_total_mb
        assert 0 <= row.utilization_pct <= 100
    sel = jupyter_ext.select("cuda", devices=1, precision="16-mixed")
    assert jupyter_ext.device() == torch.device("cuda", 0) and sel.accelerator == "cuda"


def test_resolve_applies_run_overrides_without_changing_the_selection(workspace):
    from jupyter_ext.selector import resolve

    base = jupyter_ext.select("cpu", devices=1, precision="bf16-mixed")
    run_sel = resolve(devices=2, strategy="ddp")
    assert (run_sel.accelerator, run_sel.devices, run_sel.precision, run_sel.strategy) == (
        "cpu", 2, "bf16-mixed", "ddp",
    )  # fmt: skip
    assert jupyter_ext.selection() == base
    with pytest.raises(SelectionError, match="requires a GPU accelerator"):
        resolve(strategy="fsdp")
    with pytest.raises(SelectionError, match="not a selection field: max_epochs"):
        resolve(max_epochs=3)
