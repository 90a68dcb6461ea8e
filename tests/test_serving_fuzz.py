"""Hostile input against a real serving process: no request body gets a 5xx.

A tiny model is exported and served by ``python -m jupyter_ext.deployment.server`` on
127.0.0.1 (unbatched, and with dynamic batching), with a 1 MiB body limit and a 1 s body
timeout so the limits are reached quickly. Hypothesis generates bodies and headers (JSON of
every shape, near-valid requests of both dialects, raw bytes, compressed and truncated
bodies); every answer must be a 4xx or a 200 whose body is strict JSON, and a good request
must still succeed after each batch. Then the cases a generator rarely builds: slow and
truncated bodies, oversized bodies, deep nesting, non-finite values both ways, content
types, and the server's memory after a flood of the largest bodies.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
import zlib

import httpx
import numpy as np
import psutil
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from jupyter_ext.deployment import local
from jupyter_ext.deployment.export import export_model

ROW = 4
LIMIT = 1 << 20  # the servers' body limit here: 1 MiB
BODY_TIMEOUT = 1.0
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))  # per strategy; raise it to dig deeper


class LogHead(nn.Module):
    """Finite for some inputs, NaN or -inf for others: non-finite outputs are reachable."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(ROW, 3)
        with torch.no_grad():  # positive rows map to positive logits, very negative to NaN
            self.lin.weight.abs_()
            self.lin.bias.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.lin(x))


