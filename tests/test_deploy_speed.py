"""A fast deploy: only formats that can win are exported, a redeploy of the same weights
reuses the workspace's kept export (and says so), and every step's time is recorded.

Real deploys of a tiny model on 127.0.0.1, real exports, no mocks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_deploy import stop_all
from torch import nn

import jupyter_ext
from jupyter_ext.deployment import export
from jupyter_ext.deployment.export import CACHE_DIR, DeployError, content_key, export_model
from jupyter_ext.deployment.runtime import MANIFEST, Manifest, sha256_file

pytestmark = pytest.mark.timeout(240)

STEPS = {"prepare", "export", "parity", "choose", "cache", "retire", "start", "healthy"}


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


def eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture
def ws(workspace):
    yield workspace
    stop_all(workspace)


def test_a_redeploy_of_the_same_weights_reuses_the_export_and_says_so(ws, capsys):
    model, x = tiny(), torch.randn(4, 6)
    first = jupyter_ext.deploy(model, name="t", example=x, verbose=False)
    info = first.info
    assert "export" not in info["skipped"] and len(info["content_key"]) == 64
    # pt2 cannot beat pickle, which passed: not tried, and the reason says why
    assert info["skipped"]["pt2"].startswith("it runs the same torch kernels as pickle")
    assert "; not tried: pt2 (" in first.reason and set(info["timings_us"]) == {"onnx", "pickle"}
    entry = ws / CACHE_DIR / info["content_key"]
    assert Manifest.read(entry).format == first.format

    second = jupyter_ext.deploy(model, name="t", example=x)
    out = capsys.readouterr().out
    again = second.info
    assert again["content_key"] == info["content_key"] and second.format == first.format
    assert again["skipped"]["export"].startswith(
        f"reused the {first.format} export of these weights from "
    )
    assert f"(content hash {info['content_key'][:12]})" in again["skipped"]["export"]
    assert "reused the" in out and "export and format trials skipped" in out
    assert again["reason"] == info["reason"]  # why this format, as measured when exported
    card = second._repr_mimebundle_()["text/plain"]
    assert "  export: reused the " in card
    # reused, it serves the model and keeps parity over HTTP
    assert second.status == "running" and second.max_abs_diff < 1e-5
    np.testing.assert_allclose(second.predict(x), eager(model, x), atol=1e-5)
    assert first.status == "replaced" and second.url == first.url


def test_changed_weights_are_exported_again(ws):
    model, x = tiny(), torch.randn(4, 6)
    first = jupyter_ext.deploy(model, name="t", example=x, verbose=False)
    with torch.no_grad():
        model[0].weight.add_(0.5)
    second = jupyter_ext.deploy(model, name="t", example=x, verbose=False)
    assert second.info["content_key"] != first.info["content_key"]
    assert "export" not in second.info["skipped"]
    np.testing.assert_allclose(second.predict(x), eager(model, x), atol=1e-5)
    assert len(list((ws / CACHE_DIR).iterdir())) == 2


def test_a_tampered_kept_export_is_not_used(ws):
    model, x = tiny(), torch.randn(4, 6)
    first = jupyter_ext.deploy(model, name="t", example=x, format="onnx", verbose=False)
    entry = ws / CACHE_DIR / first.info["content_key"]
    with open(entry / "model.onnx", "ab") as fh:
        fh.write(b"tampered")
    second = jupyter_ext.deploy(model, name="t", example=x, format="onnx", verbose=False)
    skipped = second.info["skipped"]
    assert "export" not in skipped
    assert skipped["reuse"].startswith(f"the export kept as {first.info['content_key'][:12]}")
    assert "does not match its manifest" in skipped["reuse"]
    np.testing.assert_allclose(second.predict(x), eager(model, x), atol=1e-5)
    # exported again and kept again, whole: a third deploy reuses it
    assert sha256_file(entry / "model.onnx") == Manifest.read(entry).sha256
    third = jupyter_ext.deploy(model, name="t", example=x, format="onnx", verbose=False)
    assert "export" in third.info["skipped"]


def test_every_step_of_a_deploy_is_timed(ws, tmp_path):
    dep = jupyter_ext.deploy(tiny(), name="t", example=torch.randn(4, 6), verbose=False)
    timings = dep.info["timings"]
    assert STEPS | {"http_parity", "other", "total"} == set(timings)
    assert all(v >= 0 for v in timings.values())
    assert timings["healthy"] > 0 and timings["export"] > 0
    parts = sum(v for k, v in timings.items() if k != "total")
    assert parts == pytest.approx(timings["total"], abs=0.01)
    bundle = jupyter_ext.deploy(
        tiny(), "bundle", name="b", example=torch.randn(4, 6), out=tmp_path / "b", verbose=False
    )
    assert {"export", "bundle", "total"} <= set(bundle.info["timings"])
    assert "export" in bundle.info["skipped"]  # the same weights: reused across targets


def test_the_content_key_follows_weights_code_settings_and_example():
    x = torch.randn(4, 6)
    base = content_key(tiny(), x, "auto", 1e-4)
    assert content_key(tiny(), x, "auto", 1e-4) == base  # the same content, the same key
    changed = tiny()
    with torch.no_grad():
        changed[2].bias[0] += 1e-6
    assert content_key(changed, x, "auto", 1e-4) != base
    assert content_key(tiny(), torch.randn(4, 6), "auto", 1e-4) == base  # values: no
    assert content_key(tiny(), torch.randn(3, 6), "auto", 1e-4) != base
    assert content_key(tiny(), x, "onnx", 1e-4) != base
    assert content_key(tiny(), x, "auto", 1e-3) != base

    class Scaled(nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.lin, self.scale = nn.Linear(6, 2), scale

        def forward(self, x):
            return self.lin(x) * self.scale

    class Shifted(Scaled):
        def forward(self, x):
            return self.lin(x) + self.scale

    torch.manual_seed(1)
    a = Scaled(2.0)
    b = Shifted(2.0)
    b.load_state_dict(a.state_dict())
    c = Scaled(3.0)
    c.load_state_dict(a.state_dict())
    keys = {content_key(m, x, "auto", 1e-4) for m in (a, b, c)}
    assert len(keys) == 3  # same weights; another forward, another setting


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


def test_a_trace_that_may_not_hold_is_refused(tmp_path):
    # the TorchScript tracer would record one branch; its warning refuses the trace
    with pytest.raises(DeployError, match="the trace may not hold for other inputs"):
        export._write_onnx_traced(Branchy().eval(), torch.ones(2, 3), tmp_path / "m.onnx")


def test_kept_exports_are_bounded_least_recently_used_first(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "CACHE_MAX_ENTRIES", 2)
    cache, x = tmp_path / "ws" / CACHE_DIR, torch.randn(4, 6)
    keys = []
    for i in range(3):
        model = tiny().eval()
        with torch.no_grad():
            model[0].bias.fill_(float(i))
        out = tmp_path / "ws" / "deployments" / f"m{i}"
        result = export_model(model, x, out, name="m", fmt="pickle", cache=cache)
        keys.append(result.content_key)
        if i == 1:  # the first is used again: the second is now the least recently used
            model0 = tiny().eval()
            with torch.no_grad():
                model0[0].bias.fill_(0.0)
            again = export_model(model0, x, out, name="m", fmt="pickle", cache=cache)
            assert again.reused_from is not None and again.content_key == keys[0]
    kept = {d.name for d in cache.iterdir()}
    assert kept == {keys[0], keys[2]}
    assert all((cache / k / MANIFEST).is_file() for k in kept)
