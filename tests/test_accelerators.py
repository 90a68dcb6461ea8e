"""Accelerator discovery and selection, in-process and through the magics in a real kernel."""

from __future__ import annotations

import re
import sys

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
        # what the kind is, in words: never a class name such as XLAAccelerator
        assert not row["name"].endswith("Accelerator"), row["name"]


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
    assert text.startswith("tpu is not available here: no torch_xla installed")
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


def test_unavailable_kinds_have_plain_reasons(workspace):
    import platform

    notes = jupyter_ext.accelerators().set_index("accelerator").note
    if platform.system() != "Darwin":
        assert notes["mps"] == f"Apple MPS exists only on macOS, not on {platform.system()}"
    if not torch.cuda.is_available():
        from jupyter_ext.devices import _nvidia_driver

        if not _nvidia_driver():
            assert notes["cuda"].startswith("no NVIDIA driver on this machine")
        if torch.version.cuda is None:
            assert "CPU-only" in notes["cuda"]


def test_cpu_load_reads_right_on_any_thread(workspace):
    import threading
    import time

    from jupyter_ext.devices import cpu_load

    assert 0.0 <= cpu_load() <= 100.0
    # Keep one core busy past the sampling window, then read from a thread that never
    # read before (psutil's own per-thread reading would say 0 % there).
    end = time.monotonic() + 0.7
    while time.monotonic() < end:
        pass
    seen: list[float] = []
    reader = threading.Thread(target=lambda: seen.append(cpu_load()))
    reader.start()
    reader.join(timeout=30)
    assert seen and 0.0 < seen[0] <= 100.0


def _panel(**kwargs):
    from helpers import wait_for

    from jupyter_ext.widgets.accelerators import AcceleratorsPanel

    panel = AcceleratorsPanel(**kwargs)
    wait_for(panel.loaded.is_set, timeout=120, what="the panel to load")
    assert panel.load_error is None, panel.status.value
    return panel


def test_panel_shows_cards_with_bars_and_folded_missing_kinds(workspace):
    panel = _panel(refresh_s=60)
    try:
        cards = panel.cards.value
        # one card for the CPU, with a RAM bar and a load bar, in units
        assert len(re.findall(r"class='jx-acc-card[ ']", cards)) == 1 and "data-kind='cpu'" in cards
        assert cards.count("class='jx-acc-bar'") == 2
        assert re.search(r"\d+(\.\d)? (GiB|MiB) / \d+\.\d GiB \(\d+ %\)", cards)
        assert re.search(r"CPU load</span><span[^>]*>\d+ %", cards)
        # the missing kinds are folded, each with its reason, and no class name shows
        folded = panel.unavailable.value
        assert folded.startswith("<details") and "Not available here: cuda, mps, tpu" in folded
        assert folded.count("class='jx-acc-missing'") == 3
        assert "no torch_xla installed" in folded and "Accelerator<" not in folded
        assert "Accelerator" not in cards + folded
        assert panel.status.value == "" and not panel.apply.disabled
        # the text fallback reads on its own
        text = panel._repr_mimebundle_()["text/plain"]
        assert re.search(r"^cpu:0  .+\(auto → selected\)$", text, re.M)
        assert re.search(r"^  RAM +\[#*\.*\] .+ GiB \(\d+ %\)$", text, re.M)
        assert re.search(r"^  tpu +no torch_xla installed", text, re.M)
        assert text.endswith("Selection for next runs: " + str(jupyter_ext.selection()))
    finally:
        panel.close()