def _strict_json(data: bytes) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers of one artifact: unbatched, and batching up to 8 rows."""
    home = tmp_path_factory.mktemp("fuzz") / "ws"
    torch.manual_seed(0)
    model = LogHead().eval()
    result = export_model(
        model, torch.rand(2, ROW) + 1, home / "deployments" / "m", name="m", fmt="onnx"
    )
    procs, urls = [], {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_EXT_HOME", str(home))
        # the slow-body test uses "plain"; the flood of large bodies "batched", whose body
        # timeout stays the default (a busy server must not time a client out for its own
        # slowness)
        for label, extra in (
            ("plain", ["--body-timeout-s", str(BODY_TIMEOUT)]),
            ("batched", ["--max-batch-size", "8"]),
        ):
            sock = local.reserve_port("127.0.0.1", None)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            log = result.directory / f"{label}.log"
            proc = local.spawn(
                result.directory, host="127.0.0.1", engine="fastapi", sock=sock, log_path=log,
                options=["--max-body-mb", str(LIMIT / (1 << 20)), *extra],
            )  # fmt: skip
            sock.close()
            procs.append(proc)
            health = local.wait_healthy(url, proc, log, timeout=120)
            assert health.healthy, health.log_tail
            urls[label] = (url, proc, log)
    yield model, urls
    for proc in procs:
        local.stop_server(proc.pid)


def _good(client: httpx.Client, url: str, model: nn.Module) -> None:
    x = np.random.default_rng(0).random((2, ROW)).astype(np.float32) + 1
    r = client.post(f"{url}/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-6)


class Answers:
    """What the server answered a stream of generated requests; after every 50, a good
    request must still succeed."""

    def __init__(self, client: httpx.Client, url: str, model: nn.Module) -> None:
        self.client, self.url, self.model = client, url, model
        self.seen: list[int] = []

    def check(self, r: httpx.Response) -> None:
        _check_answer(r)
        self.seen.append(r.status_code)
        if len(self.seen) % 50 == 0:
            _good(self.client, self.url, self.model)

    def mixed(self) -> bool:
        """Both kinds came up: answers (200) and refusals (4xx)."""
        return 200 in self.seen and any(400 <= s < 500 for s in self.seen)


def _check_answer(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        doc = _strict_json(r.content)
        assert isinstance(doc, dict)
        if r.status_code >= 400:
            assert isinstance(doc.get("error"), str) and doc["error"], doc
            assert len(doc["error"]) < 2000  # messages quote the client's values clipped


# -- generators ----------------------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 1e38, 3.5e38, -3.5e38, 1e-45, 2**31, 2**63, 2**64]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=40,
)
rows = st.lists(st.lists(numbers, min_size=0, max_size=ROW + 2), min_size=0, max_size=5)
predict_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "inputs": st.lists(
                st.lists(st.floats(0.5, 1e6), min_size=ROW, max_size=ROW), min_size=1, max_size=3
            )
        }
    ),
    st.fixed_dictionaries({"inputs": st.one_of(rows, json_values)}),
    st.fixed_dictionaries({"inputs": st.lists(numbers, min_size=ROW, max_size=ROW)}),
)
shapes = st.one_of(
    st.lists(st.integers(min_value=-2, max_value=2**40), min_size=0, max_size=4),
    json_values,
)
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "x", 3, None])},
    optional={
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "fp32", None, 1]),
        "shape": shapes,
        "data": st.one_of(st.lists(numbers, max_size=12), rows, json_values),
        "parameters": st.one_of(
            json_values,
            st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-5, 64), numbers)}),
        ),
    },
)


@st.composite
def near_valid_infer(draw: st.DrawFn) -> dict:
    """A request a real client might send: right names; half of them entirely valid, the
    others with a shape and data that may not agree and numbers of every kind."""
    if draw(st.booleans()):
        n = draw(st.integers(1, 3))
        data = draw(st.lists(st.floats(0.5, 1e4), min_size=n * ROW, max_size=n * ROW))
        shape = [n, ROW]
    else:
        n = draw(st.integers(0, 3))
        width = draw(st.sampled_from([ROW, ROW - 1, ROW + 1]))
        shape = draw(st.sampled_from([[n, width], [n * width], [n, width, 1]]))
        count = draw(st.sampled_from([n * width, n * width + 1, max(0, n * width - 1)]))
        data = draw(st.lists(numbers, min_size=count, max_size=count))
    doc: dict = {"inputs": [{"name": "input", "datatype": "FP32", "shape": shape, "data": data}]}
    if draw(st.booleans()):
        doc["id"] = draw(json_values)
    if draw(st.booleans()):
        binary = draw(st.one_of(st.booleans(), json_values))
        doc["outputs"] = [{"name": "output", "parameters": {"binary_data": binary}}]
    return doc


infer_docs = st.one_of(
    near_valid_infer(),
    near_valid_infer(),
    json_values,
    st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(tensor, min_size=0, max_size=2), json_values)},
        optional={
            "id": json_values,
            "outputs": st.one_of(
                json_values,
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["output", "y", None])},
                        optional={"parameters": json_values},
                    ),
                    max_size=2,
                ),
            ),
            "parameters": st.one_of(
                json_values, st.fixed_dictionaries({"binary_data_output": json_values})
            ),
        },
    ),
)
content_types = st.sampled_from(
    [
        None,
        None,
        None,
        "application/json",
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "application/octet-stream",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/csv",
        ";;;",
        "application/vnd.api+json",
    ]
)
encodings = st.sampled_from([None] * 6 + ["gzip", "deflate", "br", "identity", "x" * 100])


def _encode(doc: object, mutate: int, encoding: str | None) -> bytes:
    body = json.dumps(doc, allow_nan=True).encode()  # NaN/Infinity literals included
    if mutate == 1:
        body = body[: len(body) // 2]  # truncated JSON
    elif mutate == 2:
        body = body.replace(b"1", b"\xff", 1)  # not UTF-8
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    return body


def _post(client, url, body, content_type, encoding, header_length=None):
    headers = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if encoding is not None:
        headers["content-encoding"] = encoding
    if header_length is not None:
        headers["inference-header-content-length"] = header_length
    return client.post(url, content=body, headers=headers)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same bodies every run: a failure here is a bug, never a flake
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("label", ["plain", "batched"])
def test_generated_predict_bodies_never_get_a_5xx(servers, label):
    model, urls = servers
    url, proc, _ = urls[label]
    with httpx.Client(trust_env=False, timeout=30) as client:
        answers = Answers(client, url, model)

        @FUZZ
        @given(
            doc=predict_docs,
            mutate=st.integers(0, 3),
            content_type=content_types,
            encoding=encodings,
        )
        def fuzz(doc, mutate, content_type, encoding):
            body = _encode(doc, mutate, encoding)
            answers.check(_post(client, f"{url}/predict", body, content_type, encoding))

        fuzz()
        _good(client, url, model)
    assert proc.poll() is None
    assert answers.mixed(), sorted(set(answers.seen))


@pytest.mark.parametrize("label", ["plain", "batched"])
def test_generated_infer_bodies_never_get_a_5xx(servers, label):
    model, urls = servers
    url, proc, _ = urls[label]
    with httpx.Client(trust_env=False, timeout=30) as client:
        answers = Answers(client, url, model)

        @FUZZ
        @given(
            doc=infer_docs,
            binary=st.binary(max_size=64),
            header_length=st.one_of(
                st.none(),
                st.none(),
                st.none(),
                st.integers(-3, 4096).map(str),
                st.sampled_from(["", "x", "1e3", "exact"]),
            ),
            content_type=content_types,
            encoding=encodings,
            path=st.sampled_from(["/v2/models/m/infer", "/v2/models/m/versions/1/infer"]),
        )
        def fuzz(doc, binary, header_length, content_type, encoding, path):
            head = json.dumps(doc, allow_nan=True).encode()
            body = head + binary if header_length is not None else head
            if header_length == "exact":
                header_length = str(len(head))
            answers.check(_post(client, url + path, body, content_type, None, header_length))

        fuzz()
        _good(client, url, model)
    assert proc.poll() is None
    assert answers.mixed(), sorted(set(answers.seen))


def test_random_bytes_and_binary_tensors_never_get_a_5xx(servers):
    model, urls = servers
    url, proc, _ = urls["plain"]
    with httpx.Client(trust_env=False, timeout=30) as client:

        @FUZZ
        @given(
            raw=st.binary(max_size=256),
            shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
            encoding=encodings,
        )
        def fuzz(raw, shape, encoding):
            r = _post(client, f"{url}/predict", raw, None, encoding)
            _check_answer(r)
            # a well-formed binary request whose tensor bytes are arbitrary (NaN bits too)
            head = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "datatype": "FP32",
                            "shape": shape,
                            "parameters": {"binary_data_size": len(raw)},
                        }
                    ],
                    "outputs": [{"name": "output", "parameters": {"binary_data": False}}],
                }
            ).encode()
            r = _post(client, f"{url}/v2/models/m/infer", head + raw, None, None, str(len(head)))
            _check_answer(r)

        fuzz()
        _good(client, url, model)
    assert proc.poll() is None


# -- what generators rarely build ----------------------------------------------------------


def test_named_hostile_bodies_get_their_4xx(servers):
    model, urls = servers
    url, _, _ = urls["plain"]
    deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    cases = [
        (b'{"inputs": [[NaN, 1, 2, 3]]}', {}, 400, "NaN and Infinity are not JSON"),
        (b'{"inputs": [[Infinity, 1, 2, 3]]}', {}, 400, "not valid JSON"),
        (b'{"inputs": [[1e400, 1, 2, 3]]}', {}, 400, "beyond the range of a double"),
        (b'{"inputs": [[1e39, 1, 2, 3]]}', {}, 422, "not a finite FP32 number"),
        (deep, {}, 400, "nested deeper than 1024 levels"),
        (b'{"inputs": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}", {}, 422, "nested deeper"),
        (b"<inputs/>", {"content-type": "application/xml"}, 415, "application/json"),
        (b"--x\r\n", {"content-type": "multipart/form-data; boundary=x"}, 415, "curl -H"),
        (b"inputs=1", {"content-type": "application/x-www-form-urlencoded"}, 400, "JSON"),
        (b"0" * (LIMIT + 1), {}, 413, f"limit of {LIMIT} bytes"),
        (gzip.compress(b" " * (LIMIT * 4)), {"content-encoding": "gzip"}, 413, "decompressed"),
    ]
    with httpx.Client(trust_env=False, timeout=30) as client:
        for body, headers, status, phrase in cases:
            r = client.post(f"{url}/predict", content=body, headers=headers)
            assert r.status_code == status, (body[:40], r.text)
            assert phrase in r.json()["error"], (phrase, r.json())
        # what fetch, curl -d and urllib label a JSON body they were given as text
        for label in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded"):
            r = client.post(
                f"{url}/predict",
                content=b'{"inputs": [[1, 2, 3, 4]]}',
                headers={"content-type": label},
            )
            assert r.status_code == 200, (label, r.text)
        big = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2**40, 2**40],
                           "data": [1, 2, 3, 4]}]}  # fmt: skip
        r = client.post(f"{url}/v2/models/m/infer", json=big)
        assert r.status_code == 422 and "needs 1208925819614629174706176" in r.json()["error"]
        _good(client, url, model)


def test_non_finite_outputs_are_null_and_counted(servers):
    model, urls = servers
    x = np.array([[1, 1, 1, 1], [-50, -50, -50, -50]], dtype=np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    bad = int((~np.isfinite(want)).sum())
    assert bad > 0  # the second row's logs are NaN or -inf
    for label, (url, _, _) in urls.items():
        r = httpx.post(f"{url}/predict", json={"inputs": x.tolist()}, trust_env=False)
        assert r.status_code == 200
        assert r.headers["non-finite-outputs"] == str(bad), label
        out = _strict_json(r.content)["outputs"]
        assert [v is None for row in out for v in row] == list(~np.isfinite(want).ravel())
        # the v2 JSON answer too; binary answers carry the IEEE values as they are
        doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, ROW],
                           "data": x.ravel().tolist()}]}  # fmt: skip
        r = httpx.post(f"{url}/v2/models/m/infer", json=doc, trust_env=False)
        assert r.headers["non-finite-outputs"] == str(bad)
        assert _strict_json(r.content)["outputs"][0]["data"].count(None) == bad
        doc["parameters"] = {"binary_data_output": True}
        r = httpx.post(f"{url}/v2/models/m/infer", json=doc, trust_env=False)
        n = int(r.headers["inference-header-content-length"])
        got = np.frombuffer(r.content[n:], dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_slow_and_truncated_bodies_time_out_or_vanish_while_others_are_served(servers):
    model, urls = servers
    url, proc, log = urls["plain"]
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    slow = _raw(url)
    slow.sendall(head + b'{"inputs": [')  # ...and nothing more
    t0 = time.monotonic()
    served = []
    with httpx.Client(trust_env=False, timeout=30) as client:
        # others are answered while the slow body is pending
        while time.monotonic() - t0 < BODY_TIMEOUT / 2:
            _good(client, url, model)
            served.append(1)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"nothing for 1 s after 12 bytes" in reply
        assert time.monotonic() - t0 >= BODY_TIMEOUT * 0.9
        slow.close()
        # a body cut short by a client that goes away: nobody to answer, nothing breaks
        for _ in range(5):
            cut = _raw(url)
            cut.sendall(head + b'{"inputs": [[1, 2')
            cut.close()
        _good(client, url, model)
    assert served and proc.poll() is None
    assert "Traceback" not in log.read_text()


def test_memory_stays_bounded_under_a_flood_of_the_largest_bodies(servers):
    model, urls = servers
    url, proc, _ = urls["batched"]
    server = psutil.Process(proc.pid)

    def largest(width: int) -> bytes:
        row = "[" + ",".join(["1.5"] * width) + "]"
        n = (LIMIT - 20) // (len(row) + 1)
        body = ('{"inputs": [' + ",".join([row] * n) + "]}").encode()
        assert LIMIT - 100 < len(body) <= LIMIT
        return body

    valid, wrong = largest(ROW), largest(ROW + 1)  # the wrong one has the wrong shape
    with httpx.Client(trust_env=False, timeout=60) as client:
        for body in (valid, wrong):  # warm: allocator pools, lazy imports
            client.post(f"{url}/predict", content=body)
        before = server.memory_info().rss
        errors = []

        def flood(body: bytes) -> None:
            with httpx.Client(trust_env=False, timeout=60) as c:
                for _ in range(6):
                    r = c.post(f"{url}/predict", content=body)
                    if r.status_code not in (200, 422):
                        errors.append(r.status_code)

        threads = [threading.Thread(target=flood, args=(b,)) for b in (valid, wrong) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        _good(client, url, model)
    grown = (server.memory_info().rss - before) / (1 << 20)
    # 36 bodies of 1 MiB each went through; kept, they alone would be 36 MiB and their
    # parsed rows several times that
    assert grown < 48, f"the server grew by {grown:.0f} MiB"
    assert proc.poll() is None
