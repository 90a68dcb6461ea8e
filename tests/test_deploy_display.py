"""What a deployment shows: a compact card whose curl and Python requests work as pasted,
checked against real servers on 127.0.0.1."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import torch
from test_deploy import stop_all

import jupyter_ext

pytestmark = pytest.mark.timeout(240)


def _no_proxy_env(**extra: str) -> dict[str, str]:
    """The environment without proxies (a request to 127.0.0.1 must not leave the host)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra)
    return env


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json", **(headers or {})}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _section(text: str, label: str) -> str:
    """One labelled line of the card's text (or the indented block under it)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"  {label}: "):
            return line.split(": ", 1)[1]
        if line == f"  {label}:":
            block = []
            for more in lines[i + 1 :]:
                if not more.startswith("    "):
                    break
                block.append(more[4:])
            return "\n".join(block)
    raise AssertionError(f"no {label!r} in the card:\n{text}")


@pytest.fixture
def ws(workspace):
    yield workspace
    stop_all(workspace)


def test_the_card_is_compact_and_its_curl_body_is_accepted(ws):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    dep = jupyter_ext.deploy(model, name="tiny", example=torch.randn(2, 4), verbose=False)
    card = dep._repr_mimebundle_()
    text, html = card["text/plain"], card["text/html"]
    assert text.splitlines()[0] == (
        f"Deployment tiny: running at {dep.url} (fastapi, pid {dep.pid})"
    )
    # the format chosen and why, in one line; the parity error; what the model takes
    reason = _section(text, "format")
    assert reason.startswith(f"{dep.format}: auto chose the fastest format passing parity")
    assert "\n" not in reason and "us" in reason
    assert re.fullmatch(
        r"max \|diff\| [0-9.e+-]+ over HTTP on the example \[2, 4\]; healthy [0-9.]+ s after start",
        _section(text, "parity"),
    )
    assert _section(text, "takes") == "FP32 [N, 4] -> FP32 [N, 3]"
    assert len(text.splitlines()) <= 10  # compact: no wall of text

    # the curl command's JSON body, posted as it is, gets the model's answer
    curl = _section(text, "curl")
    assert curl.startswith(f"curl -s -X POST {dep.url}/predict ")
    body = re.search(r"-d '([^']*)'", curl).group(1)
    status, answer = _post(f"{dep.url}/predict", body.encode())
    assert status == 200 and len(answer["outputs"]) == 1 and len(answer["outputs"][0]) == 3
    with torch.no_grad():
        expected = model(torch.zeros(1, 4))[0].tolist()
    assert answer["outputs"][0] == pytest.approx(expected, abs=1e-5)
    if shutil.which("curl"):  # and the command itself, run by a shell
        out = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=60, env=_no_proxy_env()
        )
        assert json.loads(out.stdout)["outputs"][0] == pytest.approx(expected, abs=1e-5)
    # the Python snippet too
    snippet = _section(text, "python")
    assert snippet.startswith("import requests\n")
    out = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60,
        env=_no_proxy_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert ast.literal_eval(out.stdout)["outputs"][0] == pytest.approx(expected, abs=1e-5)

    # the HTML card says the same, escaped, with the commands in boxes that wrap
    assert f'href="{dep.url}"' in html and "auto chose the fastest format" in html
    assert "curl -s -X POST" in html and "&#x27;content-type: application/json&#x27;" in html
    assert "white-space:pre-wrap" in html and "import requests" in html
    assert repr(dep).startswith("Deployment('tiny', target=local, status=running")

    dep.stop()
    stopped = dep._repr_mimebundle_()["text/plain"]
    assert stopped.startswith("Deployment tiny: stopped") and "curl" not in stopped


def test_a_large_input_and_an_api_key_still_paste_and_run(ws):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    dep = jupyter_ext.deploy(
        model, name="img", example=torch.randn(2, 1, 28, 28), format="onnx", api_key="s3cret",
        verbose=False,
    )  # fmt: skip
    text = dep._repr_mimebundle_()["text/plain"]
    assert _section(text, "takes") == "FP32 [N, 1, 28, 28] -> FP32 [N, 10]"
    assert "s3cret" not in text  # the key is read from the environment, never printed
    assert _section(text, "key").startswith("export API_KEY=")
    curl = _section(text, "curl")
    # a 784-number body is made by a Python one-liner piped into curl
    maker = re.match(r"python3 -c '(.*?)' \| curl ", curl).group(1)
    assert maker == 'import json; print(json.dumps({"inputs": [[[[0.0] * 28] * 28]]}))'
    body = subprocess.run(
        [sys.executable, "-c", maker], capture_output=True, text=True, check=True
    ).stdout
    status, answer = _post(f"{dep.url}/predict", body.encode(), {"X-API-Key": "s3cret"})
    assert status == 200 and len(answer["outputs"][0]) == 10
    assert _post(f"{dep.url}/predict", body.encode())[0] == 401
    if shutil.which("curl") and shutil.which("python3"):
        out = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=60,
            env=_no_proxy_env(API_KEY="s3cret"),
        )  # fmt: skip
        assert len(json.loads(out.stdout)["outputs"][0]) == 10
    out = subprocess.run(
        [sys.executable, "-c", _section(text, "python")], capture_output=True, text=True,
        timeout=60, env=_no_proxy_env(API_KEY="s3cret"),
    )  # fmt: skip
    assert out.returncode == 0 and "'outputs'" in out.stdout, out.stderr


def test_a_bundle_card_says_how_to_serve_it(ws, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    out = tmp_path / "tiny_bundle"
    dep = jupyter_ext.deploy(
        model, "bundle", name="tinyb", example=torch.randn(2, 4), format="onnx", out=out,
        verbose=False,
    )  # fmt: skip
    text = dep._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[0] == f"Deployment tinyb: built in {out.resolve()}"
    # "as requested", plus a note when the export measured one onnxruntime thread faster
    assert _section(text, "format").startswith("onnx: as requested")
    assert _section(text, "parity").startswith("max |diff| ")
    assert _section(text, "parity").endswith(" at export on the example [2, 4]")
    assert _section(text, "serve") == f"cd {out.resolve()} && python server.py"
    # the body is the one the bundle's own example.json shape takes
    body = json.loads(re.search(r"-d '([^']*)'", _section(text, "curl")).group(1))
    assert body == {"inputs": [[0.0, 0.0, 0.0, 0.0]]}
    assert "http://127.0.0.1:8080/predict" in _section(text, "curl")


def test_deploy_magic_prints_two_short_lines_then_the_card(start_kernel, ws):
    k = start_kernel()
    cell = k.run(
        "%%deploy --name tiny --example 'torch.randn(2, 4)' --format onnx\n"
        "import torch\n"
        "model = torch.nn.Sequential(torch.nn.Linear(4, 3))\n"
    ).ok()
    lines = cell.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Exported tiny as onnx in ")
    assert re.fullmatch(
        r"Serving tiny at http://127\.0\.0\.1:\d+: healthy [0-9.]+ s after start\.", lines[1]
    )
    shown = cell.data[0]
    assert shown["text/plain"].startswith("Deployment tiny: running at http://127.0.0.1:")
    assert "curl -s -X POST" in shown["text/html"]
    listing = k.run("%deployments").ok().data[0]["text/html"]
    assert "tiny" in listing and ">running</span>" in listing