def test_gpu_cards_mark_the_selected_devices():
    # Rows as accelerators() gives them on a two-GPU machine (this one has none).
    from jupyter_ext.selector import Selection
    from jupyter_ext.widgets.accelerators import cards_html, panel_text

    def gpu(i: int, util: float) -> dict:
        return {"accelerator": "cuda", "index": i, "name": "NVIDIA H200", "available": True,
                "memory_total_mb": 143_771.0, "memory_used_mb": 10_240.0 * (i + 1),
                "utilization_pct": util, "note": ""}  # fmt: skip

    rows = [gpu(0, 45.0), gpu(1, float("nan"))]
    html = cards_html(rows, Selection("cuda", devices=[1]))
    assert len(re.findall(r"class='jx-acc-card[ ']", html)) == 2
    assert html.count("jx-acc-card-selected") == 1
    assert "jx-acc-card-selected' data-kind='cuda' data-index='1'" in html
    assert "10.0 GiB / 140.4 GiB (7 %)" in html and ">45 %<" in html
    assert "utilisation" in html and "not reported" in html  # NaN: no number invented
    text = panel_text(rows, Selection("auto"))
    assert text.count("(auto → selected)") == 2  # Lightning's auto takes every GPU
    assert "  utilisation [                    ] not reported" in text


def test_panel_controls_change_selection(workspace):
    from helpers import wait_for

    from jupyter_ext.poller import POLLER

    panel = _panel(refresh_s=0.05)
    try:
        panel.accelerator.value = "cpu"
        panel.devices.value = "2"
        panel.precision.value = "bf16-mixed"
        panel.apply.click()
        assert jupyter_ext.selection().devices == 2
        assert jupyter_ext.selection().precision == "bf16-mixed"
        assert "bf16-mixed" in panel.selection_line.value and panel.message.value == ""
        # Lightning's refusal is shown inline and the selection stays as it was
        panel.strategy.value = "fsdp"
        panel.apply.click()
        assert "Refused" in panel.message.value and "GPU" in panel.message.value
        assert jupyter_ext.selection().strategy == "auto"
        assert "strategy=auto" in panel.selection_line.value
        # the cards keep refreshing on the poller thread
        calls = panel._task.calls
        wait_for(lambda: panel._task.calls >= calls + 2, timeout=10, what="panel refreshes")
    finally:
        active = POLLER.active()
        panel.close()
    assert not panel.refreshing
    assert POLLER.active() == active - 1


def test_open_panels_follow_the_selection(workspace):
    from jupyter_ext import selector

    panels = [_panel(refresh_s=60), _panel(refresh_s=60)]
    watched = len(selector._watchers)
    try:
        panels[0].strategy.value = "fsdp"
        panels[0].apply.click()  # refused: shown in that panel only
        assert "Refused" in panels[0].message.value
        jupyter_ext.select("cpu", devices=2, precision="bf16-mixed")
        for p in panels:
            assert "accelerator=cpu devices=2 precision=bf16-mixed" in p.selection_line.value
            assert (p.accelerator.value, p.devices.value, p.precision.value) == (
                "cpu", "2", "bf16-mixed",
            )  # fmt: skip
            assert "(selected)" in p.table_text and "auto →" not in p.table_text
            assert p.message.value == ""  # the old refusal no longer applies
        # a choice made in one panel shows in the other
        panels[1].devices.value = "1"
        panels[1].apply.click()
        assert "devices=1" in panels[0].selection_line.value
        selector.reset()
        assert all("accelerator=auto" in p.selection_line.value for p in panels)
    finally:
        for p in panels:
            p.close()
    # closed panels stop listening
    assert len(selector._watchers) == watched - 2


def test_watch_holds_views_weakly_and_survives_a_failing_one(workspace, caplog):
    import gc

    from jupyter_ext import selector

    class View:
        def __init__(self):
            self.seen = []

        def update(self, sel):
            self.seen.append(sel.devices)

    def broken(sel):
        raise RuntimeError("view is broken")

    view = View()
    stops = [selector.watch(view.update), selector.watch(broken)]
    try:
        jupyter_ext.select("cpu", devices=2)  # the broken view is logged, not raised
        assert view.seen == [2] and "view is broken" in caplog.text
        before = len(selector._watchers)
        del view
        gc.collect()
        jupyter_ext.select("cpu", devices=1)
        assert len(selector._watchers) == before - 1  # the collected view dropped out
    finally:
        for stop in stops:
            stop()
    with pytest.raises(TypeError, match="needs a callable"):
        selector.watch("not a function")


def test_panel_shows_a_load_error_instead_of_hanging(workspace, monkeypatch):
    # A broken Lightning install, for real: Python refuses to import a module whose
    # sys.modules entry is None.
    from jupyter_ext.widgets.accelerators import AcceleratorsPanel

    monkeypatch.setitem(sys.modules, "lightning.pytorch.accelerators", None)
    panel = AcceleratorsPanel(refresh_s=60)
    try:
        assert panel.wait_loaded(60)
        assert isinstance(panel.load_error, ImportError)
        assert "Could not load the accelerators" in panel.status.value
        assert "ModuleNotFoundError: import of lightning" in panel.status.value
        assert "<summary>traceback</summary>" in panel.status.value
        assert (
            "Could not load the accelerators: ModuleNotFoundError"
            in (panel._repr_mimebundle_()["text/plain"])
        )
        assert not panel.refreshing and panel.apply.disabled
    finally:
        panel.close()
    with pytest.raises(ValueError, match="refresh_s must be a positive number"):
        AcceleratorsPanel(refresh_s=0)


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


def test_panel_in_a_real_kernel_loads_then_follows_the_selection(start_kernel):
    k = start_kernel()
    # Shown before torch is imported, saying so; filled by the loader thread.
    k.run(
        "import sys\n"
        "assert 'torch' not in sys.modules, 'the extension must not import torch'\n"
        "from jupyter_ext.widgets.accelerators import AcceleratorsPanel\n"
        "p = AcceleratorsPanel()\n"
        "first = p.status.value\n"
        "assert 'Loading accelerators… (importing torch)' in first, first\n"
        "assert p.accelerator.disabled and p.cards.value == ''\n"
        "assert p.wait_loaded(120) and p.load_error is None\n"
        "assert \"data-kind='cpu'\" in p.cards.value and p.status.value == ''\n"
        "p.close(); assert not p.refreshing"
    ).ok()

    cell = k.run("%accelerators").ok()
    bundle = cell.data[0]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    # the output was re-sent once loaded: text and HTML copies carry the devices
    assert re.search(r"^cpu:0  .+$", bundle["text/plain"], re.M), bundle["text/plain"]
    assert "Not available here:" in bundle["text/plain"]
    assert "class='jx-acc-card" in bundle["text/html"]

    # What the front end holds (nbclient keeps every widget's state from the comm
    # messages, as a browser does): the panel's selection line follows %accelerator.
    panel_id = bundle["application/vnd.jupyter.widget-view+json"]["model_id"]

    def selection_line() -> str:
        states = k.client.widget_state
        children = [c.removeprefix("IPY_MODEL_") for c in states[panel_id]["children"]]
        lines = [states[c].get("value", "") for c in children]
        return next(v for v in lines if "Selection for next runs" in v)

    assert "accelerator=auto" in selection_line()
    k.run("%accelerator cpu --devices 2").ok()
    assert "accelerator=cpu devices=2" in selection_line()
    # the Python API notifies too, and the controls of the panel follow
    k.run(
        "import jupyter_ext\n"
        "p = AcceleratorsPanel(); assert p.wait_loaded(120)\n"
        "jupyter_ext.select('cpu', devices=1)\n"
        "assert p.devices.value == '1' and 'devices=1' in p.selection_line.value\n"
        "p.accelerator.value = 'cpu'; p.devices.value = '2'; p.apply.click()\n"
        "assert jupyter_ext.selection().devices == 2\n"
        "p.close(); assert not p.refreshing"
    ).ok()
    assert "accelerator=cpu devices=2" in selection_line()


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
